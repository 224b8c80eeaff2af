# shellcheck shell=bash
# Shared by the top-level scripts: which Python runs segbench.
#   SEGBENCH_PYTHON wins; else the checkout's .venv (made by PrepareEnv.sh); else python3.
#   With STACK=mmseg0 the checkout's .venv-mmseg0 comes before .venv (the launcher needs torch only).
_segbench_python() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    if [[ -n "${SEGBENCH_PYTHON:-}" ]]; then
        printf '%s\n' "${SEGBENCH_PYTHON}"
    elif [[ "${STACK:-}" == mmseg0 && -x "${root}/.venv-mmseg0/bin/python" ]]; then
        printf '%s\n' "${root}/.venv-mmseg0/bin/python"
    elif [[ -x "${root}/.venv/bin/python" ]]; then
        printf '%s\n' "${root}/.venv/bin/python"
    else
        command -v python3
    fi
}
