"""Set up the mmseg 0.30 / mmcv 1.x stack in an environment of its own (``STACK=mmseg0 bash
PrepareEnv.sh``), beside the default one; check and describe it. docs/LEGACY.md says why each pin.

    python -m segbench.legacy.install prepare [--system] [--venv DIR] [--wheelhouse DIR] [--no-data]
    python -m segbench.legacy.install download DIR [--python-version X.Y] [--platform TAG ...] [--full]
    python -m segbench.legacy.install check      # in the legacy environment: does it train?

Torch: an interpreter that already has torch with a torchvision that loads its ops keeps both. A
new environment reuses the torch of the interpreter that creates it (a .pth link, as segbench.env
does for the default stack) when that is a CUDA build, and adds the torchvision of the same
release; otherwise (no torch, or a ``+cpu`` build, beside which PyPI's torchvision cannot load its
ops) it installs MMSEG0_TORCH and the matching torchvision (default 2.14.1 / 0.29.1: a matched
pair on PyPI, and on this project's dev machine's disk). mmcv 1.7.2 is source only on PyPI: it is
built as a pure-Python wheel (``MMCV_FLAVOR=full``: mmcv-full 1.7.2 with compiled ops) with
``setuptools<81`` (its setup.py imports pkg_resources) and ``--no-build-isolation``.
Like segbench.env, this module imports nothing outside the standard library at module level.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from segbench import env, legacy
from segbench.env import SetupError, _pip, _py_query, _run, _say, _spec

TORCH_DEFAULT = os.environ.get("MMSEG0_TORCH", "2.14.1")
# torch release -> the torchvision release built with it
TORCHVISION_FOR = {"2.9": "0.24", "2.10": "0.25", "2.11": "0.26", "2.12": "0.27", "2.13": "0.28",
                   "2.14": "0.29"}
MMCV = "1.7.2"
MMSEG = "0.30.0"
BUILD_DEPS = ["setuptools<81", "wheel"]         # mmcv 1.7.2's setup.py imports pkg_resources
FULL_BUILD_DEPS = BUILD_DEPS + ["ninja"]
NMS_PROBE = ("import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5); "
             "print(torch.__version__, torchvision.__version__)")


def torchvision_for(torch_version: str) -> str:
    """The torchvision pin for a torch version ('2.11.0+cu130' -> '0.26.*')."""
    minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    if minor not in TORCHVISION_FOR:
        raise SetupError(f"no torchvision known for torch {torch_version} (known: "
                         f"{', '.join(TORCHVISION_FOR)}); set MMSEG0_TORCH to one of those")
    return TORCHVISION_FOR[minor] + ".*"


def _src(wheelhouse: Path | None) -> list[str]:
    return ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []


def _reusable_parent_torch() -> str | None:
    """This interpreter's torch when it is a CUDA build that a new environment may link to."""
    try:
        import torch
    except ImportError:
        return None
    return None if torch.version.cuda is None else torch.__version__


def _add_torch(python: str, wheelhouse: Path | None) -> str:
    """Link or install torch and add the torchvision of its release; what was done."""
    have = _py_query(python, "import torch; print(torch.__version__)")
    done = f"torch {have} already installed"
    if have is None and python != sys.executable and _reusable_parent_torch():
        env.link_parent_torch(python)
        have = _py_query(python, "import torch; print(torch.__version__)")
        done = f"torch {have} of {sys.executable} reused (linked)"
    if have is None:
        specs = [f"torch=={TORCH_DEFAULT}", f"torchvision=={torchvision_for(TORCH_DEFAULT)}"]
        _run(_pip(python, "install", "-q", *_src(wheelhouse), *specs), "installing " + " ".join(specs))
        return "installed " + " ".join(specs)
    if _py_query(python, "import torchvision") is None:
        spec = f"torchvision=={torchvision_for(have)}"
        _run(_pip(python, "install", "-q", *_src(wheelhouse), "--no-deps", spec), f"installing {spec}")
        done += f"; installed {spec}"
    return done


def ensure_torch(python: str, wheelhouse: Path | None) -> str:
    """torch and a torchvision whose ops load, in ``python``; what was done."""
    versions = _py_query(python, NMS_PROBE)
    if versions is not None:
        return f"torch and torchvision already installed: reused ({versions})"
    done = _add_torch(python, wheelhouse)
    versions = _py_query(python, NMS_PROBE)
    if versions is None:
        raise SetupError(f"torchvision cannot run its ops next to this torch in {python} (PyPI's torchvision "
                         "needs a CUDA build of torch; a +cpu build needs torchvision's +cpu build): make a "
                         "fresh environment, where a matched pair is installed (MMSEG0_TORCH)")
    return f"{done} (torch, torchvision: {versions})"


def _stack_wants(flavour: str) -> list[tuple[str, str | None]]:
    mmcv = ("mmcv-full", MMCV) if flavour == "full" else ("mmcv", MMCV)
    return [mmcv, ("mmsegmentation", MMSEG)]


def _build_mmcv(python: str, wheelhouse: Path | None, flavour: str) -> str:
    """mmcv 1.7.2 built from its source (pure Python; with MMCV_FLAVOR=full its compiled ops)."""
    full = flavour == "full"
    _run(_pip(python, "install", "-q", *_src(wheelhouse), *(FULL_BUILD_DEPS if full else BUILD_DEPS)),
         "installing mmcv's build tools")
    dist = "mmcv-full" if full else "mmcv"
    e = dict(os.environ, MMCV_WITH_OPS="1" if full else "0")
    _run(_pip(python, "install", "-q", *_src(wheelhouse), "--no-build-isolation", "--no-deps",
              f"{dist}=={MMCV}"), f"building {dist} {MMCV}" + (" (about 30 min on 2 cores)" if full else ""),
         env=e)
    return f"{dist} {MMCV} installed"


def install_stack(python: str, wheelhouse: Path | None, flavour: str) -> str:
    done = []
    if not env._satisfied(python, *_stack_wants(flavour)[0]):
        done.append(_build_mmcv(python, wheelhouse, flavour))
    if wheelhouse:
        # exactly what is missing, each without its dependencies (nothing the host has is touched)
        want = _stack_wants(flavour)[1:] + [(d, None) for d in env.LIGHT_DEPS + env.HEAVY_DEPS]
        missing = [_spec(d, p) for d, p in want if not env._satisfied(python, d, p)]
        absent = [s for s in missing if not env._in_wheelhouse(s.split("=")[0], wheelhouse)]
        found = [s for s in missing if s not in absent]
        if found:
            _run(_pip(python, "install", "-q", *_src(wheelhouse), "--no-deps", *found),
                 f"installing {len(found)} wheels from {wheelhouse}")
        done.append(f"{len(found)} packages from the wheelhouse")
        if absent:   # the check below says whether any of them mattered
            done.append(f"missing here and not in the wheelhouse: {' '.join(absent)}")
    else:
        _run(_pip(python, "install", "-q", f"mmsegmentation=={MMSEG}", f"mmcv=={MMCV}"
                  if flavour != "full" else f"mmcv-full=={MMCV}"), "installing mmsegmentation")
        done.append(f"mmsegmentation {MMSEG} installed/verified")
    if flavour != "full":
        done.append(env.install_standin(python))
    return "; ".join(done)


def prepare(args: argparse.Namespace) -> int:
    wheelhouse = Path(args.wheelhouse).resolve() if args.wheelhouse else None
    if wheelhouse and not wheelhouse.is_dir():
        raise SetupError(f"wheelhouse {wheelhouse} is not a directory")
    flavour = os.environ.get("MMCV_FLAVOR", "lite")
    if flavour not in ("lite", "full"):
        raise SetupError(f"MMCV_FLAVOR must be lite or full, not {flavour!r}")
    t_all = time.monotonic()

    def step(name, fn, *a):
        t0 = time.monotonic()
        _say(f"mmseg0 {name}: {fn(*a)} ({time.monotonic() - t0:.1f} s)")

    if args.system:
        python = sys.executable
        _say(f"mmseg0 environment: the current interpreter {python} (--system)")
    else:
        existed = (Path(args.venv) / "bin" / "python").exists()
        python = env.make_venv(Path(args.venv))
        _say(f"mmseg0 environment: {'reused' if existed else 'created'} {args.venv}")
    step("torch", ensure_torch, python, wheelhouse)
    step("stack", install_stack, python, wheelhouse, flavour)
    chk = subprocess.run([python, "-m", "segbench.legacy.install", "check"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=env._pythonpath()))
    if chk.returncode != 0:
        raise SetupError("mmseg0 stack check failed: " + (chk.stderr.strip().splitlines() or ["?"])[-1])
    _say("mmseg0 check: " + chk.stdout.strip())
    if not args.no_data:
        step("data", env.prepare_data, python)
    own = not args.system and Path(args.venv).resolve() == legacy.VENV
    _say(f"mmseg0 done in {time.monotonic() - t_all:.1f} s; python: {python}"
         + ("" if own else f" (run cases with MMSEG0_PYTHON={python})"))
    return 0


def download(args: argparse.Namespace) -> int:
    """Fill a wheelhouse on a connected host for an offline one: the stack's wheels, torchvision
    for MMSEG0_TORCH, and mmcv built here (pure Python) or, with MMCV_FLAVOR=full, its source."""
    dest = Path(args.dir).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    names = [f"mmsegmentation=={MMSEG}", f"torchvision=={torchvision_for(TORCH_DEFAULT)}", *env.LIGHT_DEPS]
    names += env.HEAVY_DEPS if args.full else []
    names += [f"torch=={TORCH_DEFAULT}"] if args.torch else []
    target = []
    if args.python_version:
        target += ["--python-version", args.python_version, "--implementation", "cp"]
    for plat in args.platform or []:
        target += ["--platform", plat]
    t0 = time.monotonic()
    _run(_pip(sys.executable, "download", "-q", "--no-deps", "--only-binary=:all:", *target,
              "-d", str(dest), *names), "downloading wheels")
    _run(_pip(sys.executable, "download", "-q", "--no-deps", "-d", str(dest), *BUILD_DEPS),
         "downloading mmcv's build tools")
    if os.environ.get("MMCV_FLAVOR", "lite") == "full":   # built on the target, with its nvcc
        _run(_pip(sys.executable, "download", "-q", "--no-deps", "--only-binary=:all:", *target,
                  "-d", str(dest), "ninja"), "downloading ninja")
        _run(_pip(sys.executable, "download", "-q", "--no-deps", "--no-binary=:all:", "-d", str(dest),
                  f"mmcv-full=={MMCV}"), "downloading mmcv-full's source")
    else:
        with tempfile.TemporaryDirectory() as tmp:   # a throwaway builder: this interpreter is untouched
            builder = env.make_venv(Path(tmp) / "build")
            _run(_pip(builder, "install", "-q", *BUILD_DEPS), "installing mmcv's build tools")
            _run(_pip(builder, "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(dest),
                      f"mmcv=={MMCV}"), f"building the mmcv {MMCV} wheel")
    n = len(list(dest.glob("*.whl")))
    _say(f"{n} wheels in {dest} ({time.monotonic() - t0:.1f} s); on the offline host: "
         f"STACK=mmseg0 bash PrepareEnv.sh --wheelhouse {dest}")
    return 0


def check() -> int:
    """In the legacy environment: torchvision's ops load, mmseg 0.30's models register."""
    problems = legacy.stack_problems(dict(os.environ, MMSEG0_PYTHON=sys.executable))
    if problems:
        print(f"segbench: the mmseg0 stack is not ready: {'; '.join(problems)}; set it up with "
              f"{legacy.SETUP_HINT}", file=sys.stderr)
        return 1
    versions = subprocess.run([sys.executable, "-c", NMS_PROBE], capture_output=True, text=True)
    if versions.returncode != 0:
        print(f"segbench: torchvision cannot run its ops here: {versions.stderr.strip()[-300:]}",
              file=sys.stderr)
        return 1
    import mmcv
    import mmseg
    import mmseg.apis  # noqa: F401  (what tools/train.py imports: matplotlib among others)
    from mmseg.models import BACKBONES, HEADS
    print(f"torch, torchvision {versions.stdout.strip()}, mmcv {mmcv.__version__} ({env.mmcv_flavour()}), "
          f"mmseg {mmseg.__version__}, {len(BACKBONES.module_dict)} backbones and "
          f"{len(HEADS.module_dict)} heads registered")
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="STACK=mmseg0 bash PrepareEnv.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="set up (what STACK=mmseg0 PrepareEnv.sh runs)")
    pp.add_argument("--system", action="store_true", help="install into the current interpreter")
    pp.add_argument("--venv", default=str(legacy.VENV), help="environment dir (default .venv-mmseg0)")
    pp.add_argument("--wheelhouse", help="offline: install only from this dir of wheels")
    pp.add_argument("--dev", action="store_true", help="accepted; the test tools live in the default stack")
    pp.add_argument("--no-data", action="store_true", help="skip the data step")
    pd = sub.add_parser("download", help="fill a wheelhouse for an offline host")
    pd.add_argument("dir")
    pd.add_argument("--python-version", help="target Python, e.g. 3.12")
    pd.add_argument("--platform", action="append", help="target platform tag (repeatable)")
    pd.add_argument("--full", action="store_true", help="also numpy, scipy, matplotlib, opencv, ...")
    pd.add_argument("--dev", action="store_true", help="accepted; the test tools live in the default stack")
    pd.add_argument("--torch", action="store_true", help=f"also torch=={TORCH_DEFAULT}")
    sub.add_parser("check", help="in the legacy environment: is the stack usable?")
    args = p.parse_args(argv)
    try:
        if args.cmd == "prepare":
            return prepare(args)
        if args.cmd == "download":
            return download(args)
        return check()
    except SetupError as exc:
        print(f"PrepareEnv: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
