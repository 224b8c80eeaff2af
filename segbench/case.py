"""One benchmark case as asked: the six positional arguments and the environment knobs, validated
into a :class:`Case` (no torch needed), and the name its files get.

A case's name is ``${MODEL}_${RUN_MODE}_bs${BS}_${FP_ITEM}_${NGPU}`` (MODEL: a built-in name, or a
config's short form, segbench.configs.short_name), then one token per setting that changes the
figure and is not the default, in this order: ``tuned`` (TUNED=1/all) or ``tuned-<switches>``
(``-cm<mode>``, ``-cs<scope>`` with compile), ``crop<H>x<W>``, ``li<N>``, ``nobench``,
``cpus<list>``, ``prof<first>-<last>``, and last ``mmseg0`` (STACK=mmseg0). The seed's settings
give the seed's name. Bad input is named by what was given plus ``bad`` and a hash of the
arguments and knobs (:func:`bad_input_name`). segbench.launch runs a Case.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from segbench import configs, env, legacy, tuned

RUN_ARGS = ("MODEL", "RUN_MODE", "FP_ITEM", "BS", "MAX_ITER", "NUM_WORKERS")   # the six positionals


def usage(prog: str = "run_benchmark.sh") -> str:
    """The usage line of the command that was run: run_benchmark.sh's (knobs as environment
    variables), or another's such as ``segbench run`` (knobs as flags)."""
    head, tail = (("CUDA_VISIBLE_DEVICES=0 bash run_benchmark.sh", "") if prog == "run_benchmark.sh"
                  else (prog, " [knob flags]"))
    return f"usage: {head} {' '.join(RUN_ARGS)}{tail}   (e.g. fastscnn sp fp32 2 500 5)"


USAGE = usage()
RUN_MODES = ("sp", "mp")
SKIP_WINDOWS = 4

KNOBS = ("TRAIN_LOG_DIR", "CUDA_VISIBLE_DEVICES", "DEVICE", "MP_PROCS", "NNODES", "NODE_RANK",
         "MASTER_ADDR", "MASTER_PORT", "BENCH_TIMEOUT", "LOG_INTERVAL", "CROP", "DATA_ROOT", "REPEAT",
         "PROFILING", "PROFILE_ITERS", "FLOPS", "CUDNN_BENCHMARK", "CPU_AFFINITY", "TUNED",
         "TUNED_COMPILE_MODE", "TUNED_COMPILE_SCOPE", "TUNED_PROOF",
         "STACK")   # the environment knobs (docstring)


class BadInput(ValueError):
    """The case cannot run as asked; the message is the one line the user sees. ``usage``: the
    arguments themselves are wrong, so the command's usage line follows the message."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage


@dataclass
class Case:
    model: str
    run_mode: str
    fp_item: str
    batch_size: int
    max_iter: int
    num_workers: int
    log_dir: Path
    device: str = "cpu"
    nproc: int = 1            # processes on this node
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0
    log_interval: int = 10
    crop: tuple[int, int] | None = None
    data_root: Path | None = None       # None: the default for the model's dataset (_check_ready)
    timeout_s: float = 900.0
    repeat: int = 1
    profile_window: tuple[int, int] | None = None
    count_flops: bool = True              # FLOPS: the timing hook's FLOP probe before iteration 1
    cudnn_benchmark: bool = True          # CUDNN_BENCHMARK: env_cfg.cudnn_benchmark
    cpu_affinity: tuple[int, ...] | None = None   # CPU_AFFINITY: the CPUs the case may run on
    tuned: tuple[str, ...] = ()
    compile_mode: str = "auto"           # as given (TUNED_COMPILE_MODE); compile_resolved: as run
    compile_scope: str = "modules"
    tuned_proof: bool = False            # TUNED_PROOF: the equivalence check first (segbench.proof)
    command: str = ""
    env_info: dict = field(default_factory=dict)
    stack: str = "mmseg1"                # STACK: mmseg1 (default) or mmseg0 (segbench.legacy)

    @property
    def gpu_num(self) -> int:
        return self.nproc * self.nnodes

    @property
    def label(self) -> str:
        """The model in the case's name and speed file: a built-in name, or a config's short form
        (segbench.configs.short_name)."""
        return configs.short_name(self.model)

    @functools.cached_property
    def default_crop(self) -> tuple[int, int] | None:
        """The model's own crop: a built-in model's, else the config's."""
        return configs.MODELS.get(self.model) or configs.config_crop(configs.load(self.model))

    @property
    def tokens(self) -> list[str]:
        """The name's variant tokens (the module docstring's grammar): one per setting that
        changes the figure and is not the default, in a fixed order; [] for the seed's settings."""
        out = []
        if self.tuned:
            tok = "tuned" if self.tuned == tuned.DEFAULT_SWITCHES else "tuned-" + "+".join(self.tuned)
            if "compile" in self.tuned and self.compile_mode != "auto":
                tok += f"-cm{self.compile_mode}"
            if "compile" in self.tuned and self.compile_scope != "modules":
                tok += f"-cs{self.compile_scope}"
            out.append(tok)
        if self.crop and tuple(self.crop) != self.default_crop:
            out.append(f"crop{self.crop[0]}x{self.crop[1]}")
        if self.log_interval != 10:
            out.append(f"li{self.log_interval}")
        if not self.cudnn_benchmark:
            out.append("nobench")
        if self.cpu_affinity:
            out.append("cpus" + env.cpu_ranges(self.cpu_affinity).replace(",", "."))
        if self.profile_window:
            out.append(f"prof{self.profile_window[0]}-{self.profile_window[1]}")
        return out

    @property
    def name(self) -> str:
        stock = f"{self.label}_{self.run_mode}_bs{self.batch_size}_{self.fp_item}_{self.gpu_num}"
        mmseg0 = [legacy.NAME_TOKEN.lstrip("_")] if self.stack == legacy.LEGACY else []   # last
        return "_".join([stock, *self.tokens, *mmseg0])

    def settings(self) -> dict:
        """Every setting that makes the case's identity, and the runtime variables it ran with
        (the history row's ``settings``)."""
        return {"crop": list(self.crop or self.default_crop or []) or None,
                "log_interval": self.log_interval, "cudnn_benchmark": self.cudnn_benchmark,
                "cpu_affinity": self.cpu_affinity, "tuned": list(self.tuned),
                "compile_mode": self.compile_mode, "compile_scope": self.compile_scope,
                "profile_window": self.profile_window, "max_iter": self.max_iter,
                "num_workers": self.num_workers, "repeat": self.repeat,
                "data_root": str(self.data_root), "nnodes": self.nnodes, "config": self.model,
                "runtime_env": self.env_info.get("runtime_env") or {}}

    @property
    def compile_resolved(self) -> str:
        """torch.compile's mode as run (TUNED_COMPILE_MODE=auto depends on the device and graph)."""
        return tuned.resolve_compile_mode(self.compile_mode, self.device, "graph" in self.tuned)

    @property
    def profile(self) -> str:
        return "gpu" if self.device == "cuda" else "cpu"

    def train_args(self, log_stem: Path) -> list[str]:
        """A training process's arguments that both stacks' trainers take (segbench.train,
        segbench.legacy.run): the case's settings and where its files go."""
        args = ["--model", self.model, "--batch-size", str(self.batch_size),
                "--max-iters", str(self.max_iter), "--num-workers", str(self.num_workers),
                "--precision", self.fp_item, "--data-root", str(self.data_root),
                "--work-dir", f"{log_stem}_work", "--log-interval", str(self.log_interval),
                "--iters-prefix", f"{log_stem}_iters"]
        if self.crop:
            args += ["--crop", str(self.crop[0]), str(self.crop[1])]
        if not self.count_flops:
            args.append("--no-flops")
        if not self.cudnn_benchmark:
            args.append("--no-cudnn-benchmark")
        return args

    def process(self, py: str, args: list[str]) -> list[str]:
        """The command that runs ``py args``: itself for sp, torchrun for mp."""
        if self.run_mode == "sp":
            return [py, *args]
        return [py, "-m", "torch.distributed.run", f"--nproc_per_node={self.nproc}",
                f"--nnodes={self.nnodes}", f"--node_rank={self.node_rank}",
                f"--master_addr={self.master_addr}", f"--master_port={self.master_port}", *args]

    def path(self, suffix: str = "") -> Path:
        """The case's files; on a multi-node run's node R > 0, ``<case>.node<R>...``: only node 0
        writes the case's log, speed file and sidecar (its gpu_num counts every node's processes)."""
        node = f".node{self.node_rank}" if self.node_rank else ""
        return self.log_dir / f"{self.name}{node}{suffix}"


# ---------------------------------------------------------------------------------------------
# Parsing and validation

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _positive_int(name: str, text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text or "") or int(text) < 1:
        raise BadInput(f"{name} must be a positive integer, not {text!r}")
    return int(text)


def _safe_name(text: str) -> str:
    """A file-name-safe rendering of raw user input (for naming the log of a bad case)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64] or "NA"


def raw_case_name(argv: list[str]) -> str:
    """The seed's name over the arguments as given (NA for what is missing, and for NGPU): the
    head of bad_input_name."""
    a = [_safe_name(x) for x in argv[:6]] + ["NA"] * (6 - min(len(argv), 6))
    return f"{a[0]}_{a[1]}_bs{a[3]}_{a[2]}_NA"


def _env_int(environ, name: str, default: int, minimum: int = 1) -> int:
    text = environ.get(name, "")
    if text == "":
        return default
    if not re.fullmatch(r"[0-9]+", text) or int(text) < minimum:
        raise BadInput(f"{name} must be an integer >= {minimum}, not {text!r}")
    return int(text)


def _env_bool(environ, name: str, default: bool) -> bool:
    """A true/false knob (1/true/yes/on, 0/false/no/off, any case); unset or empty: ``default``."""
    text = (environ.get(name) or ("true" if default else "false")).strip().lower()
    if text not in _TRUE + _FALSE:
        raise BadInput(f"{name} must be true or false, not {environ.get(name)!r}")
    return text in _TRUE


def _cpu_list(environ, name: str) -> tuple[int, ...] | None:
    """A CPU list knob (``0-3,8,10-11``) -> sorted CPU numbers, each one this process may use
    (os.sched_getaffinity); unset or empty: None."""
    text = (environ.get(name) or "").strip()
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*([0-9]+)(?:-([0-9]+))?\s*", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise BadInput(f"{name} must be a CPU list like 0-7 or 0,2,4, not {text!r}")
        cpus.update(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise BadInput(f"{name} names CPUs this process may not use ({env.cpu_ranges(cpus - allowed)}); "
                       f"it may use {env.cpu_ranges(allowed)}")
    return tuple(sorted(cpus))


def _duration(environ, name: str, default: float) -> float:
    text = environ.get(name, "")
    if text == "":
        return default
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smh]?)", text)
    if not m or float(m.group(1)) <= 0:
        raise BadInput(f"{name} must be a duration like 900, 900s, 15m or 1h, not {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_case(argv: list[str], environ=os.environ) -> Case:
    """The six positional arguments + environment knobs -> a validated Case (no torch needed)."""
    if len(argv) < 6:
        raise BadInput(f"missing {' '.join(RUN_ARGS[len(argv):])}", usage=True)
    if len(argv) > 6:
        raise BadInput(f"too many arguments ({len(argv)}, expected 6): "
                       f"unexpected {' '.join(argv[6:])!r}", usage=True)
    model, run_mode, fp_item = argv[0], argv[1], argv[2]
    try:
        configs.config_path(model)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if run_mode not in RUN_MODES:
        raise BadInput(f"RUN_MODE must be sp or mp, not {run_mode!r}")
    if fp_item not in configs.PRECISIONS:
        raise BadInput(f"FP_ITEM must be one of {', '.join(configs.PRECISIONS)}, not {fp_item!r}")
    bs = _positive_int("BS", argv[3])
    max_iter = _positive_int("MAX_ITER", argv[4])
    workers = _positive_int("NUM_WORKERS", argv[5])
    interval = _env_int(environ, "LOG_INTERVAL", 10)
    if max_iter < (SKIP_WINDOWS + 1) * interval:
        raise BadInput(f"MAX_ITER {max_iter} leaves no log window to measure: the first "
                       f"{SKIP_WINDOWS} windows of {interval} iterations are skipped, so it must be "
                       f">= {(SKIP_WINDOWS + 1) * interval}")
    crop = None
    if environ.get("CROP"):
        m = re.fullmatch(r"([0-9]+)x([0-9]+)", environ["CROP"])
        if not m or min(int(m.group(1)), int(m.group(2))) < 32:
            raise BadInput(f"CROP must be HxW with both >= 32, e.g. 256x512, not {environ['CROP']!r}")
        crop = (int(m.group(1)), int(m.group(2)))
    profile_window = None
    if environ.get("PROFILING", "false").lower() in ("1", "true", "yes"):
        m = re.fullmatch(r"([0-9]+)-([0-9]+)", environ.get("PROFILE_ITERS", "50-60"))
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise BadInput(f"PROFILE_ITERS must be FIRST-LAST, not {environ.get('PROFILE_ITERS')!r}")
        profile_window = (int(m.group(1)), min(int(m.group(2)), max_iter))
    try:
        switches = tuned.parse_switches(environ.get("TUNED"))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    compile_mode = environ.get("TUNED_COMPILE_MODE") or "auto"
    if compile_mode not in tuned.COMPILE_MODES:
        raise BadInput(f"TUNED_COMPILE_MODE must be one of {', '.join(tuned.COMPILE_MODES)}, "
                       f"not {compile_mode!r}")
    compile_scope = environ.get("TUNED_COMPILE_SCOPE") or "modules"
    if compile_scope not in tuned.COMPILE_SCOPES:
        raise BadInput(f"TUNED_COMPILE_SCOPE must be one of {', '.join(tuned.COMPILE_SCOPES)}, "
                       f"not {compile_scope!r}")
    tuned_proof = _env_bool(environ, "TUNED_PROOF", False)
    if tuned_proof and not switches:
        raise BadInput("TUNED_PROOF checks a tuned case's switches: set TUNED too")
    log_dir = Path(environ.get("TRAIN_LOG_DIR") or os.getcwd()).resolve()
    try:
        stack = legacy.stack(environ)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    case = Case(
        model=model, run_mode=run_mode, fp_item=fp_item, batch_size=bs, max_iter=max_iter,
        num_workers=workers, log_dir=log_dir, log_interval=interval, crop=crop,
        data_root=Path(environ["DATA_ROOT"]).resolve() if environ.get("DATA_ROOT") else None,
        timeout_s=_duration(environ, "BENCH_TIMEOUT", 900.0),
        repeat=_env_int(environ, "REPEAT", 1), profile_window=profile_window,
        count_flops=_env_bool(environ, "FLOPS", True),
        cudnn_benchmark=_env_bool(environ, "CUDNN_BENCHMARK", True),
        cpu_affinity=_cpu_list(environ, "CPU_AFFINITY"),
        tuned=switches, compile_mode=compile_mode,
        compile_scope=compile_scope, tuned_proof=tuned_proof, stack=stack,
        **_nodes(environ))
    if stack == legacy.LEGACY and (why := legacy.unsupported(case)):
        raise BadInput(why)
    if tuned_proof and case.nnodes > 1:
        raise BadInput("TUNED_PROOF runs on one node: the other nodes would wait in the rendezvous")
    return case


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: ``gpu[03-06,9],login1`` -> ``gpu03``."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise BadInput(f"SLURM_JOB_NODELIST {nodelist!r} names no host")
    first = (m.group(2) or "").split(",")[0].split("-")[0]
    return m.group(1) + first


def _nodes(environ) -> dict:
    """NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT; under Slurm (srun -N4 --ntasks-per-node=1
    bash run_benchmark.sh ...) each defaults to Slurm's: SLURM_NNODES, SLURM_NODEID, the first host
    of SLURM_JOB_NODELIST, and 29500 + SLURM_JOB_ID % 10000 (the same on every node of the job)."""
    slurm = environ.get("SLURM_NNODES") and environ.get("SLURM_JOB_NODELIST")
    out = {"nnodes": _env_int(environ, "NNODES", 1),
           "node_rank": _env_int(environ, "NODE_RANK", 0, 0),
           "master_addr": environ.get("MASTER_ADDR") or "127.0.0.1",
           "master_port": _env_int(environ, "MASTER_PORT", 0, 0)}
    if not slurm:
        return out
    if not environ.get("NNODES"):
        out["nnodes"] = _env_int(environ, "SLURM_NNODES", 1)
    if not environ.get("NODE_RANK"):
        out["node_rank"] = _env_int(environ, "SLURM_NODEID", 0, 0)
    if not environ.get("MASTER_ADDR"):
        out["master_addr"] = first_host(environ["SLURM_JOB_NODELIST"])
    if not environ.get("MASTER_PORT"):
        out["master_port"] = 29500 + _env_int(environ, "SLURM_JOB_ID", 0, 0) % 10000
    return out


def _visible_requested(environ) -> list[str] | None:
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return None
    return [d for d in cvd.split(",") if d.strip() != ""]


def _given(environ) -> dict:
    return {k: environ[k] for k in KNOBS if k in environ}


def bad_input_name(argv: list[str], environ) -> str:
    """The name of a bad input's log and speed file: what was given (raw_case_name), the case's
    variant tokens when its arguments and knobs parse, then ``bad`` + 8 hex digits of a hash of
    the arguments and every knob given (KNOBS): different bad inputs never share files, the same
    bad input rewrites its own."""
    try:
        tokens = parse_case(argv, environ).tokens
    except Exception:   # BadInput, or a config that does not load: no tokens to name
        tokens = []
    digest = hashlib.sha256(json.dumps([list(argv), _given(environ)], sort_keys=True).encode()).hexdigest()
    mmseg0 = [legacy.LEGACY] if environ.get("STACK") == legacy.LEGACY else []
    return "_".join([raw_case_name(argv), *tokens, *mmseg0, f"bad{digest[:8]}"])
