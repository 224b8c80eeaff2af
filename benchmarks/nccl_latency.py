"""What one collective and one synchronised BatchNorm cost on this host's GPUs (a diagnosis of `mp`
runs that scale badly), one process per GPU:

    CUDA_VISIBLE_DEVICES=0,1 python -m torch.distributed.run --nproc_per_node=2 \\
        benchmarks/nccl_latency.py [--json OUT]

- ``all_reduce_<bytes>B_us``: NCCL all_reduce of 4 B, 1 MiB and 64 MiB, microseconds each (mean of 200
  after 10 warm-ups).
- ``<variant>_40layers_step_ms``: forward + backward of 40 Conv2d(3x3, 32 channels) + norm layers
  on a 2x3x128x256 batch (a view of a 512x1024 one), ms per step (mean of 20 after 10): ``bn``
  BatchNorm2d, no DDP; ``bn_ddp`` BatchNorm2d under DistributedDataParallel; ``syncbn_ddp``
  SyncBatchNorm under DDP (what mmseg's SyncBN configs train with in `mp`). ``syncbn_ddp`` minus
  ``bn_ddp`` over 40 is SyncBN's cost per layer and step.
GPU only (NCCL). Rank 0 prints one JSON line.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist


def timed(fn, n: int) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="also write rank 0's result here")
    a = p.parse_args()
    dist.init_process_group("nccl")
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    out = {"world_size": dist.get_world_size()}
    for size in (1, 256 * 1024, 16 * 1024 * 1024):
        x = torch.ones(size, device="cuda")
        out[f"all_reduce_{size * 4}B_us"] = round(timed(lambda: dist.all_reduce(x), 200) * 1e6, 1)
    x = torch.randn(2, 3, 512, 1024, device="cuda")[:, :, :128, :256]  # as measured (a strided view)
    for name, norm, ddp in (("bn", torch.nn.BatchNorm2d, False), ("bn_ddp", torch.nn.BatchNorm2d, True),
                            ("syncbn_ddp", torch.nn.SyncBatchNorm, True)):
        layers = []
        for i in range(40):
            layers += [torch.nn.Conv2d(3 if i == 0 else 32, 32, 3, padding=1), norm(32)]
        m = torch.nn.Sequential(*layers).cuda()
        if ddp:
            m = torch.nn.parallel.DistributedDataParallel(m, device_ids=[torch.cuda.current_device()])
        out[f"{name}_40layers_step_ms"] = round(timed(lambda: m(x).sum().backward(), 20) * 1e3, 2)
    if dist.get_rank() == 0:
        print(json.dumps(out))
        if a.json:
            with open(a.json, "w") as f:
                f.write(json.dumps(out) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
