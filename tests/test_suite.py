"""The suite behind run_PyTorch.sh, on the CPU: case matrix, validation by line number, progress,
one failure not stopping the rest, resume; then report and compare on what it wrote."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def suite(env, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", "segbench.suite", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def report(*args):
    return subprocess.run([sys.executable, "-m", "segbench.report", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_dry_run_lists_the_seed_six_with_the_cpu_label(cpu_env):
    r = suite(cpu_env, "--profile", "cpu", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "6 cases, CPU PROFILE" in r.stdout
    lines = [ln for ln in r.stdout.splitlines() if "run_benchmark.sh" in ln]
    assert [ln.split("run_benchmark.sh ")[1].split("  ")[0] for ln in lines] == [
        f"{m} {mode} fp32 2 12 1" for m in ("fastscnn", "ocrnet_hrnetw48", "segformer_b0")
        for mode in ("sp", "mp")]
    g = suite(cpu_env, "--profile", "gpu", "--dry-run")
    assert "bash run_benchmark.sh ocrnet_hrnetw48 mp fp32 2 500 5" in g.stdout


def test_matrix_flags(cpu_env):
    r = suite(cpu_env, "--profile", "cpu", "--dry-run", "--models", "segformer_b0",
              "--modes", "sp", "--bs", "2,4", "--iters", "20")
    assert r.returncode == 0 and "2 cases" in r.stdout
    assert "segformer_b0 sp fp32 4 20 1" in r.stdout


def test_invalid_case_file_lines_are_reported_by_number_before_anything_runs(cpu_env, tmp_path):
    f = tmp_path / "cases.txt"
    f.write_text("# a comment\nfastscnn sp fp32 2 12 1\nunet sp fp32 2 12 1\n\n"
                 "fastscnn sp fp32 2 12  # missing workers\nfastscnn zz fp32 2 12 1\n")
    r = suite(cpu_env, "--profile", "cpu", "--cases", str(f))
    assert r.returncode == 2
    assert f"{f}:3: unknown model 'unet'" in r.stderr
    assert f"{f}:5: missing NUM_WORKERS" in r.stderr
    assert f"{f}:6: RUN_MODE must be sp or mp" in r.stderr
    assert not Path(cpu_env["TRAIN_LOG_DIR"]).exists()  # nothing ran


def test_small_real_suite_then_resume_report_and_compare(cpu_env, tmp_path):
    env = dict(cpu_env, CROP="64x128")
    log_dir = Path(env["TRAIN_LOG_DIR"])
    f = tmp_path / "cases.txt"
    f.write_text("fastscnn sp fp32 2 12 1\nfastscnn mp fp32 2 12 1\n"
                 "fastscnn sp fp32 1 12 1   # bs 1: BatchNorm over a 1x1 map fails in training\n"
                 "segformer_b0 sp fp32 2 12 1\nsegformer_b0 mp fp32 2 12 1\n")
    r = suite(env, "--profile", "cpu", "--cases", str(f), "--log-dir", str(log_dir))
    assert r.returncode == 1, r.stdout + r.stderr  # one case failed, the rest ran
    out = r.stdout
    assert "[1/5] fastscnn_sp_bs2_fp32_1: " in out and "ETA" in out
    assert "[3/5] fastscnn_sp_bs1_fp32_1: FAILED: " in out
    assert "[5/5] segformer_b0_mp_bs2_fp32_2: " in out
    assert "CPU PROFILE" in out
    for case in ("fastscnn_sp_bs2_fp32_1", "fastscnn_mp_bs2_fp32_2", "segformer_b0_sp_bs2_fp32_1",
                 "segformer_b0_mp_bs2_fp32_2"):
        assert json.loads((log_dir / f"{case}_speed").read_text())["JOB_FAIL_FLAG"] == 0
    assert json.loads((log_dir / "fastscnn_sp_bs1_fp32_1_speed").read_text())["JOB_FAIL_FLAG"] == 1

    again = suite(env, "--profile", "cpu", "--cases", str(f), "--log-dir", str(log_dir), "--resume",
                  timeout=300)
    assert again.stdout.count("kept from an earlier run") == 4
    assert "[3/5] fastscnn_sp_bs1_fp32_1: FAILED" in again.stdout  # failed cases are re-run

    rep = report("report", str(log_dir), "--out", str(tmp_path / "rep"))
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "## fastscnn" in md and "## segformer_b0" in md and "CPU profile" in md
    rows = list(csv.DictReader(open(tmp_path / "rep" / "summary.csv")))
    mp = next(r for r in rows if r["case"] == "fastscnn_mp_bs2_fp32_2")
    sp = next(r for r in rows if r["case"] == "fastscnn_sp_bs2_fp32_1")
    expect = float(mp["images_per_s"]) / (2 * float(sp["images_per_s"]))
    assert float(mp["scaling_efficiency"]) == pytest.approx(expect, rel=1e-3)
    assert (tmp_path / "rep" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    same = report("compare", str(log_dir), str(log_dir), "--threshold", "5%")
    assert same.returncode == 1  # the failed bs1 case counts as missing in the current run
    # A hand-made baseline in the 10-key format, one case 20% faster than what we measured.
    base = tmp_path / "baseline"
    base.mkdir()
    for case in ("fastscnn_sp_bs2_fp32_1", "segformer_b0_sp_bs2_fp32_1"):
        d = json.loads((log_dir / f"{case}_speed").read_text())
        if case.startswith("fastscnn"):
            d["FINAL_RESULT"] = round(d["FINAL_RESULT"] * 1.2, 3)
        (base / f"{case}_speed").write_text(json.dumps(d, ensure_ascii=False))
    cmp_ = report("compare", str(base), str(log_dir), "--threshold", "5%",
                  "--baseline-label", "Paddle", "--current-label", "PyTorch")
    assert cmp_.returncode == 1
    line = next(ln for ln in cmp_.stdout.splitlines() if "fastscnn_sp_bs2_fp32_1" in ln)
    assert "regressed" in line
    assert "Paddle" in cmp_.stdout and "PyTorch" in cmp_.stdout


def test_run_pytorch_passes_a_wheelhouse_to_the_setup(tmp_path):
    """An air-gapped host's main job: `run_PyTorch.sh --wheelhouse DIR` sets up from DIR (a fake
    interpreter stands in for PrepareEnv.sh's python, records its arguments and stops the run)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    said = tmp_path / "args.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{said}"\nexit 3\n')
    fake.chmod(0o755)
    env = dict(os.environ, PYTHON=str(fake))
    r = subprocess.run(["bash", "run_PyTorch.sh", "--local", "--wheelhouse", str(wheels),
                        "--models", "fastscnn"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert said.read_text().splitlines() == ["-m", "segbench.env", "prepare", "--wheelhouse",
                                             str(wheels)]
    bad = subprocess.run(["bash", "run_PyTorch.sh", "--local", "--wheelhouse", str(tmp_path / "none")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "run_PyTorch.sh: error: --wheelhouse needs a directory of wheels"
