"""The tuned mode (segbench.tuned): switches -> cfg-options, the pieces it registers, the
equivalence check (it passes for equivalent switches and fails for a deliberate difference), and a
tuned case end to end through run_benchmark.sh on the CPU."""
import copy
import json
import subprocess
from pathlib import Path

import pytest
import torch

from segbench import configs, gpu_aug, launch, tuned

REPO = Path(__file__).resolve().parent.parent
SWITCH_KEYS = {"model.data_preprocessor.type", "model.data_preprocessor.channels_last",
               "model.data_preprocessor.non_blocking", "optim_wrapper.optimizer.foreach",
               "optim_wrapper.optimizer.fused", "train_dataloader.pin_memory",
               "train_dataloader.prefetch_factor", "compile.mode", "train_dataloader.num_workers",
               "model.data_preprocessor.gpu_aug"}
PACK_META = ("img_path", "seg_map_path", "ori_shape", "img_shape", "pad_shape", "scale_factor",
             "flip", "flip_direction", "reduce_zero_label", gpu_aug.PLAN_KEY)


def opts(model="fastscnn", switches=(), device="cpu", **kw):
    s = configs.TrainSettings(model, 2, 50, 1, device=device, tuned=tuple(switches), **kw)
    return configs.options(configs.load(model), s)


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
    ("gpu_aug", "cuda", "fastscnn", {"model.data_preprocessor.type": tuned.PREPROCESSOR,
                                     "model.data_preprocessor.gpu_aug": True,
                                     **{f"train_dataloader.dataset.pipeline.{i}.type": t
                                        for i, t in enumerate(gpu_aug.DEFERRED.values(), 2)},
                                     "train_dataloader.dataset.pipeline.6.meta_keys": PACK_META}),
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
        configs.TrainSettings("fastscnn", 2, 50, 1, compile_scope="all").validate()


def test_compile_hook_resolves_auto_by_the_model_device():
    """The hook (scope modules) turns ``auto`` into the mode for the model's device: on this CPU
    ``default`` (wrapping is lazy: nothing compiles until a forward runs)."""
    from types import SimpleNamespace

    from mmengine.registry import HOOKS
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    tuned.register()
    net = MODELS.build(configs.build(configs.TrainSettings("fastscnn", 2, 50, 1, device="cpu",
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
    cfg = configs.build(configs.TrainSettings(model, 2, 50, 1, device="cpu", crop=(64, 128)))
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
    cfg = configs.build(configs.TrainSettings("fastscnn", 2, 50, 1, device="cpu", crop=(64, 128),
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
    cfg = configs.build(configs.TrainSettings("segformer_b0", 2, 50, 1, device="cpu",
                                              tuned=tuned.SWITCHES, compile_mode="max-autotune",
                                              compile_scope="train_step"))
    assert cfg.compile == {"mode": "max-autotune"}
    assert cfg.model.data_preprocessor.type == tuned.PREPROCESSOR
    assert cfg.optim_wrapper.optimizer.foreach is True and "fused" not in cfg.optim_wrapper.optimizer
    assert cfg.train_dataloader.pin_memory is True
    # the cfg-options survive mmengine's --cfg-options parser (plain tools/train.py)
    import argparse

    from mmengine.config import DictAction
    o = opts("fastscnn", tuned.SWITCHES, compile_mode="reduce-overhead", compile_scope="train_step")
    p = argparse.ArgumentParser()
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    assert p.parse_args(["--cfg-options", *configs.as_cli(o)]).cfg_options == o


@pytest.mark.parametrize("stock, cpus, procs, expected", [
    (5, 16, 1, 15), (5, 16, 8, 5), (1, 16, 8, 1), (1, 2, 1, 1), (2, 64, 1, tuned.MAX_WORKERS),
    (20, 64, 1, 20), (1, 0, 1, 1), (4, 128, 8, 15)])
def test_workers_switch_uses_the_cores_each_process_has(stock, cpus, procs, expected):
    assert tuned.loader_workers(stock, cpus, procs) == expected


def test_tf32_hook_only_with_the_switch_and_flags_restored():
    assert tuned.hooks(()) == [] and tuned.hooks(("foreach", "workers")) == []
    assert [h["type"] for h in tuned.hooks(tuned.SWITCHES)] == [
        tuned.HOOK, tuned.TF32_HOOK, tuned.TRAIN_ONCE_HOOK, tuned.COMPILE_HOOK, tuned.LOADER_HOOK]
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    prev = tuned.set_tf32(True)
    try:
        assert prev == before and torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.parametrize("text, expected", [
    (None, ()), ("", ()), ("0", ()), ("1", tuned.DEFAULT_SWITCHES), ("all", tuned.DEFAULT_SWITCHES),
    ("all,gpu_aug,train_once", tuned.SWITCHES), ("all,foreach", tuned.DEFAULT_SWITCHES),
    ("all,gpu_aug", tuple(s for s in tuned.SWITCHES if s != "train_once")),
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
        configs.TrainSettings("fastscnn", 2, 50, 1, tuned=("fast",)).validate()
    with pytest.raises(ValueError, match="compile mode"):
        configs.TrainSettings("fastscnn", 2, 50, 1, compile_mode="turbo").validate()


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
    assert "gpu_aug" not in case.tuned              # opt-in until measured on a GPU
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
    rc = tuned.main(["equivalence", "fastscnn", "--switches",
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
    rc = tuned.main(["equivalence", "fastscnn", "--switches", "foreach", "--iters", "2",
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

    monkeypatch.setattr(tuned, "_equivalence", fake_check)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        r = tuned.equivalence("fastscnn", ("channels_last",), exact_fp32=True, iters=1)
        assert seen == [(False, False)] and r["exact_fp32"] is True
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        with pytest.raises(RuntimeError):
            tuned.equivalence("fastscnn", ("channels_last",), exact_fp32=True, iters=99)
        assert torch.backends.cudnn.allow_tf32 is True
        assert tuned.equivalence("fastscnn", ("channels_last",), iters=1)["exact_fp32"] is False
        assert seen[-1] == (True, True)                  # without the flag nothing is changed
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    with pytest.raises(ValueError, match="tf32 switch"):
        tuned.equivalence("fastscnn", ("tf32",), exact_fp32=True)
    assert tuned.main(["equivalence", "fastscnn", "--switches", "all", "--exact-fp32"]) == 2
    assert "leave out the tf32 switch" in capsys.readouterr().err


def test_fp64_reference_decides_when_the_sides_differ_beyond_the_tolerance(small_data):
    """With a state tolerance far below the rounding differences, the direct comparison fails
    every step; each step's verdict is then the float64 reference's (which computed stock's step:
    its loss agrees), by the fp64 rule, and without the reference the check fails.

    Whether channels_last+foreach then passes is the numerics' answer, not this test's: on the
    dev CPU (torch 2.13.0+cpu, 2026-12-01) step 2 is 2.4e-3 of an update from the float64 step
    and stock 3.3e-5 (the reference computes in stock's layout, and this crop's pyramid-pooling
    BN over 2 values makes a step ill-conditioned), so the rule fails it there; another CPU
    passed both steps."""
    common = dict(iters=2, crop=(64, 128), data_root=small_data, control=False,
                  tolerance=(1e-3, 1e-5))
    with_ref = tuned.equivalence("fastscnn", ("channels_last", "foreach"), **common)
    assert all(d > 1e-5 for d in with_ref["state_rel_diff"])     # the direct comparison fails
    rows = with_ref["reference"]
    assert len(rows) == len(with_ref["state_ok"]) == 2
    for row, step_ok in zip(rows, with_ref["state_ok"]):
        assert row["valid"] and row["stock_loss_rel_err"] < 1e-5
        rule = all(err <= 2 * row["stock_err"][part] + 1e-6
                   for part, err in row["tuned_err"].items())
        assert step_ok is row["ok"] is rule                       # the reference decided
    assert any(with_ref["state_ok"])      # at least one step passed by the reference alone
    assert with_ref["ok"] is all(with_ref["state_ok"])             # the losses agree to 1e-3
    without = tuned.equivalence("fastscnn", ("channels_last", "foreach"), reference=False,
                                **common)
    assert not without["ok"] and without["reference"] is None
    # where the sides differ: real parameters, largest share first, shares of one whole
    names = {n for n, _ in _fastscnn_params()}
    assert len(with_ref["state_top"]) == 2
    for top in with_ref["state_top"]:
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
    top = tuned._top_weights(before, stock, tuned_, {"model.a", "model.b"})
    assert [t["name"] for t in top] == ["b", "a"]          # b: most of the difference ...
    assert top[0]["diff_share"] > 0.98 and top[0]["update_share"] < 1e-5  # ... none of the update
    assert tuned._top_weights(before, stock, stock, {"model.a", "model.b"}) == []


def test_fp64_rule_needs_a_comparable_reference():
    err = {"weights": 1e-3, "buffers": 1e-7}
    row = tuned._ref_row(1.0, 1.0 + 1e-6, 1.0, err, err, 2.0, 1e-3, 5e-2)
    assert row["valid"] and row["ok"]
    far = tuned._ref_row(1.0, 1.1, 1.0, err, err, 2.0, 1e-3, 5e-2)     # another step's loss
    assert not far["valid"] and not far["ok"]
    worse = tuned._ref_row(1.0, 1.0, 1.0, err, {"weights": 3e-2, "buffers": 1e-7}, 2.0, 1e-3,
                           5e-2)
    assert worse["valid"] and not worse["ok"]                  # 3e-2 > 2 * 1e-3 + 5e-3


@pytest.mark.parametrize("model", ["fastscnn", "segformer_b0"])
def test_no_dropout_turns_every_dropout_and_drop_path_off(model):
    from mmseg.registry import MODELS
    tuned.register()
    net = MODELS.build(configs.load(model).model)
    before = [m for m in net.modules() if getattr(m, "p", 0) or getattr(m, "drop_prob", 0)]
    assert before                                   # both models have some
    assert tuned._no_dropout(net) == len(before)
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
