"""The benchmarked models and the settings the harness puts on their configs.

Every setting is expressed as an mmengine ``--cfg-options`` key, so the same options given to plain
``mmseg/.mim/tools/train.py configs/<model>.py --cfg-options ...`` reproduce the harness's
training exactly (that is how the fidelity benchmark compares the two).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs"

# model -> the seed's crop (h, w); configs/<model>.py inherits mmseg's own Cityscapes config.
MODELS: dict[str, tuple[int, int]] = {
    "fastscnn": (512, 1024),
    "ocrnet_hrnetw48": (512, 1024),
    "segformer_b0": (1024, 1024),
}
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
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r} (known: {', '.join(MODELS)})")
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
    def crop_hw(self) -> tuple[int, int]:
        return tuple(self.crop) if self.crop else MODELS[self.model]


def config_path(model: str) -> Path:
    return CONFIG_DIR / f"{model}.py"


def load(model: str):
    from mmengine.config import Config
    return Config.fromfile(str(config_path(model)))


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


def options(cfg, s: TrainSettings) -> dict:
    """The cfg-options (dotted key -> value) that turn a model config into this case."""
    s.validate()
    pipeline = cfg.train_dataloader.dataset.pipeline
    crop_idx = [i for i, t in enumerate(pipeline) if t.get("type") == "RandomCrop"]
    if len(crop_idx) != 1:
        raise ValueError(f"{s.model}: expected one RandomCrop in the train pipeline, found {len(crop_idx)}")
    crop = s.crop_hw
    opts: dict = {
        "train_dataloader.batch_size": s.batch_size,
        "train_dataloader.num_workers": s.num_workers,
        "train_dataloader.persistent_workers": True,
        f"train_dataloader.dataset.pipeline.{crop_idx[0]}.crop_size": crop,
        "model.data_preprocessor.size": crop,
        "train_cfg.max_iters": s.max_iters,
        "train_cfg.val_interval": s.max_iters,
        "default_hooks.logger.interval": s.log_interval,
        # mmengine's LogProcessor averages `time` (and the losses) over its window_size last
        # iterations (10 by default), whatever the interval: each logged window is then the mean
        # of its own iterations, and skipping N windows skips N x interval iterations
        "log_processor.window_size": s.log_interval,
        "randomness.seed": s.seed,
        "env_cfg.cudnn_benchmark": s.cudnn_benchmark,
    }
    if s.data_root:
        opts["train_dataloader.dataset.data_root"] = s.data_root
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
        for key in _sync_bn_paths(cfg.to_dict()):
            opts[key] = "BN"
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
