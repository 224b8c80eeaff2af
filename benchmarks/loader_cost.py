"""What does one train image cost a data-loader worker, per transform?

Runs the train pipeline's transforms (the harness's config for MODEL) over the data set's images,
one process, one thread (as a loader worker: mmengine sets OpenCV to one thread there), numpy
seeded per sample, and prints ms per image per transform, the total, and the bytes of the packed
image a worker hands to the main process.

    python -m segbench.data generate /tmp/cs --n 8
    python benchmarks/loader_cost.py fastscnn --data-root /tmp/cs --passes 3
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure(model: str, switches: tuple[str, ...], data_root: str, passes: int) -> dict:
    """ms per image of each transform of the model's train pipeline, and the packed image's
    bytes, over ``passes`` passes of the data set."""
    import numpy as np
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    from segbench import configs, tuned
    register_all_modules()
    tuned.register()
    cfg = configs.build(configs.TrainSettings(model, 2, 1, 1, data_root=data_root, device="cpu",
                                              tuned=switches))
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    names = [type(t).__name__ for t in ds.pipeline.transforms]
    spent = [0.0] * len(names)
    images, packed = 0, 0
    for p in range(passes):
        for i in range(len(ds)):
            np.random.seed(p * len(ds) + i)
            results = ds.get_data_info(i)
            for k, t in enumerate(ds.pipeline.transforms):
                start = time.perf_counter()
                results = t(results)
                spent[k] += time.perf_counter() - start
            images += 1
            packed += results["inputs"].numel() * results["inputs"].element_size()
    per = {n: 1e3 * s / images for n, s in zip(names, spent)}
    return {"model": model, "switches": list(switches), "images": images,
            "ms_per_image": per, "total_ms_per_image": sum(per.values()),
            "packed_image_bytes": packed // images}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--data-root", required=True)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    import cv2
    import torch
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    rows = [measure(a.model, (), a.data_root, a.passes)]
    for r in rows:
        print(f"{r['model']} {'+'.join(r['switches']) or 'stock'}: {r['images']} images, "
              f"{r['total_ms_per_image']:.1f} ms/image, packed image "
              f"{r['packed_image_bytes'] / 2 ** 20:.1f} MiB")
        for name, ms in r["ms_per_image"].items():
            print(f"  {name:<40} {ms:8.2f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
