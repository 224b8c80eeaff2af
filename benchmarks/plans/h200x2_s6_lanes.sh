#!/usr/bin/env bash
# One step of benchmarks/plans/h200x2_2026-11-29_s6.txt on a two-GPU host: correctness checks and
# kernel-set evidence on both GPUs at once. NOTHING HERE IS A SPEED FIGURE: the two lanes share the
# host's CPUs (torch.compile on one, data loading on the other), so only the equivalence verdicts and
# the profiled runs' kernel sets are read from this step.
#   GPU 1: ocrnet_hrnetw48's equivalence, every TUNED=all switch (a cold compile: minutes).
#   GPU 0: fastscnn's channels_last step with TF32 off everywhere (--exact-fp32); fastscnn's tuned
#          step in bf16; then three ocrnet_hrnetw48 runs (cuDNN benchmark on, the seed's setting),
#          each profiled over iterations 20-30 and summarised here (the traces are too large to keep):
#          do separate runs choose the same kernels?
set -uo pipefail
: "${STEP_DIR:?set by gpu_session.py}" "${PY:?set by gpu_session.py}"

lane_gpu1() {
    CUDA_VISIBLE_DEVICES=1 "${PY}" -m segbench.tuned equivalence ocrnet_hrnetw48 --switches all \
        --crop 512x1024 --iters 2 --json "${STEP_DIR}/ocr_equiv.json"
}

lane_gpu0() {
    CUDA_VISIBLE_DEVICES=0 "${PY}" -m segbench.tuned equivalence fastscnn --switches channels_last \
        --crop 512x1024 --iters 2 --exact-fp32 --json "${STEP_DIR}/fast_equiv_exact.json"
    echo "fast_equiv_exact rc $?"
    CUDA_VISIBLE_DEVICES=0 "${PY}" -m segbench.tuned equivalence fastscnn --switches all \
        --precision bf16 --crop 512x1024 --iters 2 --json "${STEP_DIR}/fast_equiv_bf16.json"
    echo "fast_equiv_bf16 rc $?"
    local r d
    for r in 1 2 3; do
        d="${STEP_DIR}/prof${r}"
        mkdir -p "${d}"
        CUDA_VISIBLE_DEVICES=0 TRAIN_LOG_DIR="${d}" PROFILING=true PROFILE_ITERS=20-30 \
            bash run_benchmark.sh ocrnet_hrnetw48 sp fp32 2 100 5
        echo "prof${r} rc $?"
        "${PY}" benchmarks/trace_summary.py "${d}"/*.trace.json --json "${d}/trace_summary.json"
        rm -f "${d}"/*.trace.json
    done
}

lane_gpu1 >"${STEP_DIR}/lane_gpu1.log" 2>&1 &
gpu1=$!
lane_gpu0 >"${STEP_DIR}/lane_gpu0.log" 2>&1 &
gpu0=$!
wait "${gpu0}"
rc0=$?
wait "${gpu1}"
rc1=$?
echo "lanes: GPU 0 lane rc ${rc0}, GPU 1 lane (ocrnet equivalence) rc ${rc1}"
tail -n 5 "${STEP_DIR}/lane_gpu0.log" "${STEP_DIR}/lane_gpu1.log"
