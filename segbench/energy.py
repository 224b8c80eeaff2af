"""The GPU's energy counter: NVML's total energy since the driver loaded, in millijoules.

:func:`open_meter` gives a meter for the device a training process uses, or one that reads None
and says why (the CPU profile, no nvidia-ml-py, a GPU without the counter: before Volta). The
timing hook reads it at log-window boundaries; segbench.analysis turns the readings into joules per
iteration, images per joule and mean watts. On the H200 the counter moves about every 60 ms, so a
span shorter than :data:`MIN_SPAN_S` (a few updates) is not reported.

The same NVML handle gives the GPU's utilization: the share of its last sample period (1/6 s to
1 s, by product) in which a kernel ran. Read at each log window's end, its mean over the measured
windows (:func:`summarize_busy`) says whether the GPU or the host bounds the training step: a GPU
busy nearly all the time waits for nothing; one idle a third of the time waits for the host
(Python, kernel launches, the data loader). A sampled figure: it tells the two apart, it does not
time kernels (a profiler trace does: ``PROFILING=true``, benchmarks/trace_summary.py).
"""
from __future__ import annotations

MIN_SPAN_S = 0.5   # seconds: at least ~8 updates of a counter that moves every ~60 ms
GPU_BOUND = 0.90   # busy share from which the GPU bounds the step
HOST_BOUND = 0.70  # busy share below which the host does


class Meter:
    """``read()`` -> cumulative mJ of one GPU, or None; ``reason`` says why there is none.
    ``read_busy()`` -> the GPU's utilization in percent (its last sample period), or None."""

    def __init__(self, read=None, source: str | None = None, reason: str | None = None, busy=None):
        self._read, self.source, self.reason, self._busy = read, source, reason, busy

    def read(self) -> float | None:
        if self._read is None:
            return None
        try:
            return float(self._read())
        except Exception as exc:   # a counter that fails mid-run gives no figure, never a crash
            self.reason, self._read = f"NVML read failed: {type(exc).__name__}: {exc}"[:200], None
            return None

    def read_busy(self) -> float | None:
        if self._busy is None:
            return None
        try:
            return float(self._busy())
        except Exception:   # utilization is evidence: a failed read gives none from then on
            self._busy = None
            return None


def _nvml_handle(pynvml, device_index: int):
    import torch
    uuid = getattr(torch.cuda.get_device_properties(device_index), "uuid", None)
    if uuid is not None:
        return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
    # older torch: its own mapping through CUDA_VISIBLE_DEVICES
    return pynvml.nvmlDeviceGetHandleByIndex(torch.cuda._get_nvml_device_index(device_index))


def open_meter(device: str, device_index: int | None = None) -> Meter:
    """The energy meter of this process's GPU (``device`` 'cuda'), or a null one with a reason."""
    if device != "cuda":
        return Meter(reason="no GPU: the CPU profile has no energy counter")
    try:
        import pynvml
    except ImportError:
        return Meter(reason="nvidia-ml-py is not installed (PrepareEnv.sh installs it)")
    try:
        import torch
        pynvml.nvmlInit()
        handle = _nvml_handle(pynvml, torch.cuda.current_device() if device_index is None
                              else device_index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)   # NVML_ERROR_NOT_SUPPORTED: pre-Volta
    except Exception as exc:
        return Meter(reason=f"no NVML energy counter: {type(exc).__name__}: {exc}"[:200])
    return Meter(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), source="nvml",
                 busy=lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)


def _rank_span(stamps, energies, warmup: int):
    """(joules, seconds, iterations) of one rank from the reading at the end of the warm-up to its
    last reading, or None where the readings do not cover that."""
    idx = [i for i, e in enumerate(energies) if e is not None and i >= warmup - 1]
    if len(idx) < 2 or warmup < 1 or idx[0] != warmup - 1:
        return None
    a, b = idx[0], idx[-1]
    if stamps[a] is None or stamps[b] is None:
        return None
    return (energies[b] - energies[a]) / 1000.0, stamps[b] - stamps[a], b - a


def summarize(ranks, warmup: int, images_per_iter: int | None, reason: str | None) -> dict:
    """The energy block of the sidecar. ``ranks``: per rank ``(stamps, energies)``, parallel
    per-iteration lists (the wall clock at each iteration's end; the counter in mJ, None where not
    read); ``images_per_iter``: all ranks' images per iteration. Over the measured iterations (after
    ``warmup``): joules per iteration (all GPUs), images per joule, mean watts per GPU, and rank 0's
    watts per log window (None for a window shorter than MIN_SPAN_S). Every figure is None, with
    ``reason``, where no counter covers them."""
    out = {"j_per_iter": None, "images_per_j": None, "mean_w_per_gpu": None, "window_w": None,
           "gpus_measured": 0, "reason": reason}
    spans = [_rank_span(s, e, warmup) for s, e in ranks] if ranks else []
    if not spans or any(sp is None for sp in spans):
        out["reason"] = reason or "no energy readings cover the measured iterations"
        return out
    if min(sp[1] for sp in spans) < MIN_SPAN_S:
        out["reason"] = (f"measured span {min(sp[1] for sp in spans):.2f} s is shorter than "
                         f"{MIN_SPAN_S} s (a few counter updates)")
        return out
    j_per_iter = sum(j / n for j, _, n in spans)
    stamps, energies = ranks[0]
    reads = [i for i, e in enumerate(energies) if e is not None and i >= warmup - 1]
    window_w = []
    for a, b in zip(reads, reads[1:]):
        dt = stamps[b] - stamps[a]
        window_w.append(round((energies[b] - energies[a]) / 1000 / dt, 1) if dt >= MIN_SPAN_S else None)
    out.update(j_per_iter=round(j_per_iter, 4), gpus_measured=len(spans), reason=None,
               images_per_j=round(images_per_iter / j_per_iter, 4) if images_per_iter else None,
               mean_w_per_gpu=round(sum(j / s for j, s, _ in spans) / len(spans), 1),
               window_w=window_w)
    return out


def summarize_busy(ranks, warmup: int) -> dict:
    """The sidecar's ``gpu_busy`` block. ``ranks``: per rank the per-iteration utilization readings
    (percent; None where not read). Over the measured iterations (after ``warmup``): the mean busy
    share of all readings, how many there were, and ``bound``: "gpu" (share >= GPU_BOUND), "host"
    (< HOST_BOUND) or "between"; nulls with a reason where there are no readings."""
    reads = [b for rank in ranks for i, b in enumerate(rank) if i >= warmup and b is not None]
    if not reads:
        return {"share": None, "readings": 0, "bound": None, "source": None,
                "reason": "no GPU utilization readings in the measured iterations"}
    share = sum(reads) / len(reads) / 100
    bound = "gpu" if share >= GPU_BOUND else "host" if share < HOST_BOUND else "between"
    return {"share": round(share, 3), "readings": len(reads), "bound": bound,
            "source": "nvml utilization (sampled)", "reason": None}
