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

Two mmseg functions read the GPU on the host, which capture forbids: ``accuracy`` (the logged
``acc_seg``: a boolean-mask index) and the sigmoid cross-entropy's ``_expand_onehot_labels``
(``nonzero``; fastscnn's heads). Inside the captured step they are replaced by
:func:`capturable_accuracy` and :func:`capturable_expand_onehot_labels`, the same values without
the reads.

What it needs (:func:`check`, before training): one process (no DDP), mmengine's plain
OptimWrapper (fp32: no loss scaler, whose inf checks read the GPU), no gradient accumulation, and
batches of one shape (a fixed crop; another shape is a one-line error). On CUDA the optimizer must
be a fused one (the ``foreach`` switch: foreach SGD reads a tensor learning rate on the host), and
Adam and AdamW ``capturable=True`` (segbench.tuned sets both).

On a CPU there is no CUDA graph: :class:`Rerun` replays by running the captured step again, reading
only the static tensors. That gives the same numbers as a replay and no speed-up: it is how the
plumbing (batch copies, learning rate, optimizer counts) is tested without a GPU; and it fails a
host read in the forward and losses (:class:`NoHostReads`) as a capture would.
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

    strict = staticmethod(contextlib.nullcontext)   # a host read fails the capture itself

    def capture(self, fn) -> Captured:
        graph = self.torch.cuda.CUDAGraph()
        # records the kernels, runs none; thread_local: the loader's pin-memory thread may use CUDA
        with self.torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = fn()
        return Captured(graph.replay, outputs)


HOST_READS = ("nonzero", "_local_scalar_dense", "masked_select", "item")


def NoHostReads():
    """A torch dispatch mode that fails an op reading a tensor's values on the host (``nonzero``,
    ``.item()``, a boolean-mask index): what a CUDA graph capture cannot hold."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            masked = name.startswith("index") and len(args) > 1 and isinstance(args[1], (list, tuple)) \
                and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
            if name in HOST_READS or masked:
                raise RuntimeError(f"graph: {func} reads the GPU on the host inside the captured step")
            return func(*args, **(kwargs or {}))
    return _Mode()


class Rerun:
    """The CPU's stand-in: a replay runs the captured step again (see the module docstring)."""

    side_stream = staticmethod(contextlib.nullcontext)
    strict = staticmethod(NoHostReads)

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


def capturable_expand_onehot_labels(labels, label_weights, target_shape, ignore_index):
    """mmseg's ``_expand_onehot_labels`` (the sigmoid cross-entropy's one-hot targets) by a scatter
    instead of ``nonzero`` and a boolean-mask index; the same three tensors."""
    import torch
    valid = (labels >= 0) & (labels != ignore_index)
    bin_labels = labels.new_zeros(target_shape)
    bin_labels.scatter_(1, torch.where(valid, labels, 0).unsqueeze(1), valid.unsqueeze(1).to(labels.dtype))
    valid_mask = valid.unsqueeze(1).expand(target_shape).float()
    if label_weights is None:
        return bin_labels, valid_mask, valid_mask
    return bin_labels, label_weights.unsqueeze(1).expand(target_shape) * valid_mask, valid_mask


@contextlib.contextmanager
def _capturable_mmseg():
    """mmseg's decode heads and losses call the capturable functions inside the captured step only."""
    import sys

    from mmseg.models.losses import cross_entropy_loss
    from mmseg.models.losses.accuracy import accuracy
    swaps = [(m, "accuracy", accuracy, capturable_accuracy) for name, m in list(sys.modules.items())
             if name.startswith("mmseg.models.decode_heads.") and getattr(m, "accuracy", None) is accuracy]
    swaps.append((cross_entropy_loss, "_expand_onehot_labels", cross_entropy_loss._expand_onehot_labels,
                  capturable_expand_onehot_labels))
    for m, name, _, new in swaps:
        setattr(m, name, new)
    try:
        yield
    finally:
        for m, name, old, _ in swaps:
            setattr(m, name, old)


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
    if getattr(optim_wrapper, "clip_grad_kwargs", None):
        raise RuntimeError("graph: no gradient clipping (mmengine logs its norm from the host)")
    opt, on_cuda = optim_wrapper.optimizer, next(model.parameters()).is_cuda
    if on_cuda and not opt.defaults.get("fused"):
        raise RuntimeError(f"graph: a fused optimizer on a GPU (the foreach switch), not "
                           f"{type(opt).__name__} without fused=True")
    if on_cuda and "capturable" in opt.defaults and not opt.defaults["capturable"]:
        raise RuntimeError(f"graph: {type(opt).__name__} needs capturable=True")


class GraphedTrainStep:
    """``model.train_step`` for mmengine's loop: eager for ``warmup`` calls, then the captured step."""

    def __init__(self, model, backend, warmup: int = WARMUP):
        self.model, self.backend, self.warmup = model, backend, warmup
        self.eager = model.train_step        # the bound method of the model's class
        self.calls, self.graph, self.static, self.lrs, self.lr_all = 0, None, None, [], None
        self.static_tensors, self.static_shapes = [], []   # the static batch's, in _tensors order

    def __deepcopy__(self, memo):
        # a copy of the model (the FLOP probe's) trains eagerly: the graph and streams stay here
        return copy.deepcopy(self.eager, memo)

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
        self.static_tensors = list(_tensors(self.static))
        self.static_shapes = [tuple(t.shape) for t in self.static_tensors]
        device = batch["inputs"].device
        groups = optim_wrapper.optimizer.param_groups
        self.lr_all = torch.tensor([float(g["lr"]) for g in groups], device=device)
        self.lrs = list(self.lr_all.unbind())   # 0-d views: one copy per replay fills them all
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
            with optim_wrapper.optim_context(self.model), _capturable_mmseg(), self.backend.strict():
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
        new = list(_tensors(batch))
        shapes = [tuple(t.shape) for t in new]
        if shapes != self.static_shapes:
            raise RuntimeError(f"graph: a batch of another shape ({shapes[:2]} ...) than the captured "
                               f"one ({self.static_shapes[:2]} ...): the captured step needs every "
                               "batch the same shape (a fixed crop)")
        for dst, src in zip(self.static_tensors, new):
            dst.copy_(src, non_blocking=True)

    def _set_lrs(self, optim_wrapper) -> None:
        """The schedulers' floats into the graph's learning-rate tensor. On a GPU from pinned
        memory, queued: a copy from pageable memory would make the host wait for the GPU to
        finish all its queued work every iteration (torch synchronises after such a copy)."""
        import torch
        floats = [float(g["lr"]) for g in optim_wrapper.optimizer.param_groups]
        src = torch.tensor(floats, dtype=self.lr_all.dtype)
        if self.lr_all.is_cuda:
            src = src.pin_memory()   # torch's pinned-memory cache reuses it only once copied
        self.lr_all.copy_(src, non_blocking=True)


def install(model, optim_wrapper, warmup: int = WARMUP) -> GraphedTrainStep:
    """Replace ``model.train_step`` (an instance attribute over the class's method) by the graphed
    step; on a CPU the :class:`Rerun` stand-in."""
    check(model, optim_wrapper)
    on_cuda = next(model.parameters()).is_cuda
    step = GraphedTrainStep(model, CudaGraphs() if on_cuda else Rerun(), warmup)
    model.train_step = step
    return step
