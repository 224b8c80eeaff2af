"""The benchmarked models and the settings the harness puts on their configs.

A case's MODEL is a built-in name (:data:`MODELS`: the seed's three, which have
``configs/<model>.py``, and the later PaddlePaddle benchmark's models that mmseg 1.2.2 ships, each
mapped to mmseg's own config), an mmseg config (``mmseg::<dir>/<file>.py``) or the path of a
config file (:func:`resolve`). The same settings apply to every one of them: batch, workers,
iterations, crop, precision, no validation or checkpoints, no pretrained weights, log interval.

Every setting is expressed as an mmengine ``--cfg-options`` key, so the same options given to plain
``mmseg/.mim/tools/train.py configs/<model>.py --cfg-options ...`` reproduce the harness's
training exactly (that is how the fidelity benchmark compares the two).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs"

# Built-in models -> their crop (h, w), the config's own. The seed's three have configs/<model>.py
# (inheriting mmseg's Cityscapes config); the others are mmseg's own configs (CONFIGS).
MODELS: dict[str, tuple[int, int]] = {
    "fastscnn": (512, 1024),
    "ocrnet_hrnetw48": (512, 1024),
    "segformer_b0": (1024, 1024),
    "bisenetv2": (1024, 1024),
    "deeplabv3p_resnet50": (512, 1024),
    "fcn_hrnetw18": (512, 1024),
    "stdc_stdc1": (512, 1024),
    "maskformer": (512, 512),
    "mask2former": (512, 1024),
}
CONFIGS = {
    "bisenetv2": "mmseg::bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py",
    "deeplabv3p_resnet50": "mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py",
    "fcn_hrnetw18": "mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py",
    "stdc_stdc1": "mmseg::stdc/stdc1_4xb12-80k_cityscapes-512x1024.py",
    # mmseg 1.2.2 ships MaskFormer for ADE20K only
    "maskformer": "mmseg::maskformer/maskformer_r50-d32_8xb2-160k_ade20k-512x512.py",
    "mask2former": "mmseg::mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py",
}
# What a model needs beyond the default stack, and the command that sets it up.
NEEDS = {"maskformer": "mmdet", "mask2former": "mmdet"}
NEEDS_SETUP = {"mmdet": "MMCV_FLAVOR=full bash PrepareEnv.sh --mmdet (mmdet 3.3.0 and mmcv's compiled "
                        "ops: MultiScaleDeformableAttention)"}
# The later benchmark's models that mmseg 1.2.2 does not ship.
NOT_SHIPPED = {"vit_adapter": "mmseg 1.2.2 ships no ViT-Adapter config (the ViT-Adapter project keeps "
                              "its own mmseg 0.x fork)"}
DATASETS = {"CityscapesDataset": "cityscapes", "ADE20KDataset": "ade20k"}   # what segbench.data makes
PRECISIONS = ("fp32", "fp16", "bf16")
AMP_DTYPE = {"fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class TrainSettings:
    """What the harness sets on a model's config for one case."""
    model: str
    batch_size: int
    max_iters: int
    num_workers: int
    precision: str = "fp32"
    crop: tuple[int, int] | None = None   # None: the model's own (the seed's) crop
    data_root: str | None = None
    work_dir: str | None = None
    log_interval: int = 10
    device: str = "cuda"                  # "cuda" or "cpu"
    distributed: bool = False
    seed: int = 0
    tuned: tuple[str, ...] = ()           # segbench.tuned.SWITCHES; () = the stock case
    compile_mode: str = "auto"            # with "compile": torch.compile's mode (tuned.COMPILE_MODES)
    compile_scope: str = "modules"        # with "compile": segbench.tuned.COMPILE_SCOPES
    cpus: int = 0                         # with "workers": CPU cores this process may use (0: ask)
    local_procs: int = 1                  # with "workers": training processes on this host
    cudnn_benchmark: bool = True          # the seed's setting; False only to diagnose (CUDNN_BENCHMARK)

    def validate(self) -> None:
        config_path(self.model)   # raises for a model no config is found for
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        for name in ("batch_size", "max_iters", "num_workers", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)}")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 32):
            raise ValueError(f"crop must be two sizes >= 32, not {self.crop}")
        if self.device == "cpu" and self.precision != "fp32":
            raise ValueError(f"{self.precision} (AMP) needs a GPU: mmengine's AmpOptimWrapper "
                             "does not run on the CPU; use fp32 there")

    @property
    def crop_hw(self) -> tuple[int, int] | None:
        """The crop to set: the one asked for, a built-in model's own; None: the config's own."""
        return tuple(self.crop) if self.crop else MODELS.get(self.model)


def _mmseg_configs() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("mmseg")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("mmsegmentation is not installed (bash PrepareEnv.sh)")
    return Path(next(iter(spec.submodule_search_locations))) / ".mim" / "configs"


def config_path(model: str) -> Path:
    """The config file a MODEL names; ValueError with a one-line reason when there is none."""
    if model in NOT_SHIPPED:
        raise ValueError(f"{model} is a model of the later PaddlePaddle benchmark that segbench "
                         f"cannot run: {NOT_SHIPPED[model]}")
    ref = CONFIGS.get(model, model)
    if ref.startswith("mmseg::"):
        path = _mmseg_configs() / ref[len("mmseg::"):]
    elif model in MODELS:
        path = CONFIG_DIR / f"{model}.py"
    elif ref.endswith(".py"):
        path = Path(ref).expanduser().resolve()
    else:
        raise ValueError(f"unknown model {model!r}: a built-in name ({', '.join(MODELS)}), "
                         "mmseg::<dir>/<file>.py or the path of a config file")
    if not path.is_file():
        raise ValueError(f"no config {ref!r} ({path} does not exist)")
    return path


def short_name(model: str) -> str:
    """A case-name-safe short form of MODEL: a built-in name itself; a config's file name without
    its GPUs x batch and schedule (``pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py`` ->
    ``pspnet_r50-d8_cityscapes-512x1024``: schedules do not change a training step; variants such
    as ``amp`` stay)."""
    if model in MODELS or model in NOT_SHIPPED:
        return model
    stem = Path(model.split("::")[-1]).stem
    tokens = []
    for tok in stem.split("_"):
        parts = tok.split("-")
        if re.fullmatch(r"\d+xb\d+", parts[0]):
            parts = [p for p in parts[1:] if not re.fullmatch(r"\d+k", p)]
        if parts:
            tokens.append("-".join(parts))
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "_".join(tokens)) or "config"


def zoo() -> list[str]:
    """Every Cityscapes and ADE20K config mmseg ships, one per distinct network and crop (its
    :func:`short_name`; schedules and GPU counts do not change a training step): the first of
    each, in sorted order, as ``mmseg::<dir>/<file>.py``."""
    root = _mmseg_configs()
    seen: dict[str, str] = {}
    for path in sorted(root.glob("*/*.py")):
        if path.parent.name != "_base_" and re.search(r"_(cityscapes|ade20k)-\d+x\d+\.py$", path.name):
            ref = f"mmseg::{path.parent.name}/{path.name}"
            seen.setdefault(short_name(ref), ref)
    return list(seen.values())


def missing_needs(model: str) -> str | None:
    """Why this stack cannot run a model (mmdet and mmcv's compiled ops), or None."""
    need = NEEDS.get(model)
    if need is None:
        return None
    import importlib.util
    have_ops = importlib.util.find_spec("mmcv") is not None and _mmcv_has_ops()
    if importlib.util.find_spec(need) is not None and have_ops:
        return None
    return f"{model} needs {need} and mmcv's compiled ops; set the stack up with {NEEDS_SETUP[need]}"


def _mmcv_has_ops() -> bool:
    import importlib.util
    pkg = Path(next(iter(importlib.util.find_spec("mmcv").submodule_search_locations)))
    return any(pkg.glob("_ext*.so"))


def load(model: str):
    from mmengine.config import Config
    return Config.fromfile(str(config_path(model)))


def dataset_key(cfg) -> str:
    """The dotted key of the training dataset (inside a RepeatDataset wrapper, if one)."""
    ds = cfg.train_dataloader.dataset
    return "train_dataloader.dataset.dataset" if ds.get("type") == "RepeatDataset" else \
        "train_dataloader.dataset"


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def dataset_layout(cfg) -> str | None:
    """'cityscapes' or 'ade20k': the data segbench.data makes for the config's training set."""
    return DATASETS.get(_get(cfg, dataset_key(cfg)).get("type"))


def config_crop(cfg) -> tuple[int, int] | None:
    """The config's own training crop: its RandomCrop's, else its data preprocessor's size."""
    pipeline = _get(cfg, dataset_key(cfg)).get("pipeline") or []
    crops = [t["crop_size"] for t in pipeline if t.get("type") == "RandomCrop"]
    size = crops[0] if crops else (cfg.model.get("data_preprocessor") or {}).get("size")
    return tuple(size) if size else None


def _sync_bn_paths(node, prefix: str = "") -> list[str]:
    """Dotted keys of every ``type='SyncBN'`` in a config (lists indexed by position)."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "SyncBN":
            found.append(f"{prefix}type")
        for k, v in node.items():
            found += _sync_bn_paths(v, f"{prefix}{k}.")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found += _sync_bn_paths(v, f"{prefix}{i}.")
    return found


# The harness measures training only: no validation or test, no checkpoints, no downloads.
TRAINING_ONLY = {"val_dataloader": None, "val_evaluator": None, "val_cfg": None,
                 "test_dataloader": None, "test_evaluator": None, "test_cfg": None,
                 "default_hooks.checkpoint.interval": -1, "default_hooks.checkpoint.save_last": False,
                 "load_from": None, "resume": False}


def _pretrained_paths(node, prefix: str = "") -> list[str]:
    """Dotted keys that would load weights: ``pretrained='...'`` and ``init_cfg`` of type Pretrained."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "pretrained" and isinstance(v, str):
                found.append(f"{prefix}{k}")
            elif k == "init_cfg" and isinstance(v, dict) and v.get("type") == "Pretrained":
                found.append(f"{prefix}{k}")
            else:
                found += _pretrained_paths(v, f"{prefix}{k}.")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found += _pretrained_paths(v, f"{prefix}{i}.")
    return found


def _crop_options(cfg, s: TrainSettings, key: str) -> dict:
    """Every RandomCrop of the train pipeline and the data preprocessor's size: the case's crop."""
    crop = s.crop_hw
    if crop is None:
        return {}
    pipeline = _get(cfg, key).get("pipeline") or []
    idx = [i for i, t in enumerate(pipeline) if t.get("type") == "RandomCrop"]
    if not idx:
        raise ValueError(f"{s.model}: its train pipeline has no RandomCrop to set the crop {crop} on")
    opts = {f"{key}.pipeline.{i}.crop_size": crop for i in idx}
    if "data_preprocessor" in cfg.model:
        opts["model.data_preprocessor.size"] = crop
    return opts


def check_trainable(cfg, s: TrainSettings) -> str:
    """The training set's dotted key; ValueError with a one-line reason for a config the harness
    cannot train (no train loader or pipeline, an epoch-based loop, a dataset segbench cannot make
    and no DATA_ROOT)."""
    if not cfg.get("train_dataloader") or not cfg.train_dataloader.get("dataset"):
        raise ValueError(f"{s.model}: the config has no train_dataloader.dataset")
    key = dataset_key(cfg)
    dataset = _get(cfg, key)
    if dataset.get("type") == "ConcatDataset":
        kinds = sorted({d.get("type") for d in dataset.get("datasets") or []})
        raise ValueError(f"{s.model}: its training set is a ConcatDataset of {', '.join(kinds)}; "
                         "segbench trains one dataset")
    if not dataset.get("pipeline"):
        raise ValueError(f"{s.model}: the config's training set has no pipeline")
    if "max_epochs" in (cfg.get("train_cfg") or {}):
        raise ValueError(f"{s.model}: an epoch-based train loop; segbench measures iterations")
    if dataset.get("type") not in DATASETS and not s.data_root:
        raise ValueError(f"{s.model}: its dataset {dataset.get('type')} is not one segbench makes "
                         f"({', '.join(DATASETS)}); set DATA_ROOT to a real one")
    return key


def options(cfg, s: TrainSettings) -> dict:
    """The cfg-options (dotted key -> value) that turn a model config into this case."""
    s.validate()
    key = check_trainable(cfg, s)
    opts: dict = {
        "train_dataloader.batch_size": s.batch_size,
        "train_dataloader.num_workers": s.num_workers,
        "train_dataloader.persistent_workers": True,
        **_crop_options(cfg, s, key),
        "train_cfg.type": "IterBasedTrainLoop",
        "train_cfg.max_iters": s.max_iters,
        "train_cfg.val_interval": s.max_iters,
        "default_hooks.logger.interval": s.log_interval,
        # mmengine's LogProcessor averages `time` (and the losses) over its window_size last
        # iterations (10 by default), whatever the interval: each logged window is then the mean
        # of its own iterations, and skipping N windows skips N x interval iterations
        "log_processor.window_size": s.log_interval,
        "randomness.seed": s.seed,
        "env_cfg.cudnn_benchmark": s.cudnn_benchmark,
        **TRAINING_ONLY,
        **{f"model.{k}": None for k in _pretrained_paths(cfg.model.to_dict())},
    }
    if s.data_root:
        opts[f"{key}.data_root"] = s.data_root
    if s.work_dir:
        opts["work_dir"] = s.work_dir
    if s.precision in AMP_DTYPE:
        opts["optim_wrapper.type"] = "AmpOptimWrapper"
        opts["optim_wrapper.dtype"] = AMP_DTYPE[s.precision]
        if s.precision == "fp16":
            opts["optim_wrapper.loss_scale"] = "dynamic"
    if s.device == "cpu":
        # SyncBatchNorm only runs on GPU modules; on the CPU (a labelled fallback) use plain BN,
        # and DDP must not be given device ids.
        for k in _sync_bn_paths(cfg.to_dict()):
            opts[k] = "BN"
        if s.distributed:
            opts["env_cfg.dist_cfg.backend"] = "gloo"
            opts["model_wrapper_cfg"] = dict(type="MMDistributedDataParallel", device_ids=None,
                                             broadcast_buffers=False)
    return opts


def build(s: TrainSettings):
    """The model's config with this case's stock settings applied (an mmengine Config; the tuned
    mode's switches: segbench.tuned.build)."""
    cfg = load(s.model)
    cfg.merge_from_dict(options(cfg, s))
    cfg.launcher = "pytorch" if s.distributed else "none"
    return cfg


def as_cli(opts: dict) -> list[str]:
    """Render options as ``--cfg-options`` arguments that mmengine's DictAction parses back."""
    def fmt(v):
        if isinstance(v, bool) or v is None:
            return str(v)
        if isinstance(v, (tuple, list)):
            return "(" + ",".join(fmt(x) for x in v) + ("," if len(v) == 1 else "") + ")"
        if isinstance(v, dict):
            raise TypeError("dict values cannot be passed through --cfg-options")
        return str(v)
    return [f"{k}={fmt(v)}" for k, v in opts.items()]
