"""The tuned switch ``graph``: mmengine's whole training step captured in one CUDA graph.

The tuned step is bound by the host (Python, kernel launches, mmengine's loop; benchmarks/RESULTS.md,
the sidecars' ``gpu_busy``). After ``warmup`` eager iterations (on a side stream, as capture needs),
one step -- forward, losses, backward and the optimizer's update -- is captured in one graph; each
later iteration copies its preprocessed batch into the captured (static) tensors and replays the
graph, so the host launches one graph instead of thousands of kernels. The data preprocessor
(normalisation, padding, the copy to the device), mmengine's loop and the hooks stay eager.

The learning rate: the parameter schedulers write a float into each param group every iteration; a
captured optimizer would keep the value it was captured with. So the step runs with a tensor in
each group's ``lr`` (the groups keep the schedulers' floats between steps) and the float is copied
into it before every replay: the schedule is the stock run's.

mmseg's ``accuracy`` (the logged ``acc_seg``) indexes with a boolean mask, which reads the GPU; the
captured step uses :func:`capturable_accuracy`, the same value without that read (it is logged, not
trained on).

What it needs (:func:`check`, before training): one process (no DDP), mmengine's plain
OptimWrapper (fp32: no loss scaler, whose inf checks read the GPU), no gradient accumulation, and
batches of one shape (a fixed crop; another shape is a one-line error). On CUDA the optimizer must
be a fused one (the ``foreach`` switch: foreach SGD reads a tensor learning rate on the host), and
Adam and AdamW ``capturable=True`` (segbench.tuned sets both).

On a CPU there is no CUDA graph: :class:`Rerun` replays by running the captured step again, reading
only the static tensors. That gives the same numbers as a replay and no speed-up: it is how the
plumbing (batch copies, learning rate, optimizer counts) is tested without a GPU.
"""
from __future__ import annotations

import contextlib
import copy

WARMUP = 3   # eager iterations before the capture: cuDNN's algorithm search, the optimizer's state


class Captured:
    """A captured step: ``replay()`` runs it again; ``outputs`` holds its results after a replay."""

    def __init__(self, replay=None, outputs=None):
        self.replay, self.outputs = replay, outputs


class CudaGraphs:
    """torch.cuda.CUDAGraph capture and replay, warm-up on a side stream."""

    def __init__(self):
        import torch
        self.torch = torch
        self.stream = torch.cuda.Stream()

    @contextlib.contextmanager
    def side_stream(self):
        cuda = self.torch.cuda
        self.stream.wait_stream(cuda.current_stream())
        with cuda.stream(self.stream):
            yield
        cuda.current_stream().wait_stream(self.stream)

    def capture(self, fn) -> Captured:
        graph = self.torch.cuda.CUDAGraph()
        with self.torch.cuda.graph(graph):    # records the kernels; runs none of them
            outputs = fn()
        return Captured(graph.replay, outputs)


class Rerun:
    """The CPU's stand-in: a replay runs the captured step again (see the module docstring)."""

    side_stream = staticmethod(contextlib.nullcontext)

    def capture(self, fn) -> Captured:
        held = Captured()

        def replay():
            held.outputs = fn()
        held.replay = replay
        return held


def _tensors(obj):
    """The tensors of a preprocessed batch, in a fixed order: the inputs, then every data sample's
    fields (mmengine data elements: ``gt_sem_seg.data``, ...)."""
    import torch
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for k in sorted(obj):
            yield from _tensors(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    elif hasattr(obj, "keys") and hasattr(obj, "metainfo_keys"):   # an mmengine BaseDataElement
        for k in sorted(obj.keys()):
            yield from _tensors(obj.get(k))


def capturable_accuracy(pred, target, topk=1, thresh=None, ignore_index=None):
    """mmseg's ``accuracy`` (mmseg.models.losses.accuracy.accuracy) without boolean-mask indexing:
    (correct + eps) * 100 / (counted + eps), the pixels equal to ``ignore_index`` not counted."""
    import torch
    single = isinstance(topk, int)
    topk = (topk,) if single else tuple(topk)
    if pred.size(0) == 0:
        acc = [pred.new_tensor(0.0) for _ in topk]
        return acc[0] if single else acc
    value, label = pred.topk(max(topk), dim=1)
    label = label.transpose(0, 1)
    correct = label.eq(target.unsqueeze(0).expand_as(label))
    if thresh is not None:
        correct = correct & (value > thresh).t()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    correct = correct & valid.unsqueeze(0)
    eps = torch.finfo(torch.float32).eps
    counted = valid.sum().float() + eps
    res = [(correct[:k].reshape(-1).float().sum(0, keepdim=True) + eps).mul_(100.0).div_(counted)
           for k in topk]
    return res[0] if single else res


@contextlib.contextmanager
def _accuracy_for_capture():
    """mmseg's decode heads call :func:`capturable_accuracy` inside the captured step only."""
    import sys

    from mmseg.models.losses.accuracy import accuracy
    mods = [m for name, m in list(sys.modules.items())
            if name.startswith("mmseg.models.decode_heads.") and getattr(m, "accuracy", None) is accuracy]
    for m in mods:
        m.accuracy = capturable_accuracy
    try:
        yield
    finally:
        for m in mods:
            m.accuracy = accuracy


def check(model, optim_wrapper) -> None:
    """Refuse, with the reason, what one captured step cannot do (see the module docstring)."""
    from mmengine.optim import OptimWrapper
    if hasattr(model, "module"):
        raise RuntimeError("graph: one process only (sp): a DDP step's all-reduce is not captured")
    if type(optim_wrapper) is not OptimWrapper:
        raise RuntimeError(f"graph: fp32 only: {type(optim_wrapper).__name__}'s loss scaler checks "
                           "gradients on the host every step")
    if getattr(optim_wrapper, "_accumulative_counts", 1) != 1:
        raise RuntimeError("graph: no gradient accumulation (accumulative_counts must be 1)")


class GraphedTrainStep:
    """``model.train_step`` for mmengine's loop: eager for ``warmup`` calls, then the captured step."""

    def __init__(self, model, backend, warmup: int = WARMUP):
        self.model, self.backend, self.warmup = model, backend, warmup
        self.eager = model.train_step        # the bound method of the model's class
        self.calls, self.graph, self.static, self.lrs = 0, None, None, []

    def __call__(self, data, optim_wrapper):
        self.calls += 1
        if self.calls <= self.warmup:
            with self.backend.side_stream():
                return self.eager(data, optim_wrapper)
        batch = self.model.data_preprocessor(data, True)
        if self.graph is None:
            self._capture(batch, optim_wrapper)
        else:
            self._load(batch)
        self._set_lrs(optim_wrapper)
        self.graph.replay()
        optim_wrapper._inner_count += 1   # what update_params counts; a replay runs no Python
        return {k: v.detach().clone() for k, v in self.graph.outputs.items()}

    def _capture(self, batch, optim_wrapper) -> None:
        import torch
        self.static = {"inputs": batch["inputs"].clone(),
                       "data_samples": copy.deepcopy(batch["data_samples"])}
        device = batch["inputs"].device
        self.lrs = [torch.tensor(float(g["lr"]), device=device)
                    for g in optim_wrapper.optimizer.param_groups]
        optim_wrapper.zero_grad(set_to_none=True)   # the gradients live in the graph's memory
        self.graph = self.backend.capture(lambda: self._step(optim_wrapper))

    def _step(self, optim_wrapper):
        """One training step on the static batch, as mmengine's BaseModel.train_step runs it, with
        the learning-rate tensors in the param groups; no Python state changes outlive it."""
        groups = optim_wrapper.optimizer.param_groups
        floats, count = [g["lr"] for g in groups], optim_wrapper._inner_count
        for g, t in zip(groups, self.lrs):
            g["lr"] = t
        try:
            with optim_wrapper.optim_context(self.model), _accuracy_for_capture():
                losses = self.model._run_forward(self.static, mode="loss")
            parsed, log_vars = self.model.parse_losses(losses)
            optim_wrapper.update_params(parsed)
        finally:
            for g, f in zip(groups, floats):
                g["lr"] = f
            optim_wrapper._inner_count = count
        return log_vars

    def _load(self, batch) -> None:
        """Copy a preprocessed batch into the static one (same shapes, else a one-line error)."""
        new, old = list(_tensors(batch)), list(_tensors(self.static))
        shapes = [tuple(t.shape) for t in new]
        if shapes != [tuple(t.shape) for t in old]:
            raise RuntimeError(f"graph: a batch of another shape ({shapes[:2]} ...) than the captured "
                               f"one ({[tuple(t.shape) for t in old][:2]} ...): the captured step needs "
                               "every batch the same shape (a fixed crop)")
        for dst, src in zip(old, new):
            dst.copy_(src, non_blocking=True)

    def _set_lrs(self, optim_wrapper) -> None:
        for t, g in zip(self.lrs, optim_wrapper.optimizer.param_groups):
            t.fill_(float(g["lr"]))


def install(model, optim_wrapper, warmup: int = WARMUP) -> GraphedTrainStep:
    """Replace ``model.train_step`` (an instance attribute over the class's method) by the graphed
    step; on a CPU the :class:`Rerun` stand-in."""
    check(model, optim_wrapper)
    on_cuda = next(model.parameters()).is_cuda
    step = GraphedTrainStep(model, CudaGraphs() if on_cuda else Rerun(), warmup)
    model.train_step = step
    return step
