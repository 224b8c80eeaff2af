"""segbench.env: the mmcv._ext stand-in, stack checks and environment collection."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from segbench import env

REPO = Path(__file__).resolve().parent.parent


def test_standin_lets_mmseg_models_register_and_fails_clearly_when_an_op_is_called():
    assert env.mmcv_flavour() in ("lite+standin", "full")
    if env.mmcv_flavour() != "lite+standin":
        pytest.skip("mmcv with compiled ops is installed")
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    assert {"FastSCNN", "HRNet", "OCRHead", "MixVisionTransformer",
            "SegformerHead"} <= set(MODELS.module_dict)
    ext = importlib.import_module("mmcv._ext")
    assert "none" in ext.get_compiler_version() and "none" in ext.get_compiling_cuda_version()
    with pytest.raises(RuntimeError, match="mmcv compiled op 'nms' was called.*MMCV_FLAVOR=full"):
        ext.nms()
    from mmcv.ops import point_sample  # pure PyTorch op: still works
    assert callable(point_sample)


def test_stack_is_complete_here_and_check_command_agrees():
    assert env.stack_problems() == []
    r = subprocess.run([sys.executable, "-m", "segbench.env", "check"], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0 and "mmseg 1.2.2" in r.stdout and "mmengine 0.10.7" in r.stdout


def test_stack_problems_name_what_is_missing(monkeypatch):
    real = env.installed_version
    monkeypatch.setattr(env, "installed_version",
                        lambda d: None if d == "mmsegmentation"
                        else ("0.10.6" if d == "mmengine" else real(d)))
    problems = env.stack_problems()
    assert "mmsegmentation is not installed" in problems
    assert "mmengine 0.10.6 is installed, segbench needs 0.10.7" in problems


def test_collect_describes_the_environment():
    info = env.collect()
    for key in ("python", "torch", "mmengine", "mmsegmentation", "mmcv_flavour", "host_cpus",
                "cuda_available", "segbench_commit"):
        assert key in info
    assert info["mmengine"] == "0.10.7"


def test_host_probe_measures_the_cpu_and_reads_nvidia_smi(tmp_path, monkeypatch):
    probe = env.host_probe()
    assert probe["cpu_mloops_per_s"] > 0 and probe["gpus"] is None
    assert probe["loadavg"] is None or len(probe["loadavg"]) == 3
    # a slower interpreter loop reads lower: the figure is the loop's own rate
    fast = env.host_probe()["cpu_mloops_per_s"]
    real = env._loop
    monkeypatch.setattr(env, "_loop", lambda n: (real(n), real(n)))   # twice the work
    assert env.host_probe()["cpu_mloops_per_s"] < 0.8 * fast
    monkeypatch.setattr(env, "_loop", real)
    # GPU state from nvidia-smi's CSV, "[N/A]" as None; none when nvidia-smi is missing or fails
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, 1980, 1980, 3201, 412.50, 41, 99'\n"
                   "echo '1, 345, 1980, 3201, [N/A], 30, 0'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    gpus = env.host_probe(gpu=True)["gpus"]
    assert gpus == [{"index": 0, "sm_mhz": 1980.0, "sm_max_mhz": 1980.0, "mem_mhz": 3201.0,
                     "power_w": 412.5, "temp_c": 41.0, "util_pct": 99.0},
                    {"index": 1, "sm_mhz": 345.0, "sm_max_mhz": 1980.0, "mem_mhz": 3201.0,
                     "power_w": None, "temp_c": 30.0, "util_pct": 0.0}]
    smi.write_text("#!/bin/sh\nexit 9\n")
    assert env.host_probe(gpu=True)["gpus"] is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert env.host_probe(gpu=True)["gpus"] is None


def test_spec_renders_pins():
    assert env._spec("mmengine", "0.10.7") == "mmengine==0.10.7"
    assert env._spec("setuptools", "<81") == "setuptools<81"
    assert env._spec("ftfy", None) == "ftfy"


def test_download_wheels_needs_a_dir():
    r = subprocess.run(["bash", str(REPO / "PrepareEnv.sh"), "--download-wheels"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "needs a directory" in r.stderr


def test_bad_flavour_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "segbench.env", "prepare", "--venv", str(tmp_path / "v"),
                        "--no-data"], capture_output=True, text=True, cwd=REPO,
                       env={"PATH": "/usr/bin:/bin", "MMCV_FLAVOR": "medium"})
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "MMCV_FLAVOR" in r.stderr


def test_cpu_jiffies_reads_the_cpu_line(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  4508 1 1817 39251 101 2 30 6 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert env.cpu_jiffies(str(stat)) == {"user": 4508, "nice": 1, "system": 1817, "idle": 39251,
                                          "iowait": 101, "irq": 2, "softirq": 30, "steal": 6}
    stat.write_text("cpu  1 2 3 4 5 6 7\n")             # an old kernel: no steal column
    assert env.cpu_jiffies(str(stat))["steal"] == 0
    stat.write_text("intr 1 2 3\n")
    assert env.cpu_jiffies(str(stat)) is None
    assert env.cpu_jiffies(str(tmp_path / "missing")) is None
