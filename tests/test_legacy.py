"""The mmseg 0.30 / mmcv 1.7.2 stack (STACK=mmseg0, segbench.legacy): the launcher's side, the
fixes it applies to the old packages on today's torch, the configs, and mmseg 0.30's own
tools/train.py end to end on the CPU (sp, and mp with 2 gloo processes) through run_benchmark.sh.

The stack lives in .venv-mmseg0. The ``mmseg0`` fixture sets it up through PrepareEnv.sh
(``STACK=mmseg0``, a few minutes the first time: torch 2.14.1 + torchvision 0.29.1 from this
machine's disk, mmcv built from its source) when it is missing; SEGBENCH_NO_MMSEG0=1 skips the tests
that need it, and so does a disk with too little room for it (each says so).
"""
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segbench import analysis, launch, legacy
from segbench.legacy import install

REPO = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).resolve().parent / "logs"
ARGS = ["fastscnn", "sp", "fp32", "2", "500", "5"]
NEEDS_GB = 8   # torch 2.14.1's CUDA build and its libraries: ~5.5 GB in the environment


@pytest.fixture(scope="session")
def mmseg0() -> str:
    """The legacy environment's python, set up through PrepareEnv.sh if it is missing."""
    if os.environ.get("SEGBENCH_NO_MMSEG0") == "1":
        pytest.skip("SEGBENCH_NO_MMSEG0=1: the tests on the mmseg0 stack are off")
    if legacy.stack_problems():
        free = shutil.disk_usage(REPO).free / 1e9
        if free < NEEDS_GB:
            pytest.skip(f"the mmseg0 environment is missing and {free:.1f} GB are free "
                        f"({NEEDS_GB} GB needed to set it up)")
        r = subprocess.run(["bash", str(REPO / "PrepareEnv.sh"), "--no-data"], cwd=REPO,
                           env=dict(os.environ, STACK="mmseg0"), capture_output=True, text=True,
                           timeout=1800)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        assert legacy.stack_problems() == []
    return legacy.python()


def in_mmseg0(python: str, code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="",
                                   PYTHONWARNINGS="ignore"))


# ---------------------------------------------------------------------------------- the launcher

def test_stack_knob_names_and_records_the_case():
    assert legacy.stack({}) == "mmseg1" and legacy.stack({"STACK": ""}) == "mmseg1"
    assert legacy.stack({"STACK": "mmseg0"}) == "mmseg0"
    with pytest.raises(ValueError, match="not 'MMSEG0'"):   # as the shell scripts compare it
        legacy.stack({"STACK": "MMSEG0"})
    one = launch.parse_case(ARGS, {"TRAIN_LOG_DIR": "/tmp/x"})
    zero = launch.parse_case(ARGS, {"TRAIN_LOG_DIR": "/tmp/x", "STACK": "mmseg0"})
    assert (one.stack, one.name) == ("mmseg1", "fastscnn_sp_bs2_fp32_1")
    assert (zero.stack, zero.name) == ("mmseg0", "fastscnn_sp_bs2_fp32_1_mmseg0")
    with pytest.raises(launch.BadInput, match="STACK must be mmseg1 or mmseg0, not 'mmseg2'"):
        launch.parse_case(ARGS, {"STACK": "mmseg2"})


@pytest.mark.parametrize("argv, environ, needle", [
    (["fastscnn", "sp", "bf16", "2", "500", "5"], {}, "bf16 is not available on STACK=mmseg0"),
    (ARGS, {"TUNED": "1"}, "TUNED is for the mmseg 1.x stack only"),
    (ARGS, {"PROFILING": "true"}, "PROFILING is for the mmseg 1.x stack only"),
])
def test_what_the_legacy_stack_cannot_run_is_bad_input(argv, environ, needle):
    with pytest.raises(launch.BadInput, match=needle):
        launch.parse_case(argv, {**environ, "STACK": "mmseg0"})
    launch.parse_case(argv, environ)   # the default stack runs it


def test_train_command_is_mmseg0s_run_with_the_legacy_python(monkeypatch):
    monkeypatch.setenv("MMSEG0_PYTHON", "/opt/old/bin/python")
    case = launch.parse_case(["ocrnet_hrnetw48", "mp", "fp16", "2", "500", "5"],
                             {"STACK": "mmseg0", "CROP": "256x512", "CUDNN_BENCHMARK": "false"})
    case.nproc, case.master_port = 4, 29555
    cmd = launch.train_command(case, Path("/logs/c"))
    assert cmd[:3] == ["/opt/old/bin/python", "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in cmd and "--master_port=29555" in cmd
    run = cmd[cmd.index("segbench.legacy.run"):]
    assert run[0] == "segbench.legacy.run"
    for flag, value in (("--model", "ocrnet_hrnetw48"), ("--precision", "fp16"),
                        ("--work-dir", "/logs/c_work"), ("--iters-prefix", "/logs/c_iters")):
        assert run[run.index(flag) + 1] == value
    assert run[run.index("--crop") + 1:run.index("--crop") + 3] == ["256", "512"]
    assert "--no-cudnn-benchmark" in run
    case.run_mode = "sp"
    assert launch.train_command(case, Path("/logs/c"))[:3] == ["/opt/old/bin/python", "-m",
                                                              "segbench.legacy.run"]
    one = launch.parse_case(ARGS, {})
    assert launch.train_command(one, Path("/l"))[1:3] == ["-m", "segbench.train"]


def test_bad_input_on_the_legacy_stack_never_writes_a_default_case_file(cpu_env):
    env = dict(cpu_env, STACK="mmseg0")
    r = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "bf16", "2", "12", "1"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "bf16 is not available on STACK=mmseg0" in r.stderr
    names = sorted(p.name for p in Path(env["TRAIN_LOG_DIR"]).iterdir())
    stem = names[0]
    assert re.fullmatch(r"fastscnn_sp_bs2_bf16_NA_mmseg0_bad[0-9a-f]{8}", stem), names
    assert names == [stem, f"{stem}_paddle.json", f"{stem}_speed", f"{stem}_stats.json"]


def test_stack_problems_say_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("MMSEG0_PYTHON", raising=False)
    monkeypatch.setattr(legacy, "VENV", tmp_path / "nothing")
    assert legacy.stack_problems() == [f"the mmseg0 environment {tmp_path / 'nothing'} does not exist"]
    # the default stack's python: mmcv-lite 2.1.0 (no distribution named mmcv) and no torchvision
    monkeypatch.setenv("MMSEG0_PYTHON", sys.executable)
    problems = legacy.stack_problems()
    assert f"torchvision is not installed in {sys.executable}" in problems
    assert f"mmsegmentation 1.2.2 is installed in {sys.executable}, mmseg0 needs 0.30.0" in problems
    assert f"mmcv is not installed in {sys.executable}" in problems


def test_stack_not_ready_names_the_legacy_setup_command(cpu_env, tmp_path):
    env = dict(cpu_env, STACK="mmseg0", MMSEG0_PYTHON=str(tmp_path / "no" / "python"))
    r = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "12", "1"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "the stack is not ready" in r.stderr and "STACK=mmseg0 bash PrepareEnv.sh" in r.stderr


def test_repeat_times_make_the_run_one_pass(tmp_path):
    """RepeatDataset times = ceil(max_iter x bs x world size / images): mmseg 0.30's images (the
    img_suffix under leftImg8bit/train, any depth) and at least 1; the launcher passes it on."""
    city = tmp_path / "leftImg8bit" / "train" / "aachen"
    city.mkdir(parents=True)
    for i in range(30):
        (city / f"aachen_{i:06d}_000019_leftImg8bit.png").touch()
    (city / "aachen_notes.txt").touch()
    assert legacy.train_images(tmp_path) == 30
    env = {"TRAIN_LOG_DIR": "/tmp/x", "STACK": "mmseg0", "DATA_ROOT": str(tmp_path), "LOG_INTERVAL": "2"}
    for argv, times in ((ARGS, 34), (["fastscnn", "sp", "fp32", "2", "15", "1"], 1),
                        (["fastscnn", "mp", "fp32", "2", "16", "1"], 3)):
        case = launch.parse_case(argv, env)
        case.data_root, case.nproc = tmp_path, 2 if argv[1] == "mp" else 1   # as launch resolves them
        assert legacy.repeat_times(case) == times, argv
        cmd = launch.train_command(case, Path("/l/c"))
        assert cmd[cmd.index("--repeat-times") + 1] == str(times)
    case.data_root = tmp_path / "empty"
    assert legacy.repeat_times(case) == 1


def test_torchvision_release_matches_torch():
    assert install.torchvision_for("2.11.0+cu130") == "0.26.*"
    assert install.torchvision_for("2.14.1") == "0.29.*"
    with pytest.raises(install.SetupError, match="no torchvision known for torch 1.13.1"):
        install.torchvision_for("1.13.1")


def test_prepare_env_rejects_an_unknown_stack():
    r = subprocess.run(["bash", str(REPO / "PrepareEnv.sh"), "--no-data"], cwd=REPO,
                       env=dict(os.environ, STACK="mmseg9"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == "PrepareEnv.sh: error: STACK must be mmseg1 or mmseg0, not 'mmseg9'"


# ------------------------------------------------------------------------------ analysis fixtures

@pytest.mark.parametrize("name, gpus, mode, windows", [
    ("mmseg0_fastscnn_sp_cpu.log", 1, "sp", 6), ("mmseg0_fastscnn_mp_cpu.log", 2, "mp", 6)])
def test_analysis_reads_what_the_legacy_path_writes(tmp_path, name, gpus, mode, windows):
    """Real CPU logs of mmseg 0.30's tools/train.py run by the harness (model print trimmed), with
    their per-iteration files: analysis measures them as it measures a 1.x log."""
    case = name[:-4]
    for f in LOGS.glob(f"{case}*"):
        shutil.copy(f, tmp_path / f.name.replace(".log", ""))
    res = analysis.analyze(tmp_path / case, "fastscnn")
    assert res.ok, res.reason
    times = [float(t) for t in re.findall(r"- mmseg - INFO - Iter \[\d+/\d+\]\t.*?\btime: ([0-9.]+)",
                                          (LOGS / name).read_text(encoding="utf-8"))]
    assert len(times) == windows
    assert res.speed["FINAL_RESULT"] == round(2 * gpus / statistics.mean(times[4:]), 3)
    assert (res.speed["gpu_num"], res.speed["run_mode"]) == (gpus, mode)
    assert res.stats["per_iter"]["rank_files"] == gpus and res.stats["per_iter"]["data_wait_source"] == "gap"
    assert res.stats["env"]["stack"] == "mmseg0" and res.stats["env"]["mmsegmentation"] == "0.30.0"
    assert res.stats["flops"]["per_iter_per_process"] > 0


# ------------------------------------------------------------------ the legacy stack (its own env)

def test_fixes_are_needed_and_work(mmseg0):
    """Each fix of segbench.legacy.compat against the unfixed mmcv/mmseg function, in the legacy
    environment on this CPU: the unfixed one fails as reported, the fixed one works."""
    r = in_mmseg0(mmseg0, """
        import os, torch, torch.distributed as dist
        from mmcv.parallel import _functions
        from mmcv.runner import dist_utils
        import mmseg.apis.train as t
        old = (_functions._get_stream, dist_utils._init_dist_pytorch, t.build_ddp)
        try:
            old[0](0)
        except AttributeError as e:
            print("stream-unfixed:", e)
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29631")
        try:
            old[1]("gloo")
        except ZeroDivisionError as e:
            print("init-unfixed:", type(e).__name__)
        try:
            old[2](torch.nn.Linear(2, 2), "cpu")
        except AssertionError as e:
            print("ddp-unfixed:", e)
        from segbench.legacy import compat
        assert _functions._get_stream is not old[0] and compat.apply() == compat.APPLIED
        print("stream-fixed:", _functions._get_stream(0))
        dist_utils._init_dist_pytorch("gloo")
        print("init-fixed:", dist.get_world_size(), dist.get_backend())
        ddp = t.build_ddp(torch.nn.Linear(2, 2), "cpu", device_ids=[0], broadcast_buffers=False)
        print("ddp-fixed:", type(ddp).__name__, ddp.device_ids)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "stream-unfixed: 'int' object has no attribute 'type'" in out and "stream-fixed: None" in out
    assert "init-unfixed: ZeroDivisionError" in out and "init-fixed: 1 gloo" in out
    assert "ddp-unfixed: Only available for cuda or mlu devices." in out
    assert "ddp-fixed: CpuMMDistributedDataParallel None" in out


DDP_PROBE = """
import torch, torch.distributed as dist
from mmcv.parallel import DataContainer
from segbench.legacy import compat  # noqa: F401
import mmseg.apis.train as t
dist.init_process_group("gloo")
rank = dist.get_rank()

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 1)
    def train_step(self, data, optimizer=None):
        return self.fc(data).sum()

torch.manual_seed(rank)   # different weights and data per rank: DDP must align both
ddp = t.build_ddp(Net(), "cpu", device_ids=[0], broadcast_buffers=False)
batch = DataContainer([torch.full((2, 3), float(rank + 1))], stack=True)
ddp.train_step(batch).backward()
grads = [torch.zeros_like(ddp.module.fc.weight.grad) for _ in range(2)]
dist.all_gather(grads, ddp.module.fc.weight.grad)
print(f"rank {rank}: grads equal {torch.equal(grads[0], grads[1])}, mean {grads[0].tolist()}")
"""


def test_cpu_ddp_wrapper_scatters_and_averages_gradients(mmseg0, tmp_path):
    """The CPU DDP wrapper of the fixes, in 2 gloo processes: the batch's DataContainer reaches
    the model as a tensor, and the ranks' gradients are averaged (rank data 1 and 2 -> 1.5 x 2 rows)."""
    probe = tmp_path / "ddp_probe.py"
    probe.write_text(DDP_PROBE)
    r = subprocess.run([mmseg0, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29632",
                        str(probe)], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="",
                                PYTHONWARNINGS="ignore"))
    assert r.returncode == 0, r.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}: grads equal True, mean [[3.0, 3.0, 3.0]]" in r.stdout


PEAK_PROBE = """
import json, sys, types, torch
from segbench.legacy import hooks
calls = []
hooks._sync = lambda device: calls.append("sync")
hooks._peak_mb = lambda: calls.append("peak") or 73000.0        # the probe's (cuDNN search) peak
hooks.count_step_flops = lambda model, batch, device: (calls.append("probe") or 1.0, [2, 3, 8, 8])
torch.cuda.reset_peak_memory_stats = lambda *a: calls.append("reset")
torch.cuda.get_device_name = lambda *a: "fake"
torch.cuda.current_device = lambda: 0
torch.cuda.memory_reserved = lambda *a: 0
hook = hooks.SegbenchIterHook0(out_prefix=sys.argv[1])
hook.before_run(types.SimpleNamespace())
hook.device = "cuda"
runner = types.SimpleNamespace(iter=0, model=torch.nn.Linear(1, 1), data_batch={}, outputs={},
                               data_loader=None)
hook.before_train_iter(runner)
print(json.dumps(calls))
"""


def test_peak_memory_counts_from_the_first_iteration_not_the_probe(mmseg0, tmp_path):
    """As the mmengine hook: the FLOP probe (whose cuDNN benchmark search peaked at 73-138 GB on the
    H200 for ocrnet and segformer) runs, the meta line takes its peak, then the counter is reset."""
    probe = tmp_path / "peak_probe.py"
    probe.write_text(PEAK_PROBE)
    r = in_mmseg0(mmseg0, f"import runpy, sys; sys.argv = ['p', {str(tmp_path / 'c')!r}]; "
                          f"runpy.run_path({str(probe)!r}, run_name='__main__')")
    assert r.returncode == 0, r.stderr[-3000:]
    calls = json.loads(r.stdout.strip().splitlines()[-1])
    assert "reset" in calls and calls.index("reset") > calls.index("probe")
    assert calls.index("reset") > max(i for i, c in enumerate(calls) if c == "peak")


def test_configs_and_options_for_every_model(mmseg0):
    """configs/mmseg0/<model>.py inherit mmseg 0.30's own Cityscapes configs, download nothing
    (no pretrained weights), and take the case's options: the seed's four first; crop on RandomCrop
    and Pad; fp16 through Fp16OptimizerHook; BN and gloo on the CPU only."""
    r = in_mmseg0(mmseg0, """
        import json
        from mmcv import Config
        from mmseg.models import build_segmentor
        from segbench.legacy import run
        out = {}
        for model in ("fastscnn", "ocrnet_hrnetw48", "segformer_b0"):
            base = ["--model", model, "--batch-size", "2", "--max-iters", "20", "--num-workers", "3",
                    "--data-root", "/d", "--work-dir", "/w"]
            a = run.parse_args(base + ["--crop", "64", "128", "--iters-prefix", "/p", "--precision", "fp16"])
            gpu = run.train_argv(a, "cuda", True)
            cpu = run.train_argv(run.parse_args(base), "cpu", True)
            cfg = Config.fromfile(gpu[1])
            build_segmentor(cfg.model).init_weights()   # random init: nothing to download
            cfg.merge_from_dict(run.options(cfg, run.parse_args(base), "cpu", True))
            out[model] = dict(gpu=gpu, cpu=cpu, pretrained=cfg.model.get("pretrained"),
                              train=cfg.data.train.type,
                              init_cfg=cfg.model.backbone.get("init_cfg"),
                              sync_bn="SyncBN" in cfg.pretty_text,
                              hook=cfg.custom_hooks, imports=cfg.custom_imports["imports"])
        print(json.dumps(out))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for model, o in out.items():
        gpu, cpu = o["gpu"], o["cpu"]
        assert gpu[0].endswith("mmseg/.mim/tools/train.py") and gpu[1].endswith(f"configs/mmseg0/{model}.py")
        assert gpu[2:10] == ["--work-dir", "/w", "--no-validate", "--seed", "0", "--launcher", "pytorch",
                             "--cfg-options"]
        opts = gpu[10:]
        assert opts[:6] == ["log_config.interval=10", "runner.max_iters=20", "data.samples_per_gpu=2",
                            "data.workers_per_gpu=3", "data.train.times=1", "data.train.dataset.data_root=/d"]
        assert {"data.train.dataset.pipeline.3.crop_size=(64,128)",
                "data.train.dataset.pipeline.7.size=(64,128)",
                "optimizer_config.type=Fp16OptimizerHook", "optimizer_config.loss_scale=512.0",
                "custom_hooks.0.out_prefix=/p", "custom_hooks.0.precision=fp16"} <= set(opts)
        assert not any("=BN" in x or "gloo" in x for x in opts)
        assert "dist_params.backend=gloo" in cpu and any(x.endswith("norm_cfg.type=BN") for x in cpu)
        assert not o["sync_bn"] and not any("Fp16" in x for x in cpu)
        assert o["pretrained"] is None and o["init_cfg"] is None and o["train"] == "RepeatDataset"
        assert o["hook"] == [{"type": "SegbenchIterHook0", "out_prefix": None, "priority": "LOWEST"}]
        assert o["imports"] == ["segbench.legacy.compat", "segbench.legacy.hooks"]


@pytest.fixture
def mmseg0_env(mmseg0, cpu_env, tmp_path_factory):
    """cpu_env on the mmseg0 stack, with 16 images: fewer than a run's 12 x 2 x world size samples,
    so without the RepeatDataset mmcv 1.x's loader would sleep 2 s at each pass's end."""
    from segbench import data
    root = tmp_path_factory.mktemp("cityscapes16")
    data.generate(root, n_images=16, seed=0, size=(256, 512))
    return dict(cpu_env, STACK="mmseg0", MMSEG0_PYTHON=mmseg0, CROP="64x128", DATA_ROOT=str(root))


def _bench(env, mode):
    return subprocess.run(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", mode, "fp32", "2", "12", "1"],
                          env=env, capture_output=True, text=True, timeout=900)


def _check_case(env, case, gpus):
    log_dir = Path(env["TRAIN_LOG_DIR"])
    text = (log_dir / case).read_text(encoding="utf-8")
    record = json.loads(text.splitlines()[0].split("case: ", 1)[1])
    assert record["stack"] == "mmseg0" and record["case"] == case
    assert record["train_command"].startswith(env["MMSEG0_PYTHON"])
    assert record["env"]["mmcv"] == "1.7.2" and record["env"]["torchvision"]
    assert "[segbench] mmseg0 tools/train.py: " in text and "mmseg/.mim/tools/train.py" in text
    assert "--no-validate" in text and "log_config.interval=2 runner.max_iters=12" in text
    times = [float(t) for t in re.findall(r"- mmseg - INFO - Iter \[\d+/12\]\t.*?\btime: ([0-9.]+)", text)]
    assert len(times) == 6
    speed = json.loads((log_dir / f"{case}_speed").read_text())
    assert speed["JOB_FAIL_FLAG"] == 0 and speed["gpu_num"] == gpus and speed["log_file"] == case
    assert speed["FINAL_RESULT"] == round(2 * gpus / statistics.mean(times[4:]), 3)
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["per_iter"]["rank_files"] == gpus and stats["per_iter"]["n"] == 12 - 8
    for rank in range(gpus):
        lines = [json.loads(x) for x in (log_dir / f"{case}_iters.rank{rank}.jsonl").read_text().splitlines()]
        meta, iters = lines[0], lines[1:]
        assert (meta["kind"], meta["stack"]) == ("meta", "mmseg0")
        assert (meta["world_size"], meta["rank"]) == (gpus, rank)
        assert meta["input_shape"] == [2, 3, 64, 128] and meta["flops_per_iter"] > 0
        assert stats["torch_threads_per_rank"][rank] == meta["torch_threads"] >= 1
        assert gpus == 1 or meta["torch_threads"] == int(env.get("OMP_NUM_THREADS", 1))  # torchrun's
        assert [x["iter"] for x in iters] == list(range(1, 13))
        assert all(x["time"] > 0 and x["loss"] > 0 for x in iters)
        # mmcv's IterLoader sleeps 2 s at a pass's end, in the gap before an iteration (its
        # data_time); the whole run is one pass over the 16 images, so no gap holds that pause
        assert max(x["data_time"] for x in iters) < 1.5, [round(x["data_time"], 2) for x in iters]
        times = math.ceil(12 * 2 * gpus / 16)
        assert (meta["train_images"], meta["repeat_times"]) == (16, times)
        assert f"--repeat-times {times}" in record["train_command"] and f"data.train.times={times}" in text
    return text, stats


def test_sp_case_end_to_end_on_mmseg0(mmseg0_env):
    # the launcher in the legacy environment too, as run_benchmark.sh picks it on a host with
    # .venv-mmseg0 (segbench/sh/common.sh): it has no mmengine
    r = _bench(dict(mmseg0_env, SEGBENCH_PYTHON=mmseg0_env["MMSEG0_PYTHON"]), "sp")
    assert r.returncode == 0, r.stderr + r.stdout
    text, stats = _check_case(mmseg0_env, "fastscnn_sp_bs2_fp32_1_crop64x128_li2_mmseg0", 1)
    assert "Distributed training: False" in text and "--launcher none" in text
    assert 0.8 < stats["per_iter"]["window_vs_per_iter"] < 1.25
    assert not (Path(mmseg0_env["TRAIN_LOG_DIR"]) / "fastscnn_sp_bs2_fp32_1").exists()


def test_mp_case_with_two_cpu_processes_on_mmseg0(mmseg0_env):
    r = _bench(mmseg0_env, "mp")
    assert r.returncode == 0, r.stderr + r.stdout
    text, _ = _check_case(mmseg0_env, "fastscnn_mp_bs2_fp32_2_crop64x128_li2_mmseg0", 2)
    assert "Distributed training: True" in text and "gpu_ids = range(0, 2)" in text
    assert "dist_params.backend=gloo" in text and "--launcher pytorch" in text
