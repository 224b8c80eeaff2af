"""configs/: each model's config inherits mmseg's shipped Cityscapes config; the harness's settings
are cfg-options that reach the built config (and plain mmseg's --cfg-options parser) intact."""
import argparse

import pytest
from mmengine.config import DictAction

from segbench import configs, tuned


@pytest.mark.parametrize("model, base, crop", [
    ("fastscnn", "fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py", (512, 1024)),
    ("ocrnet_hrnetw48", "ocrnet/ocrnet_hr48_4xb2-40k_cityscapes-512x1024.py", (512, 1024)),
    ("segformer_b0", "segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py", (1024, 1024)),
])
def test_config_inherits_mmseg_and_measures_training_only(model, base, crop):
    text = configs.config_path(model).read_text()
    assert f"_base_ = 'mmseg::{base}'" in text
    cfg = configs.load(model)
    assert cfg.train_dataloader.dataset.type == "CityscapesDataset"
    heads = cfg.model.decode_head if isinstance(cfg.model.decode_head, list) else [cfg.model.decode_head]
    assert all(h["num_classes"] == 19 for h in heads)
    assert cfg.val_dataloader is None and cfg.val_cfg is None and cfg.test_dataloader is None
    assert cfg.default_hooks.logger.interval == 10
    assert cfg.default_hooks.checkpoint.interval == -1 and cfg.default_hooks.checkpoint.save_last is False
    assert cfg.env_cfg.cudnn_benchmark is True
    assert tuple(cfg.model.data_preprocessor.size) == crop == configs.MODELS[model]
    assert cfg.model.get("pretrained") is None
    assert cfg.model.backbone.get("init_cfg") is None


def test_cudnn_benchmark_is_on_unless_asked_off():
    common = dict(model="fastscnn", batch_size=2, max_iters=50, num_workers=1, device="cpu")
    assert configs.build(configs.TrainSettings(**common)).env_cfg.cudnn_benchmark is True
    off = configs.build(configs.TrainSettings(**common, cudnn_benchmark=False))
    assert off.env_cfg.cudnn_benchmark is False


def test_options_reach_the_config():
    s = configs.TrainSettings("segformer_b0", batch_size=3, max_iters=70, num_workers=4,
                              precision="bf16", crop=(256, 512), data_root="/d", work_dir="/w",
                              log_interval=7)
    cfg = configs.build(s)
    crop_t = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "RandomCrop"][0]
    assert tuple(crop_t["crop_size"]) == (256, 512) == tuple(cfg.model.data_preprocessor.size)
    assert (cfg.train_dataloader.batch_size, cfg.train_dataloader.num_workers) == (3, 4)
    assert cfg.train_cfg.max_iters == 70 and cfg.default_hooks.logger.interval == 7
    assert cfg.train_dataloader.dataset.data_root == "/d" and cfg.work_dir == "/w"
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.dtype == "bfloat16"
    assert cfg.optim_wrapper.optimizer.type == "AdamW"  # the model's own optimizer is kept
    assert cfg.launcher == "none"


def test_fp32_keeps_plain_optimizer_and_fp16_scales_loss():
    assert configs.build(configs.TrainSettings("fastscnn", 2, 50, 1)).optim_wrapper.type == "OptimWrapper"
    fp16 = configs.build(configs.TrainSettings("fastscnn", 2, 50, 1, precision="fp16"))
    assert fp16.optim_wrapper.dtype == "float16" and fp16.optim_wrapper.loss_scale == "dynamic"


def test_cpu_distributed_swaps_syncbn_and_ddp_device_ids():
    gpu = configs.build(configs.TrainSettings("ocrnet_hrnetw48", 2, 50, 1, distributed=True))
    assert gpu.model.backbone.norm_cfg.type == "SyncBN" and "model_wrapper_cfg" not in gpu
    cpu = configs.build(configs.TrainSettings("ocrnet_hrnetw48", 2, 50, 1, device="cpu",
                                              distributed=True))
    assert "SyncBN" not in cpu.pretty_text
    assert cpu.model_wrapper_cfg.device_ids is None and cpu.env_cfg.dist_cfg.backend == "gloo"
    assert cpu.launcher == "pytorch"


@pytest.mark.parametrize("bad, match", [
    (dict(model="unet"), "unknown model"), (dict(precision="fp8"), "precision"),
    (dict(batch_size=0), "batch_size"), (dict(crop=(16, 16)), "crop"),
    (dict(device="cpu", precision="fp16"), "needs a GPU"),
])
def test_invalid_settings(bad, match):
    kw = dict(model="fastscnn", batch_size=2, max_iters=50, num_workers=1) | bad
    with pytest.raises(ValueError, match=match):
        configs.TrainSettings(**kw).validate()


def test_as_cli_round_trips_through_mmengine_dictaction():
    """The fidelity benchmark hands these strings to plain mmseg tools/train.py."""
    s = configs.TrainSettings("fastscnn", 2, 500, 5, precision="fp16", crop=(256, 512),
                              data_root="data/cityscapes")
    opts = configs.options(configs.load("fastscnn"), s)
    p = argparse.ArgumentParser()
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    parsed = p.parse_args(["--cfg-options", *configs.as_cli(opts)]).cfg_options
    assert parsed == opts
    cfg = configs.load("fastscnn")
    cfg.merge_from_dict(parsed)
    assert tuple(cfg.model.data_preprocessor.size) == (256, 512)
    assert cfg.train_dataloader.persistent_workers is True


def test_fidelity_hooked_config_is_the_model_config_plus_the_timing_hook(tmp_path):
    """fidelity.py's letter T: plain mmseg on a config that inherits the model's and adds only the
    harness's timing hook (the FLOP probe on), so the hook's effect is measured without the
    launcher."""
    import importlib.util

    from mmengine.config import Config
    spec = importlib.util.spec_from_file_location("fidelity", configs.REPO / "benchmarks" / "fidelity.py")
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    path = fidelity.hooked_config("ocrnet_hrnetw48", "fp32", tmp_path, "t1")
    hooked, base = Config.fromfile(str(path)), configs.load("ocrnet_hrnetw48")
    assert hooked.custom_imports.imports == ["segbench.timing"]
    assert [h["type"] for h in hooked.custom_hooks] == ["SegbenchPeakHook", "SegbenchTimerHook"]
    assert hooked.custom_hooks[1]["count_flops"] is True
    extra = {"custom_imports", "custom_hooks"}
    assert {k: v for k, v in hooked.to_dict().items() if k not in extra} == \
        {k: v for k, v in base.to_dict().items() if k not in extra}


@pytest.mark.parametrize("interval", [2, 10, 20])
def test_each_log_window_averages_its_own_iterations(interval):
    """mmengine's LogProcessor averages ``time`` over its window_size (10) last iterations
    whatever the logger interval: the window is set to the interval, on the built config and in
    the cfg-options plain mmseg gets (benchmarks/fidelity.py passes configs.options)."""
    s = configs.TrainSettings("fastscnn", 2, 50, 1, device="cpu", log_interval=interval)
    cfg = configs.build(s)
    assert cfg.log_processor.window_size == interval == cfg.default_hooks.logger.interval
    assert cfg.log_processor.by_epoch is False                    # the model config's own, kept
    assert configs.options(configs.load("fastscnn"), s)["log_processor.window_size"] == interval


def test_logged_window_time_is_the_mean_of_its_own_iterations(cpu_env):
    """End to end on the CPU at LOG_INTERVAL=2: each logged window's ``time`` is the mean of its
    own two iterations (the timing hook's per-iteration file), not of the last 10 -- which
    at iterations 4..10 would still hold iteration 1 (start-up and the FLOP probe). Window 1 is
    left out: mmengine's iteration 1 counts the FLOP probe, the hook's does not."""
    import json
    import re
    import subprocess
    r = subprocess.run(["bash", str(configs.REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2",
                        "12", "1"], env=dict(cpu_env, CROP="64x128"), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    log = configs.Path(cpu_env["TRAIN_LOG_DIR"]) / "fastscnn_sp_bs2_fp32_1_crop64x128_li2"
    logged = {int(m[1]): float(m[2]) for m in
              re.finditer(r"Iter\(train\) \[\s*(\d+)/12\].*?\btime: ([0-9.]+)", log.read_text())}
    rows = [json.loads(ln) for ln in log.with_name(log.name + "_iters.rank0.jsonl").read_text().splitlines()]
    times = {row["iter"]: row["time"] for row in rows if row["kind"] == "iter"}
    assert sorted(logged) == [2, 4, 6, 8, 10, 12] and sorted(times) == list(range(1, 13))
    for it in (4, 6, 8, 10, 12):
        own = (times[it - 1] + times[it]) / 2
        # the two clocks read a few hooks apart (mmengine's timer hook runs before the logger)
        assert logged[it] == pytest.approx(own, rel=0.02, abs=1e-2), (it, logged, times)


@pytest.mark.parametrize("model", ["bisenetv2", "deeplabv3p_resnet50", "fcn_hrnetw18", "stdc_stdc1",
                                   "maskformer", "mask2former"])
def test_later_benchmarks_models_are_mmsegs_own_configs_set_up_to_train_only(model):
    """Each name is mmseg's shipped config, its crop the config's own, and the harness's settings
    apply as to the seed's models: no validation, no checkpoints, no pretrained weights."""
    assert configs.config_path(model).is_relative_to(configs._mmseg_configs())
    assert configs.config_crop(configs.load(model)) == configs.MODELS[model]
    cfg = tuned.build(configs.TrainSettings(model, 2, 60, 1, device="cpu", crop=(64, 128)))
    assert cfg.val_dataloader is None and cfg.test_dataloader is None and cfg.val_cfg is None
    assert cfg.default_hooks.checkpoint.interval == -1 and cfg.train_cfg.max_iters == 60
    assert configs._pretrained_paths(cfg.model.to_dict()) == [] and cfg.load_from is None
    assert configs.config_crop(cfg) == (64, 128) == tuple(cfg.model.data_preprocessor.size)
    assert configs.dataset_layout(cfg) == ("ade20k" if model == "maskformer" else "cityscapes")


def test_any_mmseg_config_or_file_and_its_short_name(tmp_path):
    ref = "mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py"
    assert configs.short_name(ref) == "pspnet_r50-d8_ade20k-512x512"
    assert configs.short_name("mmseg::bisenetv2/bisenetv2_fcn_4xb4-amp-160k_cityscapes-1024x1024.py") \
        == "bisenetv2_fcn_amp_cityscapes-1024x1024"
    cfg = tuned.build(configs.TrainSettings(ref, 2, 60, 1, device="cpu", data_root="/d"))
    assert configs.config_crop(cfg) == (512, 512)        # no CROP: the config's own
    assert cfg.train_dataloader.dataset.data_root == "/d" and cfg.model.pretrained is None
    # a config file of one's own, with two RandomCrops (both take the crop)
    own = tmp_path / "my_fcn.py"
    own.write_text("_base_ = 'mmseg::fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py'\n"
                   "train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),\n"
                   "    dict(type='RandomCrop', crop_size=(256, 256)),\n"
                   "    dict(type='RandomCrop', crop_size=(128, 128)),\n"
                   "    dict(type='PackSegInputs')]\n"
                   "train_dataloader = dict(dataset=dict(pipeline=train_pipeline))\n")
    cfg = tuned.build(configs.TrainSettings(str(own), 2, 60, 1, device="cpu", crop=(64, 96)))
    assert [t["crop_size"] for t in cfg.train_dataloader.dataset.pipeline
            if t["type"] == "RandomCrop"] == [(64, 96), (64, 96)]
    assert configs.short_name(str(own)) == "my_fcn"


@pytest.mark.parametrize("model, needle", [
    ("vit_adapter", "ships no ViT-Adapter config"),
    ("nope", "unknown model 'nope'"),
    ("mmseg::nope/x.py", "does not exist"),
])
def test_models_that_cannot_run_say_why(model, needle):
    with pytest.raises(ValueError, match=needle):
        configs.TrainSettings(model, 2, 60, 1).validate()


def test_configs_it_cannot_train_get_a_one_line_reason(tmp_path):
    voc = "mmseg::pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py"
    with pytest.raises(ValueError, match="a ConcatDataset of PascalVOCDataset; segbench trains one"):
        tuned.build(configs.TrainSettings(voc, 2, 60, 1, device="cpu"))
    context = "mmseg::pspnet/pspnet_r50-d8_4xb4-40k_pascal-context-480x480.py"
    with pytest.raises(ValueError, match="PascalContextDataset is not one segbench makes.*DATA_ROOT"):
        tuned.build(configs.TrainSettings(context, 2, 60, 1, device="cpu"))
    own = tmp_path / "nocrop.py"
    own.write_text("_base_ = 'mmseg::fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py'\n"
                   "train_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImageFromFile')]))\n")
    with pytest.raises(ValueError, match="no RandomCrop"):
        tuned.build(configs.TrainSettings(str(own), 2, 60, 1, device="cpu", crop=(64, 64)))
    assert configs.missing_needs("mask2former").startswith("mask2former needs mmdet")
    assert configs.missing_needs("fastscnn") is None


def test_the_zoo_is_derived_from_mmsegs_configs():
    zoo = configs.zoo()
    assert len(zoo) > 100 and all(r.startswith("mmseg::") for r in zoo)
    assert len({configs.short_name(r) for r in zoo}) == len(zoo)      # one per network and crop
    assert any("ade20k" in r for r in zoo) and any("cityscapes" in r for r in zoo)
    assert "mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py" in zoo
    assert "mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py" not in zoo   # a schedule
