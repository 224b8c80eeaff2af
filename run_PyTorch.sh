#!/usr/bin/env bash
# The seed's six cases (fastscnn, ocrnet_hrnetw48, segformer_b0 x sp/mp; fp32, bs 2, 500 iterations,
# 5 workers), set-up included:
#   bash run_PyTorch.sh                 # docker + GPU: in an official PyTorch CUDA image; else on the host
#   bash run_PyTorch.sh --local         # on the host, never in docker
#   bash run_PyTorch.sh --dry-run       # print the cases
#   bash run_PyTorch.sh --wheelhouse DIR  # air-gapped host: set up from DIR (PrepareEnv.sh --wheelhouse)
#   bash run_PyTorch.sh --no-setup      # the set-up is done: run the cases only
#   STACK=mmseg0 bash run_PyTorch.sh    # the same cases on mmseg 0.30 / mmcv 1.7.2 (docs/LEGACY.md)
# With no GPU it runs the CPU profile (small crops, few iterations, mp = 2 CPU processes), labelled.
# Other options (case file, --models/--modes/--bs/--fp, --resume): python -m segbench.suite --help
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${PYTORCH_IMAGE:-pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime}"
local_only=0
setup=1
wheelhouse=""
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

_in_docker() {
    # The checkout is mounted at /workspace/segbench. The container is thrown away (--rm), so the
    # stack goes into the image's own Python (--system, its torch untouched) rather than into a
    # .venv in the mounted checkout, which would point at the image's interpreter afterwards.
    echo "run_PyTorch.sh: running in docker image ${image}"
    docker run --rm --gpus all --shm-size=16g --ipc=host \
        -e CUDA_VISIBLE_DEVICES -e TRAIN_LOG_DIR -e CITYSCAPES_ROOT -e STACK \
        -v "${here}:/workspace/segbench" -w /workspace/segbench \
        ${CITYSCAPES_ROOT:+-v "${CITYSCAPES_ROOT}:${CITYSCAPES_ROOT}:ro"} \
        ${wheelhouse:+-v "${wheelhouse}:${wheelhouse}:ro"} \
        -e SEGBENCH_WHEELHOUSE="${wheelhouse}" \
        "${image}" bash -c 'PYTHON=python bash PrepareEnv.sh --system \
                ${SEGBENCH_WHEELHOUSE:+--wheelhouse "${SEGBENCH_WHEELHOUSE}"} &&
            SEGBENCH_PYTHON=python MMSEG0_PYTHON=python bash run_PyTorch.sh --local --no-setup "$@"' \
        run_PyTorch.sh ${suite_args[@]+"${suite_args[@]}"}
}

_local() {
    if [[ "${setup}" == 1 ]]; then
        bash "${here}/PrepareEnv.sh" ${prepare_args[@]+"${prepare_args[@]}"}
    fi
    # shellcheck source=segbench/sh/common.sh
    source "${here}/segbench/sh/common.sh"
    PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}" \
        "$(_segbench_python)" -m segbench.suite ${suite_args[@]+"${suite_args[@]}"}
}

if [[ "${local_only}" == 0 ]] && [[ "${setup}" == 1 ]] && command -v docker >/dev/null 2>&1 \
        && docker info >/dev/null 2>&1 && _has_gpu; then
    _in_docker
else
    _local
fi
