"""The tuned mode: PyTorch's best speed on the same workload, proven equivalent to the stock run.

A tuned case trains the same model, batch, crop, data and optimizer as the stock case, with any of
these switches on (``TUNED=1``/``all`` = every one but the OPT_IN ones; ``TUNED=channels_last,foreach``
= just those; ``TUNED=all,train_once`` = all and that one):

``channels_last``  the model (a hook, before_train) and the input batch (a data preprocessor,
                   :class:`SegbenchDataPreProcessor`, a subclass of mmseg's SegDataPreProcessor
                   selected through ``model.data_preprocessor.type``) in channels_last memory format.
``foreach``        the optimizer's multi-tensor (foreach) implementation; on CUDA the fused one for
                   SGD and AdamW (segbench.configs decides by device).
``loader``         pinned host memory and a deeper prefetch queue in the train data loader
                   (persistent workers are already on in the stock case); a hook shuts the
                   loader's workers down when training ends (:data:`LOADER_HOOK`): with pinned
                   memory and persistent workers, torch's DataLoader otherwise waits about 5 s per
                   worker at interpreter exit (pytorch/pytorch#81794).
``workers``        more data-loader worker processes: one per CPU core available to each training
                   process, less one for the process itself, capped at MAX_WORKERS, never fewer
                   than NUM_WORKERS (:func:`loader_workers`). The same data and augmentations;
                   which random crop each sample gets depends on mmengine's per-worker seeds, so
                   the draws differ from the stock run's (their distribution does not).
``non_blocking``   asynchronous host-to-device copies of the batch (mmengine's
                   BaseDataPreprocessor ``non_blocking``; mmseg's SegDataPreProcessor does not take
                   the parameter, so this switch also selects :class:`SegbenchDataPreProcessor`).
``tf32``           TF32 tensor-core maths for fp32 matrix multiplies (``torch.backends.cuda.matmul.
                   allow_tf32``; cuDNN convolutions already use TF32 by default), set by a hook
                   before training. Linear and attention layers (segformer's) are affected; on a
                   CPU it changes nothing.
``train_once``     mmengine's IterBasedTrainLoop calls ``model.train()`` before every iteration, a
                   walk over every module (ocrnet_hrnetw48's 1137: 5-9 ms on the dev CPU; on the
                   H200 the tuned runs' gap between iterations was 4-10 ms, growing with the
                   model). A hook (:data:`TRAIN_ONCE_HOOK`) makes a call in the mode the model is
                   already in a no-op (:class:`TrainOnce`); ``eval()`` or a change of mode still
                   walks. Nothing in a training step changes a module's mode. Opt-in (OPT_IN):
                   on the H200 it took ~1.1 ms off fastscnn's gap between iterations but made no
                   measurable difference to the figure (benchmarks/RESULTS.md, run set h200_2026-11-29_1230).
``compile``        ``torch.compile``, mode from TUNED_COMPILE_MODE, of what TUNED_COMPILE_SCOPE
                   names: ``modules`` (the default) compiles the forward of each of the model's
                   network parts -- backbone, neck, decode head(s), auxiliary head(s) -- by a hook
                   before training (:func:`compile_modules`; the heads' ``loss`` calls
                   ``self.forward``, so the compiled forward is what trains; backward comes from
                   AOTAutograd); losses, resizing and the optimizer stay eager. ``train_step`` is
                   mmengine's own Runner ``compile`` config: the whole (wrapped) ``train_step``,
                   optimizer step included.
``graph``          opt-in: the whole training step (forward, losses, backward, optimizer) captured
                   in one CUDA graph after a few eager iterations and replayed (segbench.graphstep,
                   a hook before training). ``TUNED=all,graph`` = every default switch with graph
                   in place of compile; ``TUNED=all,compile,graph`` keeps compile too (scope
                   ``modules``, mode ``auto`` = ``default``: inductor's kernels are captured in
                   the graph). sp, fp32 and, on CUDA, the ``foreach`` switch (a fused optimizer)
                   only.
``window_sync``    opt-in: the host waits for the GPU once per log window instead of several
                   times every iteration, so its work for the next iteration overlaps the GPU's
                   work on this one (segbench.windowsync): mmengine's RuntimeInfoHook reads the
                   logged values once per window, the data preprocessor swaps the colour channels
                   on the device, the timing hook synchronises at the windows' ends. The same
                   values reach the log; the per-iteration statistics are then over windows.

Nothing else changes: the trainer is mmengine's Runner, unchanged. This module's top level needs no
torch (segbench.launch parses ``TUNED`` before torch is imported); :func:`register` defines and
registers the data preprocessor and the hook.

``python -m segbench.equivalence equivalence MODEL ...`` is the proof; see :func:`equivalence`
"""
from __future__ import annotations

import contextlib
import os

from segbench import configs, windowsync

SWITCHES = ("channels_last", "foreach", "loader", "workers", "non_blocking", "tf32", "train_once",
            "compile", "graph", "window_sync")
# Switches that TUNED=all leaves out -- train_once: measured on the H200, no gain (name it to use
# it, TUNED=all,train_once): the figures recorded for TUNED=all stay the figures of what it runs.
# graph: sp fp32 and fixed shapes only; TUNED=all,graph = graph in place of compile, all,compile,graph both.
# window_sync: it changes what a per-iteration time is (host time inside a window; segbench.windowsync).
OPT_IN = ("train_once", "graph", "window_sync")
DEFAULT_SWITCHES = tuple(s for s in SWITCHES if s not in OPT_IN)
COMPILE_MODES = ("auto", "default", "max-autotune", "reduce-overhead")
GRAPH_COMPILE_MODES = ("auto", "default")   # with graph: no CUDA graphs of inductor's own
EXACT_FP32_WITH_TF32 = ("--exact-fp32 turns TF32 off on every side; leave out the tf32 switch "
                        "(they cannot be combined)")
COMPILE_SCOPES = ("modules", "train_step")
COMPILE_PARTS = ("backbone", "neck", "decode_head", "auxiliary_head")
PREPROCESSOR = "SegbenchDataPreProcessor"
HOOK = "SegbenchChannelsLastHook"
TF32_HOOK = "SegbenchTF32Hook"
TRAIN_ONCE_HOOK = "SegbenchTrainOnceHook"
COMPILE_HOOK = "SegbenchCompileHook"
LOADER_HOOK = "SegbenchLoaderShutdownHook"
GRAPH_HOOK = "SegbenchGraphStepHook"
PREFETCH_FACTOR = 4
MAX_WORKERS = 16
STOCK_VALUES = ("", "0", "false", "no", "off", "stock")   # TUNED values meaning "no switch"
ALL_VALUES = ("1", "all", "true", "yes", "on")


def parse_switches(text: str | None) -> tuple[str, ...]:
    """``TUNED``'s value -> the switches, in SWITCHES order. Raises ValueError on unknown names."""
    text = (text or "").strip()
    if text.lower() in STOCK_VALUES:
        return ()
    if text.lower() in ALL_VALUES:
        return DEFAULT_SWITCHES
    names = [t.strip() for t in text.split(",") if t.strip()]
    named = set(names)                     # as given, before "all" is expanded
    if "all" in names:                     # all,train_once: the default set plus opt-in switches
        names += DEFAULT_SWITCHES
    bad = [n for n in names if n not in SWITCHES and n != "all"]
    if bad or not names:
        raise ValueError(f"TUNED must be 1, all, 0 or a comma list of {', '.join(SWITCHES)} "
                         f"(and all); unknown: {', '.join(map(repr, bad)) or repr(text)}")
    if "graph" in names and "compile" not in named:   # all,graph: graph in place of compile
        names = [n for n in names if n != "compile"]
    return tuple(s for s in SWITCHES if s in names)


def check_switches(switches) -> tuple[str, ...]:
    bad = [s for s in switches if s not in SWITCHES]
    if bad:
        raise ValueError(f"unknown tuned switch(es) {', '.join(map(repr, bad))} "
                         f"(known: {', '.join(SWITCHES)})")
    return tuple(s for s in SWITCHES if s in switches)


def hooks(switches, compile_mode: str = "auto", compile_scope: str = "modules") -> list[dict]:
    """The custom hooks a tuned run adds to the config."""
    out = [dict(type=HOOK, priority="VERY_HIGH")] if "channels_last" in switches else []
    if "tf32" in switches:
        out.append(dict(type=TF32_HOOK, priority="VERY_HIGH"))
    if "train_once" in switches:
        out.append(dict(type=TRAIN_ONCE_HOOK, priority="VERY_HIGH"))
    if "compile" in switches and compile_scope == "modules":
        graph = {"graph": True} if "graph" in switches else {}   # auto then resolves to default
        out.append(dict(type=COMPILE_HOOK, mode=compile_mode, **graph, priority="HIGH"))
    if "loader" in switches:
        out.append(dict(type=LOADER_HOOK))
    if "graph" in switches:   # after every hook that changes the model
        out.append(dict(type=GRAPH_HOOK, priority="LOW"))
    return out


def compile_modules(model, mode: str = "default", backend: str = "inductor") -> list[str]:
    """``torch.compile`` the forward of each network part of an mmseg segmentor (COMPILE_PARTS;
    a ModuleList of heads part by part), in place; returns the names compiled. The module objects,
    parameters and state_dict keys stay the same.

    The compiled function is the class's forward, bound to the module as a method: a deep copy of
    the model (the timing hook's FLOP probe) then calls it with the copy as ``self``, not the
    original module. ``mode`` is torch.compile's (``auto`` resolved by the caller:
    :func:`resolve_compile_mode`)."""
    import types

    import torch
    done = []
    for name in COMPILE_PARTS:
        part = getattr(model, name, None)
        if part is None:
            continue
        parts = list(part) if isinstance(part, torch.nn.ModuleList) else [part]
        for i, module in enumerate(parts):
            kw = {"mode": mode} if backend == "inductor" else {}   # other backends take no mode
            compiled = torch.compile(type(module).forward, backend=backend, **kw)
            module.forward = types.MethodType(compiled, module)
            done.append(name if len(parts) == 1 else f"{name}.{i}")
    return done


def resolve_compile_mode(mode: str, device: str, graph: bool = False) -> str:
    """``auto`` (the default) -> ``reduce-overhead`` (inductor plus CUDA graphs) on a GPU, where
    it was measured fastest -- on an H200 at batch 2 these models are bound by launching kernels,
    and plain ``default`` compile was slower than no compile for fastscnn (benchmarks/RESULTS.md,
    run set h200_2026-11-29_1029) -- and ``default`` elsewhere (CUDA graphs need CUDA), or with the
    ``graph`` switch (the whole step is captured already: inductor's kernels go into that graph).
    Other modes pass."""
    if mode != "auto":
        return mode
    return "reduce-overhead" if device == "cuda" and not graph else "default"


def loader_workers(stock: int, cpus: int, local_procs: int = 1) -> int:
    """The ``workers`` switch's data-loader worker count per training process: the CPU cores
    this host gives each of its ``local_procs`` training processes, less one for the process
    itself, at most MAX_WORKERS, and never fewer than the case's own NUM_WORKERS."""
    share = max(cpus, 1) // max(local_procs, 1) - 1
    return max(stock, min(MAX_WORKERS, share))


def set_tf32(on: bool) -> tuple[bool, bool]:
    """Turn TF32 maths for fp32 matmuls and convolutions on or off; returns the previous flags."""
    import torch
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on or before[1]   # cuDNN's default is already on
    return before


def bare_model(model):
    """The model inside a DDP (or other mmengine) wrapper, or the model itself."""
    return model.module if hasattr(model, "module") else model


@contextlib.contextmanager
def tf32_flags(matmul: bool, cudnn: bool):
    """TF32 maths for fp32 matmuls and cuDNN convolutions set so for the block, the previous
    flags restored after it."""
    import torch
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


class TrainOnce:
    """Stands in for a model's ``train`` method (an instance attribute, so ``model.eval()``,
    which calls ``self.train(False)``, comes here too): walks the modules only when the mode
    changes. Direct calls on submodules bypass it, as they bypass the model's own ``train``."""

    def __init__(self, model):
        self.model = model
        self.walk = model.train          # the bound method of the model's class
        self.mode = None                 # unknown until the first call
        self.walks = 0

    def __call__(self, mode: bool = True):
        if mode != self.mode:
            self.walk(mode)
            self.mode, self.walks = bool(mode), self.walks + 1
        return self.model


def to_channels_last(model) -> None:
    """Convert a model's 4-d parameters and buffers to channels_last, in place.

    ``Module.to`` replaces ``param.data``, so the Parameter objects (and the optimizer's references
    to them) stay the same."""
    import torch
    model.to(memory_format=torch.channels_last)


_REGISTERED: dict = {}


# Optimizers whose fused (single-kernel) CUDA implementation torch has; others get foreach.
FUSED_OPTIMIZERS = ("SGD", "AdamW", "Adam")


def _switch_options(cfg, s) -> dict:
    """The cfg-options of the tuned mode's switches (segbench.tuned); none for the stock case.

    The model (weights) is put in channels_last, TF32 turned on, the network parts compiled (scope
    "modules") and the loader's workers shut down at the end by hooks (segbench.tuned.hooks), not
    options."""
    on = set(s.tuned)
    opts: dict = {}
    if on & {"channels_last", "non_blocking", "window_sync"}:
        # mmseg's SegDataPreProcessor takes none of these parameters: segbench's subclass does.
        opts["model.data_preprocessor.type"] = PREPROCESSOR
    if "window_sync" in on:
        opts["model.data_preprocessor.flip_channels"] = True
        opts["default_hooks.runtime_info.type"] = windowsync.RUNTIME_INFO_HOOK
    if "channels_last" in on:
        opts["model.data_preprocessor.channels_last"] = True
    if "non_blocking" in on:
        opts["model.data_preprocessor.non_blocking"] = True
    if "foreach" in on:
        optimizer = cfg.optim_wrapper.optimizer.get("type")
        if s.device == "cuda" and optimizer in FUSED_OPTIMIZERS:
            opts["optim_wrapper.optimizer.fused"] = True   # fused and foreach exclude each other
        else:
            opts["optim_wrapper.optimizer.foreach"] = True
    if "loader" in on:
        opts["train_dataloader.pin_memory"] = True
        opts["train_dataloader.prefetch_factor"] = PREFETCH_FACTOR
        opts["train_dataloader.persistent_workers"] = True
    if "workers" in on:
        opts["train_dataloader.num_workers"] = loader_workers(
            s.num_workers, s.cpus or len(os.sched_getaffinity(0)), s.local_procs)
    if "graph" in on and s.device == "cuda" and \
            cfg.optim_wrapper.optimizer.get("type") in ("Adam", "AdamW"):
        opts["optim_wrapper.optimizer.capturable"] = True   # their step count on the GPU
    if "compile" in on and s.compile_scope == "train_step":
        # mmengine's Runner compiles train_step
        opts["compile.mode"] = resolve_compile_mode(s.compile_mode, s.device, "graph" in on)
    # (scope "modules": a hook, segbench.tuned.hooks)
    return opts

def validate(s) -> None:
    """A case's tuned settings (segbench.configs.TrainSettings): switches, compile mode and scope."""
    s.validate()
    check_switches(s.tuned)
    if s.compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, "
                         f"not {s.compile_mode!r}")
    if s.compile_scope not in COMPILE_SCOPES:
        raise ValueError(f"compile scope must be one of {', '.join(COMPILE_SCOPES)}, "
                         f"not {s.compile_scope!r}")
    if "graph" not in s.tuned:
        return
    compiled = "compile" in s.tuned
    rules = [   # (refused when, why): the first that holds is the error
        (compiled and s.compile_scope != "modules", "graph with compile: compile scope modules only "
         "(mmengine's train_step compile would wrap the captured step)"),
        (compiled and s.compile_mode not in GRAPH_COMPILE_MODES,
         f"graph with compile: compile mode {' or '.join(GRAPH_COMPILE_MODES)}, not {s.compile_mode} "
         "(its CUDA graphs inside the captured step)"),
        (s.distributed, "graph runs one process (sp) only"),
        (s.precision != "fp32", f"graph runs fp32 only, not {s.precision}"),
        (s.device == "cuda" and "foreach" not in s.tuned,
         "graph on a GPU needs the foreach switch (a fused optimizer)")]
    why = next((why for refused, why in rules if refused), None)
    if why:
        raise ValueError(why)


def options(cfg, s) -> dict:
    """Every cfg-option of the case: the stock ones (segbench.configs.options) and the switches'."""
    validate(s)
    return {**configs.options(cfg, s), **_switch_options(cfg, s)}


def build(s):
    """The case's config, tuned switches applied (the stock case's when there are none)."""
    validate(s)
    cfg = configs.build(s)
    cfg.merge_from_dict(_switch_options(cfg, s))
    return cfg


def register() -> None:
    """Define and register the data preprocessor (mmseg MODELS) and the hook (mmengine HOOKS)."""
    if _REGISTERED:
        return
    import torch
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS
    from mmseg.models.data_preprocessor import SegDataPreProcessor
    from mmseg.registry import MODELS

    @MODELS.register_module(name=PREPROCESSOR)
    class SegbenchDataPreProcessor(SegDataPreProcessor):
        """mmseg's SegDataPreProcessor, plus: the batch in channels_last, mmengine's
        ``non_blocking`` host-to-device copy (which mmseg's ``__init__`` does not pass on), and
        with ``flip_channels`` (the window_sync switch) BGR to RGB by ``flip(0)`` on the device:
        mmseg's ``x[[2, 1, 0], ...]`` copies an index from host memory to the GPU every batch."""

        def __init__(self, *args, channels_last: bool = False, non_blocking: bool = False,
                     flip_channels: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self._non_blocking = bool(non_blocking)
            self.channels_last = bool(channels_last)
            self.flip_channels = bool(flip_channels) and self.channel_conversion
            if self.flip_channels:
                self.channel_conversion = False   # done here instead, with the same condition

        def forward(self, data: dict, training: bool = False) -> dict:
            if self.flip_channels:
                data = self.cast_data(data)      # mmseg's forward casts again: a no-op then
                inputs = data["inputs"]
                if inputs[0].size(0) == 3:
                    data = {**data, "inputs": [x.flip(0) for x in inputs]}
            out = super().forward(data, training)
            inputs = out["inputs"]
            if self.channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
                out["inputs"] = inputs.contiguous(memory_format=torch.channels_last)
            return out

    @HOOKS.register_module(name=HOOK)
    class SegbenchChannelsLastHook(Hook):
        """Puts the model's weights in channels_last before training starts."""

        def before_train(self, runner) -> None:
            to_channels_last(bare_model(runner.model))
            runner.logger.info("[segbench] tuned: model converted to channels_last")

    @HOOKS.register_module(name=TF32_HOOK)
    class SegbenchTF32Hook(Hook):
        """TF32 tensor-core maths for fp32 matrix multiplies, from before training on."""

        def before_train(self, runner) -> None:
            set_tf32(True)
            runner.logger.info("[segbench] tuned: TF32 on for fp32 matmuls and convolutions")

    @HOOKS.register_module(name=TRAIN_ONCE_HOOK)
    class SegbenchTrainOnceHook(Hook):
        """``runner.model.train()`` walks the modules only when the mode changes (TrainOnce)."""

        def before_train(self, runner) -> None:
            runner.model.train = TrainOnce(runner.model)
            runner.logger.info("[segbench] tuned: model.train() walks the modules only when "
                               "the mode changes")

    @HOOKS.register_module(name=COMPILE_HOOK)
    class SegbenchCompileHook(Hook):
        """torch.compile of the model's network parts (:func:`compile_modules`) before training.
        Compilation itself happens in the first iterations, which the figures skip."""

        def __init__(self, mode: str = "auto", graph: bool = False):
            self.mode, self.graph = mode, graph

        def before_train(self, runner) -> None:
            model = bare_model(runner.model)
            mode = resolve_compile_mode(self.mode, next(model.parameters()).device.type, self.graph)
            names = compile_modules(model, mode)
            runner.logger.info(f"[segbench] tuned: torch.compile (mode {mode}) of "
                               f"{', '.join(names)}")

    @HOOKS.register_module(name=GRAPH_HOOK)
    class SegbenchGraphStepHook(Hook):
        """The whole training step in one CUDA graph (segbench.graphstep), from before training."""

        def before_train(self, runner) -> None:
            from segbench import graphstep
            step = graphstep.install(runner.model, runner.optim_wrapper)
            kind = "a CUDA graph" if isinstance(step.backend, graphstep.CudaGraphs) else \
                "a re-run stand-in (no GPU: no speed-up)"
            runner.logger.info(f"[segbench] tuned: the whole train step captured in {kind} after "
                               f"{step.warmup} eager iterations")

    @HOOKS.register_module(name=LOADER_HOOK)
    class SegbenchLoaderShutdownHook(Hook):
        """Shut the train loader's worker processes down when training ends, while the
        interpreter is whole (see the ``loader`` switch)."""

        def after_train(self, runner) -> None:
            loop = runner.train_loop
            loader = getattr(loop, "dataloader", None)
            it = getattr(loader, "_iterator", None)        # persistent workers live here
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
                runner.logger.info("[segbench] tuned: train loader workers shut down")

    windowsync.register()
    _REGISTERED.update(preprocessor=SegbenchDataPreProcessor, hook=SegbenchChannelsLastHook,
                       tf32_hook=SegbenchTF32Hook, compile_hook=SegbenchCompileHook,
                       train_once_hook=SegbenchTrainOnceHook,
                       loader_hook=SegbenchLoaderShutdownHook, graph_hook=SegbenchGraphStepHook)
