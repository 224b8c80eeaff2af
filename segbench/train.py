"""One training process: mmengine's Runner on configs/<model>.py with the harness's settings.

Started by segbench.launch, directly (sp) or through torchrun (mp). Like mmseg's tools/train.py,
plus: the timing hook, the tuned mode's switches (segbench.tuned), the CPU fallback for distributed
runs, and one-line error records that the launcher turns into the result's reason
(``[segbench] train-error: {...}``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

ERROR_TAG = "[segbench] train-error: "


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m segbench.train")
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--max-iters", type=int, required=True)
    p.add_argument("--num-workers", type=int, required=True)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--data-root", required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--iters-prefix", help="write per-iteration records to PREFIX.rank<R>.jsonl")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--profile-window", type=int, nargs=2, metavar=("FIRST", "LAST"))
    p.add_argument("--tuned", default="", metavar="LIST",
                   help="tuned-mode switches, comma-separated (segbench.tuned.SWITCHES)")
    p.add_argument("--compile-mode", default="auto")
    p.add_argument("--compile-scope", default="modules")
    return p.parse_args(argv)


def _error(kind: str, message: str, code: int) -> int:
    rank = os.environ.get("RANK", "0")
    print(ERROR_TAG + json.dumps({"kind": kind, "rank": int(rank), "message": message[:500]}),
          file=sys.stderr, flush=True)
    return code


def run(args: argparse.Namespace) -> None:
    import torch
    from mmengine.runner import Runner

    from segbench import configs, timing, tuned  # noqa: F401  (timing registers the hook)

    distributed = "LOCAL_RANK" in os.environ
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if distributed and device == "cpu":
        # mmengine's init_dist calls torch.cuda.set_device; a gloo group made first avoids it.
        import torch.distributed as dist
        dist.init_process_group("gloo")
    s = configs.TrainSettings(
        model=args.model, batch_size=args.batch_size, max_iters=args.max_iters,
        num_workers=args.num_workers, precision=args.precision,
        crop=tuple(args.crop) if args.crop else None, data_root=args.data_root,
        work_dir=args.work_dir, log_interval=args.log_interval, device=device,
        distributed=distributed, tuned=tuned.parse_switches(args.tuned),
        compile_mode=args.compile_mode, compile_scope=args.compile_scope,
        cpus=len(os.sched_getaffinity(0)),
        local_procs=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        cudnn_benchmark=not args.no_cudnn_benchmark)
    if s.tuned:
        tuned.register()  # the data preprocessor and hook the tuned config names
    cfg = tuned.build(s)
    if "workers" in s.tuned:
        print(f"[segbench] tuned: {cfg.train_dataloader.num_workers} data-loader workers per "
              f"process (NUM_WORKERS {s.num_workers}, {s.cpus} CPU cores, {s.local_procs} "
              "process(es) on this host)", flush=True)
    hooks = list(cfg.get("custom_hooks") or []) + tuned.hooks(s.tuned, s.compile_mode,
                                                               s.compile_scope)
    if args.iters_prefix:
        hooks.append(dict(type="SegbenchPeakHook"))   # reads the peak before the logger resets it
        hooks.append(dict(type="SegbenchTimerHook", out_prefix=args.iters_prefix,
                          precision=args.precision, count_flops=not args.no_flops,
                          profile_window=args.profile_window, energy_every=args.log_interval,
                          sync_every=args.log_interval if "window_sync" in s.tuned else 1))
    fault = os.environ.get("SEGBENCH_FAULT")  # fault injection for the harness's own tests
    if fault:
        hooks.append(dict(type="SegbenchFaultHook", spec=fault))
    cfg.custom_hooks = hooks
    runner = Runner.from_cfg(cfg)
    runner.train()


def _is_oom(exc: BaseException) -> bool:
    import torch
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return "out of memory" in text or "can't allocate memory" in text or "DefaultCPUAllocator" in text


def _crash_message(exc: BaseException) -> str:
    """One line naming the failure. A DataLoader worker's exception arrives wrapped ("Caught X in
    DataLoader worker process N. Original Traceback ..."): its last line is the real error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if "Original Traceback" in str(exc):
        return f"{lines[-1]} (in a data-loader worker)"
    return f"{type(exc).__name__}: {lines[0]}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except KeyboardInterrupt:
        return _error("interrupted", "interrupted", 130)
    except Exception as exc:  # turned into one line for the launcher; the traceback stays in the log
        traceback.print_exc()
        if _is_oom(exc):
            return _error("oom", f"out of memory at batch size {args.batch_size} per process "
                                 f"({type(exc).__name__})", 3)
        return _error("crash", _crash_message(exc), 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
