"""The segbench command: subcommands and their help, knob flags, doctor."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segbench import cli, doctor, knobs

REPO = Path(__file__).resolve().parent.parent


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "segbench.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=timeout)


def test_top_level_help_lists_every_command():
    out = _cli("--help")
    assert out.returncode == 0
    for name in cli.COMMANDS:
        assert re.search(rf"^  {re.escape(name)}\s", out.stdout, re.M), name
    assert _cli().returncode == 2          # no command: usage, and a usage error
    bad = _cli("frobnicate")
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_has_help(name):
    out = _cli(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_run_and_suite_help_name_every_knob():
    for name in ("run", "suite"):
        text = _cli(name, "--help").stdout
        for k in knobs.KNOBS:
            assert k.flag in text and k.env in text, (name, k.flag)


def _read_env_names(source: str) -> set[str]:
    calls = r"(?:environ\.get|_env_int|_env_bool|_duration|_cpu_list)\(\s*(?:environ,\s*)?\"([A-Z_]+)\""
    return set(re.findall(calls, source)) | set(re.findall(r"environ\[\"([A-Z_]+)\"\]", source))


def test_every_variable_launch_reads_is_a_knob_with_a_flag():
    read = set().union(*(_read_env_names((REPO / "segbench" / f).read_text())
                         for f in ("case.py", "launch.py")))
    assert {"CROP", "TUNED", "LOG_INTERVAL"} <= read      # the scan itself finds knobs
    not_knobs = {"CUDA_VISIBLE_DEVICES",                  # the device list is the platform's
                 "SLURM_NNODES", "SLURM_NODEID", "SLURM_JOB_NODELIST", "SLURM_JOB_ID"}   # Slurm's
    assert read - not_knobs <= {k.env for k in knobs.KNOBS}


def test_flags_become_the_environment_variables():
    import argparse
    p = argparse.ArgumentParser()
    knobs.add_flags(p)
    a = p.parse_args(["--crop", "64x128", "--no-flops", "--tuned", "all", "--profiler",
                      "--verbose"])
    e = knobs.environ_from(a, {"CROP": "1x1", "KEEP": "x"})
    assert e["CROP"] == "64x128" and e["FLOPS"] == "false" and e["TUNED"] == "all"
    assert e["PROFILING"] == "true" and e["SEGBENCH_VERBOSE"] == "1" and e["KEEP"] == "x"
    assert "LOG_INTERVAL" not in e and "CUDNN_BENCHMARK" not in e   # unset flags set nothing


def test_suite_options_are_not_taken_by_a_knob_flag(cpu_env, tmp_path):
    """The suite's own --profile (auto, gpu, cpu) reaches the suite; the profiler knob's flag is
    another name (--profiler)."""
    out = _cli("suite", "--profile", "cpu", "--models", "fastscnn", "--modes", "sp", "--bs", "2,max",
               "--bs-cap", "8", "--dry-run", "--log-dir", str(tmp_path), env=cpu_env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CPU PROFILE" in out.stdout and "then grow/bisect to max (cap 8" in out.stdout
    flags = [k.flag for k in knobs.KNOBS]
    assert "--profile" not in flags and len(set(flags)) == len(flags)


def test_segbench_run_is_a_case(cpu_env, tmp_path):
    log_dir = tmp_path / "out"
    env = {k: v for k, v in cpu_env.items() if k not in ("LOG_INTERVAL", "TRAIN_LOG_DIR")}
    out = _cli("run", "fastscnn", "sp", "fp32", "2", "10", "1", "--device", "cpu", "--crop",
               "64x128", "--log-interval", "2", "--log-dir", str(log_dir), env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    (speed,) = log_dir.glob("fastscnn_sp_bs2_fp32_1*_speed")
    d = json.loads(speed.read_text())
    assert d["JOB_FAIL_FLAG"] == 0 and d["FINAL_RESULT"] > 0
    record = json.loads(speed.with_name(speed.name[:-len("_speed")]).read_text()
                        .splitlines()[0].split("case: ", 1)[1])
    assert record["crop"] == [64, 128] and record["log_interval"] == 2


def test_segbench_run_bad_input_still_writes_a_failing_speed_file(cpu_env, tmp_path):
    out = _cli("run", "fastscnn", "sp", "fp32", "2", "--log-dir", str(tmp_path), env=cpu_env)
    assert out.returncode == 2
    (line,) = [x for x in out.stderr.splitlines() if x.strip()]   # one line, naming this command
    assert line.startswith("segbench run: error: ") and "missing MAX_ITER NUM_WORKERS" in line
    # the usage line is this command's: its arguments and flags, not run_benchmark.sh's
    assert "usage: segbench run MODEL RUN_MODE FP_ITEM BS MAX_ITER NUM_WORKERS [knob flags]" in line
    assert "run_benchmark.sh" not in line
    (speed,) = tmp_path.glob("*_speed")
    assert json.loads(speed.read_text())["JOB_FAIL_FLAG"] == 1


def _host(spread=1.0, load=0.5, cpus=4, steal=0.0):
    return {"spread_pct": spread, "load1": load, "cpus": cpus, "steal_share": steal}


def test_verdict_steady_and_not():
    assert doctor.verdict(_host()).startswith("steady enough for +-3%")
    assert doctor.verdict(_host(spread=8.4)).startswith("expect +-8% from run to run")
    busy = doctor.verdict(_host(load=6.0))
    assert busy.startswith("expect +-3%") and "load 6.0 above its 4 CPUs" in busy
    stolen = doctor.verdict(_host(steal=0.05))
    assert stolen.startswith("expect") and "5.0% of CPU time stolen" in stolen
    assert doctor.verdict(_host(load=None, steal=None)).startswith("steady")


def test_host_steadiness_measures_rounds():
    h = doctor.host_steadiness(0.2)
    assert h["rounds"] >= 3 and h["mloops_per_s"] > 0 and h["spread_pct"] >= 0
    assert h["cpus"] >= 1


def test_doctor_reports_missing_data_and_fails(tmp_path):
    out = _cli("doctor", "--seconds", "0.2", "--data-root", str(tmp_path / "none"),
               "--log-dir", str(tmp_path))
    assert out.returncode == 1
    assert "NOT USABLE" in out.stdout and re.search(r"^verdict (steady|expect)", out.stdout, re.M)


def test_doctor_json_with_good_data(small_data, tmp_path):
    out = _cli("doctor", "--seconds", "0.2", "--data-root", str(small_data), "--log-dir",
               str(tmp_path), "--json")
    r = json.loads(out.stdout)
    assert out.returncode == (0 if not r["stack"]["problems"] else 1)
    assert r["data"]["ok"] and r["data"]["images"] == 4 and r["data"]["synthetic"]
    assert set(r) >= {"gpus", "stack", "data", "disk", "host", "verdict", "ok"}
