"""The tuned switch ``window_sync``: the host waits for the GPU once per log window, not every iteration.

In a stock mmengine loop the host waits for the GPU several times an iteration: mmengine's
RuntimeInfoHook puts every logged value of the step (``loss``, ``decode.loss_ce``, ``acc_seg``, ...)
in the message hub with ``.item()``, and segbench's timing hook synchronises at every iteration
boundary (mmseg's data preprocessor also copies an index from host memory each batch, BGR to RGB
by ``x[[2, 1, 0], ...]``). Each wait lasts until the GPU has finished all the work queued so far,
so the host's work for the next iteration (hooks, the batch, the launch) cannot overlap the GPU's
work on this one. With the whole step in one CUDA graph (the ``graph`` switch) the host's work is
small, and that serialisation is what is left of it
(benchmarks/RESULTS.md: the GPU was busy 65-86% of a graphed step).

With ``window_sync``:

- :data:`RUNTIME_INFO_HOOK` replaces mmengine's RuntimeInfoHook (``default_hooks.runtime_info``):
  it holds each iteration's logged tensors and, at the log window's last iteration (and the run's
  last), waits for the GPU and puts them in the message hub with one read for all of them
  (:func:`host_values`). The message hub receives the same values in the same order before
  mmengine's LoggerHook (lower priority) reads them, so the log is the stock run's; and the wait
  comes before mmengine's IterTimerHook (lower priority) reads the clock, so its window times --
  FINAL_RESULT's -- count all of the window's work.
- segbench's data preprocessor swaps the channels with ``flip(0)`` on the device (the same values
  as mmseg's index).
- segbench's timing hook synchronises at the same windows' ends (:func:`synced`), at the first
  iteration and at a profiled window's edges, and reads the per-iteration losses there; its meta
  line records ``sync_every``, and each row whether the device was synchronised after it.

What it changes in the measurement: each log window's total time is still exact (the host waits
for the window's work before either timer reads the clock at the window's end), so FINAL_RESULT --
the mean of the window means -- is the seed's formula on true times. A single iteration's time
inside a window is host time (how long the host took to queue it), so segbench.iterfiles computes
the per-iteration statistics over whole windows for such a file (``per_iter.synced_every``). The
training is the same: no value of the step changes, only when the host reads it.
"""
from __future__ import annotations

RUNTIME_INFO_HOOK = "SegbenchRuntimeInfoHook"


def synced(it: int, every: int, max_iters: int | None = None) -> bool:
    """Whether the timing hook synchronises after iteration ``it`` (1-based): every iteration with
    ``every`` = 1; else the first, each window's last and the run's last."""
    return every <= 1 or it == 1 or it % every == 0 or (max_iters is not None and it >= max_iters)


def host_values(values: list) -> list:
    """``values`` with every one-element tensor replaced by the Python number ``.item()`` gives,
    read in one transfer per device and dtype (one wait for the device, not one per tensor);
    other values pass unchanged."""
    import torch
    out = list(values)
    by_dtype: dict = {}
    for i, v in enumerate(values):
        if isinstance(v, torch.Tensor):
            if v.numel() != 1:
                raise ValueError(f"a logged value must have one element, not shape {tuple(v.shape)}")
            by_dtype.setdefault((v.device, v.dtype), []).append(i)
    for idx in by_dtype.values():
        read = torch.stack([values[i].detach().reshape(()) for i in idx]).tolist()
        for i, x in zip(idx, read):
            out[i] = x
    return out


_REGISTERED: dict = {}


def register() -> None:
    """Define and register :data:`RUNTIME_INFO_HOOK` in mmengine's HOOKS."""
    if _REGISTERED:
        return
    from mmengine.hooks import LoggerHook, RuntimeInfoHook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(name=RUNTIME_INFO_HOOK)
    class SegbenchRuntimeInfoHook(RuntimeInfoHook):
        """mmengine's RuntimeInfoHook, putting the step's logged values in the message hub once per
        log window, read from the device in one go (see the module docstring)."""

        def before_train(self, runner) -> None:
            super().before_train(runner)
            self._held: list[dict] = []
            logger = next((h for h in runner.hooks if isinstance(h, LoggerHook)), None)
            self._every = max(int(getattr(logger, "interval", 1) or 1), 1)

        def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
            if outputs is not None:
                self._held.append(dict(outputs))
            # every iteration the LoggerHook may log at (its interval, an epoch's end), and the last
            if self.every_n_train_iters(runner, self._every) or self.is_last_train_iter(runner) \
                    or self.end_of_epoch(runner.train_dataloader, batch_idx):
                self.put(runner)

        def after_train(self, runner) -> None:
            self.put(runner)   # a run stopped early: what is held still reaches the hub
            super().after_train(runner)

        def put(self, runner) -> None:
            """The held values into the hub, after waiting for the GPU: this is the log window's
            end for mmengine's IterTimerHook (NORMAL priority, after this hook), whose window
            times FINAL_RESULT averages, so they count all of the window's work."""
            import torch
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            held, self._held = self._held, []
            read = iter(host_values([v for out in held for v in out.values()]))
            for out in held:
                for key in out:
                    runner.message_hub.update_scalar(f"train/{key}", next(read))

    _REGISTERED["runtime_info_hook"] = SegbenchRuntimeInfoHook
