"""The tuned mode (segbench.tuned): switches -> cfg-options, the pieces it registers, the
equivalence check (it passes for equivalent switches and fails for a deliberate difference), and a
tuned case end to end through run_benchmark.sh on the CPU."""
import copy
import json
import subprocess
from pathlib import Path

import pytest
import torch

from segbench import configs, equivalence, launch, tuned, windowsync

REPO = Path(__file__).resolve().parent.parent
SWITCH_KEYS = {"model.data_preprocessor.type", "model.data_preprocessor.channels_last",
               "model.data_preprocessor.non_blocking", "optim_wrapper.optimizer.foreach",
               "optim_wrapper.optimizer.fused", "train_dataloader.pin_memory",
               "train_dataloader.prefetch_factor", "compile.mode", "train_dataloader.num_workers",
               "model.data_preprocessor.flip_channels", "default_hooks.runtime_info.type"}

# every switch but graph (graph with compile, and its rules: tests/test_graphstep.py)
ALL_BUT_GRAPH = tuple(s for s in tuned.SWITCHES if s != "graph")


def opts(model="fastscnn", switches=(), device="cpu", **kw):
    s = configs.TrainSettings(model, 2, 50, 1, device=device, tuned=tuple(switches), **kw)
    return tuned.options(configs.load(model), s)


def test_stock_has_none_of_the_switch_options():
    for model in configs.MODELS:
        for device in ("cpu", "cuda"):
            stock = opts(model, device=device)
            assert stock["train_dataloader.num_workers"] == 1  # the case's NUM_WORKERS
            assert not SWITCH_KEYS - {"train_dataloader.num_workers"} & set(stock)


@pytest.mark.parametrize("switch, device, model, expected", [
    ("channels_last", "cpu", "fastscnn", {"model.data_preprocessor.type": tuned.PREPROCESSOR,
                                          "model.data_preprocessor.channels_last": True}),
    ("non_blocking", "cuda", "fastscnn", {"model.data_preprocessor.type": tuned.PREPROCESSOR,
                                          "model.data_preprocessor.non_blocking": True}),
    ("foreach", "cpu", "fastscnn", {"optim_wrapper.optimizer.foreach": True}),
    ("foreach", "cuda", "fastscnn", {"optim_wrapper.optimizer.fused": True}),        # SGD
    ("foreach", "cuda", "segformer_b0", {"optim_wrapper.optimizer.fused": True}),    # AdamW
    ("loader", "cpu", "fastscnn", {"train_dataloader.pin_memory": True,
                                   "train_dataloader.prefetch_factor": tuned.PREFETCH_FACTOR,
                                   "train_dataloader.persistent_workers": True}),
    ("compile", "cpu", "fastscnn", {}),      # scope "modules" (default): a hook, no option
    ("workers", "cuda", "fastscnn", {"train_dataloader.num_workers": 15}),   # 16 cores, 1 process
    ("tf32", "cuda", "segformer_b0", {}),                                      # a hook, no option
    ("train_once", "cuda", "ocrnet_hrnetw48", {}),                             # a hook, no option
])
def test_each_switch_adds_its_options(switch, device, model, expected):
    stock = opts(model, device=device, cpus=16)
    tuned_opts = opts(model, [switch], device=device, cpus=16)
    added = {k: v for k, v in tuned_opts.items() if stock.get(k, object()) != v}
    assert added == {k: v for k, v in expected.items() if stock.get(k, object()) != v}
    assert all(tuned_opts[k] == v for k, v in expected.items())
    # every other setting of the case is the stock one
    assert {k: v for k, v in tuned_opts.items() if k not in expected} == \
        {k: v for k, v in stock.items() if k not in expected}


def test_compile_scope_decides_option_or_hook():
    step = opts("fastscnn", ["compile"], compile_mode="max-autotune", compile_scope="train_step")
    assert step["compile.mode"] == "max-autotune"        # mmengine's Runner compiles train_step
    assert "compile.mode" not in opts("fastscnn", ["compile"], compile_mode="max-autotune")
    assert tuned.hooks(["compile"], "max-autotune") == [
        dict(type=tuned.COMPILE_HOOK, mode="max-autotune", priority="HIGH")]
    assert tuned.hooks(["compile"], "default", "train_step") == []
    with pytest.raises(ValueError, match="compile scope"):
        tuned.validate(configs.TrainSettings("fastscnn", 2, 50, 1, compile_scope="all"))


def test_compile_hook_resolves_auto_by_the_model_device():
    """The hook (scope modules) turns ``auto`` into the mode for the model's device: on this CPU
    ``default`` (wrapping is lazy: nothing compiles until a forward runs)."""
    from types import SimpleNamespace

    from mmengine.registry import HOOKS
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    tuned.register()
    net = MODELS.build(tuned.build(configs.TrainSettings("fastscnn", 2, 50, 1, device="cpu",
                                                           crop=(64, 128))).model)
    said = []
    runner = SimpleNamespace(model=net, logger=SimpleNamespace(info=said.append))
    cfg = dict(tuned.hooks(["compile"])[0])
    cfg.pop("priority")                          # the Runner takes it off before building
    assert cfg == {"type": tuned.COMPILE_HOOK, "mode": "auto"}
    HOOKS.build(cfg).before_train(runner)
    assert said == ["[segbench] tuned: torch.compile (mode default) of backbone, decode_head, "
                    "auxiliary_head.0, auxiliary_head.1"]


@pytest.mark.parametrize("model, expected", [
    ("fastscnn", ["backbone", "decode_head", "auxiliary_head.0", "auxiliary_head.1"]),
    ("ocrnet_hrnetw48", ["backbone", "decode_head.0", "decode_head.1"]),
    ("segformer_b0", ["backbone", "decode_head"]),
])
def test_compile_modules_wraps_each_network_part(model, expected):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = tuned.build(configs.TrainSettings(model, 2, 50, 1, device="cpu", crop=(64, 128)))
    net = MODELS.build(cfg.model)
    keys = list(net.state_dict())
    assert tuned.compile_modules(net, "default") == expected
    assert list(net.state_dict()) == keys                 # same parameters, same names
    for name in expected:
        part = net
        for k in name.split("."):
            part = part[int(k)] if k.isdigit() else getattr(part, k)
        assert "forward" in vars(part)                     # the instance's forward is replaced
        assert vars(part)["forward"] is not type(part).forward


def test_flop_probe_leaves_a_compiled_model_alone_and_compiling(small_data):
    """The timing hook's FLOP probe (a deep copy) must neither train the real model through the
    compiled forward nor stop dynamo from compiling it afterwards."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS, MODELS
    from mmseg.utils import register_all_modules
    from torch._dynamo.utils import counters

    from segbench import timing
    register_all_modules()
    cfg = tuned.build(configs.TrainSettings("fastscnn", 2, 50, 1, device="cpu", crop=(64, 128),
                                              data_root=str(small_data)))
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([ds[0], ds[1]])
    net = MODELS.build(cfg.model).train()
    tuned.compile_modules(net, backend="eager")    # dynamo tracing, no inductor: quick on a CPU
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch._dynamo.reset()
    counters.clear()
    flops, shape = timing.count_step_flops(net, batch)
    assert flops > 0 and shape == [2, 3, 64, 128]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN stats too
    assert all(p.grad is None for p in net.parameters())
    assert not counters["frames"]                  # the probe ran eagerly
    losses = net(**net.data_preprocessor(batch, True), mode="loss")
    net.parse_losses(losses)[0].backward()
    assert counters["frames"]["ok"] >= 4           # backbone, decode head, two auxiliary heads


def test_compile_mode_and_all_switches_reach_the_config():
    cfg = tuned.build(configs.TrainSettings("segformer_b0", 2, 50, 1, device="cpu",
                                              tuned=ALL_BUT_GRAPH, compile_mode="max-autotune",
                                              compile_scope="train_step"))
    assert cfg.compile == {"mode": "max-autotune"}
    assert cfg.model.data_preprocessor.type == tuned.PREPROCESSOR
    assert cfg.optim_wrapper.optimizer.foreach is True and "fused" not in cfg.optim_wrapper.optimizer
    assert cfg.train_dataloader.pin_memory is True
    assert cfg.default_hooks.runtime_info.type == windowsync.RUNTIME_INFO_HOOK   # window_sync
    assert cfg.model.data_preprocessor.flip_channels is True
    # the cfg-options survive mmengine's --cfg-options parser (plain tools/train.py)
    import argparse

    from mmengine.config import DictAction
    o = opts("fastscnn", ALL_BUT_GRAPH, compile_mode="reduce-overhead", compile_scope="train_step")
    p = argparse.ArgumentParser()
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    assert p.parse_args(["--cfg-options", *configs.as_cli(o)]).cfg_options == o


@pytest.mark.parametrize("stock, cpus, procs, expected", [
    (5, 16, 1, 15), (5, 16, 8, 5), (1, 16, 8, 1), (1, 2, 1, 1), (2, 64, 1, tuned.MAX_WORKERS),
    (20, 64, 1, 20), (1, 0, 1, 1), (4, 128, 8, 15)])
def test_workers_switch_uses_the_cores_each_process_has(stock, cpus, procs, expected):
    assert tuned.loader_workers(stock, cpus, procs) == expected


def test_every_tuned_hook_builds_and_the_tf32_hook_turns_tf32_on():
    """Each entry tuned.hooks gives is a hook mmengine's registry builds (after tuned.register),
    none for switches that are options only; the TF32 hook's before_train turns TF32 on for fp32
    matmuls (process-wide: the training process keeps it), and set_tf32 returns the flags it
    replaced, so a caller can put them back."""
    from types import SimpleNamespace

    from mmengine.registry import HOOKS
    tuned.register()
    assert tuned.hooks(()) == [] and tuned.hooks(("foreach", "workers", "non_blocking")) == []
    entries = tuned.hooks(tuned.SWITCHES)
    built = [HOOKS.build({k: v for k, v in h.items() if k != "priority"}) for h in entries]
    assert len({type(h) for h in built}) == len(entries) == 6
    tf32 = next(h for h, e in zip(built, entries) if e["type"] == tuned.TF32_HOOK)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        said = []
        tf32.before_train(SimpleNamespace(logger=SimpleNamespace(info=said.append)))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        assert said and "TF32 on" in said[0]
        assert tuned.set_tf32(False) == (True, True)
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is True          # cuDNN's own default, left on
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@pytest.mark.parametrize("text, expected", [
    (None, ()), ("", ()), ("0", ()), ("1", tuned.DEFAULT_SWITCHES), ("all", tuned.DEFAULT_SWITCHES),
    ("all,train_once", tuple(s for s in ALL_BUT_GRAPH if s != "window_sync")),
    ("all,train_once,window_sync", ALL_BUT_GRAPH), ("all,foreach", tuned.DEFAULT_SWITCHES),
    ("foreach,channels_last", ("channels_last", "foreach")), (" loader , compile ", ("loader", "compile")),
])
def test_parse_switches(text, expected):
    assert tuned.parse_switches(text) == expected


@pytest.mark.parametrize("bad", ["bogus", "channels_last,bogus", ",", "all,bogus"])
def test_unknown_switch_is_rejected(bad):
    with pytest.raises(ValueError, match="TUNED must be"):
        tuned.parse_switches(bad)


def test_unknown_switch_or_mode_in_settings_is_rejected():
    with pytest.raises(ValueError, match="unknown tuned switch"):
        tuned.validate(configs.TrainSettings("fastscnn", 2, 50, 1, tuned=("fast",)))
    with pytest.raises(ValueError, match="compile mode"):
        tuned.validate(configs.TrainSettings("fastscnn", 2, 50, 1, compile_mode="turbo"))


def test_compile_mode_auto_is_cuda_graphs_on_a_gpu_only(tmp_path, monkeypatch):
    assert tuned.resolve_compile_mode("auto", "cuda") == "reduce-overhead"
    assert tuned.resolve_compile_mode("auto", "cpu") == "default"
    assert tuned.resolve_compile_mode("max-autotune", "cuda") == "max-autotune"
    for device, mode in (("cuda", "reduce-overhead"), ("cpu", "default")):
        o = opts("fastscnn", ["compile"], device=device, compile_scope="train_step")
        assert o["compile.mode"] == mode                   # the settings' default is auto
    args = ["fastscnn", "sp", "fp32", "2", "50", "1"]
    case = launch.parse_case(args, {"TRAIN_LOG_DIR": str(tmp_path), "TUNED": "compile"})
    assert case.compile_mode == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    launch.resolve_devices(case, {})
    assert case.device == "cpu" and case.compile_resolved == "default"
    cmd = launch.train_command(case, tmp_path / case.name)
    assert cmd[cmd.index("--compile-mode") + 1] == "default"


def test_launch_parses_tuned_knobs(tmp_path):
    args = ["fastscnn", "sp", "fp32", "2", "50", "1"]
    stock = launch.parse_case(args, {"TRAIN_LOG_DIR": str(tmp_path)})
    case = launch.parse_case(args, {"TRAIN_LOG_DIR": str(tmp_path), "TUNED": "1",
                                    "TUNED_COMPILE_MODE": "max-autotune",
                                    "TUNED_COMPILE_SCOPE": "train_step"})
    assert stock.tuned == () and stock.name == "fastscnn_sp_bs2_fp32_1"
    assert case.tuned == tuned.DEFAULT_SWITCHES
    assert case.name == "fastscnn_sp_bs2_fp32_1_tuned-cmmax-autotune-cstrain_step"
    assert "train_once" not in case.tuned           # opt-in: no gain measured on the H200
    cmd = launch.train_command(case, tmp_path / case.name)
    assert cmd[cmd.index("--tuned") + 1] == ",".join(tuned.DEFAULT_SWITCHES)
    assert cmd[cmd.index("--compile-mode") + 1] == "max-autotune"
    assert cmd[cmd.index("--compile-scope") + 1] == "train_step"
    assert launch.parse_case(args, {"TRAIN_LOG_DIR": str(tmp_path)}).compile_scope == "modules"
    with pytest.raises(launch.BadInput, match="TUNED_COMPILE_MODE"):
        launch.parse_case(args, {"TRAIN_LOG_DIR": str(tmp_path), "TUNED_COMPILE_MODE": "fast"})
    with pytest.raises(launch.BadInput, match="TUNED_COMPILE_SCOPE"):
        launch.parse_case(args, {"TRAIN_LOG_DIR": str(tmp_path), "TUNED_COMPILE_SCOPE": "all"})


def test_preprocessor_and_hook_put_batch_and_model_in_channels_last():
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    tuned.register()
    pre = MODELS.build(dict(type=tuned.PREPROCESSOR, mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0],
                            bgr_to_rgb=True, size=(32, 48), channels_last=True, non_blocking=True))
    assert pre._non_blocking is True
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.zeros(1, 32, 48, dtype=torch.uint8))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 255, (3, 32, 48), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)
    out = pre(data, True)
    x = out["inputs"]
    assert x.shape == (2, 3, 32, 48) and x.is_contiguous(memory_format=torch.channels_last)
    ref = MODELS.build(dict(type="SegDataPreProcessor", mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0],
                            bgr_to_rgb=True, size=(32, 48)))(data, True)["inputs"]
    assert torch.equal(x, ref)  # same values, other layout
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    param = conv[0].weight
    tuned.to_channels_last(conv)
    assert conv[0].weight is param and param.is_contiguous(memory_format=torch.channels_last)


def test_equivalence_passes_for_the_cpu_switches(small_data, capsys):
    rc = equivalence.main(["equivalence", "fastscnn", "--switches",
                     "channels_last,foreach,loader,workers,non_blocking,tf32", "--iters", "3",
                     "--crop", "64x128", "--data-root", str(small_data)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "EQUIVALENT" in out and "NOT EQUIVALENT" not in out
    assert "tuned data loader gives identical batches: True" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    for r in rows:  # stock loss, tuned loss, loss rel diff, state rel diff, control...
        assert abs(float(r[1]) - float(r[2])) <= 1e-3 * abs(float(r[1]))
        assert float(r[3]) <= 1e-3 and float(r[4]) <= 5e-2


def test_equivalence_detects_a_real_difference(small_data, capsys):
    """A 2x learning rate on the tuned side (a test-only knob): the check must fail."""
    rc = equivalence.main(["equivalence", "fastscnn", "--switches", "foreach", "--iters", "2",
                     "--crop", "64x128", "--data-root", str(small_data), "--lr-scale", "2",
                     "--no-control"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "NOT EQUIVALENT" in out
    assert "step 1: the weights differ most in backbone." in out  # where, for a step beyond it


def test_exact_fp32_turns_tf32_off_for_the_whole_check_and_restores_it(monkeypatch, capsys):
    """--exact-fp32: every side runs with TF32 off (flags seen inside the check), the caller's
    flags come back after it (also when it fails), and the tf32 switch is refused."""
    import torch
    seen = []

    def fake_check(model, switches, **kw):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        if kw.get("iters") == 99:
            raise RuntimeError("boom")
        return {"ok": True}

    monkeypatch.setattr(equivalence, "_equivalence", fake_check)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        r = equivalence.equivalence("fastscnn", ("channels_last",), exact_fp32=True, iters=1)
        assert seen == [(False, False)] and r["exact_fp32"] is True
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        with pytest.raises(RuntimeError):
            equivalence.equivalence("fastscnn", ("channels_last",), exact_fp32=True, iters=99)
        assert torch.backends.cudnn.allow_tf32 is True
        assert equivalence.equivalence("fastscnn", ("channels_last",), iters=1)["exact_fp32"] is False
        assert seen[-1] == (True, True)                  # without the flag nothing is changed
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    with pytest.raises(ValueError, match="tf32 switch"):
        equivalence.equivalence("fastscnn", ("tf32",), exact_fp32=True)
    assert equivalence.main(["equivalence", "fastscnn", "--switches", "all", "--exact-fp32"]) == 2
    assert "leave out the tf32 switch" in capsys.readouterr().err


def test_fp64_reference_is_the_stock_step_and_catches_a_real_difference(small_data):
    """The float64 reference on real steps, where the verdict does not hang on this machine's
    rounding: it computes stock's step (its loss agrees, stock's state is a small fraction of an
    update from it), a 2x learning rate on the tuned side is a whole update from it and fails the
    fp64 rule at every step, and each step's verdict is the one :func:`equivalence._state_verdicts`
    gives for its rows. (Which rounding differences the rule passes: the constructed states of
    test_fp64_rule_on_constructed_states.) Without the reference the tiny tolerance fails."""
    common = dict(iters=2, crop=(64, 128), data_root=small_data, control=False,
                  tolerance=(1e-3, 1e-5))
    with_ref = equivalence.equivalence("fastscnn", ("channels_last", "foreach"), lr_scale=2.0, **common)
    rows = with_ref["reference"]
    assert len(rows) == len(with_ref["state_ok"]) == 2
    for row in rows:
        assert row["valid"] and row["stock_loss_rel_err"] < 1e-5
        assert row["stock_err"]["weights"] < 0.1 < 0.5 < row["tuned_err"]["weights"]
        assert not row["ok"]
    assert with_ref["state_ok"] == equivalence._state_verdicts(with_ref["state_rel_diff"], rows, 1e-5)
    assert with_ref["state_ok"] == [False, False] and not with_ref["ok"]
    without = equivalence.equivalence("fastscnn", ("channels_last", "foreach"), reference=False,
                                **common)
    assert all(d > 1e-5 for d in without["state_rel_diff"])     # the direct comparison fails
    assert not without["ok"] and without["reference"] is None
    assert without["state_ok"] == [False, False]
    # where the sides differ: real parameters, largest share first, shares of one whole
    names = {n for n, _ in _fastscnn_params()}
    assert len(without["state_top"]) == 2
    for top in without["state_top"]:
        shares = [t["diff_share"] for t in top]
        assert top and shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
        assert all(t["name"] in names and 0 <= t["update_share"] <= 1 for t in top)


def _fastscnn_params():
    from segbench import configs
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    return MODELS.build(configs.load("fastscnn").model).named_parameters()


def test_top_weights_names_the_parameter_that_carries_the_difference():
    import torch
    before = {"model.a": torch.zeros(4), "model.b": torch.zeros(4)}
    stock = {"model.a": torch.full((4,), 1.0), "model.b": torch.full((4,), 1e-3)}
    tuned_ = {"model.a": torch.full((4,), 1.0 + 1e-4), "model.b": torch.full((4,), 2e-3)}
    top = equivalence._top_weights(before, stock, tuned_, {"model.a", "model.b"})
    assert [t["name"] for t in top] == ["b", "a"]          # b: most of the difference ...
    assert top[0]["diff_share"] > 0.98 and top[0]["update_share"] < 1e-5  # ... none of the update
    assert equivalence._top_weights(before, stock, stock, {"model.a", "model.b"}) == []


def _judge(tuned_w: list[float], stock_w=(1e-3, 0, 0, 0), ref_loss=1.0, multiplier=2.0,
           state_tol=1e-5) -> tuple[float, dict, bool]:
    """One step through the equivalence check's decision, on constructed states: the float64 step
    moves the weights from 0 to 1 (an update of norm 2), stock and tuned land at 1 + their offsets;
    buffers and optimizer state agree on every side. Returns (the sides' state distance, the
    reference row, the step's verdict)."""
    params = {"model.w"}

    def state(offsets):
        return {"model.w": 1 + torch.tensor(offsets, dtype=torch.float64),
                "model.bn.running_mean": torch.full((2,), 0.5, dtype=torch.float64),
                "optim.0.momentum_buffer": torch.full((4,), 0.25, dtype=torch.float64)}
    before = dict(state((0, 0, 0, 0)), **{"model.w": torch.zeros(4, dtype=torch.float64)})
    ref, stock, tuned_ = state((0, 0, 0, 0)), state(stock_w), state(tuned_w)
    rel = max(equivalence._state_diff(before, stock, tuned_, params).values())
    row = equivalence._ref_row(ref_loss, 1.0, 1.0, equivalence._state_diff(before, ref, stock, params),
                         equivalence._state_diff(before, ref, tuned_, params), multiplier, 1e-3, state_tol)
    return rel, row, equivalence._state_verdicts([rel], [row], state_tol)[0]


def test_fp64_rule_on_constructed_states():
    """The fp64 rule decides a step whose sides differ beyond the state tolerance: the tuned step
    passes when its distance from the float64 step is at most multiplier x stock's plus a tenth of
    the tolerance, and only when the reference computed stock's step (its loss agrees)."""
    rel, row, ok = _judge([0, 8e-4, 0, 0])                  # 4e-4 of an update from it, stock 5e-4
    assert rel > 1e-5 and row["valid"] and ok              # beyond the tolerance, by the rule
    assert row["stock_err"] == {"weights": pytest.approx(5e-4), "buffers": 0.0, "optimizer": 0.0}
    assert row["tuned_err"]["weights"] == pytest.approx(4e-4)
    _, row, ok = _judge([0, 2.2e-3, 0, 0])                 # 1.1e-3 > 2 x 5e-4 + 1e-6
    assert row["valid"] and not ok
    assert _judge([0, 2.2e-3, 0, 0], multiplier=3.0)[2]    # fp16/bf16's multiplier lets it pass
    _, row, ok = _judge([0, 8e-4, 0, 0], ref_loss=1.1)      # the reference computed another step
    assert not row["valid"] and not ok
    # the rule's margin: a tenth of the state tolerance (1e-6) beyond 2 x stock's 5e-4
    assert _judge([0, 2e-3 + 1e-6, 0, 0])[2] and not _judge([0, 2e-3 + 4e-6, 0, 0])[2]
    # within the state tolerance of stock, the reference is not asked
    rel, row, ok = _judge([1e-3 + 1e-8, 0, 0, 0], ref_loss=float("nan"))
    assert rel <= 1e-5 and not row["valid"] and ok
    assert equivalence._state_verdicts([1e-6, 1.0], [], 1e-5) == [True, False]   # no reference at all


@pytest.mark.parametrize("model", ["fastscnn", "segformer_b0"])
def test_no_dropout_turns_every_dropout_and_drop_path_off(model):
    from mmseg.registry import MODELS
    tuned.register()
    net = MODELS.build(configs.load(model).model)
    before = [m for m in net.modules() if getattr(m, "p", 0) or getattr(m, "drop_prob", 0)]
    assert before                                   # both models have some
    assert equivalence._no_dropout(net) == len(before)
    assert not [m for m in net.modules()
                if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p
                or getattr(m, "drop_prob", 0)]


def bench(env, *args, timeout=600):
    return subprocess.run(["bash", str(REPO / "run_benchmark.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_tuned_case_end_to_end(cpu_env):
    env = dict(cpu_env, CROP="64x128", TUNED="foreach,channels_last,loader,workers,tf32,train_once")
    r = bench(env, "fastscnn", "sp", "fp32", "2", "12", "1")
    assert r.returncode == 0, r.stderr + r.stdout
    log_dir = Path(env["TRAIN_LOG_DIR"])
    case = "fastscnn_sp_bs2_fp32_1_tuned-channels_last+foreach+loader+workers+tf32+train_once_crop64x128_li2"
    assert not (log_dir / "fastscnn_sp_bs2_fp32_1_crop64x128_li2_speed").exists()  # the stock name: untouched
    speed = json.loads((log_dir / f"{case}_speed").read_text(encoding="utf-8"))
    assert speed["JOB_FAIL_FLAG"] == 0 and speed["log_file"] == case and speed["FINAL_RESULT"] > 0
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["tuned"] == ["channels_last", "foreach", "loader", "workers", "tf32", "train_once"]
    w = stats["warmup"]
    assert w["warmup_iters"] == 8 and 0 < w["first_iter_s"] <= w["warmup_total_s"]
    assert stats["per_iter"]["n"] == 4  # warm-up excluded from the steady-state figures
    lines = (log_dir / f"{case}_iters.rank0.jsonl").read_text().splitlines()
    meta = json.loads(lines[0])
    assert meta["kind"] == "meta" and meta["input_shape"] == [2, 3, 64, 128]
    assert len(lines) == 13
    text = (log_dir / case).read_text(encoding="utf-8")
    record = json.loads(text.splitlines()[0].split("case: ", 1)[1])
    assert record["case"] == case and record["tuned"] == ["channels_last", "foreach", "loader",
                                                          "workers", "tf32", "train_once"]
    assert "--tuned channels_last,foreach,loader,workers,tf32,train_once" in record["train_command"]
    assert "model.train() walks the modules only when the mode changes" in text
    assert "train loader workers shut down" in text
    assert "model converted to channels_last" in text and "TF32 on" in text
    assert "data-loader workers per process (NUM_WORKERS 1" in text
    assert "SegbenchDataPreProcessor" in text and "foreach=True" in text  # the config dump


def test_train_once_walks_the_modules_only_when_the_mode_changes():
    class NormEval(torch.nn.Sequential):     # like mmseg backbones with norm_eval=True
        def train(self, mode=True):
            super().train(mode)
            self[1].eval()
            return self

    net = torch.nn.Sequential(NormEval(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)),
                              torch.nn.Dropout(0.1))
    ref = copy.deepcopy(net)
    net.train = tuned.TrainOnce(net)
    modes = lambda m: [x.training for x in m.modules()]   # noqa: E731
    for _ in range(3):
        assert net.train() is net
    ref.train()
    # the BN stays in eval
    assert net.train.walks == 1 and modes(net) == modes(ref) and modes(net)[3] is False
    net.eval()                            # Module.eval calls self.train(False): the wrapper
    assert net.train.walks == 2 and not any(modes(net))
    net.train()
    assert net.train.walks == 3 and modes(net) == modes(ref)
    clone = copy.deepcopy(net)            # the FLOP probe's copy walks its own modules
    clone.eval()
    assert not any(modes(clone)) and modes(net) == modes(ref)


def test_bogus_switch_is_bad_input(cpu_env):
    r = bench(dict(cpu_env, TUNED="bogus"), "fastscnn", "sp", "fp32", "2", "12", "1", timeout=120)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1, r.stderr
    assert err[0].startswith("run_benchmark.sh: error: TUNED must be") and "'bogus'" in err[0]
    name = launch.bad_input_name(["fastscnn", "sp", "fp32", "2", "12", "1"], dict(cpu_env, TUNED="bogus"))
    speed = Path(cpu_env["TRAIN_LOG_DIR"]) / f"{name}_speed"
    assert json.loads(speed.read_text(encoding="utf-8"))["JOB_FAIL_FLAG"] == 1
