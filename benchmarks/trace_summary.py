"""Where a profiled window's time went, from torch.profiler Chrome traces (``PROFILING=true``).

    python benchmarks/trace_summary.py TRACE.json [TRACE.json ...] [--json OUT] [--top 10]

Per trace: the iterations in the window (counted by the optimizer's ``Optimizer.step#...``
events, or ``--iters``), the window's wall span (first to last event), the GPU's busy time (the
union of kernel, memcpy and memset intervals), their share of the span, the kernel count and
launches per iteration, the distinct kernel names with a digest of their set, the kernels that
took most time, and (in ``--json``) every kernel's whole name, launch count and time. Meant for
telling runs apart that should be alike: if a slow run's GPU busy time per iteration matches a fast
run's, the difference is on the host (launching, Python); if the kernel set's digest differs, the
runs chose different kernels (e.g. cuDNN's benchmark picking other algorithms). A CPU-only trace
has no kernels: its GPU fields are 0 and it says so.

The traces are large (tens of MB for ocrnet_hrnetw48); run this where they were written and keep
the summary.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
STEP_PREFIX = "Optimizer.step#"


def _busy(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of [start, end) intervals."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def summarize(trace: dict, iters: int | None = None, top: int = 10) -> dict:
    """The summary of one trace (a loaded Chrome trace dict); times in ms."""
    events = [e for e in trace.get("traceEvents", []) if isinstance(e, dict) and e.get("ph") == "X"]
    if not events:
        raise ValueError("no complete ('X') events in the trace")
    start = min(float(e["ts"]) for e in events)
    end = max(float(e["ts"]) + float(e.get("dur", 0)) for e in events)
    gpu = [e for e in events if e.get("cat") in GPU_CATS]
    kernels = [e for e in gpu if e.get("cat") == "kernel"]
    # On a GPU, each host-side range is mirrored on the device timeline (cat gpu_user_annotation):
    # count the host's copies only.
    steps = sum(1 for e in events if str(e.get("name", "")).startswith(STEP_PREFIX)
                and not str(e.get("cat", "")).startswith("gpu_"))
    n = iters or steps or None
    per_name: dict[str, float] = {}
    count: dict[str, int] = {}
    for e in kernels:
        per_name[e["name"]] = per_name.get(e["name"], 0.0) + float(e.get("dur", 0))
        count[e["name"]] = count.get(e["name"], 0) + 1
    busy_ms = _busy([(float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in gpu]) / 1e3
    span_ms = (end - start) / 1e3
    names = sorted(per_name)
    return {
        "iterations": n, "iterations_from": "--iters" if iters else ("optimizer steps" if steps else None),
        "span_ms": round(span_ms, 3),
        "gpu_busy_ms": round(busy_ms, 3),
        "gpu_busy_share": round(busy_ms / span_ms, 4) if span_ms > 0 else None,
        "span_ms_per_iter": round(span_ms / n, 3) if n else None,
        "gpu_busy_ms_per_iter": round(busy_ms / n, 3) if n else None,
        "kernels": len(kernels),
        "kernels_per_iter": round(len(kernels) / n, 1) if n else None,
        "distinct_kernels": len(names),
        "kernel_set_digest": hashlib.sha1("\n".join(names).encode()).hexdigest()[:12] if names else None,
        "top_kernels": [{"name": k[:120], "ms": round(v / 1e3, 3)}
                        for k, v in sorted(per_name.items(), key=lambda kv: -kv[1])[:top]],
        # every kernel, whole name: what two runs' sets differ by (compare two summaries' tables)
        "kernel_table": [{"name": k, "count": count[k], "ms": round(v / 1e3, 3)}
                         for k, v in sorted(per_name.items(), key=lambda kv: -kv[1])],
        "note": None if gpu else "no GPU events: a CPU-only trace",
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("traces", nargs="+", type=Path)
    p.add_argument("--iters", type=int, help="iterations in each window (default: count the "
                                             "optimizer steps)")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--json", type=Path, help="write the summaries here")
    a = p.parse_args(argv)
    if a.iters is not None and a.iters < 1:
        p.error("--iters must be >= 1")
    out = {}
    for path in a.traces:
        try:
            out[str(path)] = summarize(json.loads(path.read_text()), a.iters, a.top)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"trace_summary.py: error: {path}: {exc}", file=sys.stderr)
            return 1
    for path, s in out.items():
        per = (f", {s['span_ms_per_iter']} ms/iteration of which GPU busy {s['gpu_busy_ms_per_iter']} ms"
               if s["iterations"] else "")
        print(f"{path}: {s['iterations']} iterations, span {s['span_ms']} ms{per} "
              f"(busy share {s['gpu_busy_share']}), {s['kernels_per_iter']} kernels/iteration, "
              f"{s['distinct_kernels']} distinct, set {s['kernel_set_digest']}"
              + (f" -- {s['note']}" if s["note"] else ""))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
