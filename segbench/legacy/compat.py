"""The fixes mmseg 0.30 / mmcv 1.7.2 need on today's torch, applied when this module is imported.

Imported by the legacy training process (segbench.legacy.run) before mmseg's own tools/train.py
runs, and by configs/mmseg0/*.py through ``custom_imports``, so that plain ``tools/train.py
configs/mmseg0/<model>.py`` gets them too. Each fix replaces one function of mmcv or mmseg in its
module, keeps the original's behaviour wherever the original worked, and is listed in
docs/LEGACY.md. Importing twice is harmless.

1. ``mmcv.parallel._functions._get_stream``: torch >= 2.x takes a ``torch.device``; mmcv 1.x passes
   the GPU's index, which fails in MMDataParallel's scatter with "'int' object has no attribute
   'type'" (every GPU run, sp and mp).
2. ``mmcv.runner.dist_utils._init_dist_pytorch`` on a host without a GPU: it calls
   ``torch.cuda.set_device(rank % device_count())`` (ZeroDivisionError); there the process group is
   made with the configured backend (gloo on the CPU) and no device is set.
3. ``mmseg.apis.train.build_ddp`` on the CPU: mmseg 0.30 accepts only cuda/mlu, and mmcv 1.x's
   MMDistributedDataParallel without device ids hands the DataContainers to the model unscattered;
   on the CPU the model gets a DDP wrapper (no device ids) that scatters the batch to the CPU
   first, as MMDataParallel does on the CPU.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

APPLIED: list[str] = []


def _fix_get_stream() -> None:
    from mmcv.parallel import _functions
    orig = _functions._get_stream
    if getattr(orig, "_segbench", False):
        return

    def _get_stream(device):
        try:
            return orig(device)
        except AttributeError:   # torch >= 2.x: a torch.device, not mmcv 1.x's GPU index
            return orig(torch.device("cuda", device))

    _get_stream._segbench = True
    _functions._get_stream = _get_stream
    APPLIED.append("mmcv.parallel._functions._get_stream takes a GPU index")


def _fix_init_dist() -> None:
    from mmcv.runner import dist_utils
    orig = dist_utils._init_dist_pytorch
    if getattr(orig, "_segbench", False):
        return

    def _init_dist_pytorch(backend: str, **kwargs) -> None:
        if torch.cuda.is_available():
            return orig(backend, **kwargs)
        dist.init_process_group(backend=backend, **kwargs)   # the CPU: no device to set

    _init_dist_pytorch._segbench = True
    dist_utils._init_dist_pytorch = _init_dist_pytorch
    APPLIED.append("mmcv.runner.dist_utils._init_dist_pytorch runs without a GPU")


def _cpu_ddp_class():
    from mmcv.parallel import MMDistributedDataParallel

    class CpuMMDistributedDataParallel(MMDistributedDataParallel):
        """MMDistributedDataParallel on the CPU: the batch's DataContainers are unwrapped (scattered
        to the CPU, device -1) before mmcv's train step, which without device ids passes them on
        as they are."""

        def train_step(self, *inputs, **kwargs):
            inputs, kwargs = self.scatter(inputs, kwargs, [-1])
            return super().train_step(*inputs[0], **kwargs[0])

    return CpuMMDistributedDataParallel


def _fix_build_ddp() -> None:
    import mmseg.apis.train as mmseg_train
    orig = mmseg_train.build_ddp
    if getattr(orig, "_segbench", False):
        return
    cpu_ddp = _cpu_ddp_class()

    def build_ddp(model, device="cuda", *args, **kwargs):
        if device != "cpu":
            return orig(model, device, *args, **kwargs)
        kwargs.pop("device_ids", None)      # a CPU module takes none
        return cpu_ddp(model, *args, device_ids=None, **kwargs)

    build_ddp._segbench = True
    mmseg_train.build_ddp = build_ddp
    APPLIED.append("mmseg.apis.train.build_ddp builds a CPU DDP wrapper")


def apply() -> list[str]:
    """Apply every fix (idempotent); the descriptions of those applied in this process."""
    _fix_get_stream()
    _fix_init_dist()
    _fix_build_ddp()
    return list(APPLIED)


apply()
