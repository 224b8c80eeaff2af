"""The tuned mode's ``gpu_aug`` switch: the train pipeline's image augmentations run on the device.

Why: at benchmark batch sizes an H200 can wait on the data loader (stock fastscnn with 5 workers:
29% of the time, in bursts of up to 0.1 s). Per image the workers spend ~60% decoding the PNG, which
stays where it is, and ~30% on RandomResize, RandomCrop, RandomFlip and PhotoMetricDistortion of
the image, which this moves. (The tuned runs' 10-13% "data wait" of 2026-11-29 was mostly the gap
between iterations -- mmengine's per-iteration ``model.train()`` -- not the loader; see
segbench.timing. Whether this switch pays on a GPU is not measured yet.)

Worker side (:func:`register`, :func:`pipeline_options`): the config's four transforms become
segbench subclasses of those very classes (``type`` renamed in place, so every parameter of any
config is kept). They draw the same random numbers from numpy's global RNG, in the same order,
through the stock classes' own methods (RandomResize's scale sampling, mmcv.rescale_size, RandomCrop
's crop_bbox with its cat_max_ratio retries on the label, RandomFlip's direction choice,
PhotoMetricDistortion's own transform for the draw sequence); they resize (nearest), crop and flip
the label maps exactly as stock does, so labels are bit-identical; they leave the decoded uint8
image full-size and untouched and record the image operations as a plan (PLAN_KEY: resized size,
crop box, flip direction, the photometric operations applied, in order, with their values), which
PackSegInputs carries into each data sample's metainfo. ``img_shape``, ``scale_factor``, ``flip``
and ``flip_direction`` are set as stock sets them.

Device side (:func:`apply_plans`, called by segbench.tuned's SegbenchDataPreProcessor with
``gpu_aug=True``): per sample, the uint8 image on the device, cv2's INTER_LINEAR resize reproduced
in integer arithmetic for the crop's window only (:func:`resize_window`), flip; then the
photometric operations on the batch, with mmseg's uint8 semantics (float32 maths, clip,
truncation) and cv2's uint8 BGR<->HSV conversions reproduced (:func:`bgr_to_hsv`,
:func:`hsv_to_bgr`). Then the stock path: BGR->RGB, normalise, pad, stack.

Why reproduce cv2 rather than call F.interpolate: torch's float bilinear moves ~12% of the resized
pixels by one level against cv2's 11-bit fixed point, and the photometric operations widen that.
Reproduced, the images are bit-identical to stock's on this host; AUG_TOLERANCE is for other cv2
builds and CPUs. :func:`aug_equivalence` (``python -m segbench.equivalence aug-equivalence MODEL``) is the
proof.
"""
from __future__ import annotations

PLAN_KEY = "segbench_aug"
# stock transform type -> its deferred subclass; the pipeline must hold them in this order
DEFERRED = {"RandomResize": "SegbenchDeferredRandomResize",
            "RandomCrop": "SegbenchDeferredRandomCrop",
            "RandomFlip": "SegbenchDeferredRandomFlip",
            "PhotoMetricDistortion": "SegbenchDeferredPhotoMetricDistortion"}
FLIP_DIMS = {None: (), "horizontal": (-1,), "vertical": (-2,), "diagonal": (-2, -1)}
# Tolerances of the image comparison, in uint8 levels (labels and meta keys must be identical;
# share_gt1/share_gt2: share of pixels with a channel off by more than 1/2 levels). Measured on this
# CPU (aug-equivalence on the 2048x1024 synthetic set, fastscnn, segformer_b0 and ocrnet_hrnetw48 at
# their own crops, 4 seeds x 8 samples each; tests at 64x128): no difference at all -- resize and
# HSV reproduce cv2's arithmetic. The tolerance is for the stock side's cv2 elsewhere (it runs on
# the host's CPU): HSV->BGR in cv2's scalar path (row tails narrower than its SIMD block, 32 pixels
# with AVX2, i.e. crop widths that are no multiple of it) rounds where the SIMD path truncates --
# measured here on whole resized images with such tails: up to 4 levels on 0.1-0.4% of the values
# after a full photometric distortion -- and a build without FMA rounds two products once more (1
# level on 0.015% of all HSV inputs). So 6 levels, 0.5% of the pixels off by more than 1, 0.2% by
# more than 2. A wrong plan is far outside (fastscnn, 8 samples at 2048x1024): a flip left out put
# 49% of the pixels more than 2 levels off (4 samples flipped), a hue shift left out 17%; and
# F.interpolate's float bilinear in place of cv2's fixed point (64x128 tests) put 7.5% of the
# pixels more than 1 level off, 1.8% more than 2.
AUG_TOLERANCE = {"max_abs": 6, "mean_abs": 0.02, "share_gt1": 0.005, "share_gt2": 0.002}


# ---------------------------------------------------------------------------------------------
# Worker side

def pipeline_options(cfg) -> dict:
    """The cfg-options that defer a config's train pipeline augmentations: the four transforms'
    types renamed in place (DEFERRED), PackSegInputs' meta_keys plus PLAN_KEY."""
    from mmseg.datasets.transforms import PackSegInputs
    prefix = "train_dataloader.dataset.pipeline"
    types = [t.get("type") for t in cfg.train_dataloader.dataset.pipeline]
    at = [i for name in (*DEFERRED, "PackSegInputs") for i, t in enumerate(types) if t == name]
    if len(at) != len(DEFERRED) + 1 or at != sorted(at):
        raise ValueError("gpu_aug needs a train pipeline with one each of "
                         f"{', '.join(DEFERRED)}, PackSegInputs, in that order; found {types}")
    opts = {f"{prefix}.{i}.type": DEFERRED[types[i]] for i in at[:-1]}
    pack = cfg.train_dataloader.dataset.pipeline[at[-1]]
    import inspect
    default = inspect.signature(PackSegInputs).parameters["meta_keys"].default
    opts[f"{prefix}.{at[-1]}.meta_keys"] = (*pack.get("meta_keys", default), PLAN_KEY)
    return opts


def _plan(results: dict) -> dict:
    """The sample's plan, started by the first deferred transform: no operation yet."""
    if PLAN_KEY not in results:
        results[PLAN_KEY] = {"size": list(results["img"].shape[:2]), "crop": None, "flip": None,
                             "photometric": []}
    return results[PLAN_KEY]


def plan_shape(plan: dict) -> tuple[int, int]:
    """The image's (h, w) after the plan's resize and crop (a crop box clipped as slicing does)."""
    h, w = plan["size"]
    if plan["crop"] is None:
        return h, w
    y1, y2, x1, x2 = plan["crop"]
    return len(range(h)[y1:y2]), len(range(w)[x1:x2])


def _stand_in(shape):
    """A zero-stride uint8 (h, w, 3) array: what the stock methods read of the image (its
    shape), without an image."""
    import numpy as np
    return np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (*shape, 3))


_REGISTERED: dict = {}


def register() -> None:
    """Define and register the deferred transforms (mmseg TRANSFORMS)."""
    if _REGISTERED:
        return
    import mmcv
    from mmcv.transforms import RandomResize
    from mmseg.datasets.transforms import PhotoMetricDistortion, RandomCrop, RandomFlip
    from mmseg.registry import TRANSFORMS
    from numpy import random

    @TRANSFORMS.register_module(name=DEFERRED["RandomResize"])
    class SegbenchDeferredRandomResize(RandomResize):
        """RandomResize: the stock scale draw and label resize; the image's size goes in the
        plan. The device resizes bilinearly, so only cv2's bilinear interpolation is accepted."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.resize.interpolation != "bilinear" or self.resize.backend != "cv2":
                raise ValueError("gpu_aug reproduces cv2's bilinear resize only, not "
                                 f"{self.resize.backend} {self.resize.interpolation}")

        def transform(self, results: dict) -> dict:
            plan = _plan(results)
            h, w = plan["size"]
            results["scale"] = self._random_scale()
            if self.resize.keep_ratio:       # what mmcv.imrescale resizes to
                new_w, new_h = mmcv.rescale_size((w, h), results["scale"])
            else:                            # mmcv.imresize
                new_w, new_h = results["scale"]
            self.resize._resize_seg(results)
            plan["size"] = [new_h, new_w]
            results.update(img_shape=(new_h, new_w), scale_factor=(new_w / w, new_h / h),
                           keep_ratio=self.resize.keep_ratio)
            return results

    @TRANSFORMS.register_module(name=DEFERRED["RandomCrop"])
    class SegbenchDeferredRandomCrop(RandomCrop):
        """RandomCrop: the stock crop box (incl. the cat_max_ratio retries on the label) and
        label crop; the box goes in the plan."""

        def transform(self, results: dict) -> dict:
            plan = _plan(results)
            bbox = self.crop_bbox(dict(results, img=_stand_in(plan["size"])))
            for key in results.get("seg_fields", []):
                results[key] = self.crop(results[key], bbox)
            plan["crop"] = [int(v) for v in bbox]
            results["img_shape"] = plan_shape(plan)
            return results

    @TRANSFORMS.register_module(name=DEFERRED["RandomFlip"])
    class SegbenchDeferredRandomFlip(RandomFlip):
        """RandomFlip: the stock direction choice and label flip (label swaps included) run on
        a stand-in image; the direction goes in the plan."""

        def transform(self, results: dict) -> dict:
            plan = _plan(results)
            img, results["img"] = results["img"], _stand_in(plan_shape(plan))
            try:
                self._flip_on_direction(results)
            finally:
                results["img"] = img
            plan["flip"] = results["flip_direction"]
            return results

    @TRANSFORMS.register_module(name=DEFERRED["PhotoMetricDistortion"])
    class SegbenchDeferredPhotoMetricDistortion(PhotoMetricDistortion):
        """PhotoMetricDistortion: its own transform runs (brightness, the contrast-first/last
        draw, contrast, saturation, hue); each operation draws as stock and records itself in the
        plan instead of changing the image."""

        def transform(self, results: dict) -> dict:
            self._applied = _plan(results)["photometric"] = []
            return super().transform(results)

        def brightness(self, img):
            if random.randint(2):
                self._applied.append(
                    ["brightness", random.uniform(-self.brightness_delta, self.brightness_delta)])
            return img

        def contrast(self, img):
            if random.randint(2):
                self._applied.append(
                    ["contrast", random.uniform(self.contrast_lower, self.contrast_upper)])
            return img

        def saturation(self, img):
            if random.randint(2):
                self._applied.append(
                    ["saturation", random.uniform(self.saturation_lower, self.saturation_upper)])
            return img

        def hue(self, img):
            if random.randint(2):
                self._applied.append(["hue", int(random.randint(-self.hue_delta, self.hue_delta))])
            return img

    _REGISTERED.update(resize=SegbenchDeferredRandomResize, crop=SegbenchDeferredRandomCrop,
                       flip=SegbenchDeferredRandomFlip,
                       photometric=SegbenchDeferredPhotoMetricDistortion)


# ---------------------------------------------------------------------------------------------
# Device side

_TABLES: dict = {}


def _tables(device):
    """cv2's uint8 RGB->HSV division tables (hsv_shift 12, H range 180) and HSV->RGB's sector
    table, on ``device`` (made once per device)."""
    import torch
    key = str(device)
    if key not in _TABLES:
        i = torch.arange(1, 256, dtype=torch.float64)
        zero = torch.zeros(1, dtype=torch.float64)
        sdiv = torch.cat([zero, torch.round((255 << 12) / i)]).to(torch.int32)
        hdiv = torch.cat([zero, torch.round((180 << 12) / (6 * i))]).to(torch.int32)
        sector = torch.tensor([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])
        _TABLES[key] = tuple(t.to(device) for t in (sdiv, hdiv, sector))
    return _TABLES[key]


def bgr_to_hsv(x):
    """cv2.cvtColor(COLOR_BGR2HSV) of uint8 levels: x (N, 3, H, W) float BGR -> h, s, v int32
    (N, H, W), H in [0, 180). cv2's integer algorithm (RGB2HSV_b), so exact."""
    import torch
    sdiv, hdiv, _ = _tables(x.device)
    b, g, r = x.to(torch.int32).unbind(1)
    v = torch.maximum(torch.maximum(b, g), r)
    diff = v - torch.minimum(torch.minimum(b, g), r)
    s = (diff * sdiv[v.long()] + (1 << 11)) >> 12
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * hdiv[diff.long()] + (1 << 11)) >> 12
    return torch.where(h < 0, h + 180, h), s, v


def hsv_to_bgr(h, s, v):
    """cv2.cvtColor(COLOR_HSV2BGR) of uint8 levels: h, s, v (N, H, W) -> (N, 3, H, W) float BGR
    levels. cv2's SIMD float path (HSV2RGB_b): float32 maths, the result truncated; its two
    ``v * (1 - s * f)`` terms are fused multiply-adds in the AVX2 build, reproduced by computing
    ``1 - s * f`` in float64 (the product is exact there) and rounding once to float32. Checked
    against cv2 on all 180 x 256 x 256 inputs: identical."""
    import torch
    _, _, sector = _tables(h.device)
    hf = h.float() * (6.0 / 180)           # torch rounds the scalar to float32, as cv2's hscale
    sf = s.float() * (1 / 255)
    vf = v.float() * (1 / 255)
    whole = hf.trunc()
    f = hf - whole
    s64 = sf.double()
    tab = torch.stack([vf, vf * (1 - sf), vf * (1 - s64 * f.double()).float(),
                       vf * (1 - s64 * (1 - f).double()).float()], 1)
    bgr = tab.gather(1, sector[whole.long()].movedim(-1, 1))
    return (bgr * 255).trunc().clamp(0, 255)


def _convert(x, alpha=None, beta=None):
    """PhotoMetricDistortion.convert: float32 ``x * alpha + beta``, clipped to [0, 255],
    truncated to uint8 levels."""
    if alpha is not None:
        x = x * alpha
    if beta is not None:
        x = x + beta
    return x.clamp(0, 255).trunc()


def _resize_axis(out_n: int, in_n: int, start: int, stop: int, device, rows: bool):
    """cv2 INTER_LINEAR's source indices and 11-bit weights for outputs [start, stop) of one
    axis (resize.cpp: ``fx = (float)((dx + 0.5) * scale - 0.5)``, weights
    ``saturate_cast<short>((1 - fx) * 2048)`` and ``(fx * 2048)``). Columns past either edge take
    the edge pixel (weight 0 for the neighbour); rows only clip their indices and keep their
    weights, as cv2 does."""
    import torch
    scale = 1.0 / (out_n / in_n)                  # cv2: 1. / inv_scale, in double
    f = ((torch.arange(start, stop, dtype=torch.float64, device=device) + 0.5) * scale
         - 0.5).float()
    whole = f.floor()
    f = f - whole
    if not rows:
        f = torch.where((whole < 0) | (whole >= in_n - 1), torch.zeros_like(f), f)
    i0 = whole.long()
    w0, w1 = (torch.round(v * 2048).to(torch.int32) for v in (1 - f, f))
    return i0.clamp(0, in_n - 1), (i0 + 1).clamp(0, in_n - 1), w0, w1


def resize_window(img, size, window):
    """cv2.resize(img, size, INTER_LINEAR) of uint8 levels, computed only for the output window
    (y1, y2, x1, x2): img (C, H, W) -> int32 (C, y2 - y1, x2 - x1). cv2's fixed-point arithmetic
    (HResizeLinear into an int buffer, VResizeLinear's ``((b0 * (S0 >> 4)) >> 16) + ((b1 *
    (S1 >> 4)) >> 16) + 2) >> 2``), so the same levels, bit for bit; exact 2x reductions, which cv2
    hands to INTER_AREA, give the same levels too. F.interpolate's float bilinear would not: on
    2048x1024 images it moved ~12% of the pixels by one level."""
    import torch
    (h, w), (y1, y2, x1, x2) = size, window
    r0, r1, b0, b1 = _resize_axis(h, img.shape[-2], y1, y2, img.device, rows=True)
    c0, c1, a0, a1 = _resize_axis(w, img.shape[-1], x1, x2, img.device, rows=False)

    def horizontal(rows):
        picked = img[:, rows].to(torch.int32)
        return picked[..., c0] * a0 + picked[..., c1] * a1

    top, bottom = horizontal(r0), horizontal(r1)
    b0, b1 = b0.view(-1, 1), b1.view(-1, 1)
    return (((b0 * (top >> 4)) >> 16) + ((b1 * (bottom >> 4)) >> 16) + 2) >> 2


def _geometry(img, plan: dict):
    """One sample's resize, crop and flip: uint8 (3, H, W) -> float (3, h, w) uint8 levels. The
    resize computes the crop's window only."""
    h, w = plan["size"]
    y1, y2, x1, x2 = plan["crop"] or (0, h, 0, w)
    y2, x2 = min(y2, h), min(x2, w)                # a crop box clips as slicing does
    if (h, w) == tuple(img.shape[-2:]):
        x = img[:, y1:y2, x1:x2].float()
    else:
        x = resize_window(img, (h, w), (y1, y2, x1, x2)).float()
    if FLIP_DIMS[plan["flip"]]:
        x = x.flip(FLIP_DIMS[plan["flip"]])
    return x


def _photometric_rows(plans) -> list[list[float]]:
    """Per sample: brightness beta, contrast alpha before saturation/hue, saturation alpha, hue
    delta, contrast alpha after them, saturation on, hue on -- identities where not applied.
    (Contrast with neither saturation nor hue applied is the same first or last.)"""
    rows = []
    for plan in plans:
        names = [name for name, _ in plan["photometric"]]
        value = dict(plan["photometric"])
        hsv_at = [i for i, n in enumerate(names) if n in ("saturation", "hue")]
        first = "contrast" in value and (not hsv_at or names.index("contrast") < hsv_at[0])
        rows.append([value.get("brightness", 0.0), value["contrast"] if first else 1.0,
                     value.get("saturation", 1.0), value.get("hue", 0),
                     value["contrast"] if "contrast" in value and not first else 1.0,
                     float("saturation" in value), float("hue" in value)])
    return rows


def _photometric(x, plans):
    """PhotoMetricDistortion on a batch x (N, 3, H, W) of float BGR uint8 levels, each sample
    with its plan's operations: per-sample parameters (one host-to-device copy), identities where
    a sample skips an operation (exact: x + 0 and x * 1 change no level), torch.where for the HSV
    round trips (they are lossy, so never applied to a sample that skips them). Operations no
    sample applies are left out."""
    import torch
    rows = _photometric_rows(plans)
    params = torch.tensor(rows, dtype=torch.float32)   # float32, as numpy casts the draws
    if x.device.type == "cuda":
        params = params.pin_memory()
    p = params.to(x.device, non_blocking=True).view(len(rows), 7, 1, 1, 1)
    brightness, contrast_first, _, _, contrast_last, saturation, hue = (
        any(r[i] != ident for r in rows) for i, ident in enumerate((0, 1, 1, 0, 1, 0, 0)))
    if brightness:
        x = _convert(x, beta=p[:, 0])
    if contrast_first:
        x = _convert(x, alpha=p[:, 1])
    if saturation:
        h, s, v = bgr_to_hsv(x)
        s = _convert(s.float(), alpha=p[:, 2, 0])
        x = torch.where(p[:, 5] > 0, hsv_to_bgr(h, s, v), x)
    if hue:
        h, s, v = bgr_to_hsv(x)
        h = torch.remainder(h + p[:, 3, 0].to(torch.int32), 180)
        x = torch.where(p[:, 6] > 0, hsv_to_bgr(h, s, v), x)
    if contrast_last:
        x = _convert(x, alpha=p[:, 4])
    return x


def apply_plans(images, plans) -> list:
    """The deferred augmentations, on the images' device: uint8 (3, H, W) BGR images and their
    plans -> float32 (3, h, w) BGR tensors of uint8 levels, what stock's pipeline would have
    packed. Geometry per sample (sizes differ); photometry on the batch when the crops have one
    shape, else per sample. Host values only steer the work: no device sync."""
    import torch
    geo = [_geometry(img, plan) for img, plan in zip(images, plans, strict=True)]
    if len({tuple(g.shape) for g in geo}) == 1:
        return list(_photometric(torch.stack(geo), plans).unbind(0))
    return [_photometric(g[None], [plan])[0] for g, plan in zip(geo, plans)]


# ---------------------------------------------------------------------------------------------
# Equivalence

def compare_outputs(stock: dict, tuned: dict, std) -> dict:
    """Compare two data preprocessor outputs (training, same samples): labels and meta keys must
    be identical; the images' differences in uint8 levels (normalised values times std, rounded)
    over each sample's image region (the padding is the same on both sides). Counts, to be summed
    over batches and given to :func:`verdict`."""
    import torch
    out = {"samples": 0, "labels_identical": 0, "meta_identical": 0, "values": 0, "pixels": 0,
           "sum_abs": 0.0, "max_abs": 0, "pixels_gt1": 0, "pixels_gt2": 0}
    for i, (a, b) in enumerate(zip(stock["data_samples"], tuned["data_samples"], strict=True)):
        h, w = a.img_shape
        meta = {k: v for k, v in b.metainfo.items() if k != PLAN_KEY}
        out["samples"] += 1
        out["labels_identical"] += bool(torch.equal(a.gt_sem_seg.data, b.gt_sem_seg.data))
        out["meta_identical"] += a.metainfo == meta
        d = ((stock["inputs"][i] - tuned["inputs"][i]).abs() * std.view(-1, 1, 1))
        d = d[:, :h, :w].round().to(torch.int64)
        per_pixel = d.amax(0)
        out["values"] += d.numel()
        out["pixels"] += per_pixel.numel()
        out["sum_abs"] += float(d.sum())
        out["max_abs"] = max(out["max_abs"], int(per_pixel.max()))
        out["pixels_gt1"] += int((per_pixel > 1).sum())
        out["pixels_gt2"] += int((per_pixel > 2).sum())
    return out


def add_counts(total: dict, part: dict) -> dict:
    """Two batches' counts (compare_outputs) as one."""
    return {k: max(total.get(k, 0), v) if k == "max_abs" else total.get(k, 0) + v
            for k, v in part.items()}


def verdict(counts: dict, tolerance: dict | None = None) -> dict:
    """The comparison's figures and pass/fail: every label and meta key identical, every image
    figure within the tolerance (AUG_TOLERANCE). ``share_gt1``/``share_gt2``: the share of image
    pixels with a channel off by more than 1 / 2 levels; ``mean_abs`` over all values."""
    tol = dict(AUG_TOLERANCE if tolerance is None else tolerance)
    n = counts["samples"]
    figures = {"max_abs": counts["max_abs"],
               "mean_abs": counts["sum_abs"] / max(counts["values"], 1),
               "share_gt1": counts["pixels_gt1"] / max(counts["pixels"], 1),
               "share_gt2": counts["pixels_gt2"] / max(counts["pixels"], 1)}
    ok = (n > 0 and counts["labels_identical"] == n and counts["meta_identical"] == n
          and all(figures[k] <= tol[k] for k in tol))
    return {"samples": n, "labels_identical": counts["labels_identical"] == n,
            "meta_identical": counts["meta_identical"] == n, **figures, "tolerance": tol,
            "ok": ok}
