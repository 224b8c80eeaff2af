"""What does the timing hook itself cost per iteration?

Calls the hooks the harness registers, SegbenchPeakHook and SegbenchTimerHook, at before_train_iter
+ after_train_iter (device sync, memory queries, thread CPU time, loss .item(), JSON line, periodic
flush) and a ``next()`` through the hook's timed wrapper of the train
loop's data iterator, N times on an idle device with a stand-in runner, and reports microseconds per
iteration (``--no-hook``: the same loop without the hook, the stand-in's own cost). Divide by a
measured iteration time to get the overhead share; with --iter-ms the script does it for you.
Collections of Python's garbage collector land in it as in training, with the hook's gc callback.

    python benchmarks/hook_overhead.py --n 20000 --iter-ms 46.6,156.3,85.9
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402

from segbench.timing import SegbenchPeakHook, SegbenchTimerHook  # noqa: E402


class _Loop:
    """mmengine's IterBasedTrainLoop as the hook sees it: a data iterator in its slot."""

    def __init__(self, batch):
        self.dataloader_iterator = itertools.repeat(batch)


class _Runner:
    """Only what the hook reads on an ordinary iteration."""
    iter = 1  # never 1-based iteration 1, so the one-off FLOP count is not part of the loop

    def __init__(self, batch):
        self.train_loop = _Loop(batch)
        self.message_hub = MessageHub.get_instance("hook_overhead")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--iter-ms", default="", help="comma-separated iteration times (ms) to compare with")
    p.add_argument("--no-hook", action="store_true", help="the stand-in loop alone, for its own cost")
    a = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loss = torch.tensor(1.2345, device=device)
    with tempfile.TemporaryDirectory() as d:
        # the pair the harness registers, in mmengine's order (the peak reader first)
        hooks = [SegbenchPeakHook(),
                 SegbenchTimerHook(out_prefix=str(Path(d) / "bench_iters"), count_flops=False)]
        runner = _Runner({"inputs": [], "data_samples": []})
        if a.no_hook:
            hooks = [Hook()]   # mmengine's base hook: every point a no-op
        for h in hooks:
            h.before_train(runner)

        def step(i):
            batch = next(runner.train_loop.dataloader_iterator)
            for h in hooks:
                h.before_train_iter(runner, i, batch)
            for h in hooks:
                h.after_train_iter(runner, i, batch, {"loss": loss})

        for _ in range(200):  # warm-up
            step(0)
        t0 = time.perf_counter()
        for i in range(a.n):
            runner.iter = i + 2
            step(i)
        per_iter_us = (time.perf_counter() - t0) / a.n * 1e6
        for h in hooks:
            h.after_train(runner)
    out = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
           "torch": torch.__version__, "n": a.n, "hook": not a.no_hook,
           "hook_us_per_iter": round(per_iter_us, 2)}
    for ms in [float(x) for x in a.iter_ms.split(",") if x]:
        out[f"share_of_{ms:g}ms_iter_pct"] = round(100 * per_iter_us / (ms * 1000), 4)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
