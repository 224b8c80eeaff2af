"""What mmengine's per-iteration ``model.train()`` costs: the walk over every module of each seed
model, on this host's CPU (the cost is host-side Python, the same with or without a GPU), with and
without the tuned mode's ``train_once`` switch (segbench.tuned.TrainOnce).

    python benchmarks/train_walk.py [--models fastscnn,segformer_b0,ocrnet_hrnetw48] [--n 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segbench import configs, tuned  # noqa: E402


def per_call_ms(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(configs.MODELS))
    p.add_argument("--n", type=int, default=200)
    args = p.parse_args(argv)
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope("mmseg")
    import mmseg.models  # noqa: F401  (registers the models)
    print("model,modules,train_ms,train_once_ms")
    for name in args.models.split(","):
        net = MODELS.build(configs.load(name).model)
        modules = sum(1 for _ in net.modules())
        stock = per_call_ms(net.train, args.n)
        net.train = tuned.TrainOnce(net)
        once = per_call_ms(net.train, args.n)
        print(f"{name},{modules},{stock:.3f},{once:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
