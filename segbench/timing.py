"""An mmengine Hook that records every training iteration (docs/FORMATS.md, per-iteration file).

Registered in mmengine's HOOKS registry and put in the config's ``custom_hooks``: the trainer is
mmengine's own, unchanged. At each iteration boundary the device is synchronised, so ``time`` is the
wall time of one whole iteration (data wait + step + every hook), not of queued kernels; beside it,
the wait for the batch, the time Python's garbage collector ran (a ``gc.callbacks`` entry while
training runs), the CPU time of the trainer's own thread (``time.thread_time``: at batch size 2 the
step is mostly the host launching kernels, so wall time well above it is time off the CPU -- waiting
for the device or the batch, or a host that did not run the thread) and the device's peak memory.
With the tuned ``window_sync`` switch it synchronises at each log window's end instead, and an
iteration's ``time`` inside a window is the host's (segbench.windowsync; the meta line's
``sync_every``).
The peak is read by a second small hook, :class:`SegbenchPeakHook`, before mmengine's LoggerHook
resets the device's peak counter on its logging iterations.
Every ``energy_every`` iterations (the log interval) it also reads the GPU's energy counter
(segbench.energy; ``energy_mj``, None where there is none, with the reason in the meta line).
Optionally it counts FLOPs once (torch.utils.flop_counter, on a copy of the real model and a real
batch) and captures a torch.profiler trace for a window of iterations.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import re
import time
from pathlib import Path

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from segbench import energy, env, tuned, windowsync

FLUSH_EVERY = 10  # lines; a crash loses at most this many iterations of records (window_sync:
                  # plus the rows held since the last sync, under one log window)
PEAK_INFO = "segbench/peak_mem_mb"   # message_hub runtime info: SegbenchPeakHook -> SegbenchTimerHook


def _peak_mb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


@HOOKS.register_module()
class SegbenchPeakHook(Hook):
    """Reads the device's peak allocated memory after each training step, before mmengine's
    LoggerHook (priority BELOW_NORMAL) resets the counter on its logging iterations, and leaves it
    in the message hub for :class:`SegbenchTimerHook` (which runs last, after that reset)."""

    priority = "NORMAL"

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if torch.cuda.is_available():
            runner.message_hub.update_info(PEAK_INFO, _peak_mb(), resumed=False)


class _TimedIterator:
    """The train loop's data iterator, timing each ``next``: the wait for the batch alone.

    Between two iterations mmengine's IterBasedTrainLoop also calls ``model.train()`` (a walk over
    every module: 0.8-1.3 ms for fastscnn, 5-9 ms for ocrnet_hrnetw48 on the dev CPU) and the hooks'
    ``before_train_iter``; the gap between iteration boundaries counted those as data wait."""

    def __init__(self, inner):
        self._inner = inner
        self.last = None        # seconds the last next() took; None before the first

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        try:
            return next(self._inner)
        finally:
            self.last = time.perf_counter() - t0

    def __getattr__(self, name):
        return getattr(self._inner, name)


PEAK_FROM = "iteration 1"   # the meta line's peak_from: the peak counter was reset after the FLOP probe


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def count_step_flops(model: torch.nn.Module, data_batch: dict) -> tuple[float, list[int]]:
    """Forward + backward FLOPs of one training step of ``model`` on ``data_batch``, and the
    shape of the batch the model sees (after its data preprocessor).

    Counts on a deep copy in eval mode (BN/SyncBN then use running stats, so no collective runs and
    the real model's statistics and gradients are untouched). Convolutions and matmuls are what the
    counter counts; normalisation is not counted either way. Parts compiled with torch.compile
    (the tuned mode) run eagerly here (``torch.compiler.set_stance("force_eager")``): run under
    the counter's dispatch mode, dynamo would not compile them, then or later.
    """
    from torch.utils.flop_counter import FlopCounterMode

    stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
    eager = stance("force_eager") if stance else contextlib.nullcontext()
    probe = copy.deepcopy(model).eval()
    try:
        data = probe.data_preprocessor(data_batch, True)
        with eager, FlopCounterMode(display=False) as counter:
            losses = probe(**data, mode="loss")
            loss, _ = probe.parse_losses(losses)
            loss.backward()
        return float(counter.get_total_flops()), list(data["inputs"].shape)
    finally:
        del probe


@HOOKS.register_module()
class SegbenchTimerHook(Hook):
    """Writes ``<prefix>.rank<R>.jsonl``: a meta line, then one line per training iteration."""

    priority = "VERY_LOW"  # after every other hook's after_train_iter: the boundary is the last

    def __init__(self, out_prefix: str, precision: str = "fp32", count_flops: bool = True,
                 profile_window: tuple[int, int] | None = None, profile_dir: str | None = None,
                 energy_every: int = 10, sync_every: int = 1):
        self.out_prefix = out_prefix
        self.energy_every = energy_every   # read the GPU's energy counter every N iterations
        self.sync_every = sync_every       # >1: the window_sync switch (segbench.windowsync)
        self._held: list[tuple[dict, object]] = []   # rows waiting for the next sync, their loss
        self.precision = precision
        self.count_flops = count_flops
        self.profile_window = tuple(profile_window) if profile_window else None
        self.profile_dir = profile_dir
        self._buf: list[str] = []
        self._fh = None
        self._t_prev = 0.0
        self._data_time = 0.0
        self._gap_time = 0.0
        self._timed = None
        self._profiler = None
        self._gc_s = 0.0          # time in Python's garbage collector since the last boundary
        self._gc_full = 0         # full (generation 2) collections since the last boundary
        self._gc_t0: float | None = None
        self._cpu_prev = 0.0      # the trainer thread's CPU time at the last boundary

    # -- helpers ------------------------------------------------------------------------------
    def _write(self, obj: dict) -> None:
        self._buf.append(json.dumps(obj))
        if len(self._buf) >= FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        if self._fh and self._buf:
            self._fh.write("\n".join(self._buf) + "\n")
            self._fh.flush()
            self._buf.clear()

    def _on_gc(self, phase: str, info: dict) -> None:
        """gc.callbacks entry: a collection in any thread of the process (it holds the
        interpreter lock, so the trainer waits for it too) adds its duration to this iteration."""
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self._gc_t0 is not None:
            self._gc_s += time.perf_counter() - self._gc_t0
            self._gc_t0 = None
            if info.get("generation") == 2:
                self._gc_full += 1

    # -- mmengine hook points --------------------------------------------------------------------
    def before_train(self, runner) -> None:
        self.rank = get_rank()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        path = Path(f"{self.out_prefix}.rank{self.rank}.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "w")
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self._meter = energy.open_meter(self.device)
        loop = runner.train_loop
        if hasattr(loop, "dataloader_iterator"):   # IterBasedTrainLoop (the seed's configs)
            self._timed = loop.dataloader_iterator = _TimedIterator(loop.dataloader_iterator)
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        _sync(self.device)
        self._start_clocks()

    def _start_clocks(self) -> None:
        """The boundary from which the next iteration's wall and thread CPU time count."""
        self._t_prev = time.perf_counter()
        self._cpu_prev = time.thread_time()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        it = runner.iter + 1
        if it == 1:
            self._write_meta(runner, data_batch)
            _sync(self.device)
            if self.device == "cuda":  # the probe's memory is not the training's peak
                torch.cuda.reset_peak_memory_stats()
            self._start_clocks()  # the FLOP count is not part of any iteration
            self._gc_s, self._gc_full = 0.0, 0
        self._gap_time = time.perf_counter() - self._t_prev
        # the batch wait alone where the iterator is timed, else the whole gap (an upper bound)
        timed = self._timed.last if self._timed is not None else None
        self._data_time = self._gap_time if timed is None else min(timed, self._gap_time)
        if self.profile_window and it == self.profile_window[0]:
            self._start_profiler()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        it = runner.iter + 1
        edges = (self.profile_window[0] - 1, self.profile_window[1]) if self.profile_window else ()
        sync = windowsync.synced(it, self.sync_every, getattr(runner, "max_iters", None)) or it in edges
        if sync:
            _sync(self.device)
        now = time.perf_counter()
        cpu = time.thread_time()
        loss = outputs["loss"] if isinstance(outputs, dict) and "loss" in outputs else None
        mem = None
        if self.device == "cuda":
            # the peak SegbenchPeakHook read before mmengine's logger reset it (None without that
            # hook), and whatever was allocated since
            early = runner.message_hub.get_info(PEAK_INFO)
            mem = max(_peak_mb(), early or 0.0)
            runner.message_hub.update_info(PEAK_INFO, None, resumed=False)
        row = {"kind": "iter", "iter": it, "rank": self.rank, "time": now - self._t_prev,
               "data_time": self._data_time, "gap_time": self._gap_time, "loss": None,
               "mem_mb": mem, "t": time.time(), "gc_time": self._gc_s,
               "gc_full": self._gc_full, "cpu_time": cpu - self._cpu_prev}
        if self.sync_every > 1:
            row["synced"] = sync   # whether the device was synchronised after this iteration
        if it % self.energy_every == 0:   # at the log windows' ends (the device was synchronised)
            row["energy_mj"] = self._meter.read()
            row["gpu_busy_pct"] = self._meter.read_busy()
        self._held.append((row, loss))
        if sync:
            self._write_held()
        self._gc_s, self._gc_full = 0.0, 0
        self._cpu_prev = cpu
        if self._profiler is not None and it >= self.profile_window[1]:
            self._stop_profiler(runner)
        self._t_prev = now

    def _write_held(self) -> None:
        """The rows since the last sync, their losses read from the device in one go."""
        held, self._held = self._held, []
        for (row, _), loss in zip(held, windowsync.host_values([v for _, v in held])):
            row["loss"] = None if loss is None else float(loss)
            self._write(row)

    def after_train(self, runner) -> None:
        self._write_held()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._profiler is not None:
            self._stop_profiler(runner)
        self._flush()
        if self._fh:
            self._fh.close()
            self._fh = None

    # -- meta, FLOPs, profiler ---------------------------------------------------------------------
    def _write_meta(self, runner, data_batch) -> None:
        model = tuned.bare_model(runner.model)
        inputs = data_batch.get("inputs") if isinstance(data_batch, dict) else None
        shape = None
        if isinstance(inputs, (list, tuple)) and inputs:
            shape = [len(inputs), *inputs[0].shape]
        flops, err = None, None
        if self.count_flops:
            try:
                flops, shape = count_step_flops(model, data_batch)
            except Exception as exc:  # counting is evidence, never a reason to stop training
                err = f"{type(exc).__name__}: {exc}"[:300]
        cuda = self.device == "cuda"   # what iteration 1 starts from (the probe ran since the reset)
        probe_peak = _peak_mb() if cuda else None
        reserved = round(torch.cuda.memory_reserved() / 2**20, 1) if cuda else None
        meta = {"kind": "meta", "rank": self.rank, "world_size": get_world_size(),
                "device": self.device,
                "device_name": torch.cuda.get_device_name() if cuda else "cpu",
                "device_index": torch.cuda.current_device() if cuda else None,
                "cpus": env.cpu_ranges(os.sched_getaffinity(0)),
                "torch_threads": torch.get_num_threads(),
                "batch_size": shape[0] if shape else None, "input_shape": shape,
                "precision": self.precision, "flops_per_iter": flops, "flops_error": err,
                "data_time_source": "iterator" if self._timed is not None else "gap",
                "pre_train_peak_mb": probe_peak, "pre_train_reserved_mb": reserved,
                "energy_source": self._meter.source, "energy_reason": self._meter.reason,
                "energy_every": self.energy_every, "sync_every": self.sync_every,
                "peak_from": PEAK_FROM}
        self._write(meta)
        self._flush()

    def _start_profiler(self) -> None:
        acts = [torch.profiler.ProfilerActivity.CPU]
        if self.device == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        self._profiler = torch.profiler.profile(activities=acts, record_shapes=True)
        self._profiler.__enter__()

    def _stop_profiler(self, runner) -> None:
        prof, self._profiler = self._profiler, None
        prof.__exit__(None, None, None)
        out_dir = Path(self.profile_dir or Path(self.out_prefix).parent)
        trace = out_dir / f"{Path(self.out_prefix).name}.rank{self.rank}.trace.json"
        prof.export_chrome_trace(str(trace))
        table = prof.key_averages().table(sort_by="self_cuda_time_total" if self.device == "cuda"
                                          else "self_cpu_time_total", row_limit=25)
        runner.logger.info(f"[segbench] profiler trace: {trace}\n{table}")


@HOOKS.register_module()
class SegbenchFaultHook(Hook):
    """Fault injection for segbench's own tests (``SEGBENCH_FAULT=KIND@ITER[@RANK][@bs>N]``): at
    iteration ITER (on RANK only, if given; only when the batch is larger than N, if given) raise a
    crash (RuntimeError), an OOM (torch.OutOfMemoryError) or hang (sleep far past any timeout)."""

    def __init__(self, spec: str):
        parts = spec.split("@")
        above = re.fullmatch(r"bs>(\d+)", parts[-1]) if len(parts) > 2 else None
        self.above = int(above.group(1)) if above else None
        parts = parts[:-1] if above else parts
        if len(parts) not in (2, 3) or parts[0] not in ("crash", "oom", "hang"):
            raise ValueError(f"SEGBENCH_FAULT must be crash|oom|hang@ITER[@RANK][@bs>N], not {spec!r}")
        self.kind, self.at_iter = parts[0], int(parts[1])
        self.at_rank = int(parts[2]) if len(parts) == 3 else None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.iter + 1 != self.at_iter or self.at_rank not in (None, get_rank()):
            return
        if self.above is not None and len((data_batch or {}).get("inputs") or []) <= self.above:
            return
        msg = f"segbench fault injection at iteration {self.at_iter} on rank {get_rank()}"
        if self.kind == "oom":
            raise torch.OutOfMemoryError(msg)
        if self.kind == "hang":
            time.sleep(3600)
        raise RuntimeError(msg)
