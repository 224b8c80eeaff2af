"""The shell scripts' own logic, with stand-ins for what they drive: run_PyTorch.sh's docker path
(a recording ``docker`` and an ``nvidia-smi`` that sees a GPU) passes every knob into the container
and mounts what it writes; --help of run_PyTorch.sh and PrepareEnv.sh installs nothing (a recording
python/pip that runs only ``--help``) and names every option and environment variable."""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segbench import env, knobs, launch, suite

REPO = Path(__file__).resolve().parent.parent
IMAGE = "pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime"   # run_PyTorch.sh's default PYTORCH_IMAGE
# PYTHONPATH: read by segbench.env to run its own children; SLURM_*: Slurm's, read on its nodes
NOT_KNOBS = {"PYTHONPATH", "SLURM_NNODES", "SLURM_NODEID", "SLURM_JOB_NODELIST", "SLURM_JOB_ID"}


def knobs_the_code_reads() -> set[str]:
    """The environment variables run_benchmark.sh's launcher, the suite and the set-up read."""
    found = set()
    for name in ("case.py", "launch.py", "suite.py", "env.py"):
        text = (REPO / "segbench" / name).read_text()
        found |= set(re.findall(r'environ\b[^"\n]{0,12}"([A-Z][A-Z0-9_]+)"', text))
    found |= {var for _, real, root, _ in env.DATA_SETS for var in (real, root)}   # read by name
    return found - NOT_KNOBS


def documented_knobs() -> str:
    """launch.py's knob paragraph and the set-up's environment help."""
    doc = launch.__doc__
    return doc[doc.index("Knobs (environment)"):doc.index("Exit status")] + " ".join(
        k for k, _ in env.ENVIRONMENT)


def standin(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def docker_host(tmp_path: Path) -> dict:
    """An environment whose PATH has a ``docker`` that records each call (``info`` answers 0) and an
    ``nvidia-smi`` that lists a GPU: run_PyTorch.sh then takes its docker path."""
    bin_ = tmp_path / "bin"
    standin(bin_ / "docker", f"#!{sys.executable}\nimport json, os, sys\n"
                             "with open(os.environ['DOCKER_LOG'], 'a') as fh:\n"
                             "    fh.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    standin(bin_ / "nvidia-smi", "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    base = {k: v for k, v in os.environ.items()
            if k not in knobs_the_code_reads() | {"PYTORCH_IMAGE", "CUDA_VISIBLE_DEVICES"}}
    return dict(base, PATH=f"{bin_}:{os.environ['PATH']}", DOCKER_LOG=str(tmp_path / "docker.log"),
                SEGBENCH_PYTHON=sys.executable)


def docker_run(environ: dict, *args: str, cwd: Path) -> tuple[list[str], str]:
    """run_PyTorch.sh's ``docker run`` command line and its output."""
    r = subprocess.run(["bash", str(REPO / "run_PyTorch.sh"), *args], env=environ, cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [json.loads(ln) for ln in Path(environ["DOCKER_LOG"]).read_text().splitlines()]
    Path(environ["DOCKER_LOG"]).unlink()
    assert calls[0] == ["info"] and calls[-1][0] == "run", calls
    return calls[-1][1:], r.stdout


def flags(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_docker_passes_every_knob_and_mounts_what_the_run_writes(tmp_path):
    """Every knob the code reads goes in (``-e NAME``: docker passes it where it is set), the log
    dir outside the checkout and DATA_ROOT are mounted at their own paths (absolute, made first),
    CITYSCAPES_ROOT read-only, and the suite in the container writes to that log dir."""
    environ = docker_host(tmp_path)
    knobs = knobs_the_code_reads()
    logs, data, real = tmp_path / "logs outside", tmp_path / "data root", tmp_path / "cityscapes"
    real.mkdir()
    ade, ade_real = tmp_path / "ade data", tmp_path / "ADEChallengeData2016"
    ade_real.mkdir()
    environ.update({k: f"v_{k}" for k in knobs},
                   TRAIN_LOG_DIR=str(logs), DATA_ROOT=str(data), CITYSCAPES_ROOT=str(real),
                   ADE20K_DATA_ROOT=str(ade), ADE20K_ROOT=str(ade_real))
    argv, _ = docker_run(environ, "--models", "fastscnn", cwd=tmp_path)
    passed = {e for e in flags(argv, "-e") if "=" not in e}
    assert passed == knobs, (sorted(passed - knobs), sorted(knobs - passed))
    doc = documented_knobs()
    assert [k for k in knobs if not re.search(rf"\b{k}\b", doc)] == []      # each one documented
    mounts = flags(argv, "-v")
    assert f"{logs}:{logs}" in mounts and f"{data}:{data}" in mounts and logs.is_dir() and data.is_dir()
    assert f"{real}:{real}:ro" in mounts and f"{REPO}:/workspace/segbench" in mounts
    assert f"{ade}:{ade}" in mounts and f"{ade_real}:{ade_real}:ro" in mounts
    assert argv[argv.index(IMAGE) + 1:argv.index(IMAGE) + 3] == ["bash", "-c"]
    assert argv[-4:] == ["--models", "fastscnn", "--log-dir", str(logs)]
    # relative paths are the caller's: --log-dir over TRAIN_LOG_DIR, and ./logs without either
    environ.update(TRAIN_LOG_DIR="ignored", DATA_ROOT="rel_data")
    argv, _ = docker_run(environ, "--log-dir", "rel_logs", cwd=tmp_path)
    mounts = flags(argv, "-v")
    assert f"{tmp_path / 'rel_logs'}:{tmp_path / 'rel_logs'}" in mounts
    assert f"{tmp_path / 'rel_data'}:{tmp_path / 'rel_data'}" in mounts
    assert argv[-2:] == ["--log-dir", str(tmp_path / "rel_logs")]
    for var in ("TRAIN_LOG_DIR", "DATA_ROOT", "CITYSCAPES_ROOT", "ADE20K_DATA_ROOT", "ADE20K_ROOT"):
        del environ[var]
    argv, out = docker_run(environ, cwd=tmp_path)
    assert argv[-2:] == ["--log-dir", str(tmp_path / "logs")] and f"logs in {tmp_path / 'logs'}" in out
    assert flags(argv, "-v") == [f"{REPO}:/workspace/segbench", f"{tmp_path / 'logs'}:{tmp_path / 'logs'}"]


def test_docker_banner_says_when_the_images_torch_is_not_the_local_default(tmp_path):
    environ = docker_host(tmp_path)
    default = env.TORCH_VERSION if "TORCH_VERSION" not in os.environ else None
    if default is None:
        pytest.skip("TORCH_VERSION is set here: the local default is not the module's")
    _, out = docker_run(environ, cwd=tmp_path)
    assert f"the image's torch is 2.9.0, not {default}" in out
    _, out = docker_run(dict(environ, PYTORCH_IMAGE=f"pytorch/pytorch:{default}-cuda13.0-cudnn9-runtime"),
                        cwd=tmp_path)
    assert "the image's torch" not in out
    _, out = docker_run(dict(environ, PYTORCH_IMAGE=f"pytorch/pytorch:{default}-cuda13.0",
                             TORCH_VERSION="2.1.0"), cwd=tmp_path)        # a local set-up's choice
    assert f"the image's torch is {default}, not 2.1.0" in out
    for image in ("registry:5000/team/torch", "pytorch/pytorch:latest"):
        _, out = docker_run(dict(environ, PYTORCH_IMAGE=image), cwd=tmp_path)
        assert "the image's tag names no torch version" in out


def recording_python(tmp_path: Path) -> dict:
    """An environment whose python, python3, pip and pip3 record every call; python runs only a
    ``--help`` call (through the real interpreter) and fails anything else, pip fails always."""
    bin_, calls = tmp_path / "bin", tmp_path / "calls"
    py = (f'#!/bin/bash\nprintf "%s\\n" "$(basename "$0") $*" >> "{calls}"\n'
          f'case " $* " in *" --help "*) exec "{sys.executable}" "$@" ;; esac\nexit 97\n')
    for name in ("python", "python3"):
        standin(bin_ / name, py)
    for name in ("pip", "pip3"):
        standin(bin_ / name, f'#!/bin/bash\nprintf "%s\\n" "$(basename "$0") $*" >> "{calls}"\nexit 97\n')
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "SEGBENCH_PYTHON")}
    return dict(base, PATH=f"{bin_}:{os.environ['PATH']}", SEGBENCH_PYTHON=str(bin_ / "python3"),
                CALLS=str(calls))


def help_of(script: str, environ: dict, tmp_path: Path) -> str:
    venv_before = (REPO / ".venv").exists()
    r = subprocess.run(["bash", str(REPO / script), "--help"], env=environ, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    calls = Path(environ["CALLS"]).read_text().splitlines()
    assert r.returncode == 0, (r.stdout + r.stderr, calls)
    assert calls and all(c.startswith("python") and c.endswith("--help") for c in calls), calls
    assert (REPO / ".venv").exists() == venv_before
    return r.stdout


def parser_of(main, argv: list[str]) -> argparse.ArgumentParser:
    """The parser ``main`` builds, taken at its parse_args (nothing after it runs)."""
    class Taken(Exception):
        pass

    def take(self, *a, **k):
        raise Taken(self)

    real = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = take
    try:
        main(argv)
    except Taken as got:
        return got.args[0]
    finally:
        argparse.ArgumentParser.parse_args = real
    raise AssertionError("main never parsed its arguments")


def options(p: argparse.ArgumentParser) -> list[str]:
    return [s for a in p._actions for s in a.option_strings]


def shell_options(script: str) -> list[str]:
    """The options a script's own ``case`` statements (labels such as --local or -h|--help) and
    ``==`` tests take."""
    text = (REPO / script).read_text()
    labels = re.findall(r"^\s*(?:case \S+ in )?((?:-{1,2}[a-z][\w-]*(?:=\*)?\|?)+)\)", text, re.M)
    labels += re.findall(r'== "(-{1,2}[a-z][\w-]*)"', text)       # if [[ "$1" == "--option" ]]
    return sorted({o.removesuffix("=*") for label in labels for o in label.split("|")})


def named(option: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_run_pytorch_help_sets_nothing_up_and_names_every_option(tmp_path):
    out = help_of("run_PyTorch.sh", recording_python(tmp_path), tmp_path)
    own = shell_options("run_PyTorch.sh")
    assert {"--local", "--no-setup", "--wheelhouse", "--dry-run", "--help"} <= set(own)
    suite_opts = options(parser_of(suite.main, ["--help"]))
    assert [o for o in own + suite_opts if not named(o, out)] == []
    head, tail = out.split("SUITE OPTIONS (segbench suite: the knob flags, then the suite's own):")
    assert all(named(o, head) for o in own) and all(named(o, tail) for o in suite_opts)
    assert all(named(k.flag, tail) for k in knobs.KNOBS)   # every knob is a flag here too


def test_run_pytorch_takes_the_knob_flags_as_segbench_suite_does(cpu_env):
    """README: every knob is a flag of run and suite, and run_PyTorch.sh --no-setup = segbench suite."""
    r = subprocess.run(["bash", str(REPO / "run_PyTorch.sh"), "--no-setup", "--dry-run", "--profile",
                        "cpu", "--models", "fastscnn", "--modes", "sp", "--log-interval", "2"],
                       env=cpu_env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    [line] = [ln for ln in r.stdout.splitlines() if "run_benchmark.sh fastscnn" in ln]
    assert "LOG_INTERVAL=2" in line   # the case runs with the knob the flag set


def test_prepare_env_help_installs_nothing_and_names_every_option_and_variable(tmp_path):
    out = help_of("PrepareEnv.sh", recording_python(tmp_path), tmp_path)
    sub = next(a for a in env.parser()._actions if isinstance(a, argparse._SubParsersAction))
    wanted = shell_options("PrepareEnv.sh") + options(sub.choices["prepare"]) + \
        options(sub.choices["download"])
    assert "--download-wheels" in wanted and "--python-version" in wanted and "--system" in wanted
    assert [o for o in wanted if not named(o, out)] == []
    read = set(re.findall(r'environ\b[^"\n]{0,12}"([A-Z][A-Z0-9_]+)"',
                          (REPO / "segbench" / "env.py").read_text())) - NOT_KNOBS
    read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)[:}]", (REPO / "PrepareEnv.sh").read_text())) - NOT_KNOBS
    assert "PYTHON" in read and "MMCV_FLAVOR" in read
    assert [v for v in read if not named(v, out)] == []
