#!/usr/bin/env bash
# The GPU proof, as run on the H200 host (no network): offline set-up from a wheelhouse, then the
# fidelity benchmark (plain mmseg tools/train.py vs the harness, three sp fp32 cases, bs 2,
# 500 iterations, 5 workers) and the timing hook's overhead. Results and logs go to OUT_DIR.
#   bash benchmarks/gpu_proof.sh WHEELHOUSE OUT_DIR [MODELS]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheelhouse="$1"
out="$2"
models="${3:-fastscnn,segformer_b0,ocrnet_hrnetw48}"
mkdir -p "${out}"
cd "${here}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "${out}/gpu.txt"
# The default path (a venv that links the host's torch); --system if this Python cannot make venvs.
bash PrepareEnv.sh --wheelhouse "${wheelhouse}" || bash PrepareEnv.sh --system --wheelhouse "${wheelhouse}"
# shellcheck source=segbench/sh/common.sh
source segbench/sh/common.sh
py="$(_segbench_python)"
"${py}" -m segbench.env info > "${out}/env.json"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
"${py}" benchmarks/fidelity.py --models "${models}" --iters "${FIDELITY_ITERS:-500}" \
    --pairs "${FIDELITY_PAIRS:-1}" ${FIDELITY_NO_PLAIN:+--no-plain} --out "${out}/fidelity"
"${py}" benchmarks/hook_overhead.py --n 20000 | tee "${out}/hook_overhead.json"
