"""How steady is this host's single-thread CPU speed, per CPU and over time?

At batch size 2 the seed cases are host-bound: the trainer's thread launching kernels is most of an
iteration, so a host whose CPUs change speed changes the figure. This maps it: for ``--rounds``
rounds, this process pins itself to each CPU it may run on in turn and times segbench's fixed
pure-Python loop there (``segbench.env.loop_speed``, host_probe's, best of ``--best-of``), in millions of
iterations per second. It prints one JSON object: per CPU the median, min, max and CV over the
rounds, each round's median over the CPUs and when it ended (Unix time, the clock of the harness's
per-iteration files, to line the host's speed up with a run's iterations), the overall CV, and the
CPU topology Linux shows (``thread_siblings_list``: which CPUs share a core).

Speed that differs by CPU and stays put is placement (some virtual CPUs share a busy core);
speed that moves from round to round on every CPU is time (the host as a whole). Run it on an idle
host, or beside a training run to see what training leaves (it takes one CPU at a time).

    python benchmarks/host_cpu.py --rounds 20 > host.json

Beside a run (started from another shell), then lined up with the run's iterations: each window of
10 measured iterations (after the 40 warm-up ones) against the host's speed over the same seconds
(the rounds overlapping it, weighted by overlap), with the correlation of the window's time and
the reciprocal of that speed (1: the run is exactly as slow as the host):

    python benchmarks/host_cpu.py --align host.json LOGDIR/CASE_iters.rank0.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from segbench import env  # noqa: E402
from segbench.analysis import DEFAULT_LOG_INTERVAL, WARMUP_LOG_INTERVALS  # noqa: E402

WARMUP_ITERS = WARMUP_LOG_INTERVALS * DEFAULT_LOG_INTERVAL   # the iterations the sidecar skips


def siblings(cpus: list[int]) -> dict[int, str | None]:
    out = {}
    for c in cpus:
        path = Path(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list")
        try:
            out[c] = path.read_text().strip()
        except OSError:
            out[c] = None
    return out


def cv(xs: list[float]) -> float | None:
    return statistics.stdev(xs) / statistics.mean(xs) if len(xs) >= 2 else None


def measure(rounds: int, n: int, best_of: int, cpus: list[int] | None = None) -> dict:
    allowed = sorted(os.sched_getaffinity(0))
    cpus = cpus or allowed
    speeds: dict[int, list[float]] = {c: [] for c in cpus}
    round_medians, round_ends = [], []
    t_start = time.time()
    try:
        for _ in range(rounds):
            this_round = []
            for c in cpus:
                os.sched_setaffinity(0, {c})
                speeds[c].append(env.loop_speed(n, best_of))
                this_round.append(speeds[c][-1])
            round_medians.append(statistics.median(this_round))
            round_ends.append(round(time.time(), 3))
    finally:
        os.sched_setaffinity(0, allowed)
    every = [s for c in cpus for s in speeds[c]]
    per_cpu = {str(c): {"median": round(statistics.median(v), 3), "min": round(min(v), 3),
                        "max": round(max(v), 3), "cv": None if cv(v) is None else round(cv(v), 4)}
               for c, v in speeds.items()}
    medians = [statistics.median(v) for v in speeds.values()]
    return {"cpus": env.cpu_ranges(cpus), "rounds": rounds, "loop": n, "best_of": best_of,
            "seconds": round(time.time() - t_start, 1),
            "mloops_per_s": {"median": round(statistics.median(every), 3),
                             "min": round(min(every), 3), "max": round(max(every), 3),
                             "cv": None if cv(every) is None else round(cv(every), 4)},
            "between_cpus_cv": None if cv(medians) is None else round(cv(medians), 4),
            "round_medians": [round(m, 3) for m in round_medians],
            "round_ends": round_ends,
            "between_rounds_cv": (None if cv(round_medians) is None
                                  else round(cv(round_medians), 4)),
            "per_cpu": per_cpu, "thread_siblings": {str(c): s for c, s in siblings(cpus).items()}}


def align(host: dict, iters: list[dict], skip: int = WARMUP_ITERS,
          window: int = DEFAULT_LOG_INTERVAL) -> dict:
    """Windows of ``window`` iterations of a per-iteration file's rows (after ``skip``) against
    the host's speed over the same seconds, from a :func:`measure` result with ``round_ends``.
    A window counts when rounds cover at least half of it."""
    ends, medians = host["round_ends"], host["round_medians"]
    if len(ends) < 2:
        raise ValueError("the host file needs two rounds or more")
    starts = [ends[0] - (ends[1] - ends[0]), *ends[:-1]]
    rows = [r for r in iters if r.get("kind") == "iter" and r["iter"] > skip]
    out = []
    for i in range(0, len(rows) - window + 1, window):
        seg = rows[i:i + window]
        t0, t1 = seg[0]["t"] - seg[0]["time"], seg[-1]["t"]
        weight = speed = 0.0
        for s, e, m in zip(starts, ends, medians):
            overlap = min(e, t1) - max(s, t0)
            if overlap > 0:
                weight += overlap
                speed += overlap * m
        if weight >= 0.5 * (t1 - t0):
            cpu = [r.get("cpu_time") for r in seg]
            out.append({"start": round(t0, 3), "time": statistics.mean(r["time"] for r in seg),
                        "cpu_time": None if None in cpu else statistics.mean(cpu),
                        "host_mloops_per_s": speed / weight})
    r = None
    if len(out) >= 3:
        try:
            r = statistics.correlation([w["time"] for w in out],
                                       [1 / w["host_mloops_per_s"] for w in out])
        except statistics.StatisticsError:   # a constant series
            r = None
    return {"windows": len(out), "r_time_vs_host_slowness": None if r is None else round(r, 3),
            "rows": out}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--loop", type=int, default=env.PROBE_LOOP, help="loop iterations per timing")
    p.add_argument("--best-of", type=int, default=3)
    p.add_argument("--cpus", default=None, help="a CPU list (e.g. 0-3,8); default: all allowed")
    p.add_argument("--align", nargs=2, metavar=("HOST_JSON", "ITERS_JSONL"),
                   help="line up an earlier output of this script with a run's per-iteration file")
    a = p.parse_args(argv)
    if a.align:
        host = json.loads(Path(a.align[0]).read_text())
        iters = [json.loads(line) for line in Path(a.align[1]).read_text().splitlines() if line]
        result = align(host, iters)
        for w in result["rows"]:
            cpu = "" if w["cpu_time"] is None else f"  trainer CPU {1000 * w['cpu_time']:.0f} ms"
            print(f"{w['start']:.0f}  window {1000 * w['time']:.0f} ms{cpu}  "
                  f"host {w['host_mloops_per_s']:.1f} M loops/s")
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
        return 0
    if a.rounds < 1 or a.loop < 1 or a.best_of < 1:
        p.error("--rounds, --loop and --best-of must be positive")
    cpus = None
    if a.cpus:
        from segbench.case import _cpu_list
        cpus = sorted(_cpu_list({"CPUS": a.cpus}, "CPUS"))
    print(json.dumps(measure(a.rounds, a.loop, a.best_of, cpus)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
