#!/usr/bin/env bash
# The seed's six cases (fastscnn, ocrnet_hrnetw48, segformer_b0 x sp/mp; fp32, bs 2, 500 iterations,
# 5 workers), set-up included.
#
# usage: bash run_PyTorch.sh [--local] [--no-setup] [--wheelhouse DIR] [--dry-run] [SUITE OPTIONS]
#   (no option)        docker + GPU: in an official PyTorch CUDA image (PYTORCH_IMAGE, default
#                      pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime, its own torch); else on the host
#   --local            on the host, never in docker
#   --no-setup         the set-up is done: run the cases only, on the host
#   --wheelhouse DIR   air-gapped host: set up from DIR (PrepareEnv.sh --wheelhouse)
#   --dry-run          print the cases and stop (no set-up)
#   -h, --help         this help, then the suite's options; nothing is set up or run
# SUITE OPTIONS (case file, --models/--modes/--bs/--fp, --iters, --log-dir, --resume, ..., and every
# knob as a flag, e.g. --log-interval 2 = LOG_INTERVAL=2) go to segbench suite, listed by --help.
# STACK=mmseg0 bash run_PyTorch.sh: the same cases on mmseg 0.30 / mmcv 1.7.2 (docs/LEGACY.md).
# With no GPU it runs the CPU profile (small crops, few iterations, mp = 2 CPU processes), labelled.
# In docker, every knob of run_benchmark.sh and PrepareEnv.sh that is set here (the list `knobs`
# below) is passed into the container, and the log dir (--log-dir, else TRAIN_LOG_DIR, else ./logs),
# DATA_ROOT, ADE20K_DATA_ROOT, CITYSCAPES_ROOT, ADE20K_ROOT and the wheelhouse are mounted at the
# same paths.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=segbench/sh/common.sh
source "${here}/segbench/sh/common.sh"
image="${PYTORCH_IMAGE:-pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime}"
# The environment knobs passed into the container: segbench/launch.py's (run_benchmark.sh) and
# segbench/env.py's (PrepareEnv.sh). tests/test_scripts.py holds this list to what the code reads.
knobs=(CUDA_VISIBLE_DEVICES TRAIN_LOG_DIR DEVICE MP_PROCS NNODES NODE_RANK MASTER_ADDR MASTER_PORT
       BENCH_TIMEOUT LOG_INTERVAL CROP DATA_ROOT REPEAT PROFILING PROFILE_ITERS FLOPS CPU_AFFINITY
       CUDNN_BENCHMARK SEGBENCH_VERBOSE TUNED TUNED_COMPILE_MODE TUNED_COMPILE_SCOPE TUNED_PROOF
       MMCV_FLAVOR TORCH_VERSION SYNTH_IMAGES CITYSCAPES_ROOT ADE20K_ROOT ADE20K_DATA_ROOT STACK)

_help() {
    sed -n '2,/^set -euo pipefail$/{/^#/{s/^# \{0,1\}//;p;};}' "${BASH_SOURCE[0]}"
    echo
    echo "SUITE OPTIONS (segbench suite: the knob flags, then the suite's own):"
    PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}" "$(_segbench_python)" -m segbench.cli suite --help
}

for arg in "$@"; do
    case "${arg}" in -h|--help) _help; exit 0 ;; esac
done

local_only=0
setup=1
wheelhouse=""
log_dir=""
suite_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --local) local_only=1 ;;
        --no-setup) setup=0 ;;
        --dry-run) setup=0; suite_args+=("$1") ;;
        --wheelhouse)
            [[ $# -ge 2 && -d "$2" ]] || {
                echo "run_PyTorch.sh: error: --wheelhouse needs a directory of wheels" >&2; exit 2; }
            wheelhouse="$(cd "$2" && pwd)"
            shift ;;
        --log-dir)   # the suite's; read here too, for the docker mount
            [[ $# -ge 2 ]] || { echo "run_PyTorch.sh: error: --log-dir needs a directory" >&2; exit 2; }
            log_dir="$2"
            suite_args+=("$1" "$2")
            shift ;;
        --log-dir=*) log_dir="${1#*=}"; suite_args+=("$1") ;;
        *) suite_args+=("$1") ;;
    esac
    shift
done
prepare_args=()
if [[ -n "${wheelhouse}" ]]; then
    prepare_args=(--wheelhouse "${wheelhouse}")
fi

_has_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

_abs_dir() {   # the directory, made if missing, as an absolute path
    mkdir -p "$1" && (cd "$1" && pwd)
}

_torch_banner() {
    # The torch an official image's tag names (pytorch/pytorch:2.9.0-cuda...), against the one a
    # local set-up installs (segbench/env.py's TORCH_VERSION): the figures are of the image's.
    local tag="${image##*/}" want
    tag="${tag#*:}"
    tag="${tag%%-*}"
    want="$(PYTHONPATH="${here}" "$(_segbench_python)" -c \
        'from segbench.env import TORCH_VERSION; print(TORCH_VERSION)' 2>/dev/null || true)"
    if [[ "${image##*/}" != *:* || ! "${tag}" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]]; then
        echo "run_PyTorch.sh: the image's tag names no torch version: the figures are of whatever torch it has"
    elif [[ -n "${want}" && "${tag}" != "${want}" ]]; then
        echo "run_PyTorch.sh: the image's torch is ${tag}, not ${want} (what a local set-up installs): the figures are of torch ${tag}"
    fi
}

_in_docker() {
    # The checkout is mounted at /workspace/segbench. The container is thrown away (--rm), so the
    # stack goes into the image's own Python (--system, its torch untouched) rather than into a
    # .venv in the mounted checkout, which would point at the image's interpreter afterwards.
    # Whatever it writes outside the mounts is lost: the log dir and DATA_ROOT are mounted at
    # their own paths (absolute, made here first), so the same paths work on both sides.
    log_dir="$(_abs_dir "${log_dir:-${TRAIN_LOG_DIR:-logs}}")"
    export TRAIN_LOG_DIR="${log_dir}"
    local args=(--rm --gpus all --shm-size=16g --ipc=host -w /workspace/segbench
                -v "${here}:/workspace/segbench" -v "${log_dir}:${log_dir}")
    local var
    for var in DATA_ROOT ADE20K_DATA_ROOT; do   # where data goes: made here, mounted read-write
        if [[ -n "${!var:-}" ]]; then
            printf -v "${var}" '%s' "$(_abs_dir "${!var}")"
            export "${var?}"
            args+=(-v "${!var}:${!var}")
        fi
    done
    for var in CITYSCAPES_ROOT ADE20K_ROOT; do  # real datasets to link: mounted read-only
        if [[ -n "${!var:-}" ]]; then
            printf -v "${var}" '%s' "$(cd "${!var}" && pwd)"
            export "${var?}"
            args+=(-v "${!var}:${!var}:ro")
        fi
    done
    if [[ -n "${wheelhouse}" ]]; then
        args+=(-v "${wheelhouse}:${wheelhouse}:ro")
    fi
    local knob
    for knob in "${knobs[@]}"; do
        args+=(-e "${knob}")   # passed only where set here
    done
    echo "run_PyTorch.sh: running in docker image ${image}; logs in ${log_dir}"
    _torch_banner
    docker run "${args[@]}" -e SEGBENCH_WHEELHOUSE="${wheelhouse}" \
        "${image}" bash -c 'PYTHON=python bash PrepareEnv.sh --system \
                ${SEGBENCH_WHEELHOUSE:+--wheelhouse "${SEGBENCH_WHEELHOUSE}"} &&
            SEGBENCH_PYTHON=python MMSEG0_PYTHON=python bash run_PyTorch.sh --local --no-setup "$@"' \
        run_PyTorch.sh ${suite_args[@]+"${suite_args[@]}"} --log-dir "${log_dir}"
}

_local() {
    if [[ "${setup}" == 1 ]]; then
        bash "${here}/PrepareEnv.sh" ${prepare_args[@]+"${prepare_args[@]}"}
    fi
    # exec: a signal sent to run_PyTorch.sh reaches the suite, which stops its case and exits 130
    PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}" \
        exec "$(_segbench_python)" -m segbench.cli suite ${suite_args[@]+"${suite_args[@]}"}
}

if [[ "${local_only}" == 0 ]] && [[ "${setup}" == 1 ]] && command -v docker >/dev/null 2>&1 \
        && docker info >/dev/null 2>&1 && _has_gpu; then
    _in_docker
else
    _local
fi
