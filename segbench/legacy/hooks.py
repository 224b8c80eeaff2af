"""An mmcv 1.x Hook that records every training iteration of mmseg 0.x's own trainer.

It writes the per-iteration file of docs/FORMATS.md (``<prefix>.rank<R>.jsonl``: a ``meta`` line,
then one ``iter`` line per iteration) in the same format as segbench.timing's mmengine hook, which
cannot be imported here (it needs mmengine). Put in the config's ``custom_hooks`` (configs/mmseg0/
does) at priority LOWEST: mmcv 1.x's IterBasedRunner and every other hook are unchanged, and this
hook's ``after_train_iter`` is the last one, so the iteration boundary is where the step, the
optimizer hook and the logger are done. At each boundary the device is synchronised.

Differences from the mmengine hook, all visible in the file: ``data_time`` is the whole gap between
two iterations (``data_time_source: "gap"``: mmcv 1.x's runner calls ``next()`` on a loader this hook
cannot reach before the first batch, plus ``model.train()`` each iteration); ``mem_mb`` is the
running peak since the first iteration started (mmcv 1.x's logger never resets the peak counter;
this hook resets it once, after the FLOP probe, as the mmengine hook does: the probe's forward and
backward run cuDNN's benchmark search, whose trial workspaces are no part of training); ``loss`` is
the logged (rank-averaged) loss; the meta line has ``stack: "mmseg0"`` and the train set's size
(``train_images``, ``repeat_times``: its RepeatDataset's times).
"""
from __future__ import annotations

import copy
import gc
import json
import os
import time
from pathlib import Path

import torch
from mmcv.runner import HOOKS, Hook, get_dist_info

from segbench import env

FLUSH_EVERY = 10


def _peak_mb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _loss_sum(losses: dict) -> torch.Tensor:
    """The total loss as mmseg 0.x's BaseSegmentor._parse_losses sums it, without its all-reduce
    of the logged values (the FLOP probe runs on one rank's copy only)."""
    total = 0
    for name, value in losses.items():
        if "loss" in name:
            total = total + (sum(v.mean() for v in value) if isinstance(value, list) else value.mean())
    return total


def train_set(runner) -> dict:
    """The train set's size as the runner's loader has it: the images of the data set and the
    RepeatDataset's times (1 without that wrapper; None where the loader is not mmcv's)."""
    dataset = getattr(getattr(runner.data_loader, "_dataloader", None), "dataset", None)
    if dataset is None:
        return {"train_images": None, "repeat_times": None}
    inner = getattr(dataset, "dataset", dataset)
    return {"train_images": len(inner), "repeat_times": getattr(dataset, "times", 1)}


def count_step_flops(model: torch.nn.Module, data_batch: dict, device: str) -> tuple[float, list[int]]:
    """Forward + backward FLOPs of one training step of an mmseg 0.x segmentor on ``data_batch``
    (a batch of DataContainers as the loader gives it), and the batch's shape. On a deep copy in
    eval mode, as segbench.timing counts: the real model's statistics and gradients are untouched."""
    from mmcv.parallel import scatter
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).eval()
    try:
        target = [-1] if device == "cpu" else [torch.cuda.current_device()]
        data = scatter(data_batch, target)[0]
        with FlopCounterMode(display=False) as counter:
            _loss_sum(probe(**data, return_loss=True)).backward()
        return float(counter.get_total_flops()), list(data["img"].shape)
    finally:
        del probe


@HOOKS.register_module()
class SegbenchIterHook0(Hook):
    """Writes ``<out_prefix>.rank<R>.jsonl``; with ``out_prefix`` None (the config's default) it
    records nothing."""

    def __init__(self, out_prefix: str | None = None, precision: str = "fp32", count_flops: bool = True):
        self.out_prefix, self.precision, self.count_flops = out_prefix, precision, count_flops
        self._buf: list[str] = []
        self._fh = None
        self._t_prev = self._cpu_prev = self._gap = 0.0
        self._gc_s, self._gc_full, self._gc_t0 = 0.0, 0, None

    def _write(self, obj: dict, flush: bool = False) -> None:
        self._buf.append(json.dumps(obj))
        if (flush or len(self._buf) >= FLUSH_EVERY) and self._fh:
            self._fh.write("\n".join(self._buf) + "\n")
            self._fh.flush()
            self._buf.clear()

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self._gc_t0 is not None:
            self._gc_s += time.perf_counter() - self._gc_t0
            self._gc_t0 = None
            self._gc_full += info.get("generation") == 2

    def _start_clocks(self) -> None:
        self._t_prev, self._cpu_prev = time.perf_counter(), time.thread_time()

    def before_run(self, runner) -> None:
        if not self.out_prefix:
            return
        self.rank, self.world_size = get_dist_info()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        path = Path(f"{self.out_prefix}.rank{self.rank}.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "w", encoding="utf-8")
        gc.callbacks.append(self._on_gc)

    def before_train_iter(self, runner) -> None:
        if not self._fh:
            return
        if runner.iter == 0:
            self._write_meta(runner)
            _sync(self.device)
            if self.device == "cuda":  # the probe's memory (cuDNN's search) is not the training's peak
                torch.cuda.reset_peak_memory_stats()
            self._start_clocks()      # the FLOP count is part of no iteration
            self._gc_s, self._gc_full = 0.0, 0
        self._gap = time.perf_counter() - self._t_prev

    def after_train_iter(self, runner) -> None:
        if not self._fh:
            return
        _sync(self.device)
        now, cpu = time.perf_counter(), time.thread_time()
        loss = (runner.outputs or {}).get("log_vars", {}).get("loss")
        self._write({"kind": "iter", "iter": runner.iter + 1, "rank": self.rank,
                     "time": now - self._t_prev, "data_time": self._gap, "gap_time": self._gap,
                     "loss": None if loss is None else float(loss),
                     "mem_mb": _peak_mb() if self.device == "cuda" else None, "t": time.time(),
                     "gc_time": self._gc_s, "gc_full": self._gc_full, "cpu_time": cpu - self._cpu_prev})
        self._gc_s, self._gc_full = 0.0, 0
        self._t_prev, self._cpu_prev = now, cpu

    def after_run(self, runner) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._fh:
            if self._buf:
                self._fh.write("\n".join(self._buf) + "\n")
            self._fh.close()
            self._fh = None

    def _write_meta(self, runner) -> None:
        model = getattr(runner.model, "module", runner.model)
        flops, err, shape = None, None, None
        img = runner.data_batch.get("img") if isinstance(runner.data_batch, dict) else None
        if img is not None and hasattr(img, "data"):   # a DataContainer: one stacked tensor
            shape = list(img.data[0].shape)
        if self.count_flops:
            try:
                flops, shape = count_step_flops(model, runner.data_batch, self.device)
            except Exception as exc:  # counting is evidence, never a reason to stop training
                err = f"{type(exc).__name__}: {exc}"[:300]
        cuda = self.device == "cuda"
        self._write({"kind": "meta", "rank": self.rank, "world_size": self.world_size,
                     "stack": "mmseg0", "device": self.device,
                     "device_name": torch.cuda.get_device_name() if cuda else "cpu",
                     "device_index": torch.cuda.current_device() if cuda else None,
                     "cpus": env.cpu_ranges(os.sched_getaffinity(0)),
                     "torch_threads": torch.get_num_threads(),
                     "batch_size": shape[0] if shape else None, "input_shape": shape,
                     "precision": self.precision, "flops_per_iter": flops, "flops_error": err,
                     "data_time_source": "gap", **train_set(runner),
                     "pre_train_peak_mb": _peak_mb() if cuda else None,
                     "peak_from": "iteration 1",   # the reset in before_train_iter, after this line
                     "pre_train_reserved_mb": round(torch.cuda.memory_reserved() / 2**20, 1) if cuda
                     else None}, flush=True)
