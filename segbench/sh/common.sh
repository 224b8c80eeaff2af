# shellcheck shell=bash
# Shared by the top-level scripts: which Python runs segbench.
#   SEGBENCH_PYTHON wins; else the checkout's .venv (made by PrepareEnv.sh); else python3.
_segbench_python() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    if [[ -n "${SEGBENCH_PYTHON:-}" ]]; then
        printf '%s\n' "${SEGBENCH_PYTHON}"
    elif [[ -x "${root}/.venv/bin/python" ]]; then
        printf '%s\n' "${root}/.venv/bin/python"
    else
        command -v python3
    fi
}
