"""The seed's own code path: mmseg 0.30 + mmcv 1.7 ("mmseg0") beside the default mmseg 1.x stack.

``STACK=mmseg0`` selects it (run_benchmark.sh, run_PyTorch.sh, PrepareEnv.sh; docs/LEGACY.md). The
stack lives in an environment of its own, ``.venv-mmseg0`` (segbench.legacy.install sets it up);
a case on it runs mmseg 0.30's own tools/train.py (segbench.legacy.run) with the legacy
environment's python, and writes the same files as a 1.x case: the log with the launcher's records,
the speed file, the sidecar and the per-iteration files (segbench.legacy.hooks). Its name ends in
``_mmseg0`` and its case record says ``"stack": "mmseg0"``.

This module is the launcher's side: it runs in the launcher's interpreter (any stack, maybe without
torch) and imports nothing outside the standard library. The training side (run, compat, hooks)
runs in the legacy environment only.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
STACKS = ("mmseg1", "mmseg0")     # the default first
LEGACY = "mmseg0"
NAME_TOKEN = "_" + LEGACY         # appended to a legacy case's name, after every other token
VENV = REPO / ".venv-mmseg0"
SETUP_HINT = "STACK=mmseg0 bash PrepareEnv.sh"
# (distribution, version) the legacy environment must have for a case to run
PINS = (("mmcv", "1.7.2"), ("mmsegmentation", "0.30.0"))
PRECISIONS = ("fp32", "fp16")    # mmcv 1.x's Fp16OptimizerHook; no bf16
# the train set of configs/mmseg0/ (mmseg 0.30's Cityscapes config): img_dir and img_suffix
TRAIN_IMAGES = (Path("leftImg8bit") / "train", "_leftImg8bit.png")
LAYOUT = "cityscapes"            # what configs/mmseg0/*.py train on (mmseg 0.30's Cityscapes configs)


def stack(environ=os.environ) -> str:
    """The stack STACK names (unset or empty: mmseg1; exactly as the shell scripts compare it);
    ValueError for any other value."""
    value = environ.get("STACK") or STACKS[0]
    if value not in STACKS:
        raise ValueError(f"STACK must be {' or '.join(STACKS)}, not {value!r}")
    return value


def python(environ=os.environ) -> str | None:
    """The legacy environment's interpreter: MMSEG0_PYTHON, else .venv-mmseg0's; None if neither."""
    if environ.get("MMSEG0_PYTHON"):
        return environ["MMSEG0_PYTHON"]
    py = VENV / "bin" / "python"
    return str(py) if py.exists() else None


def unsupported(case) -> str | None:
    """Why the legacy stack cannot run this case as asked (None: it can)."""
    models = sorted(p.stem for p in (REPO / "configs" / "mmseg0").glob("*.py"))
    if case.model not in models:
        return f"STACK=mmseg0 runs {', '.join(models)} (mmseg 0.30's configs), not {case.model!r}"
    if case.fp_item not in PRECISIONS:
        return f"{case.fp_item} is not available on STACK=mmseg0 (mmcv 1.x has fp16 only: fp32 or fp16)"
    if case.tuned:
        return ("TUNED is for the mmseg 1.x stack only (its switches are mmengine's); "
                "unset it for STACK=mmseg0")
    if case.profile_window:
        return "PROFILING is for the mmseg 1.x stack only; unset it for STACK=mmseg0"
    return None


def _query(code: str, environ=os.environ) -> str | None:
    py = python(environ)
    if py is None:
        return None
    try:
        out = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120,
                             env=dict(environ, PYTHONPATH=str(REPO)))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


_VERSIONS = ("import json; from importlib import metadata as m\n"
             "def v(d):\n try: return m.version(d)\n except m.PackageNotFoundError: return None\n"
             "print(json.dumps({d: v(d) for d in ('torch', 'torchvision', 'mmcv', 'mmcv-full', "
             "'mmsegmentation', 'numpy')}))")


def stack_problems(environ=os.environ) -> list[str]:
    """What keeps the legacy environment from training; empty when it is usable."""
    py = python(environ)
    if py is None:
        return [f"the mmseg0 environment {VENV} does not exist"]
    text = _query(_VERSIONS, environ)
    if text is None:
        return [f"{py} does not run"]
    have = json.loads(text)
    have["mmcv"] = have["mmcv"] or have.get("mmcv-full")
    problems = [f"{d} is not installed in {py}" for d in ("torch", "torchvision") if not have[d]]
    for dist, pin in PINS:
        if have[dist] is None:
            problems.append(f"{dist} is not installed in {py}")
        elif have[dist] != pin:
            problems.append(f"{dist} {have[dist]} is installed in {py}, mmseg0 needs {pin}")
    return problems


def collect(environ=os.environ) -> dict:
    """The legacy environment as segbench.env.collect describes one, plus the stack's own versions."""
    code = ("import json, torchvision; from segbench import env; i = env.collect(); "
            "i.update(torchvision=torchvision.__version__, mmcv_full=env.installed_version('mmcv-full')); "
            "print(json.dumps(i))")
    text = _query(code, environ)
    info = json.loads(text) if text else {"error": f"could not describe {python(environ)}"}
    info["stack"] = LEGACY
    info["python_executable"] = python(environ)
    return info


def train_images(data_root) -> int:
    """The images of the train set mmseg 0.30's CityscapesDataset finds under data_root: files
    ending in its img_suffix anywhere under its img_dir (mmcv.scandir, recursive, links followed)."""
    img_dir, suffix = TRAIN_IMAGES
    return sum(f.endswith(suffix) for _, _, files in os.walk(Path(data_root) / img_dir, followlinks=True)
               for f in files)


def repeat_times(case) -> int:
    """The RepeatDataset times that make the whole run one pass over the train set:
    ceil(max_iter x batch size x world size / images), at least 1 (1 when no image is found).
    mmcv 1.x's IterLoader sleeps 2 s whenever a pass ends (docs/LEGACY.md)."""
    images = train_images(case.data_root) if case.data_root else 0
    return max(1, math.ceil(case.max_iter * case.batch_size * case.gpu_num / images)) if images else 1


def train_command(case, log_stem: Path, environ=os.environ) -> list[str]:
    """The legacy training process for a segbench.launch Case (what launch runs instead of
    segbench.train): segbench.legacy.run with the legacy python, through torchrun for mp; the
    train set's RepeatDataset times is in it (and so in the case record's train_command)."""
    return case.process(python(environ) or sys.executable,
                        ["-m", "segbench.legacy.run", *case.train_args(log_stem),
                         "--repeat-times", str(repeat_times(case))])
