"""The files a run leaves beside its log: the per-iteration files and the host's CPU samples.

Per-iteration files (``<log basename>_iters.rank<R>.jsonl`` next to the log, the timing hook's)
give the sidecar's ``per_iter``, ``warmup``, ``memory`` and ``flops`` blocks, from the lowest rank
present (rank 0 normally), after the warm-up: the first iterations by position (how many is
segbench.analysis's). In such a file a ``meta`` line or an iteration number that does not
increase starts over (the latest run wins). FLOP utilisation is per GPU: one process's FLOPs per
iteration / mean iteration time / one GPU's datasheet peak. ``<log>_host.jsonl`` (the launcher's
cumulative /proc/stat samples) gives the host's CPU use over the measured iterations, timed by the
lowest rank's per-iteration stamps (:func:`measured_host_use`). Unreadable files and lines that
are not JSON objects are skipped.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segbench.stats import iteration_stats, mean_of, sample_std
from segbench.values import Constant, as_loss, finite, good_time, number, parse_json, pos_int


_RANK_FILE = re.compile(r"_iters\.rank(\d{1,6})\.jsonl$")
HOST_BUSY = ("user", "nice", "system", "irq", "softirq")

# Dense datasheet peaks in TFLOP/s: (name pattern, basis label, {precision class: peak}).
# fp32 runs use the TF32 figure where the GPU has one (cuDNN convolutions use TF32 by default).
_PEAKS: tuple[tuple[re.Pattern[str], str, dict[str, float]], ...] = (
    (re.compile(r"\bH(?:100|200)\b(?!.*\b(?:PCIe|NVL)\b)", re.I), "H100/H200 SXM datasheet",
     {"tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (re.compile(r"\bA100\b", re.I), "A100 datasheet",
     {"tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (re.compile(r"\bV100\b(?!.*\bPCIe\b)", re.I), "V100 SXM2 datasheet",
     {"fp32": 15.7, "fp16": 125.0}),
)
_PEAK_LABELS = {"tf32": "dense TF32 (cuDNN convs use TF32 by default)", "bf16": "dense BF16",
                "fp16": "dense FP16", "fp32": "FP32"}


@dataclass
class RankFile:
    """The latest run of one ``_iters.rank<R>.jsonl`` file, as parallel per-iteration lists."""

    rank: int
    meta: dict[str, Any]
    iters: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    data_times: list[float | None] = field(default_factory=list)
    gap_times: list[float | None] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)   # NaN and inf kept
    mems: list[float | None] = field(default_factory=list)
    gc_times: list[float | None] = field(default_factory=list)
    gc_fulls: list[float | None] = field(default_factory=list)
    cpu_times: list[float | None] = field(default_factory=list)
    stamps: list[float | None] = field(default_factory=list)   # wall clock at each iteration's end
    energies: list[float | None] = field(default_factory=list)   # the GPU's counter, mJ (some rows)
    busy: list[float | None] = field(default_factory=list)       # the GPU's utilization, % (some rows)
    synced: list[bool | None] = field(default_factory=list)     # window_sync: synchronised after it


def _json_objects(path: str, constant: Any = None) -> list[dict] | None:
    """The JSON objects of a JSON-lines file, one per line (NaN/Infinity as None, or what
    ``constant`` makes of them; lines that are not an object skipped); None when the file cannot
    be read."""
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
    except (OSError, ValueError):   # ValueError: a NUL byte in the path
        return None
    objects = (parse_json(line, drop_constants=True, constant=constant)
               for line in text.splitlines())
    return [obj for obj in objects if isinstance(obj, dict)]


def _read_rank_file(path: str, rank: int) -> RankFile | None:
    objects = _json_objects(path, constant=Constant)
    if objects is None:
        return None
    data = RankFile(rank=rank, meta={})
    last_iter = 0
    for obj in objects:
        if obj.get("kind") == "meta":
            meta = {k: None if isinstance(v, Constant) else v for k, v in obj.items()}
            data = RankFile(rank=rank, meta=meta)
            last_iter = 0
            continue
        iteration, time = pos_int(obj.get("iter")), number(obj.get("time"))
        if obj.get("kind") != "iter" or iteration is None or time is None:
            continue
        if iteration <= last_iter:  # a re-run appended without its own meta line
            data = RankFile(rank=rank, meta=data.meta)
        last_iter = iteration
        data.iters.append(iteration)
        data.times.append(time)
        data.data_times.append(finite(obj.get("data_time")))
        data.gap_times.append(finite(obj.get("gap_time")))
        data.losses.append(as_loss(obj.get("loss")))
        data.mems.append(finite(obj.get("mem_mb")))
        data.gc_times.append(finite(obj.get("gc_time")))
        data.gc_fulls.append(finite(obj.get("gc_full")))
        data.cpu_times.append(finite(obj.get("cpu_time")))
        data.stamps.append(finite(obj.get("t")))
        data.energies.append(finite(obj.get("energy_mj")))
        data.busy.append(finite(obj.get("gpu_busy_pct")))
        data.synced.append(obj["synced"] if isinstance(obj.get("synced"), bool) else None)
    return data


def rank_files(log_path: str) -> list[RankFile]:
    """The log's readable per-iteration files, lowest rank first."""
    pattern = glob.escape(os.path.basename(log_path)) + "_iters.rank*.jsonl"
    found = []
    for path in glob.glob(os.path.join(glob.escape(os.path.dirname(log_path)), pattern)):
        match = _RANK_FILE.search(path)
        if match is not None and (data := _read_rank_file(path, int(match.group(1)))):
            found.append(data)
    return sorted(found, key=lambda data: data.rank)


def _precision_class(precision: Any) -> str | None:
    if not isinstance(precision, str):
        return None
    text = precision.lower()
    if "bf16" in text or "bfloat16" in text:
        return "bf16"
    if "fp16" in text or "float16" in text or "half" in text or "amp" in text:
        return "fp16"
    if "fp32" in text or "float32" in text or "tf32" in text:
        return "fp32"
    return None


def _peak_tflops(device_name: Any, precision: Any) -> tuple[float | None, str | None]:
    """Datasheet dense peak (TFLOP/s) and its basis for a GPU name and precision, or Nones."""
    cls = _precision_class(precision)
    if not isinstance(device_name, str) or cls is None:
        return None, None
    for pattern, basis, peaks in _PEAKS:
        if pattern.search(device_name):
            column = "tf32" if cls == "fp32" and "tf32" in peaks else cls
            if column not in peaks:
                return None, None
            return peaks[column], f"{basis}, {_PEAK_LABELS[column]}"
    return None, None


def _host_samples(log_path: str) -> list[dict]:
    """``<log>_host.jsonl``'s samples (the launcher's, segbench.launch._HostSampler), oldest
    first; [] when there is no such file."""
    samples = [obj for obj in _json_objects(log_path + "_host.jsonl") or []
               if finite(obj.get("t")) is not None
               and all(number(obj.get(k)) is not None for k in (*HOST_BUSY, "idle"))]
    return sorted(samples, key=lambda o: o["t"])


def host_during(samples: Sequence[Mapping[str, Any]], start: float,
                end: float) -> dict[str, Any] | None:
    """The host's CPU use between wall-clock seconds ``start`` and ``end``, from cumulative
    /proc/stat samples: the shares of all CPUs' time that were busy, in iowait and stolen by the
    hypervisor over the samples spanning the period (the last at or before ``start`` to the first
    at or after ``end``; the nearest inside it where the sampling began late or ended early), and
    the largest steal share of any one interval between samples in it. None without two samples
    in or around the period."""
    inside = [s for s in samples if start <= s["t"] <= end]
    before = [s for s in samples if s["t"] < start][-1:]
    after = [s for s in samples if s["t"] > end][:1]
    span = before + inside + after
    if len(span) < 2:
        return None

    def delta(a, b, keys):
        return sum(max(0, (b.get(k) or 0) - (a.get(k) or 0)) for k in keys)

    every = (*HOST_BUSY, "idle", "iowait", "steal")
    total = delta(span[0], span[-1], every)
    if total <= 0:
        return None
    steals = [delta(a, b, ("steal",)) / t for a, b in zip(span, span[1:])
              if (t := delta(a, b, every)) > 0]
    return {"samples": len(span), "seconds": finite(span[-1]["t"] - span[0]["t"]),
            "cpu_busy_share": finite(delta(span[0], span[-1], HOST_BUSY) / total),
            "cpu_iowait_share": finite(delta(span[0], span[-1], ("iowait",)) / total),
            "cpu_steal_share": finite(delta(span[0], span[-1], ("steal",)) / total),
            "cpu_steal_share_max": finite(max(steals)) if steals else None}


def _measured_span(rank: RankFile, warmup: int) -> tuple[float, float] | None:
    """Wall-clock seconds from the end of the last warm-up iteration (or the first measured
    iteration's start) to the end of the last iteration, from the per-iteration ``t`` stamps."""
    if len(rank.stamps) <= warmup or rank.stamps[-1] is None:
        return None
    first = rank.stamps[warmup - 1] if warmup > 0 else None
    if first is None:
        start = rank.stamps[warmup]
        first = None if start is None else start - rank.times[warmup]
    return None if first is None else (first, rank.stamps[-1])


def measured_host_use(log_path: str, ranks: list[RankFile], warmup: int) -> dict[str, Any] | None:
    """:func:`host_during` over the measured iterations of the lowest rank's file, from
    ``<log>_host.jsonl``; None without per-iteration stamps or two host samples around them."""
    span = _measured_span(ranks[0], warmup) if ranks else None
    return host_during(_host_samples(log_path), *span) if span else None


def _time_share(times: Sequence[float], parts: Sequence[float | None], warmup: int) -> float | None:
    """The share of the measured iterations' time that a per-iteration part (``parts[i]`` of
    ``times[i]``) took, as :func:`iteration_stats` counts the data wait; None when no iteration
    has the part (a file written before the field existed)."""
    if not any(p is not None for p in parts):
        return None
    return iteration_stats(times, parts, warmup, 0, 0)["data_wait_share"]


def sync_every(rank: RankFile) -> int:
    """How many iterations lie between the device synchronisations of a file's timing hook: 1
    (every iteration), or the log interval with the tuned ``window_sync`` switch."""
    return pos_int(rank.meta.get("sync_every")) or 1


def _mean_or_none(xs: Sequence[float | None]) -> float | None:
    return None if not xs or any(x is None for x in xs) else mean_of(xs)


def by_window(rank: RankFile, every: int) -> RankFile:
    """A file whose device was synchronised once every ``every`` iterations, one entry per window
    of ``every`` iterations (by iteration number; the last may be shorter): the mean time per
    iteration over the window -- exact, as the window's total is -- and the mean of each part.
    Inside a window an iteration's own time is only how long the host took to queue it. Rows after
    the last one the device was synchronised after (a run ended mid-window) are left out: their
    times are the host's alone."""
    out = RankFile(rank=rank.rank, meta=rank.meta)
    groups: dict[int, list[int]] = {}
    marked = [i for i, s in enumerate(rank.synced) if s is not None]
    end = (max((i for i in marked if rank.synced[i]), default=-1) + 1) if marked else len(rank.iters)
    for i, it in enumerate(rank.iters[:end]):
        groups.setdefault((it - 1) // every, []).append(i)
    for idx in groups.values():
        out.iters.append(rank.iters[idx[-1]])
        out.times.append(mean_of([rank.times[i] for i in idx]))
        for name in ("data_times", "gap_times", "gc_times", "cpu_times"):
            getattr(out, name).append(_mean_or_none([getattr(rank, name)[i] for i in idx]))
        fulls = [rank.gc_fulls[i] for i in idx]
        out.gc_fulls.append(None if any(f is None for f in fulls) else sum(fulls))
        for name in ("losses", "mems", "stamps", "energies", "busy"):
            getattr(out, name).append(getattr(rank, name)[idx[-1]])
    return out


def per_iter_block(ranks: list[RankFile], warmup: int, images: tuple[int, int] | None,
                   window_ips: float | None) -> dict[str, Any] | None:
    """The sidecar's ``per_iter`` block: :func:`iteration_stats` over the lowest rank's file,
    with the time shares of the gap between iterations, the garbage collector and the trainer
    thread's CPU, and the window figure over this one; None without a file or a measured iteration.
    ``images`` is (batch size, GPU count), None when unknown (no images/s figures then). A file
    synchronised once per window (``synced_every`` > 1, the ``window_sync`` switch) counts whole
    windows (:func:`by_window`): ``n`` and the spread are then over windows."""
    if not ranks:
        return None
    first, every = ranks[0], sync_every(ranks[0])
    if every > 1:
        first, warmup = by_window(first, every), -(-warmup // every)
    try:
        stats = iteration_stats(first.times, first.data_times, warmup, *(images or (0, 0)))
    except ValueError:
        return None
    ratio = None
    if window_ips is not None and stats["images_per_s"]:
        ratio = finite(window_ips / stats["images_per_s"])
    # between_share: the share of time between iterations -- the data wait plus mmengine's loop
    # bookkeeping (model.train(), hooks); data_wait_source says whether data_wait_share is the
    # timed wait for the batch ("iterator") or, in older files, that whole gap ("gap")
    between = _time_share(first.times, first.gap_times, warmup)
    source = first.meta.get("data_time_source") or "gap"
    # gc_share: the share of time Python's garbage collector ran (files written before it: None)
    gc_share = _time_share(first.times, first.gc_times, warmup)
    gc_full = (int(sum(f for f in first.gc_fulls[warmup:] if f is not None))
               if any(g is not None for g in first.gc_times) else None)
    return {"n": stats.pop("n"), "warmup": stats.pop("warmup"), "rank_files": len(ranks),
            "synced_every": every, **stats, "between_share": between, "data_wait_source": source,
            "gc_share": gc_share, "gc_full_collections": gc_full,
            **_cpu_fields(first, warmup), "window_vs_per_iter": ratio}


def _cpu_fields(rank: RankFile, warmup: int) -> dict[str, Any]:
    """The trainer thread's CPU time over the measured iterations: ``cpu_share`` of their wall
    time, and the mean and CV of it per iteration. Where the step is the host launching kernels,
    runs that differ in wall time but not in CPU time per iteration waited longer (for the device,
    the batch or a host that did not run the thread); runs that differ in both did the same work
    on a slower CPU -- or spun longer in a device synchronisation (CUDA may spin on the CPU while
    it waits), which a profiler trace's GPU busy time tells apart. None for files written before
    the field existed."""
    share = _time_share(rank.times, rank.cpu_times, warmup)
    cpu = [c for t, c in list(zip(rank.times, rank.cpu_times))[warmup:]
           if good_time(t) and c is not None]
    mean = mean_of(cpu) if cpu else None
    std = sample_std(cpu, mean) if len(cpu) >= 2 else None
    return {"cpu_share": share, "cpu_time_mean": finite(mean),
            "cpu_time_cv": finite(std / mean) if std is not None and mean else None}


def flops_block(meta: Mapping[str, Any], gpu_num: int | None, mean_time: float | None,
                device: Any, precision: Any) -> dict[str, Any] | None:
    """FLOPs and TFLOP/s of all processes together; ``fraction_of_peak`` per GPU (one process's
    TFLOP/s over one GPU's peak)."""
    per_process = finite(meta.get("flops_per_iter"))
    if per_process is None or per_process <= 0:
        return None
    total = finite(per_process * gpu_num) if gpu_num else None
    achieved = finite(total / mean_time / 1e12) if total and mean_time else None
    per_gpu = finite(per_process / mean_time / 1e12) if mean_time else None
    peak, basis = (None, None) if device == "cpu" else _peak_tflops(meta.get("device_name"),
                                                                    precision)
    return {"per_iter_per_process": per_process, "per_iter_total": total,
            "tflops_achieved": achieved, "tflops_per_gpu": per_gpu, "peak_tflops": peak,
            "peak_basis": basis,
            "fraction_of_peak": finite(per_gpu / peak) if per_gpu and peak else None}


def peak_memory(ranks: list[RankFile]) -> list[float | None] | None:
    """Each rank's peak ``mem_mb``; None when no file has one."""
    peaks = [max((m for m in r.mems if m is not None), default=None) for r in ranks]
    return peaks if any(p is not None for p in peaks) else None


def warmup_block(ranks: list[RankFile], warmup: int) -> dict[str, Any] | None:
    """The warm-up iterations' cost, reported apart (they are excluded from ``per_iter``): the
    first iteration (where torch.compile, cuDNN autotuning and lazy initialisation land) and the
    sum over the warm-up iterations, from the lowest rank's per-iteration file."""
    if not ranks or not ranks[0].times:
        return None
    times = ranks[0].times[:warmup]
    return {"first_iter_s": finite(ranks[0].times[0]), "warmup_total_s": finite(sum(times)),
            "warmup_iters": len(times)}
