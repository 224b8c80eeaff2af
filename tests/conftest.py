"""Shared fixtures: the repo on sys.path, and one small synthetic data set per test session."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """4 synthetic Cityscapes images at 256x512 (the train pipeline rescales them anyway)."""
    from segbench import data
    root = tmp_path_factory.mktemp("cityscapes")
    data.generate(root, n_images=4, seed=0, size=(256, 512))
    return root


@pytest.fixture
def cpu_env(small_data, tmp_path) -> dict:
    """Environment for a CPU run of run_benchmark.sh: tiny crops, log window of 2 iterations."""
    from segbench import knobs
    env = {k: v for k, v in os.environ.items() if k not in knobs.runtime_env()}   # a host's own
    for k in ("CUDA_VISIBLE_DEVICES", "REPEAT", "PROFILING", "CROP", "MASTER_PORT", "NNODES",
              "SEGBENCH_FAULT", "BENCH_TIMEOUT", "TUNED", "TUNED_PROOF", "STACK"):
        env.pop(k, None)
    env.update(DEVICE="cpu", DATA_ROOT=str(small_data), TRAIN_LOG_DIR=str(tmp_path / "logs"),
               LOG_INTERVAL="2", MP_PROCS="2", SEGBENCH_PYTHON=sys.executable)
    return env
