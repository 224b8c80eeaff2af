"""The suite behind run_PyTorch.sh, on the CPU: case matrix, validation by line number, progress,
one failure not stopping the rest, resume; then report and compare on what it wrote."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
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
    assert "[1/5] fastscnn_sp_bs2_fp32_1_crop64x128_li2: " in out and "ETA" in out
    assert "[3/5] fastscnn_sp_bs1_fp32_1_crop64x128_li2: FAILED: " in out
    assert "[5/5] segformer_b0_mp_bs2_fp32_2_crop64x128_li2: " in out
    assert "CPU PROFILE" in out
    for case in ("fastscnn_sp_bs2_fp32_1", "fastscnn_mp_bs2_fp32_2", "segformer_b0_sp_bs2_fp32_1",
                 "segformer_b0_mp_bs2_fp32_2"):
        speed = log_dir / f"{case}_crop64x128_li2_speed"
        assert json.loads(speed.read_text())["JOB_FAIL_FLAG"] == 0
    failed = log_dir / "fastscnn_sp_bs1_fp32_1_crop64x128_li2_speed"
    assert json.loads(failed.read_text())["JOB_FAIL_FLAG"] == 1

    again = suite(env, "--profile", "cpu", "--cases", str(f), "--log-dir", str(log_dir), "--resume",
                  timeout=300)
    assert again.stdout.count("kept from an earlier run") == 4
    assert "[3/5] fastscnn_sp_bs1_fp32_1_crop64x128_li2: FAILED" in again.stdout  # failed cases are re-run

    rep = report("report", str(log_dir), "--out", str(tmp_path / "rep"))
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "## fastscnn" in md and "## segformer_b0" in md and "CPU profile" in md
    rows = list(csv.DictReader(open(tmp_path / "rep" / "summary.csv")))
    mp = next(r for r in rows if r["case"] == "fastscnn_mp_bs2_fp32_2_crop64x128_li2")
    sp = next(r for r in rows if r["case"] == "fastscnn_sp_bs2_fp32_1_crop64x128_li2")
    expect = float(mp["images_per_s"]) / (2 * float(sp["images_per_s"]))
    assert float(mp["scaling_efficiency"]) == pytest.approx(expect, rel=1e-3)
    assert (tmp_path / "rep" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    same = report("compare", str(log_dir), str(log_dir), "--threshold", "5%")
    assert same.returncode == 1  # the failed bs1 case counts as missing in the current run
    # A hand-made baseline in the 10-key format, one case 20% faster than what we measured.
    base = tmp_path / "baseline"
    base.mkdir()
    for case in ("fastscnn_sp_bs2_fp32_1_crop64x128_li2", "segformer_b0_sp_bs2_fp32_1_crop64x128_li2"):
        d = json.loads((log_dir / f"{case}_speed").read_text())
        if case.startswith("fastscnn"):
            d["FINAL_RESULT"] = round(d["FINAL_RESULT"] * 1.2, 3)
        (base / f"{case}_speed").write_text(json.dumps(d, ensure_ascii=False))
    cmp_ = report("compare", str(base), str(log_dir), "--threshold", "5%",
                  "--baseline-label", "Paddle", "--current-label", "PyTorch")
    assert cmp_.returncode == 1
    line = next(ln for ln in cmp_.stdout.splitlines() if "fastscnn_sp_bs2_fp32_1_crop64x128_li2" in ln)
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


# --------------------------------------------------------------------------- a stand-in run_benchmark.sh

FAKE = r"""#!/usr/bin/env bash
# Stand-in for run_benchmark.sh MODEL RUN_MODE FP_ITEM BS MAX_ITER NUM_WORKERS (sp cases): records
# the call, then passes, or as FAKE_<WHAT>=MODEL says: exits 130, waits for a signal, is flagged.
set -euo pipefail
name="$1_$2_bs$4_$3_1"
if [[ -n "${FAKE_NAME_BY_LAUNCH:-}" ]]; then  # the name launch gives the case in this environment
    name="$("${SEGBENCH_PYTHON}" -c 'import sys; from segbench import launch
print(launch.parse_case(sys.argv[1:]).name)' "$@")"
fi
log="${TRAIN_LOG_DIR}"
echo "${name}" >> "${log}/calls"
speed() {
    printf '{"log_file": "%s", "model_name": "%s", "mission_name": "x", "direction_id": 0, '\
'"run_mode": "sp", "index": 1, "gpu_num": 1, "FINAL_RESULT": %s, "JOB_FAIL_FLAG": %s, '\
'"UNIT": "images/s"}' "${name}" "$1" "$2" "$3" > "${log}/${name}_speed"
}
if [[ "${FAKE_INTERRUPT:-}" == "$1" ]]; then
    speed "$1" 0 1
    exit 130
fi
if [[ "${FAKE_WAIT:-}" == "$1" ]]; then
    sleep 60 &
    trap 'echo TERM >> "${log}/signals"; kill "$!"; speed "$1" 0 1; exit 130' TERM
    trap 'echo INT >> "${log}/signals"; kill "$!"; speed "$1" 0 1; exit 130' INT
    touch "${log}/started"
    wait "$!"
    exit 0
fi
if [[ "${FAKE_FLAG:-}" == "$1" ]]; then
    echo '{"warnings": ["host load: load average 4.0 on 2 CPUs", "steal: 9% of CPU time"], '\
'"flagged": true}' > "${log}/${name}_stats.json"
fi
speed "$1" 12.5 0
"""


@pytest.fixture
def fake(tmp_path):
    """(environment without a knob that names a variant, the log dir, the stand-in script)."""
    script = tmp_path / "fake_run_benchmark.sh"
    script.write_text(FAKE)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CROP", "LOG_INTERVAL", "TUNED", "CUDNN_BENCHMARK", "CPU_AFFINITY",
                        "PROFILING", "REPEAT", "TRAIN_LOG_DIR")}
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    env.update(SEGBENCH_PYTHON=sys.executable, PYTHONPATH=str(REPO))
    return env, log_dir, script


def fake_suite_argv(script, log_dir, *args):
    """The suite with RUN_BENCHMARK pointed at the stand-in, sp cases, GPU profile's names."""
    code = ("import sys; from pathlib import Path; from segbench import suite; "
            f"suite.RUN_BENCHMARK = Path({str(script)!r}); raise SystemExit(suite.main(sys.argv[1:]))")
    return [sys.executable, "-c", code, "--profile", "gpu", "--modes", "sp", "--log-dir",
            str(log_dir), *args]


def table_row(out, case):
    """The final table's line of case, whitespace squeezed."""
    table = out[out.index("segbench results"):]
    return " ".join(next(ln for ln in table.splitlines() if ln.startswith(case + " ")).split())


def calls(log_dir):
    f = log_dir / "calls"
    return f.read_text().split() if f.exists() else []


def test_an_interrupted_case_stops_the_suite_with_130(fake):
    env, log_dir, script = fake
    r = subprocess.run(fake_suite_argv(script, log_dir), env=dict(env, FAKE_INTERRUPT="ocrnet_hrnetw48"),
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 130, r.stdout + r.stderr
    assert calls(log_dir) == ["fastscnn_sp_bs2_fp32_1", "ocrnet_hrnetw48_sp_bs2_fp32_1"]
    assert "[2/3] ocrnet_hrnetw48_sp_bs2_fp32_1: INTERRUPTED" in r.stdout
    assert table_row(r.stdout, "fastscnn_sp_bs2_fp32_1") == "fastscnn_sp_bs2_fp32_1 12.5 — — passed"
    assert table_row(r.stdout, "ocrnet_hrnetw48_sp_bs2_fp32_1") == \
        "ocrnet_hrnetw48_sp_bs2_fp32_1 0 — — interrupted"
    assert "segformer_b0" not in r.stdout  # never started
    assert "INTERRUPTED: the suite stopped; 1 case(s) not run" in r.stdout


def _start_and_wait(fake, **popen):
    env, log_dir, script = fake
    p = subprocess.Popen(fake_suite_argv(script, log_dir, "--models", "fastscnn,segformer_b0"),
                         env=dict(env, FAKE_WAIT="fastscnn"), cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)
    deadline = time.monotonic() + 60
    while not (log_dir / "started").exists():
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.1)
    return p, log_dir


@pytest.mark.parametrize("how", ["SIGTERM to the suite", "Ctrl-C to the process group"])
def test_a_signalled_suite_stops_the_running_case_and_exits_130(fake, how):
    p, log_dir = _start_and_wait(fake)
    if how == "SIGTERM to the suite":
        os.kill(p.pid, signal.SIGTERM)  # the case does not get it unless the suite passes it on
    else:
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: suite and case get it
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    assert "Traceback" not in err
    assert (log_dir / "signals").read_text().split() == (
        ["TERM"] if how.startswith("SIGTERM") else ["INT"])  # Ctrl-C is not sent twice
    assert calls(log_dir) == ["fastscnn_sp_bs2_fp32_1"]
    assert table_row(out, "fastscnn_sp_bs2_fp32_1") == "fastscnn_sp_bs2_fp32_1 0 — — interrupted"
    assert "INTERRUPTED: the suite stopped; 1 case(s) not run" in out


def test_flagged_cases_are_marked_on_their_line_and_in_the_table(fake):
    env, log_dir, script = fake
    r = subprocess.run(fake_suite_argv(script, log_dir, "--models", "fastscnn,segformer_b0"),
                       env=dict(env, FAKE_FLAG="fastscnn"), cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr  # passed stays passed
    assert ("[1/2] fastscnn_sp_bs2_fp32_1: 12.5 images/s  FLAGGED: host load: load average 4.0 "
            "on 2 CPUs (+1 more) (") in r.stdout
    assert table_row(r.stdout, "fastscnn_sp_bs2_fp32_1") == ("fastscnn_sp_bs2_fp32_1 12.5 — — passed "
                                                              "FLAGGED: host load: load average 4.0 "
                                                              "on 2 CPUs (+1 more)")
    assert table_row(r.stdout, "segformer_b0_sp_bs2_fp32_1") == "segformer_b0_sp_bs2_fp32_1 12.5 — — passed"
    assert "1 of 2 case(s) FLAGGED" in r.stdout
    again = subprocess.run(fake_suite_argv(script, log_dir, "--models", "fastscnn", "--resume"),
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "kept from an earlier run: 12.5 images/s  FLAGGED: host load" in again.stdout


def write_passed_speed(log_dir, name):
    (log_dir / f"{name}_speed").write_text(json.dumps({
        "log_file": name, "model_name": "fastscnn", "mission_name": "x", "direction_id": 0,
        "run_mode": "sp", "index": 1, "gpu_num": 1, "FINAL_RESULT": 99.0, "JOB_FAIL_FLAG": 0,
        "UNIT": "images/s"}))


def test_resume_keeps_the_default_case_s_own_speed_file(fake):
    env, log_dir, script = fake
    write_passed_speed(log_dir, "fastscnn_sp_bs2_fp32_1")
    r = subprocess.run(fake_suite_argv(script, log_dir, "--models", "fastscnn", "--resume"),
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "kept from an earlier run: 99.0 images/s" in r.stdout and calls(log_dir) == []


def _launch_names_carry_tokens():
    from segbench import launch
    argv = ["fastscnn", "sp", "fp32", "2", "60", "1"]
    return launch.parse_case(argv, {"LOG_INTERVAL": "5"}).name != "fastscnn_sp_bs2_fp32_1"


@pytest.mark.xfail(not _launch_names_carry_tokens(), strict=True,
                   reason="launch.py's names.md tokens are not merged into this branch yet")
def test_resume_does_not_take_a_variant_s_speed_file_for_the_default_case(fake):
    from segbench import launch
    env, log_dir, script = fake
    variant = launch.parse_case(["fastscnn", "sp", "fp32", "2", "500", "5"],
                                {"CROP": "64x128", "LOG_INTERVAL": "5"}).name
    write_passed_speed(log_dir, variant)  # a CROP/LOG_INTERVAL run of the same six arguments
    r = subprocess.run(fake_suite_argv(script, log_dir, "--models", "fastscnn", "--resume"),
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "kept from an earlier run" not in r.stdout
    assert calls(log_dir) == ["fastscnn_sp_bs2_fp32_1"]  # the default case ran


def test_the_cpu_profile_finds_a_case_s_files_by_launch_s_name(fake):
    """The CPU profile sets CROP per case: the suite names the case with it, as launch does."""
    env, log_dir, script = fake
    argv = fake_suite_argv(script, log_dir, "--models", "fastscnn")
    argv[argv.index("gpu")] = "cpu"
    r = subprocess.run(argv, env=dict(env, FAKE_NAME_BY_LAUNCH="1"), cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    name = calls(log_dir)[0]
    assert f"[1/1] {name}: 12.5 images/s" in r.stdout


def test_the_suite_states_the_hosts_steadiness_first_and_keeps_it(tmp_path, capsys):
    from segbench import suite as suite_module
    record = suite_module.host_check(tmp_path, seconds=0.2)
    out = capsys.readouterr().out
    assert out.startswith("run_PyTorch.sh: host: ") and record["verdict"] in out
    assert record["verdict"].startswith(("steady enough for", "expect +-"))
    stored = json.loads((tmp_path / "suite_host.json").read_text())
    assert stored["verdict"] == record["verdict"] and stored["host"]["rounds"] >= 3
