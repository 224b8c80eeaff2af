"""One training process on the mmseg 0.30 / mmcv 1.x stack: mmseg 0.30's own tools/train.py.

Started by segbench.launch with the legacy environment's python (segbench.legacy.train_command),
directly (sp) or through torchrun (mp). It applies the fixes of segbench.legacy.compat, turns the
case into the seed's options (``--no-validate --cfg-options log_config.interval=10
runner.max_iters=N data.samples_per_gpu=BS data.workers_per_gpu=W``) plus the harness's own
(data root, crop, the timing hook's file, fp16, the CPU's BN and gloo), prints the exact
tools/train.py command line, and runs the tools/train.py shipped in the mmsegmentation wheel
(``mmseg/.mim/tools/train.py``) unchanged, in this process. Failures become the same one-line
error records as segbench.train's (``[segbench] train-error: {...}``).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import runpy
import shlex
import sys
import traceback
from pathlib import Path

from segbench import configs
from segbench.train import _crash_message, _error, _is_oom

CONFIG_DIR = configs.CONFIG_DIR / "mmseg0"
FP16_LOSS_SCALE = 512.0   # a static loss scale, as PaddlePaddle's benchmark runs mmseg 0.x's fp16
MMSEG0_PRECISIONS = ("fp32", "fp16")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m segbench.legacy.run")
    p.add_argument("--model", required=True, choices=list(configs.MODELS))
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--max-iters", type=int, required=True)
    p.add_argument("--num-workers", type=int, required=True)
    p.add_argument("--precision", default="fp32", choices=MMSEG0_PRECISIONS)
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--data-root", required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--iters-prefix", help="write per-iteration records to PREFIX.rank<R>.jsonl")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--repeat-times", type=int, default=1,
                   help="the train set's RepeatDataset times (segbench.legacy.repeat_times)")
    return p.parse_args(argv)


def tools_train() -> Path:
    """mmseg's own tools/train.py, as the installed mmsegmentation wheel ships it."""
    spec = importlib.util.find_spec("mmseg")
    path = Path(spec.origin).parent / ".mim" / "tools" / "train.py" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"mmseg's tools/train.py is not at {path}: install the mmsegmentation "
                                "wheel (STACK=mmseg0 bash PrepareEnv.sh)")
    return path


def _index(pipeline: list, kind: str) -> int:
    found = [i for i, t in enumerate(pipeline) if t.get("type") == kind]
    if len(found) != 1:
        raise ValueError(f"expected one {kind} in the train pipeline, found {len(found)}")
    return found[0]


def options(cfg, args: argparse.Namespace, device: str, distributed: bool) -> dict:
    """The cfg-options (dotted key -> value) that turn configs/mmseg0/<model>.py into this case:
    the seed's four first, in the seed's order; then the RepeatDataset's times (one pass per run,
    docs/LEGACY.md) and the wrapped train set's data root."""
    opts: dict = {"log_config.interval": args.log_interval, "runner.max_iters": args.max_iters,
                  "data.samples_per_gpu": args.batch_size, "data.workers_per_gpu": args.num_workers,
                  "data.train.times": args.repeat_times, "data.train.dataset.data_root": args.data_root}
    if args.crop:
        pipeline = cfg.data.train.dataset.pipeline
        for kind, key in (("RandomCrop", "crop_size"), ("Pad", "size")):
            opts[f"data.train.dataset.pipeline.{_index(pipeline, kind)}.{key}"] = tuple(args.crop)
    if args.iters_prefix:
        opts.update({"custom_hooks.0.out_prefix": args.iters_prefix,
                     "custom_hooks.0.precision": args.precision,
                     "custom_hooks.0.count_flops": not args.no_flops})
    if args.no_cudnn_benchmark:
        opts["cudnn_benchmark"] = False
    if args.precision == "fp16":   # mmcv 1.x's Fp16OptimizerHook (torch.cuda.amp inside)
        opts.update({"optimizer_config.type": "Fp16OptimizerHook",
                     "optimizer_config.loss_scale": FP16_LOSS_SCALE, "fp16.loss_scale": FP16_LOSS_SCALE})
    if device == "cpu":
        # SyncBatchNorm only runs on GPU modules (tools/train.py reverts it in sp by itself);
        # the process group is gloo's.
        for key in configs._sync_bn_paths(cfg._cfg_dict.to_dict()):
            opts[key] = "BN"
        if distributed:
            opts["dist_params.backend"] = "gloo"
    return opts


def train_argv(args: argparse.Namespace, device: str, distributed: bool) -> list[str]:
    """tools/train.py's command line (its argv) for this case."""
    from mmcv import Config
    config = CONFIG_DIR / f"{args.model}.py"
    cfg = Config.fromfile(str(config))
    return [str(tools_train()), str(config), "--work-dir", args.work_dir, "--no-validate",
            "--seed", "0", "--launcher", "pytorch" if distributed else "none",
            "--cfg-options", *configs.as_cli(options(cfg, args, device, distributed))]


def run(args: argparse.Namespace) -> None:
    import torch

    from segbench.legacy import compat
    fixes = compat.apply()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    distributed = "LOCAL_RANK" in os.environ
    argv = train_argv(args, device, distributed)
    if os.environ.get("RANK", "0") == "0":
        print(f"[segbench] mmseg0 fixes: {'; '.join(fixes)}", flush=True)
        launcher = [sys.executable]
        if distributed:   # each rank runs argv; torchrun starts them
            launcher += ["-m", "torch.distributed.run",
                         f"--nproc_per_node={os.environ.get('LOCAL_WORLD_SIZE', '1')}"]
        print(f"[segbench] mmseg0 tools/train.py: PYTHONPATH={configs.REPO} "
              f"{shlex.join([*launcher, *argv])}", flush=True)
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except KeyboardInterrupt:
        return _error("interrupted", "interrupted", 130)
    except Exception as exc:  # one line for the launcher; the traceback stays in the log
        traceback.print_exc()
        if _is_oom(exc):
            return _error("oom", f"out of memory at batch size {args.batch_size} per process "
                                 f"({type(exc).__name__})", 3)
        return _error("crash", _crash_message(exc), 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
