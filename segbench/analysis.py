"""Turn a training log into the contract's speed file and the stats sidecar.

The headline figure keeps the 2021 seed's formula exactly::

    FINAL_RESULT = round(batch_size * gpu_num / mean(window time), 3)

over the *training* log windows of one run, skipping the first ``SKIP_WINDOWS`` (4) of them.
A window is one training log line (every ``log_interval`` iterations); its ``time`` is the
logger's running mean over the window. See ``docs/FORMATS.md`` for the file formats.
segbench.logparse reads the log (the formats understood, launches and runs, the log's own batch
size and GPU count evidence), segbench.iterfiles the per-iteration and host files beside it,
segbench.stats computes the statistics; this module decides the figure, the failure and the
warnings, builds the sidecar and writes the files (its CLI is analysis_log.py).

The first ``SKIP_WINDOWS`` windows are skipped by position, whatever their value; of the rest, a
window whose time is not a finite positive number is ignored and counted (``ignored_bad``). The
run fails (FINAL_RESULT 0, JOB_FAIL_FLAG 1, reason in the sidecar) when its result record says so
(a reason or a non-zero exit code), when it has a ``case:`` record but no ``result:`` record, when
a log without records shows a Python traceback (``crashed: <the first exception line>``; which
tracebacks count: segbench.logparse), when a loss is NaN or infinite (``loss not finite from
iteration N``: the first such iteration of any rank's per-iteration file when they hold losses,
else the first such window's iteration), when no window is left, when the batch size or the GPU
count is unknown, or when the figure rounds to 0 or is not finite. A failed run's figure is kept
as ``partial_images_per_s``.

Launches (segbench.logparse splits them). The LAST launch decides, through its last run: when it
crashed, with or without windows, the case failed, whatever an earlier launch measured. Earlier
launches are listed in the sidecar's ``earlier_launches`` (their own figure and reason, by the same
rules), never used for FINAL_RESULT.

Batch size (per process): the run's ``case:`` record > ``batch_size`` argument > the log's config
dump (segbench.logparse.config_batch_size); unknown fails the analysis.
GPU count (world size) and run mode: a log with a ``case:`` record states the record's
``gpu_num`` and ``run_mode`` exactly as recorded (a bad-input record may hold ``"xp"`` or null),
or the argument where the record lacks the key, never an inferred value; a recorded GPU count that
is not a positive int fails the analysis. A log without a record: argument > the log's own
evidence (segbench.logparse.log_gpu_num: its stated count > the ranks it shows > 1 with a
warning), except that a distributed log with no evidence fails the analysis (never a silent 1);
run mode: argument > ``sp`` when the GPU count is 1, else ``mp``.

Statistics (segbench.stats). The sidecar's ``per_iter`` block comes from the per-iteration files
(segbench.iterfiles), warm-up = the first ``WARMUP_LOG_INTERVALS * log_interval`` iterations (the
record's ``log_interval``, else ``DEFAULT_LOG_INTERVAL``). The ``window`` block gives the same
statistics over the measured log windows (:func:`iteration_stats` with the skipped windows as
warm-up), for every log.

Warnings. ``warnings`` (a list of one-line strings, each starting with a stable keyword, and
``flagged`` = it is not empty) hold the guesses made and every sign that the figure may not be
trusted; they never change JOB_FAIL_FLAG. ``gpu count``: a guessed or conflicting GPU count;
``host load``: a 1-minute load average above the host's CPU count (``env.host_cpus``) in the case
or result record's ``host`` probe; ``steal``: ``host.during.cpu_steal_share`` above
``STEAL_THRESHOLD``; ``not steady``: the per-iteration steady-state check failed (the window-level
one for logs without per-iteration files; ``STEADY_THRESHOLD``, in segbench.stats); ``noisy``: the
per-iteration CV above ``NOISY_CV`` (the window CV above ``NOISY_WINDOW_CV`` without per-iteration
files); ``host slowed``: the result record's ``cpu_mloops_per_s`` below ``HOST_SLOWED_RATIO`` times
the case record's; ``profiler``: the case record's ``profile_window`` overlaps the measured
iterations (after the warm-up).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segbench import energy, failure, paddle, proof
from segbench.iterfiles import (RankFile, flops_block, measured_host_use, peak_memory,
                                per_iter_block, rank_files, warmup_block)
from segbench.logparse import (Run, config_batch_size, launch_ends, log_gpu_num, measured_run,
                               read_log, split_runs)
from segbench.stats import STEADY_THRESHOLD, iteration_stats
from segbench.values import finite, good_time, one_line, pos_int
# Re-exported: benchmarks/ scripts, segbench.launch and the tests reach these through here.
from segbench.iterfiles import host_during as host_during
from segbench.logparse import stamped_windows as stamped_windows
from segbench.stats import paired_ratio_ci95 as paired_ratio_ci95
from segbench.stats import ratio_ci95 as ratio_ci95
from segbench.stats import summarize_repeats as summarize_repeats
from segbench.stats import t95 as t95


PROG = "analysis_log.py"
SKIP_WINDOWS = 4
DEFAULT_LOG_INTERVAL = 10
WARMUP_LOG_INTERVALS = 4
# Warning thresholds (see the module doc), set from the lent H200 hosts' healthy runs of
# 2026-11-29 to 2026-12-01 (benchmarks/h200*): per-iteration CV 0.02-0.51 (stock fastscnn is
# data-loader bound: some iterations wait for a batch, most do not), window CV 0.013-0.16, the
# host's CPU probe at the end 0.54-1.84x the start's, no steal; a CPU suite on a busy 2-core host
# reached a per-iteration CV of 0.94.
NOISY_CV = 0.60
NOISY_WINDOW_CV = 0.25
STEAL_THRESHOLD = 0.02
HOST_SLOWED_RATIO = 0.5
MISSION_NAME = "图像分割"
UNIT = "images/s"
SPEED_KEYS = ("log_file", "model_name", "mission_name", "direction_id", "run_mode", "index",
              "gpu_num", "FINAL_RESULT", "JOB_FAIL_FLAG", "UNIT")
STATS_SCHEMA = 1


@dataclass(frozen=True)
class Result:
    """Outcome of :func:`analyze`.

    ``speed`` is the 10-key speed dict, ``stats`` the sidecar dict, ``reason`` why the run failed
    (None when it passed), ``exit_code`` what the CLI exits with (0 passed, 1 failed analysis,
    2 unreadable log) and ``warnings`` one-line notes about guesses made and signs that the figure
    may not be trusted (also in ``stats``; see the module doc).
    """

    speed: dict[str, Any]
    stats: dict[str, Any]
    reason: str | None
    exit_code: int
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the run passed and FINAL_RESULT holds its figure."""
        return self.reason is None


# ----------------------------------------------------------------------------- analysis

def _host_block(case: Mapping[str, Any], result: Mapping[str, Any] | None,
                log_path: str, ranks: list[RankFile], warmup: int) -> dict | None:
    """The host's state before and after the run (segbench.env.host_probe), from the case and
    result records, and ``during``: its CPU use over the measured iterations (segbench.iterfiles'
    :func:`host_during`, from ``<log>_host.jsonl``); None for logs with neither."""
    before = case.get("host") if isinstance(case.get("host"), dict) else None
    after = result.get("host") if isinstance(result, Mapping) else None
    after = after if isinstance(after, dict) else None
    during = measured_host_use(log_path, ranks, warmup)
    if not (before or after or during):
        return None
    return {"before": before, "after": after, "during": during}


def _record_failure(run: Run) -> str | None:
    """Why the run's harness record says it failed, or None."""
    if run.result_malformed:
        return "malformed result record"
    if run.result is None:
        return "incomplete run: no result record" if run.case is not None else None
    exit_code, reason = run.result.get("exit_code"), run.result.get("reason")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        return "malformed result record"
    if reason is not None:
        return one_line(str(reason))
    if exit_code:
        return f"exit code {exit_code}"
    return None


def _window_block(run: Run, images: int | None) -> tuple[dict[str, Any], float | None]:
    """The sidecar's ``window`` block -- :func:`iteration_stats` over the windows, the skipped ones
    as warm-up -- and the window images/s figure (None if unknown)."""
    times = [w.time for w in run.windows]
    counted = times[SKIP_WINDOWS:]
    good = [t for t in counted if good_time(t)]
    block: dict[str, Any] = {"n": len(good), "skipped": len(times) - len(counted),
                             "ignored_bad": len(counted) - len(good), "mean_time": None,
                             "median_time": None, "std_time": None, "cv": None,
                             "images_per_s": None, "images_per_s_median": None,
                             "images_per_s_ci95": None, "steady": None}
    if not good:
        return block, None
    stats = iteration_stats(times, None, SKIP_WINDOWS, images or 0, 1)
    median = stats["median"]
    block.update(mean_time=stats["mean"], median_time=median, std_time=stats["std"],
                 cv=stats["cv"], images_per_s=stats["images_per_s"],
                 images_per_s_median=finite(images / median) if images and median else None,
                 images_per_s_ci95=stats["images_per_s_ci95"], steady=stats["steady"])
    return block, stats["images_per_s"]


def _tuned_switches(case: Mapping[str, Any]) -> list[str]:
    value = case.get("tuned")
    return [str(x) for x in value] if isinstance(value, list) else []


def _last_loss(ranks: list[RankFile], run: Run) -> float | None:
    """The last loss logged (per-iteration file first); None when it is not finite."""
    losses = [loss for loss in ranks[0].losses if loss is not None] if ranks else []
    losses = losses or [w.loss for w in run.windows if w.loss is not None]
    return finite(losses[-1]) if losses else None


def _nonfinite_loss(ranks: list[RankFile], run: Run) -> str | None:
    """``loss not finite from iteration N``: the first NaN/inf loss of any rank's per-iteration
    file when they hold losses, else of the log's windows; None when every loss is finite."""
    if any(loss is not None for r in ranks for loss in r.losses):
        bad = [i for r in ranks for i, loss in zip(r.iters, r.losses)
               if loss is not None and not math.isfinite(loss)]
        return f"loss not finite from iteration {min(bad)}" if bad else None
    for index, w in enumerate(run.windows, 1):
        if w.loss is not None and not math.isfinite(w.loss):
            where = (f"window {index}" if w.key is None else f"iteration {w.key[1]}"
                     if w.key[0] == 0 else f"epoch {w.key[0]} iteration {w.key[1]}")
            return f"loss not finite from {where}"
    return None


def _speed(log_name: str, model_name: str, run_mode: Any, gpu_num: Any,
           final: float | None) -> dict[str, Any]:
    """The speed file's 10 keys, in order; ``final`` None marks a failed run."""
    return {"log_file": log_name, "model_name": model_name, "mission_name": MISSION_NAME,
            "direction_id": 0, "run_mode": run_mode, "index": 1, "gpu_num": gpu_num,
            "FINAL_RESULT": 0.0 if final is None else final,
            "JOB_FAIL_FLAG": 1 if final is None else 0, "UNIT": UNIT}


def _check_argument(name: str, value: int | None) -> None:
    if value is not None and pos_int(value) is None:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class _Settings:
    """A run's batch size and GPU count for the figure, and the ``gpu_num`` / ``run_mode`` its
    speed file states (a record's exactly as recorded), with the warnings of guessing them."""

    bs: int | None
    gpus: int | None
    gpu_num: Any
    run_mode: Any
    warnings: tuple[str, ...]

    @property
    def images(self) -> int | None:
        return self.bs * self.gpus if self.bs and self.gpus else None


def _settings(run: Run, batch_size: int | None, gpu_num: int | None,
              run_mode: str | None) -> _Settings:
    """See the module doc: a record's values as recorded (arguments only for missing keys), else
    arguments and the log's evidence."""
    case = run.case
    bs = pos_int((case or {}).get("batch_size")) or batch_size or config_batch_size(run)
    if case is not None:
        stated = case.get("gpu_num", gpu_num)    # a key present, even as null, wins
        return _Settings(bs, pos_int(stated), stated, case.get("run_mode", run_mode), ())
    gpus, warning = (gpu_num, None) if gpu_num is not None else log_gpu_num(run)
    mode = run_mode or (None if gpus is None else "sp" if gpus == 1 else "mp")
    return _Settings(bs, gpus, gpus, mode, (warning,) if warning else ())


def _figure(window_ips: float | None) -> float | None:
    return round(window_ips, 3) if window_ips is not None and math.isfinite(window_ips) else None


def _failure(run: Run, s: _Settings, window: Mapping[str, Any], window_ips: float | None,
             ranks: list[RankFile]) -> str | None:
    """Why the run failed (see the module doc), or None."""
    reason = _record_failure(run)
    if reason is None and run.case is None and run.crashes:
        reason = f"crashed: {run.crashes[0]}"
    reason = reason or _nonfinite_loss(ranks, run)
    if reason is None and not run.windows:
        reason = "no training windows"
    if reason is None and not window["n"]:
        reason = (f"no usable training window after skipping the first {SKIP_WINDOWS} "
                  f"({len(run.windows)} found, {window['ignored_bad']} ignored as bad)")
    if reason is None and s.bs is None:
        reason = ("unknown batch size: no case record, --batch-size, train_dataloader batch_size "
                  "or samples_per_gpu in the log")
    if reason is None and s.gpus is None:
        reason = (f"unknown gpu count: the case record says gpu_num {s.gpu_num!r}"
                  if run.case is not None else
                  "unknown gpu count: a distributed log (Distributed training: True) with no GPU "
                  "number, gpu_ids or ranks in it; pass --gpu-num")
    if reason is None and not _figure(window_ips):
        reason = (f"implausible throughput {window_ips!r} images/s "
                  f"(mean window time {window['mean_time']} s)")
    return reason


def _earlier_launches(runs: list[Run], batch_size: int | None, gpu_num: int | None,
                      run_mode: str | None) -> list[dict[str, Any]]:
    """The launches before the last one (each through its last run): their own figure, window
    count and failure reason, by the same rules. Launches with no windows, record or crash (text
    before the first launch) are left out."""
    out = []
    for run in launch_ends(runs)[:-1]:
        if not (run.windows or run.case is not None or run.result is not None or run.crashes):
            continue
        s = _settings(run, batch_size, gpu_num, run_mode)
        window, ips = _window_block(run, s.images)
        name = (run.case or {}).get("case")
        out.append({"case": name if isinstance(name, str) else None, "images_per_s": _figure(ips),
                    "windows": len(run.windows), "gpu_num": s.gpus, "batch_size": s.bs,
                    "reason": _failure(run, s, window, ips, [])})
    return out


def _spread_warnings(window: Mapping[str, Any], per_iter: Mapping[str, Any] | None) -> list[str]:
    """``not steady`` and ``noisy``: per-iteration checks where the files exist, else windows
    (also for a file synchronised once per window: its ``per_iter`` counts windows)."""
    per_window = bool(per_iter) and (per_iter.get("synced_every") or 1) > 1
    source, limit = ("per-iteration", NOISY_CV) if per_iter and not per_window else \
        ("window", NOISY_WINDOW_CV)
    block = per_iter or window
    steady, cv, out = block.get("steady"), block.get("cv"), []
    if steady and not steady["ok"]:
        drift = steady["drift"]
        change = "not finitely" if drift is None else f"{drift:+.1%}"
        out.append(f"not steady: {source} times drifted {change} from the first half of the "
                   f"measured ones to the second (threshold {STEADY_THRESHOLD:.0%})")
    if cv is not None and cv > limit:
        out.append(f"noisy: {source} CV {cv:.0%} (threshold {limit:.0%})")
    return out


def _load1(probe: Mapping[str, Any] | None) -> float | None:
    load = (probe or {}).get("loadavg")
    return finite(load[0]) if isinstance(load, list) and load else None


def _host_warnings(host: Mapping[str, Any] | None, cpus: int | None) -> list[str]:
    """``host load``, ``steal`` and ``host slowed`` from the sidecar's ``host`` block."""
    if not host:
        return []
    before, after, during = host["before"] or {}, host["after"] or {}, host["during"] or {}
    out = []
    high = [f"{load:g} at the {when}" for when, load in (("start", _load1(before)),
                                                          ("end", _load1(after)))
            if cpus and load is not None and load > cpus]
    if high:
        out.append(f"host load: 1-minute load average {' and '.join(high)}, above the host's "
                   f"{cpus} CPUs")
    steal = finite(during.get("cpu_steal_share"))
    if steal is not None and steal > STEAL_THRESHOLD:
        out.append(f"steal: the hypervisor took {steal:.1%} of the CPUs' time over the measured "
                   f"iterations (threshold {STEAL_THRESHOLD:.0%})")
    start, end = finite(before.get("cpu_mloops_per_s")), finite(after.get("cpu_mloops_per_s"))
    if start and start > 0 and end is not None and end < HOST_SLOWED_RATIO * start:
        out.append(f"host slowed: its CPU probe ran {end:g} M loops/s at the end against {start:g} "
                   f"at the start ({end / start:.2f}x; threshold {HOST_SLOWED_RATIO}x)")
    return out


def _profile_window(case: Mapping[str, Any]) -> list[int] | None:
    value = case.get("profile_window")
    if (isinstance(value, list) and len(value) == 2 and all(pos_int(v) for v in value)
            and value[0] <= value[1]):
        return value
    return None


def _last_iteration(ranks: list[RankFile], run: Run, case: Mapping[str, Any]) -> int | None:
    """The last iteration the run reached: per-iteration file > last window > ``max_iter``."""
    if ranks and ranks[0].iters:
        return ranks[0].iters[-1]
    if run.keys and run.keys[-1][0] == 0:
        return run.keys[-1][1]
    return pos_int(case.get("max_iter"))


def _profiler_warning(window: list[int] | None, warmup: int, last: int | None) -> list[str]:
    """``profiler``: the profiler window's part inside the measured iterations, if any."""
    if window is None:
        return []
    first, end = max(window[0], warmup + 1), window[1] if last is None else min(window[1], last)
    if first > end:
        return []
    return [f"profiler: iterations {first}-{end} of the measured ones ran under torch.profiler"]


def analyze(log_path: str | os.PathLike[str], model_name: str, *, batch_size: int | None = None,
            gpu_num: int | None = None, run_mode: str | None = None) -> Result:
    """Analyse one log: the speed dict, the stats sidecar dict and the failure reason if any.

    ``batch_size`` (per process), ``gpu_num`` (world size) and ``run_mode`` (``sp``|``mp``) are the
    command-line values; the log's ``[segbench] case:`` record overrides them. Never raises for
    any log content; an unreadable log gives a failed Result with ``exit_code`` 2. Raises
    ValueError only for invalid arguments.
    """
    _check_argument("batch_size", batch_size)
    _check_argument("gpu_num", gpu_num)
    if run_mode not in (None, "sp", "mp"):
        raise ValueError(f"run_mode must be 'sp' or 'mp', got {run_mode!r}")
    log_path = os.fspath(log_path)
    try:
        runs, read_error = split_runs(read_log(log_path)), None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        runs, read_error = [Run()], f"cannot read log: {getattr(exc, 'strerror', None) or exc}"
    run = measured_run(runs)
    s = _settings(run, batch_size, gpu_num, run_mode)
    window, window_ips = _window_block(run, s.images)
    ranks = [] if read_error else rank_files(log_path)
    reason = read_error or _failure(run, s, window, window_ips, ranks)
    final = _figure(window_ips)
    speed = _speed(os.path.basename(log_path), model_name, s.run_mode, s.gpu_num,
                   final if reason is None else None)
    stats = _sidecar(log_path, model_name, run, s, window, window_ips, ranks, speed, reason)
    stats["earlier_launches"] = _earlier_launches(runs, batch_size, gpu_num, run_mode)
    exit_code = 0 if reason is None else 2 if read_error else 1
    return Result(speed=speed, stats=stats, reason=reason, exit_code=exit_code,
                  warnings=tuple(stats["warnings"]))


def _sidecar(log_path: str, model_name: str, run: Run, s: _Settings, window: dict[str, Any],
             window_ips: float | None, ranks: list[RankFile], speed: Mapping[str, Any],
             reason: str | None) -> dict[str, Any]:
    """The stats sidecar (see docs/FORMATS.md), its warnings included."""
    case = run.case or {}
    warmup = WARMUP_LOG_INTERVALS * (pos_int(case.get("log_interval")) or DEFAULT_LOG_INTERVAL)
    meta = ranks[0].meta if ranks else {}
    per_iter = per_iter_block(ranks, warmup, (s.bs, s.gpus) if s.images else None, window_ips)
    device = case.get("device") or meta.get("device")
    mean_time = per_iter["mean"] if per_iter else window["mean_time"]
    precision = meta.get("precision") or case.get("fp_item")
    host = _host_block(case, run.result, log_path, ranks, warmup)
    env_info = case.get("env") if isinstance(case.get("env"), dict) else {}
    profile_window = _profile_window(case)
    proven, proof_warnings = proof.verdict(log_path, case)
    warnings = [*s.warnings, *_spread_warnings(window, per_iter), *proof_warnings,
                *_host_warnings(host, pos_int(env_info.get("host_cpus"))),
                *_profiler_warning(profile_window, warmup, _last_iteration(ranks, run, case))]
    log_name = os.path.basename(log_path)
    case_name = case.get("case") if isinstance(case.get("case"), str) else None
    final = _figure(window_ips)
    median = window["images_per_s_median"]
    return {"schema": STATS_SCHEMA, "case": case_name or log_name, "model": model_name,
            "run_mode": s.run_mode, "fp_item": case.get("fp_item"), "batch_size": s.bs,
            "gpu_num": s.gpu_num, "nnodes": pos_int(case.get("nnodes")), "device": device,
            "profile": case.get("profile"),
            "run_seconds": finite((run.result or {}).get("elapsed_s")),
            "FINAL_RESULT": speed["FINAL_RESULT"], "JOB_FAIL_FLAG": speed["JOB_FAIL_FLAG"],
            "images_per_s_median": round(median, 3) if median is not None else None,
            "reason": reason, "failure_kind": failure.kind_of(run.result, reason),
            "partial_images_per_s": final if reason is not None else None,
            "flagged": bool(warnings), "warnings": warnings,
            "tuned": _tuned_switches(case), "equivalence": proven,
            "compile_mode": case.get("compile_mode"),
            "compile_scope": case.get("compile_scope"),
            "cudnn_benchmark": case.get("cudnn_benchmark"), "cpu_affinity": case.get("cpu_affinity"),
            "profile_window": profile_window, "window": window, "per_iter": per_iter,
            "warmup": warmup_block(ranks, warmup),
            "memory": {"peak_mb_per_rank": peak_memory(ranks), "peak_from": meta.get("peak_from"),
                       "device_index_per_rank": [r.meta.get("device_index") for r in ranks] or None},
            "torch_threads_per_rank": [r.meta.get("torch_threads") for r in ranks] or None,
            "flops": flops_block(meta, s.gpus, mean_time, device, precision),
            "energy": energy.summarize([(r.stamps, r.energies) for r in ranks], warmup, s.images,
                                       meta.get("energy_reason") or (None if ranks else
                                                                     "no per-iteration files")),
            "gpu_busy": energy.summarize_busy([r.busy for r in ranks], warmup),
            "last_loss": _last_loss(ranks, run), "env": case.get("env"), "host": host,
            "command": case.get("command"), "log_file": log_name}


# ----------------------------------------------------------------------------- output

def speed_path_to_stats_path(speed_path: str | os.PathLike[str]) -> str:
    """``<dir>/<case>_stats.json`` for ``<dir>/<case>_speed`` (no ``_speed`` suffix: whole name)."""
    directory, name = os.path.split(os.fspath(speed_path))
    case = name[:-len("_speed")] if name.endswith("_speed") and name != "_speed" else name
    return os.path.join(directory, case + "_stats.json")


def _discard(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as one line of UTF-8 JSON (non-ASCII kept) to ``path`` atomically.

    The text goes to a temporary file in the same directory, is flushed to disk and renamed over
    ``path``; readers see the old file or the whole new one. Mode 0644. On failure the temporary
    file is removed and OSError is raised with ``filename`` = ``path`` (ValueError for NaN or
    infinite numbers in ``obj``).
    """
    path = os.fspath(path)
    data = (json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n").encode(
        "utf-8", errors="backslashreplace")
    directory, name = os.path.split(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OSError(exc.errno, exc.strerror or str(exc), path) from exc
    except BaseException:
        _discard(tmp)
        raise


def write_outputs(result: Result, speed_path: str | os.PathLike[str]) -> None:
    """Write ``result``'s speed file to ``speed_path``, its stats sidecar and the later PaddlePaddle
    benchmark's 14-key record (segbench.paddle, ``<case>_paddle.json``) beside it.

    All are written atomically; raises OSError whose ``filename`` is the file not written.
    """
    write_json_atomic(speed_path, result.speed)
    stats_path = speed_path_to_stats_path(speed_path)
    write_json_atomic(stats_path, result.stats)
    write_json_atomic(stats_path[:-len("_stats.json")] + paddle.SUFFIX,
                      paddle.result(result.stats, result.stats.get("nnodes") or 1,
                                    result.stats.get("run_seconds")))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Write the speed file and stats sidecar for one training log.")
    parser.add_argument("model_name", metavar="MODEL_NAME")
    parser.add_argument("log_file", metavar="LOG_FILE")
    parser.add_argument("speed_file", metavar="SPEED_FILE")
    parser.add_argument("--batch-size", type=_positive_int, help="per-process batch size")
    parser.add_argument("--gpu-num", type=_positive_int, help="world size")
    parser.add_argument("--run-mode", choices=("sp", "mp"))
    return parser


def _print_json(obj: Any) -> None:
    try:
        print(json.dumps(obj, ensure_ascii=False))
    except UnicodeEncodeError:
        print(json.dumps(obj))


def main(argv: Sequence[str]) -> int:
    """CLI entry: analyse, write the speed file and sidecar; exit 0 passed, 1 failed, 2 I/O error.

    On success the speed JSON goes to stdout (warnings to stderr); on failure one line
    ``analysis_log.py: <model> <log>: <reason>`` goes to stderr.
    """
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    result = analyze(args.log_file, args.model_name, batch_size=args.batch_size,
                     gpu_num=args.gpu_num, run_mode=args.run_mode)
    label = one_line(f"{args.model_name} {args.log_file}")
    if result.reason is not None:
        print(f"{PROG}: {label}: {result.reason}", file=sys.stderr)
    try:
        write_outputs(result, args.speed_file)
    except OSError as exc:
        print(f"{PROG}: cannot write {one_line(str(exc.filename))}: {exc.strerror}",
              file=sys.stderr)
        return 2
    if result.ok:
        for warning in result.warnings:
            print(f"{PROG}: warning: {label}: {warning}", file=sys.stderr)
        _print_json(result.speed)
    return result.exit_code
