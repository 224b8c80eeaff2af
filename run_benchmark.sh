#!/usr/bin/env bash
# One benchmark case, the seed's CLI:
#   CUDA_VISIBLE_DEVICES=0 bash run_benchmark.sh MODEL RUN_MODE FP_ITEM BS MAX_ITER NUM_WORKERS
#   e.g. CUDA_VISIBLE_DEVICES=0 bash run_benchmark.sh fastscnn sp fp32 2 500 5
# Writes ${TRAIN_LOG_DIR:-$PWD}/${MODEL}_${RUN_MODE}_bs${BS}_${FP_ITEM}_${NGPU} (the log; a setting
# off the default adds a token to the name) and <log>_speed (the speed file), plus <log>_stats.json.
# Exit status: 0 the case passed, 1 it failed, 2 bad input (nothing ran), 130 interrupted
# (SIGINT, SIGTERM or SIGHUP). The logic lives in segbench/launch.py; every knob is listed there
# and in README.md.
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
    # exec: launch takes this script's process, so a signal sent to the script reaches it as
    # sent, with nothing in between to trap, translate or forward it.
    exec "${py}" -m segbench.launch "${args[@]}"
}

_set_params "$@"
_train
