"""The suite's batch-size sweep with an injected OOM, end to end on the CPU: suite ->
run_benchmark.sh -> launch -> real mmengine training, where the training process raises a real
torch.OutOfMemoryError for batches above a threshold (SEGBENCH_FAULT=oom@1@bs>K); then --resume.
Plus the suite's side of a crash mid-sweep, through a stand-in run_benchmark.sh."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_suite import REPO, fake, fake_suite_argv, calls  # noqa: F401  (fake: a fixture)

K = 3
SPEED_KEYS = ["log_file", "model_name", "mission_name", "direction_id", "run_mode", "index",
              "gpu_num", "FINAL_RESULT", "JOB_FAIL_FLAG", "UNIT"]


def suite(env, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "segbench.suite", "--profile", "cpu", "--models", "fastscnn",
                           "--modes", "sp", *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def row(out, bs):
    table = out[out.index("segbench results"):]
    return " ".join(next(ln for ln in table.splitlines()
                         if ln.startswith(f"fastscnn_sp_bs{bs}_fp32_1_crop64x128_li2 ")).split())


def test_the_sweep_finds_the_max_below_an_injected_oom_and_resume_keeps_it(cpu_env):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT=f"oom@1@bs>{K}")
    log_dir = Path(env["TRAIN_LOG_DIR"])
    r = suite(env, "--bs", "2,max")
    assert r.returncode == 0, r.stdout + r.stderr   # OOMs found while probing are expected
    assert "then 1 max search(es)" in r.stdout
    # the injected torch.OutOfMemoryError reads as gpu_oom; on the CPU either memory brackets
    assert f"max batch per GPU, fastscnn sp fp32: {K} (max {K}: batch 4 runs out of GPU memory" in r.stdout
    assert row(r.stdout, 3).split()[4:6] == ["passed", "(max)"]
    oom = row(r.stdout, 4)
    assert "oom (gpu_oom): out of GPU memory at batch 4 per process (torch.OutOfMemoryError:" in oom

    doc = json.loads((log_dir / "suite_sweep.json").read_text(encoding="utf-8"))
    (g,) = doc["groups"]
    assert [(t["bs"], t["status"], t["failure_kind"]) for t in g["tried"]] == [
        (2, "passed", None), (4, "oom", "gpu_oom"), (3, "passed", None)]
    assert (g["max_bs"], g["max_at_least"], g["stopped"], g["listed"], g["to_max"]) == (
        K, K, "bracketed", [2], True)
    assert (g["profile"], g["group"]) == ("cpu", "fastscnn_sp_bs*_fp32_1_crop64x128_li2")
    assert all(t["images_per_s"] > 0 for t in g["tried"] if t["status"] == "passed")

    speed = json.loads((log_dir / "fastscnn_sp_bs4_fp32_1_crop64x128_li2_speed").read_text())
    assert list(speed) == SPEED_KEYS and speed["JOB_FAIL_FLAG"] == 1 and speed["FINAL_RESULT"] == 0
    stats = json.loads((log_dir / "fastscnn_sp_bs4_fp32_1_crop64x128_li2_stats.json").read_text())
    assert stats["failure_kind"] == "gpu_oom" and stats["reason"].startswith("out of GPU memory at batch 4")

    # --resume: nothing runs again; the OOM's record is reused (its sidecar says gpu_oom)
    again = suite(env, "--bs", "2,max", "--resume", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("kept from an earlier run") == 3 and "ETA" not in again.stdout
    assert json.loads((log_dir / "suite_sweep.json").read_text())["groups"][0]["max_bs"] == K
    # the same OOM at a size asked for (no max search) fails the suite
    listed = suite(env, "--bs", "2,4", "--resume", timeout=120)
    assert listed.returncode == 1, listed.stdout + listed.stderr
    assert "oom (gpu_oom)" in row(listed.stdout, 4)


STAND_IN_CRASH = r"""
if [[ "$1_$4" == "${FAKE_CRASH:-none}" ]]; then
    speed "$1" 0 1
    echo '{"reason": "crash: RuntimeError: boom", "failure_kind": "other"}' > "${log}/${name}_stats.json"
    echo "error: boom" >&2
    exit 1
fi
if (( $4 > ${FAKE_OOM_ABOVE:-100000} )); then
    speed "$1" 0 1
    echo '{"reason": "out of GPU memory at batch '"$4"' per GPU (torch.OutOfMemoryError: CUDA out of '\
'memory.)", "failure_kind": "gpu_oom", "memory": {"peak_mb_per_rank": [139000.4]}}' \
        > "${log}/${name}_stats.json"
    echo "[segbench] ${name}: failed: out of GPU memory" >&2
    exit 1
fi
if (( $4 > ${FAKE_HOST_OOM_ABOVE:-100000} )); then
    speed "$1" 0 1
    echo '{"reason": "out of host memory at batch '"$4"' per GPU (exit -9)", "failure_kind": '\
'"host_oom", "device": "'"${FAKE_DEVICE:-cuda}"'"}' > "${log}/${name}_stats.json"
    echo "[segbench] ${name}: failed: out of host memory" >&2
    exit 1
fi
echo '{"memory": {"peak_mb_per_rank": [1000.4, 1200.6]}, "energy": {"images_per_j": 0.5}}' \
    > "${log}/${name}_stats.json"
"""


def stand_in(fake, *args, **env):  # noqa: F811
    """The suite through the stand-in with its crash/OOM knobs: (result, suite_sweep.json or None,
    the table's line of a case)."""
    base, log_dir, script = fake
    text = script.read_text()
    if STAND_IN_CRASH not in text:
        script.write_text(text.replace('speed "$1" 12.5 0\n', STAND_IN_CRASH + 'speed "$1" 12.5 0\n'))
    r = subprocess.run(fake_suite_argv(script, log_dir, *args), env=dict(base, **env), cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    f = log_dir / "suite_sweep.json"
    doc = json.loads(f.read_text()) if f.exists() else None
    table = r.stdout[r.stdout.index("segbench results"):] if "segbench results" in r.stdout else ""
    line = lambda case: " ".join(next(ln for ln in table.splitlines() if ln.startswith(case + " ")).split())  # noqa: E731
    return r, doc, line


def test_a_crash_mid_sweep_ends_the_group_and_fails_the_suite(fake):  # noqa: F811
    env, log_dir, script = fake
    r, doc, line = stand_in(fake, "--models", "fastscnn,segformer_b0", "--bs", "2,max",
                            FAKE_CRASH="fastscnn_8", FAKE_OOM_ABOVE="20")
    assert r.returncode == 1, r.stdout + r.stderr
    # fastscnn: 2, 4 fit, 8 crashes: no bisecting; segformer_b0 still runs its own search:
    # 2..16 fit, 32 OOMs, 24 OOMs, 20 fits, 22 OOMs: gap 2 <= 20/8
    sizes = [int(c.split("_bs")[1].split("_")[0]) for c in calls(log_dir)]
    assert sizes == [2, 4, 8, 2, 4, 8, 16, 32, 24, 20, 22]
    first, second = doc["groups"]
    # a crash is no evidence of the max: none is given, 4 is what is known
    assert (first["stopped"], first["max_bs"], first["max_at_least"]) == ("failed", None, 4)
    assert first["why"] == "stopped: batch 8 failed (not out of memory)"
    assert (second["stopped"], second["max_bs"], second["max_at_least"]) == ("bracketed", 20, 20)
    assert "max batch per GPU, fastscnn sp fp32: none; at least 4 (stopped: batch 8 failed" in r.stdout
    assert line("fastscnn_sp_bs4_fp32_1").endswith("passed (largest that fit; the search stopped: failed)")
    assert line("segformer_b0_sp_bs20_fp32_1") == "segformer_b0_sp_bs20_fp32_1 12.5 1201 0.5 passed (max)"
    assert line("segformer_b0_sp_bs32_fp32_1").startswith(
        "segformer_b0_sp_bs32_fp32_1 0 139000 \u2014 oom (gpu_oom): out of GPU memory at batch 32")
    assert line("fastscnn_sp_bs8_fp32_1").startswith("fastscnn_sp_bs8_fp32_1 0 \u2014 \u2014 failed: crash")


def test_dry_run_shows_the_listed_sizes_then_the_search(cpu_env):
    r = suite(cpu_env, "--bs", "4,2,max", "--bs-cap", "64", "--max-within", "0", "--dry-run", timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "2 cases then 1 max search(es), CPU PROFILE" in lines[0]
    assert [ln.split("run_benchmark.sh ")[1].split("  ")[0] for ln in lines[1:3]] == [
        "fastscnn sp fp32 2 12 1", "fastscnn sp fp32 4 12 1"]
    assert lines[3].strip() == "then grow/bisect to max (cap 64, exact)"
    bad = suite(cpu_env, "--bs", "max", "--dry-run", timeout=120)
    assert bad.returncode == 2 and "give at least one batch size" in bad.stderr


def test_at_the_cap_no_max_is_given_the_cap_is_a_lower_bound(fake):  # noqa: F811
    r, doc, line = stand_in(fake, "--models", "fastscnn", "--bs", "2,max", "--bs-cap", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    (g,) = doc["groups"]
    assert (g["stopped"], g["max_bs"], g["max_at_least"]) == ("cap", None, 8)
    assert line("fastscnn_sp_bs8_fp32_1") == "fastscnn_sp_bs8_fp32_1 12.5 1201 0.5 passed (max >= 8: the cap)"
    assert "(max)" not in r.stdout


def test_a_search_where_no_size_fits_fails_the_suite(fake):  # noqa: F811
    r, doc, line = stand_in(fake, "--models", "fastscnn", "--bs", "2,max", FAKE_OOM_ABOVE="0")
    assert r.returncode == 1, r.stdout + r.stderr
    (g,) = doc["groups"]
    assert (g["stopped"], g["max_bs"], g["max_at_least"]) == ("none_fit", None, None)
    assert "NO SIZE FITS: fastscnn sp fp32: batch 1 runs out of GPU memory; no size fits" in r.stdout


def test_on_a_gpu_a_host_oom_stops_the_search_on_the_cpu_it_brackets(fake):  # noqa: F811
    r, doc, line = stand_in(fake, "--models", "fastscnn", "--bs", "2,max", FAKE_HOST_OOM_ABOVE="5")
    assert r.returncode == 1, r.stdout + r.stderr   # the search failed: no evidence of the GPU's max
    (g,) = doc["groups"]
    assert [t["bs"] for t in g["tried"]] == [2, 4, 8]
    assert (g["stopped"], g["max_bs"], g["max_at_least"]) == ("failed", None, 4)
    assert g["why"] == "stopped: out of host memory at batch 8, not the GPU memory that bounds the batch"
    assert line("fastscnn_sp_bs4_fp32_1").endswith("passed (largest that fit; the search stopped: failed)")
    # the sidecar says the case ran on the CPU: host memory bounds its batch, an OOM of it brackets
    r, doc, line = stand_in(fake, "--models", "fastscnn", "--bs", "2,max", FAKE_HOST_OOM_ABOVE="5",
                            FAKE_DEVICE="cpu")
    assert r.returncode == 0, r.stdout + r.stderr
    (g,) = doc["groups"]
    assert (g["stopped"], g["max_bs"]) == ("bracketed", 5) and "runs out of host memory" in g["why"]
    assert line("fastscnn_sp_bs5_fp32_1").endswith("passed (max)")


def test_suite_sweep_json_is_merged_by_group_and_left_alone_by_a_plain_run(fake):  # noqa: F811
    log_dir = fake[1]
    groups = lambda doc: [(g["model"], g["max_bs"]) for g in doc["groups"]]  # noqa: E731
    r, doc, _ = stand_in(fake, "--models", "fastscnn", "--bs", "2,max", FAKE_OOM_ABOVE="4")
    assert r.returncode == 0 and groups(doc) == [("fastscnn", 4)]
    before = (log_dir / "suite_sweep.json").read_text()
    r, doc, _ = stand_in(fake, "--models", "fastscnn", "--bs", "2")   # no sweep: the file stays
    assert r.returncode == 0 and (log_dir / "suite_sweep.json").read_text() == before
    r, doc, _ = stand_in(fake, "--models", "segformer_b0", "--bs", "2,4")
    assert groups(doc) == [("fastscnn", 4), ("segformer_b0", None)]
    r, doc, _ = stand_in(fake, "--models", "fastscnn", "--bs", "2,max", "--max-within", "0",
                         FAKE_OOM_ABOVE="6")   # the same group again: its entry is replaced in place
    assert groups(doc) == [("fastscnn", 6), ("segformer_b0", None)]
    assert doc["groups"][0]["group"] == "fastscnn_sp_bs*_fp32_1"


@pytest.mark.parametrize("args, says", [
    (["--bs", "2,max", "--bs-cap", "0"], "--bs-cap must be >= 1, not 0"),
    (["--bs", "2,max", "--max-within", "1"], "--max-within must be in [0, 1), not 1"),
    (["--bs", "2,64,max", "--bs-cap", "16"], "--bs-cap 16 is below the listed batch size 64"),
    (["--cases", "x.txt", "--bs", "2"], "--bs with --cases: a case file gives each case's batch"),
    (["--cases", "x.txt", "--bs-cap", "8", "--max-within", "0"], "--bs-cap, --max-within with --cases"),
])
def test_bad_sweep_flags_are_one_line_errors(args, says, capsys):
    from segbench import suite as suite_module
    assert suite_module.main(["--profile", "cpu", "--dry-run", *args]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
