"""The proofs that a tuned run trains the same thing as the stock run.

``python -m segbench.equivalence equivalence MODEL ...`` (``segbench equivalence``): the stock and
the tuned Runner, built from the harness's configs, take the same initial weights and the same
fixed batches and run real ``model.train_step`` steps in lock-step, each step also run by a float64
copy of the stock model (:func:`equivalence` says what is and is not compared).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import sys
import tempfile
from pathlib import Path

from segbench import configs, tuned
from segbench.tuned import (COMPILE_MODES, COMPILE_SCOPES, DEFAULT_SWITCHES, EXACT_FP32_WITH_TF32,
                            parse_switches)

# Tolerances of the equivalence check, per precision: (loss, state). ``loss``: the relative
# difference of one step's training loss; ``state``: the difference of the training state after
# one step (weights relative to the step's own update; BN statistics and optimizer state relative
# to their size; see _state_diff).
# fp32 (1e-3, 5e-2). Both sides compute the same maths and differ only in the order of
# floating-point operations (channels_last convolution kernels, cuDNN's algorithm choice,
# foreach/fused optimizer kernels, inductor's fused kernels). The loss, a forward pass, moves by a
# few ulps (measured on this CPU, fastscnn 64x128: <= 1e-6). One step's update is much more
# sensitive: at benchmark batch sizes of 2 the BN layers normalise over few values (fastscnn's
# pyramid pooling branch over 2), so the backward pass amplifies rounding. Measured on the CPU,
# fastscnn 64x128, 3 steps: perturbing the weights by one ulp (2^-24, relative, random) changes
# the state by up to 1.5e-2; channels_last+foreach+loader+non_blocking by up to 1.1e-2, compile by
# up to 8.9e-3. 5e-2 leaves room for that (TF32 cuDNN kernels on a GPU may need more: not
# measured) while a real difference is far outside: a 2x learning rate gives 1.0 (a whole
# update), other data or weights change the loss by 1e-2 or more. Every run also reports that
# one-ulp control, so the margin is visible per run. fp16/bf16 autocast (11/8-bit mantissas):
# looser; judgements, not measured here (AMP needs a GPU).
TOLERANCE = {"fp32": (1e-3, 5e-2), "fp16": (1e-2, 1e-1), "bf16": (3e-2, 2e-1)}
CONTROL_EPS = 2.0 ** -24
# The fp64 reference rule (see equivalence): the tuned step's distance from the same step computed
# in float64 may be at most REF_MULTIPLIER x the stock step's distance from it, plus a tenth of the
# state tolerance -- the rule torch's own compiler accuracy checks apply against an fp64 reference
# (torch._dynamo.utils.same: multiplier 2, 3 for fp16/bf16 results, + tol/10).
REF_MULTIPLIER = {"fp32": 2.0, "fp16": 3.0, "bf16": 3.0}


# ---------------------------------------------------------------------------------------------
# Equivalence

def _side(model: str, switches: tuple[str, ...], *, crop, data_root, precision, iters, seed,
          compile_mode, compile_scope="modules", work_dir: Path, device: str):
    """One side (stock or tuned): mmengine's Runner built from the harness's config."""
    from mmengine.runner import Runner

    s = configs.TrainSettings(model=model, batch_size=2, max_iters=max(iters, 1), num_workers=1,
                              precision=precision, crop=crop, data_root=data_root,
                              work_dir=str(work_dir), log_interval=1, device=device, seed=seed,
                              tuned=switches, compile_mode=compile_mode,
                              compile_scope=compile_scope)
    cfg = tuned.build(s)
    # unique: mmengine keeps one logger/visualizer per experiment name in a process
    cfg.experiment_name = f"{work_dir.parent.name}_{work_dir.name}"
    cfg.visualizer.name = cfg.experiment_name
    cfg.log_level = "WARNING"
    cfg.custom_hooks = []
    return Runner.from_cfg(cfg), cfg


def _batches(runner, cfg, n: int, seed: int, num_workers: int | None = None) -> list:
    dl_cfg = copy.deepcopy(cfg.train_dataloader)
    if num_workers is not None:
        dl_cfg.num_workers = num_workers
    loader = runner.build_dataloader(dl_cfg, seed=seed)
    it = iter(loader)
    out = [next(it) for _ in range(n)]
    del it, loader
    return out


def _same_batches(a: list, b: list) -> bool:
    import torch
    for x, y in zip(a, b, strict=True):
        if len(x["inputs"]) != len(y["inputs"]):
            return False
        for u, v in zip(x["inputs"], y["inputs"]):
            if not torch.equal(u, v):
                return False
        for u, v in zip(x["data_samples"], y["data_samples"]):
            if not torch.equal(u.gt_sem_seg.data, v.gt_sem_seg.data):
                return False
    return True


def _no_dropout(model) -> int:
    """Dropout and drop-path off (probability 0), in place; returns how many modules changed.

    The equivalence check compares the deterministic part of a training step. Random masks cannot
    be compared sample by sample across the sides: compiled code draws them from inductor's own
    generator (on CUDA, Philox in Triton kernels; the likely reason why, on the H200, every switch
    set with ``compile`` moved fastscnn's loss by 1e-2 and none without it by more than 6e-6), and
    a float64 model draws other numbers than a float32 one from the same seed. The
    dropout modules are the same code on every side, and no switch touches them."""
    import torch
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p:
            m.p, n = 0.0, n + 1
        elif isinstance(getattr(m, "drop_prob", None), float) and m.drop_prob:   # DropPath
            m.drop_prob, n = 0.0, n + 1
    return n


def _as_float64(model) -> None:
    """The model in float64, its data preprocessor's output cast to match (the fp64 reference).
    Parameters stay the same objects (``Module.double`` replaces their data)."""
    model.double()
    model.data_preprocessor.register_forward_hook(
        lambda _mod, _args, out: dict(out, inputs=out["inputs"].double()))


def _prepare(runner, cfg, iters: int, state: dict, *, channels_last=False, compile_=None,
             compile_mode: str = "default", lr_scale: float = 1.0, float64: bool = False,
             graph: bool = False):
    """The side's model (with ``state`` loaded, dropout off) and its optimizer wrapper, as
    Runner.train() would set them up, plus the tuned switches that act on the model."""
    model = runner.model
    model.load_state_dict(state)
    _no_dropout(model)
    if float64:
        _as_float64(tuned.bare_model(model))
    optim_wrapper = runner.build_optim_wrapper(copy.deepcopy(cfg.optim_wrapper))
    optim_wrapper.initialize_count_status(model, 0, iters)
    if lr_scale != 1.0:                    # test-only: a deliberately non-equivalent run
        for group in optim_wrapper.optimizer.param_groups:
            group["lr"] *= lr_scale
    if channels_last:
        tuned.to_channels_last(tuned.bare_model(model))
    if compile_ == "train_step":
        runner._maybe_compile("train_step")   # mmengine's own compile path (cfg.compile)
    elif compile_ == "modules":
        tuned.compile_modules(tuned.bare_model(model), compile_mode)
    model.train()
    if graph:   # step 1 eager, step 2 captured and replayed, later steps replayed
        from segbench import graphstep
        graphstep.install(model, optim_wrapper, warmup=1)
    return model, optim_wrapper


def _step(model, optim_wrapper, batch, seed: int, tf32: bool = False) -> float:
    from mmengine.runner import set_random_seed
    set_random_seed(seed)                  # identical RNG state on both sides (dropout)
    # the TF32 flags are process-wide: on for this side's step only
    with tuned.tf32_flags(True, True) if tf32 else contextlib.nullcontext():
        log_vars = model.train_step(copy.deepcopy(batch), optim_wrapper)
    return float(log_vars["loss"].detach())


def _params(optimizer) -> list:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _snapshot(model, optimizer) -> dict:
    """Every floating-point tensor of the training state: weights, BN running statistics and the
    optimizer's state (momentum buffers, Adam moments), in float64 on the CPU."""
    import torch
    out = {f"model.{k}": v.detach().double().cpu() for k, v in model.state_dict().items()
           if torch.is_floating_point(v)}
    for i, p in enumerate(_params(optimizer)):
        for k, v in optimizer.state.get(p, {}).items():
            if torch.is_tensor(v) and torch.is_floating_point(v):
                out[f"optim.{i}.{k}"] = v.detach().double().cpu()
    return out


def _sync(src_model, src_opt, dst_model, dst_opt) -> None:
    """Copy the training state (weights, buffers, optimizer state -- not the optimizer's
    hyper-parameters, which are the switches' business) from one side to the other, in place: the
    destination's tensors keep their memory format."""
    import torch
    dst_model.load_state_dict(src_model.state_dict())
    for a, b in zip(_params(src_opt), _params(dst_opt), strict=True):
        src, dst = src_opt.state.get(a, {}), dst_opt.state[b]
        for k, v in src.items():
            if torch.is_tensor(v) and torch.is_tensor(dst.get(k)) and dst[k].shape == v.shape:
                dst[k].copy_(v)
            else:
                dst[k] = v.clone() if torch.is_tensor(v) else copy.deepcopy(v)


def _norm(tensors: dict, keys, other: dict | None = None) -> float:
    total = 0.0
    for k in keys:
        d = tensors[k] if other is None else tensors[k] - other[k]
        total += float(d.pow(2).sum())
    return math.sqrt(total)


def _state_diff(before: dict, stock: dict, tuned: dict, params: set) -> dict:
    """How far the tuned side's training state is from the stock side's after one step.

    ``weights``: ||tuned - stock|| / ||stock step's change||, over all parameters (1.0 = a whole
    update's worth of difference). ``buffers`` (BN running statistics) and ``optimizer`` (momentum,
    Adam moments): ||tuned - stock|| / ||stock||, relative to their size -- a running mean whose
    batch mean is near zero changes by little more than its rounding, so its change is no scale."""
    if set(stock) != set(tuned):
        raise RuntimeError("the two sides' training states differ in keys: "
                           f"{sorted(set(stock) ^ set(tuned))[:3]}")
    groups = {"weights": [k for k in stock if k in params],
              "buffers": [k for k in stock if k.startswith("model.") and k not in params],
              "optimizer": [k for k in stock if k.startswith("optim.")]}
    out = {}
    for name, keys in groups.items():
        if not keys:
            continue
        diff = _norm(tuned, keys, stock)
        if name == "weights":
            scale = _norm(stock, keys, {k: before.get(k, 0 * stock[k]) for k in keys})
        else:
            scale = _norm(stock, keys)
        out[name] = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
    return out


def _top_weights(before: dict, stock: dict, tuned: dict, params: set, n: int = 3) -> list:
    """Where the two sides' weights differ most after one step: the ``n`` parameters with the
    largest share of ||tuned - stock||^2, each with its share of the stock step's own update
    (||change||^2). A parameter holding most of the difference but little of the update is one
    whose update is mostly rounding -- ill-conditioned, not computed differently."""
    keys = [k for k in params if k in stock and k in tuned]
    diff = {k: _norm(tuned, [k], stock) ** 2 for k in keys}
    upd = {k: _norm(stock, [k], {k: before.get(k, 0 * stock[k])}) ** 2 for k in keys}
    d_total, u_total = sum(diff.values()), sum(upd.values())
    if d_total <= 0:
        return []
    top = sorted(diff, key=diff.get, reverse=True)[:n]
    return [{"name": k.removeprefix("model."), "diff_share": diff[k] / d_total,
             "update_share": upd[k] / u_total if u_total > 0 else None} for k in top]


def _control(model, optim_wrapper, batch, seed: int):
    """The stock step run once more from the same state with the weights perturbed by one ulp;
    the state is restored afterwards. Returns (loss, state after the step)."""
    import torch
    state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(optim_wrapper.optimizer.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.device)
            p.mul_(1 + CONTROL_EPS * noise.to(p.dtype))
    loss = _step(model, optim_wrapper, batch, seed)
    after = _snapshot(model, optim_wrapper.optimizer)
    model.load_state_dict(state)
    optim_wrapper.optimizer.load_state_dict(opt_state)
    return loss, after


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def equivalence(model: str, switches=DEFAULT_SWITCHES, *, exact_fp32: bool = False, **kw) -> dict:
    """Train the stock and the tuned configuration side by side, step by step, and compare.

    Each side is mmengine's Runner built from the harness's config (stock: no switch; tuned: the
    switches' cfg-options, data preprocessor and channels_last conversion, and mmengine's own
    ``compile`` of ``train_step``), with the optimizer wrapper built from that side's config, so
    the foreach / fused optimizer really runs. Each of N steps is a real ``model.train_step(data,
    optim_wrapper)`` on both sides (forward, loss, backward, optimizer step, BN statistics update).

    Lock-step: before every step the tuned side is given the stock side's whole training state
    (weights, BN running statistics, optimizer state; in place, so channels_last layouts are kept;
    the optimizer's hyper-parameters are not copied). Why not two free-running trajectories: at
    this scale (batch 2, small crops, fresh weights, the models' own learning rates) training is
    chaotic -- perturbing fastscnn's initial weights by 1e-7 (relative, random) moved its loss by
    up to 3e-3 within 3-5 steps, as much as channels_last's rounding differences did -- so
    free-running losses cannot tell float reordering from a real difference. Lock-step checks one
    training step at N successive states of the real stock trajectory, without that amplification.

    Compared per step: (1) the loss, relative difference, within the precision's loss tolerance
    (TOLERANCE); (2) the training state after the step, as the L2 norm of (tuned - stock) over
    all of it divided by the norm of the stock step's own change of that state (so 1.0 means "a
    whole update's worth of difference"), per part (weights, buffers, optimizer state). The
    state passes if that is within the state tolerance -- or, failing that, if the tuned step is
    as close to the exact step as the stock step is (the fp64 rule below).

    Why the fp64 rule: on an H200 at the seed crops one step's update was far more sensitive than
    on the CPU -- the one-ulp control moved fastscnn's state by 0.14 of an update (CPU, 64x128:
    0.015), and channels_last+foreach (identical loss to 4e-6) by 0.77 -- because at batch 2 some
    layers' gradients are ill-conditioned (BN over the pyramid pooling's 1x1 bins normalises 2
    values) and the GPU's convolutions differ in rounding by algorithm (TF32 by default, in
    stock too). A fixed tolerance cannot tell that from a bug; an exact reference can. Each step
    is also computed by a third, float64 copy of the stock model from the same state and batch,
    and the tuned step passes if, for every part, its distance from that float64 step is at most
    REF_MULTIPLIER (2 for fp32) times the stock step's distance from it, plus a tenth of the
    state tolerance -- the rule torch's own compiler accuracy checks apply against an fp64
    reference. The reference is used only if its loss agrees with stock's within the loss
    tolerance (it computed the same step); ``reference=False`` skips it.

    Identical inputs: the same initial weights (the stock model initialised as Runner.train()
    does, its state_dict loaded into the tuned model); N batches drawn once from the stock config's
    seeded train data loader (random crop and flip run in its workers), each side training on a
    copy (with ``loader`` on, the tuned config's loader is drawn from too, at the stock worker
    count, and must give bit-identical batches; ``workers`` only changes which random crops a run
    draws, so both sides train on the stock loader's batches); dropout and drop-path off on every
    side (:func:`_no_dropout` says why); the RNGs seeded before every step on both sides.

    Control (context for the tolerance, not part of the verdict): before each stock step, the
    same step is also run from the stock state with the weights perturbed by one ulp
    (CONTROL_EPS, relative, random), then the state is restored; its differences show how much
    this very step amplifies rounding.

    ``tf32``: the flags are process-wide, so they are turned on for each tuned step only.

    Not compared: the learning-rate schedule (stepped by a hook these steps do not run; both sides
    use the initial rate, which no switch touches), speed, multi-process (DDP/SyncBN) behaviour.
    ``lr_scale`` multiplies the tuned side's learning rate: a test-only, deliberately
    non-equivalent change that the check must detect.

    ``exact_fp32``: TF32 off for every side's convolutions and matrix multiplies (cuDNN's
    convolutions use TF32 by default, in stock too), for the whole check; refused with the
    ``tf32`` switch. A diagnosis, not the benchmark's setting: when a step fails the fp64 rule with
    TF32 and passes without, the failure is TF32's rounding in that step, not different maths.
    Keyword arguments: see :func:`_equivalence`.
    """
    switches = tuned.check_switches(switches)
    if exact_fp32 and "tf32" in switches:
        raise ValueError(EXACT_FP32_WITH_TF32)
    with tuned.tf32_flags(False, False) if exact_fp32 else contextlib.nullcontext():
        r = _equivalence(model, switches, **kw)
    r["exact_fp32"] = exact_fp32
    return r


def _equivalence(model: str, switches, *, iters: int = 5, crop=(64, 128),
                 data_root=None, precision: str = "fp32", seed: int = 0,
                 compile_mode: str = "auto", compile_scope: str = "modules",
                 lr_scale: float = 1.0,
                 tolerance: tuple[float, float] | None = None, control: bool = True,
                 reference: bool = True) -> dict:
    """The check itself (see :func:`equivalence`)."""
    import torch
    from mmengine.runner import set_random_seed

    from segbench import env
    switches = tuned.check_switches(switches)
    if "graph" in switches and iters < 3:
        raise ValueError("graph: --iters 3 or more (step 1 eager, 2 captured, 3 replayed on a new batch)")
    tuned.register()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    compile_mode = tuned.resolve_compile_mode(compile_mode, device, graph="graph" in switches)
    loss_tol, state_tol = TOLERANCE[precision] if tolerance is None else tolerance
    data_root = str(data_root or env.DEFAULT_DATA)
    common = dict(crop=tuple(crop) if crop else None, data_root=data_root, precision=precision,
                  iters=iters, seed=seed, compile_mode=compile_mode,
                  compile_scope=compile_scope, device=device)
    with tempfile.TemporaryDirectory(prefix="segbench_equiv_") as tmp:
        stock_runner, stock_cfg = _side(model, (), work_dir=Path(tmp) / "stock", **common)
        batches = _batches(stock_runner, stock_cfg, iters, seed)
        tuned_runner, tuned_cfg = _side(model, switches, work_dir=Path(tmp) / "tuned", **common)
        same_data = None
        if "loader" in switches:
            # the worker count decides the random draws (mmengine's per-worker seeds): compare
            # the loader switch's batches at the stock count
            same_data = _same_batches(batches, _batches(tuned_runner, tuned_cfg, iters, seed,
                                                        stock_cfg.train_dataloader.num_workers))
        set_random_seed(seed)                 # the same initial weights whatever the switches
        stock_runner._init_model_weights()   # what Runner.train() does before training
        state = copy.deepcopy(stock_runner.model.state_dict())
        s_model, s_ow = _prepare(stock_runner, stock_cfg, iters, state)
        t_model, t_ow = _prepare(tuned_runner, tuned_cfg, iters, state,
                                 channels_last="channels_last" in switches,
                                 compile_=compile_scope if "compile" in switches else None,
                                 compile_mode=compile_mode, lr_scale=lr_scale,
                                 graph="graph" in switches)
        r_model = r_ow = None
        if reference:
            ref_runner, ref_cfg = _side(model, (), work_dir=Path(tmp) / "ref",
                                        **dict(common, precision="fp32"))
            r_model, r_ow = _prepare(ref_runner, ref_cfg, iters, state, float64=True)
        multiplier = REF_MULTIPLIER[precision]
        stock_losses, tuned_losses, loss_rel, state_rel = [], [], [], []
        state_parts: dict = {}
        control_rows: list = []
        ref_rows: list = []
        state_top: list = []
        params = {f"model.{n}" for n, _ in s_model.named_parameters()}
        for step, batch in enumerate(batches):
            if step:
                _sync(s_model, s_ow.optimizer, t_model, t_ow.optimizer)
                if reference:
                    _sync(s_model, s_ow.optimizer, r_model, r_ow.optimizer)
            before = _snapshot(s_model, s_ow.optimizer)
            if control:
                c_loss, c_state = _control(s_model, s_ow, batch, seed + step)
            stock_losses.append(_step(s_model, s_ow, batch, seed + step))
            tuned_losses.append(_step(t_model, t_ow, batch, seed + step, "tf32" in switches))
            after_s = _snapshot(s_model, s_ow.optimizer)
            after_t = _snapshot(t_model, t_ow.optimizer)
            parts = _state_diff(before, after_s, after_t, params)
            for k, v in parts.items():
                state_parts[k] = max(state_parts.get(k, 0.0), v)
            state_rel.append(max(parts.values()))
            state_top.append(_top_weights(before, after_s, after_t, params))
            if control:
                control_rows.append({"loss_rel_diff": _rel(c_loss, stock_losses[-1]),
                                     "state_rel_diff": max(_state_diff(before, after_s, c_state,
                                                                       params).values())})
            loss_rel.append(_rel(tuned_losses[-1], stock_losses[-1]))
            if reference:
                ref_loss = _step(r_model, r_ow, batch, seed + step)
                after_r = _snapshot(r_model, r_ow.optimizer)
                ref_rows.append(_ref_row(ref_loss, stock_losses[-1], tuned_losses[-1],
                                         _state_diff(before, after_r, after_s, params),
                                         _state_diff(before, after_r, after_t, params),
                                         multiplier, loss_tol, state_tol))
    finite = all(math.isfinite(x) for x in stock_losses + tuned_losses + state_rel)
    max_loss, max_state = max(loss_rel), max(state_rel)
    state_ok = _state_verdicts(state_rel, ref_rows, state_tol)
    ok = finite and max_loss <= loss_tol and all(state_ok) and same_data is not False
    return {"model": model, "switches": list(switches), "device": device, "precision": precision,
            "iters": iters, "crop": list(crop) if crop else None, "seed": seed,
            "compile_mode": compile_mode if "compile" in switches else None,
            "compile_scope": compile_scope if "compile" in switches else None,
            "lr_scale": lr_scale, "loss_tolerance": loss_tol, "state_tolerance": state_tol,
            "stock_losses": stock_losses, "tuned_losses": tuned_losses, "loss_rel_diff": loss_rel,
            "state_rel_diff": state_rel, "max_loss_rel_diff": max_loss,
            "max_state_rel_diff": max_state, "max_state_rel_diff_by_part": state_parts,
            "state_top": state_top,
            "control_eps": CONTROL_EPS if control else None, "control": control_rows,
            "reference": ref_rows if reference else None, "ref_multiplier": multiplier,
            "state_ok": state_ok, "same_batches": same_data, "ok": ok}


def _state_verdicts(state_rel: list[float], ref_rows: list[dict], state_tol: float) -> list[bool]:
    """Each step's state verdict: the sides within the state tolerance of each other, or else the
    tuned step no further from the float64 step than the fp64 rule allows (its :func:`_ref_row`
    ``ok``; no rows: no reference)."""
    return [d <= state_tol or bool(ref_rows and ref_rows[i]["ok"]) for i, d in enumerate(state_rel)]


def _ref_row(ref_loss: float, stock_loss: float, tuned_loss: float, stock_err: dict,
             tuned_err: dict, multiplier: float, loss_tol: float, state_tol: float) -> dict:
    """One step against the float64 reference: each side's state distance from it (per part, in
    units of the reference step's update) and whether the tuned one keeps the fp64 rule. The
    reference counts only if it computed the same step: its loss within the loss tolerance of
    the stock loss (else ``valid`` is False and it decides nothing)."""
    stock_rel = _rel(stock_loss, ref_loss)
    valid = math.isfinite(ref_loss) and stock_rel <= loss_tol
    keeps = all(tuned_err[k] <= multiplier * stock_err[k] + state_tol / 10 for k in tuned_err)
    return {"ref_loss": ref_loss, "stock_loss_rel_err": stock_rel,
            "tuned_loss_rel_err": _rel(tuned_loss, ref_loss), "stock_err": stock_err,
            "tuned_err": tuned_err, "valid": valid, "ok": valid and keeps}


def format_report(r: dict) -> str:
    lines = [f"equivalence: {r['model']} stock vs tuned [{','.join(r['switches']) or 'none'}] "
             f"on {r['device']}, {r['precision']}, crop {r['crop']}, {r['iters']} lock-step "
             f"steps, seed {r['seed']}" + (f", lr x{r['lr_scale']:g} on the tuned side (test-only)"
                                           if r["lr_scale"] != 1.0 else "")
             + (", TF32 off on every side (exact fp32)" if r.get("exact_fp32") else ""),
             f"{'step':>4}  {'stock loss':>14}  {'tuned loss':>14}  {'loss rel':>10}  "
             f"{'state rel':>10}  {'1-ulp control: loss':>20}  {'state':>10}"]
    control = r["control"] or [None] * len(r["stock_losses"])
    for i, row in enumerate(zip(r["stock_losses"], r["tuned_losses"], r["loss_rel_diff"],
                                r["state_rel_diff"], control), 1):
        s, t, d, w, c = row
        tail = (f"  {c['loss_rel_diff']:>20.3e}  {c['state_rel_diff']:>10.3e}" if c else "")
        lines.append(f"{i:>4}  {s:>14.8f}  {t:>14.8f}  {d:>10.3e}  {w:>10.3e}{tail}")
    for i, row in enumerate(r.get("reference") or [], 1):
        se, te = row["stock_err"], row["tuned_err"]
        lines.append(f"fp64 reference, step {i}: state distance stock "
                     + ", ".join(f"{k} {se[k]:.3e}" for k in se) + "; tuned "
                     + ", ".join(f"{k} {te[k]:.3e}" for k in te)
                     + (f" -> within {r['ref_multiplier']:g}x stock" if row["ok"] else
                        " -> beyond the fp64 rule" if row["valid"] else
                        f" -> reference not comparable (its loss is "
                        f"{row['stock_loss_rel_err']:.1e} from stock's)"))
    for i, (d, top) in enumerate(zip(r["state_rel_diff"], r.get("state_top") or []), 1):
        if d > r["state_tolerance"] and top:  # where a step beyond the tolerance differs
            lines.append(f"step {i}: the weights differ most in " + "; ".join(
                f"{t['name']} ({100 * t['diff_share']:.0f}% of the difference, "
                + (f"{100 * t['update_share']:.2g}% of the update)"
                   if t["update_share"] is not None else "no update)") for t in top))
    lines.append(f"max loss rel diff {r['max_loss_rel_diff']:.3e} (tolerance "
                 f"{r['loss_tolerance']:g}); max state rel diff {r['max_state_rel_diff']:.3e} "
                 f"(tolerance {r['state_tolerance']:g})")
    if r["same_batches"] is not None:
        lines.append(f"tuned data loader gives identical batches: {r['same_batches']}")
    lines.append("EQUIVALENT" if r["ok"] else "NOT EQUIVALENT")
    return "\n".join(lines)


def _crop(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"crop must be HxW, not {text!r}") from None
    return h, w


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m segbench.equivalence")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("equivalence", help="train stock and tuned side by side, compare losses")
    e.add_argument("model")
    e.add_argument("--switches", default="all", help="comma list or all (default all)")
    e.add_argument("--iters", type=int, default=5)
    e.add_argument("--crop", type=_crop, default=(64, 128), help="HxW (default 64x128)")
    e.add_argument("--data-root")
    e.add_argument("--precision", default="fp32", choices=sorted(TOLERANCE))
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--compile-mode", default="auto", choices=COMPILE_MODES)
    e.add_argument("--compile-scope", default="modules", choices=COMPILE_SCOPES)
    e.add_argument("--tolerance", type=float, nargs=2, metavar=("LOSS", "STATE"),
                   help="override the precision's tolerances")
    e.add_argument("--json", help="also write the result to this file")
    e.add_argument("--no-control", action="store_true", help="skip the one-ulp control runs")
    e.add_argument("--no-reference", action="store_true",
                   help="skip the float64 reference step (the state must then be within the "
                        "tolerance)")
    e.add_argument("--exact-fp32", action="store_true",
                   help="TF32 off on every side (a diagnosis: is a difference TF32's rounding?)")
    e.add_argument("--lr-scale", type=float, default=1.0, help=argparse.SUPPRESS)  # test-only
    return p


def _finish(r: dict, report: str, json_path: str | None) -> int:
    """Print a check's report, write its result as JSON if asked; exit status 0 if it passed."""
    print(report, flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(r, indent=1) + "\n")
    return 0 if r["ok"] else 1


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        switches = parse_switches(args.switches)
        if args.iters < 1:
            raise ValueError(f"--iters must be >= 1, not {args.iters}")
        if args.exact_fp32 and "tf32" in switches:
            raise ValueError(EXACT_FP32_WITH_TF32)
    except ValueError as exc:
        print(f"segbench.tuned: error: {exc}", file=sys.stderr)
        return 2
    r = equivalence(args.model, switches, exact_fp32=args.exact_fp32, iters=args.iters,
                    crop=args.crop,
                    data_root=args.data_root, precision=args.precision, seed=args.seed,
                    compile_mode=args.compile_mode, compile_scope=args.compile_scope,
                    lr_scale=args.lr_scale,
                    tolerance=args.tolerance, control=not args.no_control,
                    reference=not args.no_reference)
    return _finish(r, format_report(r), args.json)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
