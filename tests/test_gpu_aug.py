"""The tuned mode's gpu_aug switch (segbench.gpu_aug): the device-side operations match cv2 bit for
bit, the deferred pipeline gives stock's labels and meta keys and (within tolerance) images, the
config rewrite, the checks catch a wrong plan, and a gpu_aug case end to end on the CPU."""
import dataclasses
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segbench import configs, equivalence, gpu_aug, tuned

REPO = Path(__file__).resolve().parent.parent
PREFIX = "train_dataloader.dataset.pipeline"


def test_hsv_conversions_match_cv2():
    """Every uint8 BGR colour to HSV; a random million HSV values back (rows of 1024 pixels: a
    multiple of cv2's SIMD block, see segbench.gpu_aug)."""
    bgr = np.stack(np.meshgrid(*[np.arange(256)] * 3, indexing="ij"), -1).astype(np.uint8)
    bgr = bgr.reshape(-1, 1024, 3)
    h, s, v = gpu_aug.bgr_to_hsv(torch.from_numpy(bgr).permute(2, 0, 1)[None].float())
    ref = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    assert np.array_equal(torch.stack([h, s, v], -1)[0].numpy(), ref)
    rng = np.random.default_rng(0)
    hsv = np.stack([rng.integers(0, 180, 2 ** 20), rng.integers(0, 256, 2 ** 20),
                    rng.integers(0, 256, 2 ** 20)], -1).astype(np.uint8).reshape(-1, 1024, 3)
    t = torch.from_numpy(hsv.astype(np.int32)).permute(2, 0, 1)
    out = gpu_aug.hsv_to_bgr(t[0][None], t[1][None], t[2][None])[0].permute(1, 2, 0).numpy()
    assert np.array_equal(out.astype(np.uint8), cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))


@pytest.mark.parametrize("src, dst", [((256, 512), (1354, 2708)), ((1024, 2048), (921, 1842)),
                                      ((100, 200), (50, 100)), ((64, 128), (64, 300))])
def test_resize_window_matches_cv2(src, dst):
    """cv2 INTER_LINEAR, bit for bit: up, down, exactly half (cv2's INTER_AREA path), one axis
    only; the whole image and a window of it."""
    img = np.random.default_rng(1).integers(0, 256, (*src, 3), dtype=np.uint8)
    ref = cv2.resize(img, dst[::-1], interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(img).permute(2, 0, 1)
    whole = gpu_aug.resize_window(x, dst, (0, dst[0], 0, dst[1])).permute(1, 2, 0).numpy()
    assert np.array_equal(whole, ref)
    y1, x1 = dst[0] // 3, dst[1] // 4
    part = gpu_aug.resize_window(x, dst, (y1, dst[0], x1, dst[1] - 3)).permute(1, 2, 0).numpy()
    assert np.array_equal(part, ref[y1:, x1:dst[1] - 3])


@pytest.mark.parametrize("model", ["fastscnn", "segformer_b0"])
@pytest.mark.parametrize("seed", [0, 40, 80])
def test_deferred_pipeline_gives_stock_labels_and_images(small_data, model, seed):
    r = equivalence.aug_equivalence(model, n=4, crop=(64, 128), data_root=small_data, seed=seed)
    assert r["labels_identical"] and r["meta_identical"], r
    assert r["ok"], equivalence.format_aug_report(r)
    assert r["max_abs"] == 0  # on this host's cv2: bit-identical (the tolerance is for others)


def test_wrong_plan_is_caught(small_data):
    """A flip left out of the plans: the labels (flipped on the worker) still match, the images
    must not."""
    r = equivalence.aug_equivalence("fastscnn", n=4, crop=(64, 128), data_root=small_data, seed=0,
                                mutate=lambda plan: plan.update(flip=None))
    assert r["plans"]["flipped"] == 0
    right = equivalence.aug_equivalence("fastscnn", n=4, crop=(64, 128), data_root=small_data, seed=0)
    assert right["ok"] and right["plans"]["flipped"] > 0  # the seed does flip some samples
    assert r["labels_identical"] and not r["ok"]
    assert r["share_gt2"] > gpu_aug.AUG_TOLERANCE["share_gt2"]
    assert "NOT EQUIVALENT" in equivalence.format_aug_report(r)


def test_aug_equivalence_cli(small_data, tmp_path, capsys):
    out = tmp_path / "aug.json"
    rc = equivalence.main(["aug-equivalence", "segformer_b0", "--n", "2", "--crop", "64x128",
                     "--data-root", str(small_data), "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "labels identical: True" in text and text.rstrip().endswith("EQUIVALENT")
    r = json.loads(out.read_text())
    assert r["ok"] and r["samples"] == 2 and r["tolerance"] == gpu_aug.AUG_TOLERANCE


@pytest.mark.parametrize("model", list(configs.MODELS))
def test_config_rewrite(model):
    stock_cfg = configs.load(model)
    s = configs.TrainSettings(model, 2, 50, 1, device="cpu", crop=(64, 128))
    if "RandomResize" not in [t["type"] for t in stock_cfg.train_dataloader.dataset.pipeline]:
        with pytest.raises(ValueError, match="gpu_aug needs a train pipeline with one each of"):
            tuned.options(configs.load(model), dataclasses.replace(s, tuned=("gpu_aug",)))
        return      # mask2former's RandomChoiceResize: a pipeline gpu_aug does not defer
    stock = tuned.options(stock_cfg, s)
    opts = tuned.options(configs.load(model), configs.TrainSettings(
        model, 2, 50, 1, device="cpu", crop=(64, 128), tuned=("gpu_aug",)))
    types = [t["type"] for t in stock_cfg.train_dataloader.dataset.pipeline]
    renamed = {f"{PREFIX}.{types.index(t)}.type": d for t, d in gpu_aug.DEFERRED.items()}
    pack = f"{PREFIX}.{types.index('PackSegInputs')}.meta_keys"
    added = {k: v for k, v in opts.items() if stock.get(k, object()) != v}
    assert added == {**renamed, pack: opts[pack], "model.data_preprocessor.gpu_aug": True,
                     "model.data_preprocessor.type": tuned.PREPROCESSOR}
    assert opts[pack][-1] == gpu_aug.PLAN_KEY and "img_shape" in opts[pack]
    cfg = tuned.build(configs.TrainSettings(model, 2, 50, 1, device="cpu", crop=(64, 128),
                                              tuned=("gpu_aug",)))
    pipeline = cfg.train_dataloader.dataset.pipeline
    crop = pipeline[types.index("RandomCrop")]
    assert crop.type == gpu_aug.DEFERRED["RandomCrop"] and crop.crop_size == (64, 128)
    assert crop.cat_max_ratio == 0.75                  # the config's own values are kept
    assert pipeline[types.index("RandomResize")].ratio_range == (0.5, 2.0)
    assert cfg.model.data_preprocessor.gpu_aug is True


def test_rewrite_refuses_an_unexpected_pipeline():
    cfg = configs.load("fastscnn")
    cfg.train_dataloader.dataset.pipeline = [t for t in cfg.train_dataloader.dataset.pipeline
                                             if t["type"] != "RandomFlip"]
    with pytest.raises(ValueError, match="gpu_aug needs a train pipeline"):
        gpu_aug.pipeline_options(cfg)


def test_plans_need_a_gpu_aug_preprocessor(small_data):
    """Plans reaching a preprocessor without gpu_aug would train on whole, unaugmented images."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS, MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    tuned.register()
    cfg = tuned.build(configs.TrainSettings("fastscnn", 2, 50, 1, device="cpu", crop=(64, 128),
                                              data_root=str(small_data), tuned=("gpu_aug",)))
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([ds[0], ds[1]])
    assert batch["inputs"][0].shape[-2:] == (256, 512)       # the whole decoded image
    assert batch["data_samples"][0].img_shape == (64, 128)   # the stock (cropped) shape
    cfg.model.data_preprocessor.gpu_aug = False
    with pytest.raises(RuntimeError, match="gpu_aug=True"):
        MODELS.build(cfg.model.data_preprocessor)(batch, True)
    cfg.model.data_preprocessor.gpu_aug = True
    out = MODELS.build(cfg.model.data_preprocessor)(batch, True)
    assert out["inputs"].shape == (2, 3, 64, 128)


def test_equivalence_with_gpu_aug(small_data, capsys):
    rc = equivalence.main(["equivalence", "fastscnn", "--switches", "gpu_aug,loader,foreach",
                     "--iters", "2", "--crop", "64x128", "--data-root", str(small_data),
                     "--no-control"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert ("gpu_aug batches after the preprocessor: labels identical True, meta keys identical "
            "True, image max abs diff 0 levels") in out
    assert "tuned data loader gives identical batches" not in out
    assert out.rstrip().endswith("EQUIVALENT") and "NOT EQUIVALENT" not in out


def test_gpu_aug_case_end_to_end(cpu_env):
    env = dict(cpu_env, CROP="64x128", TUNED="gpu_aug")
    r = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2",
                        "12", "1"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    log_dir = Path(env["TRAIN_LOG_DIR"])
    case = "fastscnn_sp_bs2_fp32_1_tuned-gpu_aug_crop64x128_li2"
    speed = json.loads((log_dir / f"{case}_speed").read_text(encoding="utf-8"))
    assert speed["JOB_FAIL_FLAG"] == 0 and speed["FINAL_RESULT"] > 0
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["tuned"] == ["gpu_aug"]
    meta = json.loads((log_dir / f"{case}_iters.rank0.jsonl").read_text().splitlines()[0])
    assert meta["input_shape"] == [2, 3, 64, 128]        # the device-side crop reached the model
    text = (log_dir / case).read_text(encoding="utf-8")
    assert "SegbenchDeferredRandomCrop" in text and "gpu_aug=True" in text  # the config dump
