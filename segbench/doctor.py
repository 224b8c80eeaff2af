"""``segbench doctor``: a pre-flight check in seconds, before a benchmark.

It reports the GPUs and driver, the stack's versions and mmcv flavour, whether the data is present
and valid, the free disk under the log directory, and how steady the host is: the spread of its
single-thread speed over a few seconds (segbench.env.loop_speed, the probe every case record
carries; benchmarks/host_cpu.py is the long form), its load and the hypervisor's steal time.

At batch size 2 the seed cases are host-bound (the trainer thread launching kernels is most of an
iteration), so a host whose single-thread speed moves by N% can move their figures by about as
much. The verdict states it: ``steady enough for +-3%`` when the probe's spread (two standard
deviations of its rounds) is within 3%, the load is below the CPU count and nothing was stolen;
else ``expect +-N% from run to run`` with N that spread, and what else it saw. An estimate from a
few seconds of one host, not a measurement of any run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from segbench import env

STEADY_PCT = 3.0          # the spread (2 sigma, %) a host may show and still be "steady enough"
STEAL_SHARE = 0.01        # a steal share of all CPU time above this is reported
MIN_FREE_GB = 2.0         # a case writes logs, per-iteration files and a work dir


def host_steadiness(seconds: float = 3.0) -> dict:
    """Rounds of the single-thread probe over ``seconds``: their median speed, spread (2 sigma, %),
    the 1-minute load against the CPUs this process may use, and the steal share meanwhile."""
    before, rounds, t_end = env.cpu_jiffies(), [], time.monotonic() + seconds
    while time.monotonic() < t_end or len(rounds) < 3:
        rounds.append(env.loop_speed())   # host_probe's probe: best of 3, ~0.03 s
    after = env.cpu_jiffies()
    steal = None
    if before and after:
        total = sum(after[k] - before[k] for k in env.CPU_STAT_FIELDS)
        steal = (after["steal"] - before["steal"]) / total if total > 0 else None
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    median = statistics.median(rounds)
    return {"rounds": len(rounds), "seconds": seconds, "mloops_per_s": round(median, 3),
            "spread_pct": round(200 * statistics.stdev(rounds) / statistics.mean(rounds), 2),
            "load1": load, "cpus": len(os.sched_getaffinity(0)), "steal_share": steal}


def verdict(host: dict) -> str:
    """The one-line verdict on a :func:`host_steadiness` result."""
    signs = []
    if host["load1"] is not None and host["load1"] > host["cpus"]:
        signs.append(f"load {host['load1']:.1f} above its {host['cpus']} CPUs")
    if host["steal_share"] is not None and host["steal_share"] > STEAL_SHARE:
        signs.append(f"{100 * host['steal_share']:.1f}% of CPU time stolen")
    spread = host["spread_pct"]
    if spread <= STEADY_PCT and not signs:
        return f"steady enough for +-{STEADY_PCT:g}% (single-thread speed spread +-{spread:.1f}%)"
    return (f"expect +-{max(spread, STEADY_PCT):.0f}% from run to run (single-thread speed spread "
            f"+-{spread:.1f}%{''.join(', ' + s for s in signs)})")


def gpus() -> dict:
    try:
        import torch
    except ImportError:
        return {"count": 0, "names": [], "driver": None, "torch": None}
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"count": n, "names": [torch.cuda.get_device_name(i) for i in range(n)],
            "driver": env._nvidia_driver(), "torch": torch.__version__, "cuda": torch.version.cuda}


def stack() -> dict:
    versions = {d: env.installed_version(d) for d in
                ("torch", "mmengine", "mmcv", "mmcv-lite", "mmsegmentation")}
    return {"versions": {k: v for k, v in versions.items() if v}, "mmcv_flavour": env.mmcv_flavour(),
            "problems": env.stack_problems()}


def data_status(root: Path) -> dict:
    from segbench import data
    try:
        info = data.check(root)
    except data.DataError as exc:
        return {"root": str(root), "ok": False, "problem": str(exc)}
    return {"root": str(root), "ok": True, "images": info["images"], "synthetic": info["synthetic"]}


def disk(path: Path) -> dict:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    return {"path": str(path), "free_gb": round(free, 1), "ok": free >= MIN_FREE_GB}


def run(log_dir: Path, data_root: Path, seconds: float = 3.0) -> dict:
    """Every check; ``ok`` is False when a case could not run (stack, data or disk)."""
    report = {"gpus": gpus(), "stack": stack(), "data": data_status(data_root), "disk": disk(log_dir),
              "host": host_steadiness(seconds)}
    report["verdict"] = verdict(report["host"])
    report["ok"] = (not report["stack"]["problems"] and report["data"]["ok"]
                    and report["disk"]["ok"])
    return report


def format_report(r: dict) -> str:
    g, s, d, h = r["gpus"], r["stack"], r["data"], r["host"]
    gpu_line = (f"{g['count']} x {', '.join(sorted(set(g['names'])))} (driver {g['driver']})"
                if g["count"] else "none visible to torch: cases run as the CPU profile")
    lines = [
        f"GPUs    {gpu_line}",
        "stack   " + ", ".join(f"{k} {v}" for k, v in s["versions"].items())
        + f"; mmcv flavour {s['mmcv_flavour']}",
    ]
    lines += [f"        problem: {p} (set up with {env.SETUP_HINT})" for p in s["problems"]]
    lines.append(f"data    {d['root']}: " + (f"{d['images']} images"
                                             + (" (synthetic)" if d["synthetic"] else "")
                                             if d["ok"] else f"NOT USABLE: {d['problem']}"))
    lines.append(f"disk    {r['disk']['free_gb']} GB free under {r['disk']['path']}"
                 + ("" if r["disk"]["ok"] else f" (below {MIN_FREE_GB:g} GB)"))
    steal = "n/a" if h["steal_share"] is None else f"{100 * h['steal_share']:.2f}%"
    load = "n/a" if h["load1"] is None else f"{h['load1']:.2f}"
    lines.append(f"host    {h['mloops_per_s']} Mloops/s single-thread, spread +-{h['spread_pct']}% over "
                 f"{h['rounds']} rounds in {h['seconds']:g} s; load {load} on {h['cpus']} CPUs; "
                 f"steal {steal}")
    lines.append(f"verdict {r['verdict']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="segbench doctor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path,
                   default=Path(os.environ.get("DATA_ROOT") or env.DEFAULT_DATA))
    p.add_argument("--log-dir", type=Path, default=Path(os.environ.get("TRAIN_LOG_DIR") or "."))
    p.add_argument("--seconds", type=float, default=3.0, help="how long to probe the host (default 3)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args(argv)
    r = run(a.log_dir.resolve(), a.data_root.resolve(), max(a.seconds, 0.1))
    print(json.dumps(r, indent=1) if a.json else format_report(r))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
