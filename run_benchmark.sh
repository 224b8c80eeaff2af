#!/usr/bin/env bash
# One benchmark case, the seed's CLI:
#   CUDA_VISIBLE_DEVICES=0 bash run_benchmark.sh MODEL RUN_MODE FP_ITEM BS MAX_ITER NUM_WORKERS
#   e.g. CUDA_VISIBLE_DEVICES=0 bash run_benchmark.sh fastscnn sp fp32 2 500 5
# Writes ${TRAIN_LOG_DIR:-$PWD}/${MODEL}_${RUN_MODE}_bs${BS}_${FP_ITEM}_${NGPU} (the log) and
# <log>_speed (the speed file), plus <log>_stats.json. Exit status 0 = the case passed.
# The logic lives in segbench/launch.py; every knob is listed there and in README.md.
# STACK=mmseg0 runs the case on mmseg 0.30 / mmcv 1.7.2 (mmseg 0.30's own tools/train.py, set up
# by STACK=mmseg0 bash PrepareEnv.sh); its files end in _mmseg0 (docs/LEGACY.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=segbench/sh/common.sh
source "${here}/segbench/sh/common.sh"

_set_params() {
    args=("$@")
    py="$(_segbench_python)"
    export TRAIN_LOG_DIR="${TRAIN_LOG_DIR:-$PWD}"
    export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
}

_train() {
    # launch validates the case, runs training in its own process group (ended on timeout or
    # signal, nothing else is touched), then analyses the log exactly as analysis_log.py does.
    # It runs in the background so that a SIGTERM/SIGINT sent to this script reaches it at once.
    "${py}" -m segbench.launch "${args[@]}" &
    launch_pid=$!
    trap 'kill -TERM "${launch_pid}" 2>/dev/null || true' TERM INT
    local rc=0
    wait "${launch_pid}" || rc=$?
    # wait returns early when a trapped signal arrives; wait again for launch to finish writing.
    while kill -0 "${launch_pid}" 2>/dev/null; do
        wait "${launch_pid}" || rc=$?
    done
    trap - TERM INT
    return "${rc}"
}

_set_params "$@"
_train
