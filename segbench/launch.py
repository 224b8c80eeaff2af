"""Run one benchmark case: the engine behind run_benchmark.sh.

    python -m segbench.launch MODEL RUN_MODE FP_ITEM BS MAX_ITER NUM_WORKERS

Validates the case, writes the log (docs/FORMATS.md: a ``case:`` record, everything training
printed, a ``result:`` record), runs training in a process group of its own (sp: one process;
mp: torchrun, one process per device), ends only that group on timeout or signal, then writes the
speed file and stats sidecar through segbench.analysis (the code behind analysis_log.py).

Knobs (environment): TRAIN_LOG_DIR, CUDA_VISIBLE_DEVICES, DEVICE (auto|cuda|cpu), MP_PROCS (CPU mp,
default 2), NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (under Slurm: from SLURM_NNODES, SLURM_NODEID,
SLURM_JOB_NODELIST, SLURM_JOB_ID), BENCH_TIMEOUT (seconds, default 900), LOG_INTERVAL (default 10),
CROP (HxW), DATA_ROOT, REPEAT (default 1), PROFILING (true|false), PROFILE_ITERS (FIRST-LAST,
default 50-60), FLOPS (true|false: the one-off FLOP count before iteration 1, default true),
CUDNN_BENCHMARK (true|false, default true as in the seed's configs; false only to diagnose
run-to-run spread: the case record and sidecar say so), CPU_AFFINITY (a CPU list such as 0-7 or
0,2,4: the case's processes -- trainer, ranks, loader workers -- run on those CPUs only; unset:
wherever the host schedules them), SEGBENCH_VERBOSE (1: echo all training output),
TUNED (1|all|0 or a comma list of segbench.tuned.SWITCHES),
TUNED_COMPILE_MODE (auto|default|max-autotune|reduce-overhead, with the compile switch; auto:
reduce-overhead on a GPU, default on the CPU and with the graph switch),
TUNED_COMPILE_SCOPE (modules|train_step, with the compile switch), TUNED_PROOF (true: the tuned
step's equivalence check first, segbench.proof), STACK (mmseg1|mmseg0: mmseg 0.30 + mmcv 1.7.2).

The case's name (Case.name; its log, ``<name>_speed``, ``<name>_stats.json``) is the seed's
``MODEL_RUN_MODE_bsBS_FP_ITEM_NGPU`` for the seed's settings; each setting that changes the figure
and is not the default appends one token, in this order: ``tuned`` (TUNED's default set) or
``tuned-<switch>+<switch>...`` (with compile: ``-cm<mode>`` unless auto, ``-cs<scope>`` unless
modules), ``crop<H>x<W>`` (CROP other than the model's), ``li<N>`` (LOG_INTERVAL not 10),
``nobench`` (CUDNN_BENCHMARK=false), ``cpus<list>`` (CPU_AFFINITY, ``,`` written ``.``),
``prof<first>-<last>`` (PROFILING). Every run first removes the files an earlier run of the case
left (own_files: log, ``.rep<i>`` logs, per-iteration files, traces, host samples, speed file,
sidecar, the equivalence check's files).

Bad input still writes a log and a failing speed file, named ``bad_input_name``: the arguments as
given (``NA`` for the missing and for NGPU), the variant tokens if the arguments parsed, then
``bad<hash>`` (8 hex digits of the arguments and the knobs given), so different bad inputs keep
their own records, e.g. ``fastscnn_xp_bs2_fp32_NA_bada765317c``.

Exit status: 0 the case passed, 1 it failed, 2 bad input (nothing was run), 130 interrupted by
SIGINT, SIGTERM or SIGHUP (the run's process group gets the same signal, then SIGKILL after a
grace period; the reason names the signal; the speed file says JOB_FAIL_FLAG 1, the log is kept).
A signal the launcher was started ignoring (e.g. SIGHUP under nohup) stays ignored.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import glob
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from segbench import configs, env, failure, legacy, proof
from segbench.case import (KNOBS, RUN_MODES, SKIP_WINDOWS, USAGE, BadInput, Case,  # noqa: F401
                           _env_int, _given, _safe_name, _visible_requested, bad_input_name, first_host,
                           parse_case, raw_case_name, usage)
from segbench.train import ERROR_TAG

RECORD = "[segbench] "
TERM_GRACE_S = 10
HOST_SAMPLE_S = 1.0   # seconds between samples of the host's CPU counters (<log>_host.jsonl)
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_INTERRUPTED = 130
def resolve_devices(case: Case, environ=os.environ) -> None:
    """Decide cuda vs the CPU profile and the process count; needs torch."""
    import torch
    want = (environ.get("DEVICE") or "auto").lower()
    if want not in ("auto", "cuda", "cpu"):
        raise BadInput(f"DEVICE must be auto, cuda or cpu, not {want!r}")
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if want == "cuda" and have == 0:
        what = "mp asks for NCCL" if case.run_mode == "mp" else "DEVICE=cuda"
        raise BadInput(f"no GPU is visible to torch {torch.__version__} but {what}; "
                       "run on a GPU host or set DEVICE=cpu for the CPU profile")
    case.device = "cpu" if want == "cpu" or have == 0 else "cuda"
    if case.device == "cpu":
        case.nproc = _env_int(environ, "MP_PROCS", 2) if case.run_mode == "mp" else 1
        if case.fp_item != "fp32":
            raise BadInput(f"{case.fp_item} (AMP) needs a GPU; this host has none: use fp32 "
                           "for the CPU profile")
        return
    requested = _visible_requested(environ)
    if requested is not None and len(requested) > have:
        raise BadInput(f"CUDA_VISIBLE_DEVICES lists {len(requested)} devices "
                       f"({','.join(requested)}) but torch sees {have}")
    case.nproc = have if case.run_mode == "mp" else 1


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def resolve_port(case: Case, environ=os.environ) -> None:
    if case.run_mode != "mp":
        return
    if case.master_port:
        if case.node_rank == 0 and not _port_free(case.master_port):
            raise BadInput(f"MASTER_PORT {case.master_port} is already in use on this host; "
                           "choose another (or leave MASTER_PORT unset on a single node)")
        return
    if case.nnodes > 1:
        raise BadInput("NNODES > 1 needs MASTER_ADDR and MASTER_PORT, the same on every node")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        case.master_port = s.getsockname()[1]


# ------------------------------------------------------------------------------------- Running

def train_command(case: Case, log_stem: Path) -> list[str]:
    if case.stack == legacy.LEGACY:
        return legacy.train_command(case, log_stem)
    args = ["-m", "segbench.train", *case.train_args(log_stem)]
    if case.profile_window:
        args += ["--profile-window", str(case.profile_window[0]), str(case.profile_window[1])]
    if case.tuned:
        args += ["--tuned", ",".join(case.tuned), "--compile-mode", case.compile_resolved,
                 "--compile-scope", case.compile_scope]
    return case.process(sys.executable, args)


def _record(fh, kind: str, obj: dict) -> None:
    fh.write(f"{RECORD}{kind}: {json.dumps(obj, ensure_ascii=False)}\n")
    fh.flush()


class _Run:
    """One training run in its own process group, its output teed into the log."""

    def __init__(self, cmd: list[str], log_fh, verbose: bool):
        self.cmd, self.log_fh, self.verbose = cmd, log_fh, verbose
        self.errors: list[dict] = []
        self.tail: list[str] = []
        self.evidence = failure.Evidence()   # signs of running out of memory (segbench.failure)
        self.stop_reason: str | None = None
        self.proc: subprocess.Popen | None = None
        self._ending = threading.Lock()

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace")
            self.log_fh.write(line)
            self.log_fh.flush()  # the log is readable while training runs
            if line.startswith(ERROR_TAG):
                try:
                    self.errors.append(json.loads(line[len(ERROR_TAG):]))
                except json.JSONDecodeError:
                    pass
            self.evidence.feed(line)
            if line.strip():
                self.tail = (self.tail + [line.rstrip()])[-20:]
            if self.verbose or "Iter(train)" in line:
                sys.stdout.write(line if self.verbose else _short(line))
                sys.stdout.flush()
        self.log_fh.flush()

    def start(self, child_env: dict) -> None:
        # start_new_session: the run gets its own process group, so the harness can end exactly
        # the processes it started (torchrun, every rank, data-loader workers) and nothing else.
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=child_env, start_new_session=True)
        self.pgid = self.proc.pid
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def end_group(self, reason: str, sig: int = signal.SIGTERM) -> None:
        """Send our process group ``sig``, then SIGKILL whatever is left after a grace period.
        The first reason stands; the group is ended once (a later call returns at once); a run
        not started yet has nothing to end."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.proc is None or not self._ending.acquire(blocking=False):
            return
        _signal_group(self.pgid, sig)
        try:
            self.proc.wait(TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.pgid, signal.SIGKILL)

    def wait(self, timeout_s: float) -> int | None:
        """The run's exit status; None for a run that never started (interrupted before)."""
        if self.proc is None:
            return None
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.end_group(f"timeout after {timeout_s:g} s")
            rc = self.proc.wait()
        _signal_group(self.pgid, signal.SIGKILL)  # stragglers (e.g. orphaned loader workers)
        self.reader.join(5)
        return rc


class _HostSampler:
    """Samples the host's CPU time by state (segbench.env.cpu_jiffies) every ``interval`` seconds
    while a run trains, into ``<log>_host.jsonl`` (one JSON line per sample: ``t``, the wall clock
    the per-iteration files use, and the counters): how busy the host was and how much CPU time a
    hypervisor took (steal) during the measured iterations. A thread of the launcher, which only
    waits meanwhile; reading /proc/stat once a second costs the host nothing measurable."""

    def __init__(self, path: Path, interval: float = HOST_SAMPLE_S):
        self.path, self.interval = path, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        if env.cpu_jiffies() is None:    # not Linux: nothing to sample
            return self
        self._fh = open(self.path, "w", encoding="utf-8")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        counters = env.cpu_jiffies()
        if counters is not None:
            self._fh.write(json.dumps({"t": time.time(), **counters}) + "\n")
            self._fh.flush()

    def _loop(self) -> None:
        self._sample()
        while not self._stop.wait(self.interval):
            self._sample()
        self._sample()

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self._fh.close()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _short(line: str) -> str:
    m = re.search(r"Iter\(train\) \[\s*(\d+)/(\d+)\].*?\btime: ([0-9.]+)", line)
    return f"  iter {m.group(1)}/{m.group(2)}  time {m.group(3)} s\n" if m else ""


def _reason(run: _Run, rc: int, case: Case) -> tuple[str | None, str | None]:
    """(why the run failed, its failure kind: segbench.failure's KINDS); (None, None) if it passed.
    An out-of-memory reason says which memory, at which batch; the line that shows it in brackets."""
    if run.stop_reason:
        return run.stop_reason, failure.OTHER
    if rc == 0:
        return None, None
    kind, detail = run.evidence.verdict(rc)
    oom = next((e for e in run.errors if e.get("kind") == "oom"), None)
    if kind == failure.OTHER and oom:   # train's own verdict, with no line that names the memory
        kind = failure.GPU_OOM if case.device == "cuda" else failure.HOST_OOM
    if kind != failure.OTHER:
        per = "GPU" if case.device == "cuda" else "process"
        return failure.oom_reason(kind, case.batch_size, per, detail), kind
    crash = next((e for e in run.errors if e.get("kind") == "crash"), None)
    if crash:
        where = f" on rank {crash.get('rank')}" if case.run_mode == "mp" else ""
        return f"crash{where}: {crash.get('message')}", failure.OTHER
    last = next((t for t in reversed(run.tail) if t.strip()), "")
    return f"crash: exit code {rc}: {last[:200]}", failure.OTHER


def _child_env(case: Case) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(env.REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["PYTHONUNBUFFERED"] = "1"
    e.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    e.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::UserWarning")
    if case.device == "cpu":
        e["CUDA_VISIBLE_DEVICES"] = ""
    return e


def _run_group(run: _Run, case: Case, stop: dict) -> int | None:
    """Start ``run`` registered in ``stop`` and wait; a signal before or while it starts ends it."""
    stop["run"] = run
    if stop["signal"] is None:
        run.start(_child_env(case))
    if stop["signal"] is not None:
        run.end_group(interrupted(stop["signal"]), stop["signal"])
    rc, stop["run"] = run.wait(case.timeout_s), None
    return rc


def run_once(case: Case, log_path: Path, verbose: bool, stop: dict) -> dict:
    """Run training once into log_path (a fresh file); returns the result record."""
    cmd = train_command(case, log_path)
    record = {
        "case": case.name, "model": case.model, "run_mode": case.run_mode,
        "fp_item": case.fp_item, "batch_size": case.batch_size, "max_iter": case.max_iter,
        "num_workers": case.num_workers, "gpu_num": case.gpu_num, "nnodes": case.nnodes,
        "device": case.device, "profile": case.profile, "log_interval": case.log_interval,
        "count_flops": case.count_flops, "cudnn_benchmark": case.cudnn_benchmark,
        "cpu_affinity": list(case.cpu_affinity) if case.cpu_affinity else None,
        "crop": list(case.crop or case.default_crop or []) or None, "data_root": str(case.data_root),
        "config": str(configs.config_path(case.model)),
        "profile_window": list(case.profile_window) if case.profile_window else None,
        "tuned": list(case.tuned),
        "compile_mode": case.compile_resolved if "compile" in case.tuned else None,
        "compile_scope": case.compile_scope if "compile" in case.tuned else None,
        "tuned_proof": case.tuned_proof, "command": case.command, "train_command": shlex.join(cmd),
        "stack": case.stack, "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "env": case.env_info, "host": env.host_probe(gpu=case.profile == "gpu"),
    }
    t0 = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as fh:
        _record(fh, "case", record)
        if case.profile == "cpu":
            fh.write(f"{RECORD}note: CPU profile: no GPU in use; figures describe this CPU, "
                     "not a GPU\n")
        run = _Run(cmd, fh, verbose)
        with _HostSampler(log_path.with_name(log_path.name + "_host.jsonl")):
            rc = _run_group(run, case, stop)
        reason, kind = _reason(run, rc, case)
        result = {"exit_code": rc, "reason": reason, "failure_kind": kind,
                  "elapsed_s": round(time.monotonic() - t0, 2),
                  "host": env.host_probe(gpu=case.profile == "gpu")}
        _record(fh, "result", result)
    if result["reason"]:
        tail = "\n".join("    " + t for t in run.tail[-8:])
        print(f"[segbench] {case.name}: failed: {result['reason']}\n  last lines of the log:\n{tail}",
              file=sys.stderr)
    return result


class CaseLock:
    """An flock on <case>.lock: the same case cannot run twice at once in one log dir.

    The lock file is never removed: a file removed while locked would let the next run lock a
    fresh file under the same name while a run that opened the old one still holds that, and
    two runs of one case would write the same files. Its text names the holder while it runs."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise BadInput(f"case {self.path.stem} is already running in {self.path.parent} "
                           f"({holder}); refusing to overwrite its files") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}\n")
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        self.fh.truncate(0)    # still locked: no holder to name once it is released
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _write_bad_input(argv: list[str], message: str, environ, prog: str = "run_benchmark.sh") -> int:
    """Bad input still leaves a log and a failing speed file (when a log dir is usable). The case
    record states only what was given: ``run_mode`` as given, ``gpu_num`` the count of
    CUDA_VISIBLE_DEVICES (null when unset or empty), the knobs given."""
    from segbench import analysis
    print(f"{prog}: error: {message}", file=sys.stderr)
    log_dir = Path(environ.get("TRAIN_LOG_DIR") or os.getcwd())
    name = bad_input_name(argv, environ)
    model = _safe_name(argv[0]) if argv else "NA"
    visible = _visible_requested(environ)
    record = {"case": name, "argv": argv, "command": shlex.join(["bash", "run_benchmark.sh", *argv]),
              "run_mode": argv[1] if len(argv) > 1 else None, "gpu_num": len(visible) if visible else None,
              "knobs": _given(environ)}
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / name
        with open(log, "w", encoding="utf-8") as fh:
            _record(fh, "case", record)
            _record(fh, "result", {"exit_code": 2, "reason": f"bad input: {message}",
                                   "failure_kind": failure.OTHER, "elapsed_s": 0.0})
        res = analysis.analyze(log, model)
        analysis.write_outputs(res, log_dir / f"{name}_speed")
    except OSError as exc:
        print(f"{prog}: error: could not write the failure record in {log_dir}: "
              f"{exc.strerror or exc}", file=sys.stderr)
    return 2


def interrupted(signum: int) -> str:
    return f"interrupted by {signal.Signals(signum).name}"


def _install_handlers(stop: dict) -> dict:
    """Catch INTERRUPTS: note the first signal and end the run's process group, with the signal
    as received, if it runs (run_once checks for a signal noted before its group started). A
    signal the launcher was started ignoring (nohup's SIGHUP) stays ignored. -> the old handlers."""
    def on_signal(signum, _frame):
        if stop["signal"] is None:
            stop["signal"] = signum
        run = stop["run"]
        if run is not None and run.proc is not None:
            threading.Thread(target=run.end_group, args=(interrupted(signum), signum), daemon=True).start()

    return {s: signal.signal(s, on_signal) for s in INTERRUPTS
            if signal.getsignal(s) is not signal.SIG_IGN}


def _check_ready(case: Case, environ) -> None:
    """Everything that must hold before a case runs (else BadInput): the stack, the devices, the
    port, the data, the log dir."""
    mmseg0 = case.stack == legacy.LEGACY
    problems = legacy.stack_problems(environ) if mmseg0 else env.stack_problems()
    if problems:
        raise BadInput(f"the stack is not ready ({'; '.join(problems)}); set it up with "
                       f"{legacy.SETUP_HINT if mmseg0 else env.SETUP_HINT}")
    need = configs.missing_needs(case.model)
    if need:
        raise BadInput(need)
    resolve_devices(case, environ)
    resolve_port(case, environ)
    _check_data(case)
    case.log_dir.mkdir(parents=True, exist_ok=True)


def _config_layout(case: Case) -> str | None:
    """The dataset layout of the case's mmseg 1.x config, which must be trainable."""
    try:
        cfg = configs.load(case.model)
        configs.check_trainable(cfg, configs.TrainSettings(
            case.model, case.batch_size, case.max_iter, case.num_workers,
            data_root=str(case.data_root) if case.data_root else None))
    except (ValueError, KeyError) as exc:
        raise BadInput(str(exc)) from None
    return configs.dataset_layout(cfg)


def _check_data(case: Case) -> None:
    """The data root holds the layout the model's config trains on (Cityscapes or ADE20K); with no
    DATA_ROOT, the default root of that layout. The mmseg0 stack's configs are mmseg 0.30's (no
    mmengine config to load: its launcher may run in the legacy environment, which has none)."""
    from segbench import data
    layout = legacy.LAYOUT if case.stack == legacy.LEGACY else _config_layout(case)
    if case.data_root is None:
        case.data_root = env.DEFAULT_ADE20K if layout == "ade20k" else env.DEFAULT_DATA
    try:
        found = data.check(case.data_root)["layout"]
    except data.DataError as exc:
        raise BadInput(f"{exc}; prepare data with {env.SETUP_HINT} or set DATA_ROOT") from None
    if layout and found != layout:
        raise BadInput(f"{case.data_root} holds {found} data but {case.label} trains on {layout}; "
                       "set DATA_ROOT to a tree of that layout")


def own_files(case: Case) -> list[Path]:
    """The files an earlier run of this case left in its log dir: the log, REPEAT's ``.rep<i>``
    logs, their per-iteration files, profiler traces, host samples, speed file, sidecar and
    TUNED_PROOF's files. Never another case's file, the lock or a work dir; on node R > 0 of a
    multi-node run only its own ``<case>.node<R>`` files (node 0's are node 0's)."""
    stem = re.escape(case.path().name)
    own = re.compile(rf"{stem}(\.rep\d+)?(_iters\.rank\d+\.(jsonl|trace\.json)|_host\.jsonl)?"
                     rf"|{stem}(_speed|_stats\.json|_equivalence\.(json|log))")
    return sorted(p for p in case.log_dir.iterdir() if own.fullmatch(p.name) and p.is_file())


def final_line(case: Case, res) -> str:
    """The console's last word on a case. A flagged case (the sidecar's ``flagged``; where absent,
    any warning) says so there, then its warnings one per line."""
    warnings = [str(w) for w in res.stats.get("warnings") or []]
    status = "passed" if res.ok else f"FAILED ({res.reason})"
    if res.stats.get("flagged", bool(warnings)):
        n = len(warnings)
        status += f" (FLAGGED: {n} warning{'s' if n != 1 else ''})" if n else " (FLAGGED)"
    line = (f"[segbench] {case.name}: {status}: FINAL_RESULT {res.speed['FINAL_RESULT']} images/s "
            f"-> {case.path('_speed')}")
    return "\n".join([line, *("    " + w for w in warnings)])


def main(argv: list[str], environ=os.environ, prog: str = "run_benchmark.sh") -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    stop: dict = {"run": None, "signal": None}
    old = _install_handlers(stop)   # first: a signal during the probes below still ends the case
    try:
        try:
            case = parse_case(argv, environ)
            _check_ready(case, environ)
        except BadInput as exc:
            message = f"{exc}; {usage(prog)}" if exc.usage else str(exc)
            return _write_bad_input(argv, message, environ, prog)
        return _run_case(case, argv, environ, stop, prog)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _banner(case: Case) -> str:
    label = "GPU" if case.profile == "gpu" else "CPU PROFILE (no GPU)"
    pinned = case.cpu_affinity and f"CPUs {env.cpu_ranges(case.cpu_affinity)} (CPU_AFFINITY), "
    runtime = case.env_info.get("runtime_env") or {}   # knobs.RUNTIME_VARS, set as the case runs
    return (f"[segbench] {case.name}: {label}, {case.gpu_num} process(es), "
            f"crop {'x'.join(map(str, case.crop or case.default_crop or ('?',)))}, "
            + ("" if case.cudnn_benchmark else "cuDNN benchmark OFF (CUDNN_BENCHMARK), ")
            + (pinned or "") + "".join(f"{k}={v}, " for k, v in runtime.items())
            + f"log {case.path()}")


def _run_case(case: Case, argv: list[str], environ, stop: dict, prog: str) -> int:
    from segbench import analysis
    case.command = shlex.join(["bash", "run_benchmark.sh", *argv])
    if case.cpu_affinity:
        # the launcher's own affinity: every process it starts (torchrun, ranks, loader workers)
        # inherits it; nothing here is multi-threaded yet, and no fork needs a preexec hook
        os.sched_setaffinity(0, case.cpu_affinity)
    case.env_info = legacy.collect(environ) if case.stack == legacy.LEGACY else env.collect()
    verbose = environ.get("SEGBENCH_VERBOSE", "") in ("1", "true")
    try:
        with CaseLock(case.path(".lock")):
            print(_banner(case), flush=True)
            for f in own_files(case):    # every run starts from a clean set of its own files
                f.unlink(missing_ok=True)
            if case.tuned_proof and case.node_rank == 0:
                _prove(case, verbose, stop)
            res, run_reason = _runs(case, verbose, stop)
            if case.node_rank == 0:
                analysis.write_outputs(res, case.path("_speed"))
                _record_history(case, res)
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 1
    if stop["signal"] is not None:
        print(final_line(case, res), flush=True)
        return EXIT_INTERRUPTED
    if case.node_rank:   # its ranks log no windows: the run itself decides; node 0 has the figure
        print(f"[segbench] {case.name}: node {case.node_rank} of {case.nnodes}: "
              + (f"FAILED ({run_reason})" if run_reason else "ran; node 0 writes the case's figure"),
              flush=True)
        return 1 if run_reason else 0
    print(final_line(case, res), flush=True)
    return 0 if res.ok else 1


def _prove(case: Case, verbose: bool, stop: dict) -> None:
    """TUNED_PROOF: segbench.equivalence on the case's switches, before it trains (segbench.proof)."""
    print(f"[segbench] {case.name}: checking the tuned step -> {case.path('_equivalence.log')}", flush=True)
    with open(case.path("_equivalence.log"), "w", encoding="utf-8") as fh:
        run = _Run(proof.command(case, case.path("_equivalence.json")), fh, verbose)
        rc = _run_group(run, case, stop)
    proof.settle(case.path("_equivalence.json"), rc, run.tail, run.stop_reason)


def _record_history(case: Case, res) -> None:
    """One row in the log dir's results database (segbench.history); a database that cannot be
    written is said, never a reason to fail the case."""
    from segbench import history
    try:
        history.append(case.log_dir, res.stats, case.settings(),
                       _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    except Exception as exc:   # sqlite3.Error, OSError: the JSON files are the record
        print(f"[segbench] {case.name}: results database not written: {exc}", file=sys.stderr)


def _runs(case: Case, verbose: bool, stop: dict):
    """The case's run (REPEAT times, stopping at a failure or a signal) -> its analysis Result and
    the last run's own failure reason (None: it ran to the end)."""
    from segbench import analysis
    runs = []
    for i in range(1, case.repeat + 1):
        log = case.path() if case.repeat == 1 else case.path(f".rep{i}")
        result = run_once(case, log, verbose, stop)
        runs.append((log, analysis.analyze(log, case.label)))
        if stop["signal"] is not None or result["reason"]:
            break
    if case.repeat == 1:
        return runs[0][1], result["reason"]
    res = analysis.analyze(_settle_repeats(case, runs), case.label)
    res.stats["repeats"] = analysis.summarize_repeats([{**r.speed, "stats": r.stats} for _, r in runs])
    return res, result["reason"]


def _settle_repeats(case: Case, runs: list) -> Path:
    """With REPEAT=N the contract's log is the median run's (FINAL_RESULT = the median run)."""
    import shutil
    ok = [(log, r) for log, r in runs if r.ok]
    if len(ok) < len(runs) or not ok:
        chosen = runs[-1][0]  # a failed repeat fails the case: keep its log as the evidence
    else:
        ranked = sorted(ok, key=lambda lr: lr[1].speed["FINAL_RESULT"])
        chosen = ranked[(len(ranked) - 1) // 2][0]
    shutil.copyfile(chosen, case.path())
    for pattern in ("_iters.rank*.jsonl", "_host.jsonl"):
        for f in case.log_dir.glob(glob.escape(chosen.name) + pattern):
            shutil.copyfile(f, case.log_dir / f.name.replace(chosen.name, case.name, 1))
    return case.path()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
