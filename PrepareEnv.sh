#!/usr/bin/env bash
# Set up segbench: a virtual environment (or --system), torch (an installed one is reused), the
# pinned stack (mmengine 0.10.7, mmcv 2.1.0, mmsegmentation 1.2.2), and the data. Re-runnable.
#   bash PrepareEnv.sh [PREPARE OPTIONS]              # set up (python -m segbench.env prepare)
#   bash PrepareEnv.sh --download-wheels DIR [DOWNLOAD OPTIONS]
#                                                     # fill DIR with wheels for an offline host
#                                                     # (python -m segbench.env download DIR)
#   bash PrepareEnv.sh -h | --help                    # this help: both commands' options and the
#                                                     # environment; nothing is installed
# e.g.
#   bash PrepareEnv.sh                       # .venv in the checkout + synthetic Cityscapes
#   bash PrepareEnv.sh --system              # install into the current python3
#   bash PrepareEnv.sh --dev                 # also the test tools: pytest, hypothesis, shellcheck, ruff
#   bash PrepareEnv.sh --download-wheels DIR --python-version 3.12 --platform manylinux2014_x86_64
#   bash PrepareEnv.sh --wheelhouse DIR      # offline: no index, no network
# STACK=mmseg0: the same options set up the mmseg 0.30 / mmcv 1.7.2 stack in .venv-mmseg0 instead
# (segbench/legacy/install.py, docs/LEGACY.md; MMSEG0_TORCH picks the torch it installs or matches).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
module=segbench.env
case "${STACK:-mmseg1}" in
    mmseg1) ;;
    mmseg0) module=segbench.legacy.install ;;
    *) echo "PrepareEnv.sh: error: STACK must be mmseg1 or mmseg0, not '${STACK}'" >&2; exit 2 ;;
esac

for arg in "$@"; do
    case "${arg}" in
        -h|--help)
            sed -n '2,/^set -euo pipefail$/{/^#/{s/^# \{0,1\}//;p;};}' "${BASH_SOURCE[0]}"
            echo
            echo "PREPARE OPTIONS (python -m segbench.env prepare):"
            "${python}" -m segbench.env prepare --help
            echo
            echo "DOWNLOAD OPTIONS (python -m segbench.env download; DIR comes after --download-wheels):"
            "${python}" -m segbench.env download --help
            exit 0 ;;
    esac
done

if [[ "${1:-}" == "--download-wheels" ]]; then
    [[ $# -ge 2 ]] || { echo "PrepareEnv.sh: error: --download-wheels needs a directory" >&2; exit 2; }
    dir="$2"
    shift 2
    exec "${python}" -m "${module}" download "${dir}" "$@"
fi
exec "${python}" -m "${module}" prepare "$@"
