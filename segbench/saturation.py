"""Batch-size sweeps in a result directory: where more batch per GPU stops buying throughput.

Cases with the same identity but the batch size per GPU (model, run mode, precision, GPUs, variant,
side of the CPU profile) form a sweep. Along it, the gain per doubling between measured sizes
b1 < b2 with figures r1, r2 is (r2 / r1) ** (1 / log2(b2 / b1)) - 1, so a step that is not a
doubling (a bisected max of 200 after 128) reads on the same scale. The saturation batch is the
first size from which the doubling to the next measured size adds less than the threshold (5%).
A size that ran out of memory ends the curve; the largest size below it that fitted is the max,
which the report gives as the range up to that size (a size left unfinished between them is named).
Each size's GPU busy share (NVML, the sidecar's gpu_busy) says whether the GPU or the host bounds it,
so a saturation that is the host's (data loading, Python) is said to be.

sweeps(cases, threshold)        -> list of sweep dicts (title, points, saturation, max, oom, ...)
markdown(sweeps, threshold)     -> the lines of summary.md's "Batch size" section ([] without one)
write_csv(path, sweeps, t)      -> saturation.csv, one row per (sweep, size)
"""

from __future__ import annotations

import csv
import math

from segbench import energy, failure
from segbench.results import case_label, identity, is_cpu_profile
from segbench.tables import failed_text, fmt, fmt_rate, md_table, sort_key, unit

DEFAULT_THRESHOLD = 0.05
OOM_TEXT = "out of memory"
CSV_COLUMNS = ("sweep", "model", "variant", "run_mode", "fp", "gpu_num", "device_name", "profile",
               "batch_size", "images_per_s", "images_per_s_per_gpu", "peak_mem_mb", "gpu_busy",
               "gpu_bound", "images_per_j", "gain_per_doubling", "status", "saturation", "max",
               "flagged", "threshold", "case")


def is_oom(row):
    """A failed case that ran out of memory: its sidecar's failure kind (``gpu_oom``, ...) where it
    has one, else what its reason says (segbench.failure.kind_of: ``out of GPU memory ...``, the
    older ``oom: ...``, torch's OOM text)."""
    if row.get("ok"):
        return False
    kind = failure.kind_of({"failure_kind": row.get("failure_kind")}, row.get("reason") or "")
    return kind in failure.OOM_KINDS


def gain_per_doubling(b1, r1, b2, r2):
    """(r2 / r1) ** (1 / log2(b2 / b1)) - 1: the throughput a doubling adds between b1 < b2."""
    return (r2 / r1) ** (1 / math.log2(b2 / b1)) - 1


def _groups(cases):
    """Rows by sweep identity, one row per batch size (an ok one over a failed one)."""
    groups = {}
    for row in sorted(cases, key=sort_key):
        model, mode, bs, fp, gpus, variant = identity(row)
        if model is None or not bs:
            continue
        # runtime variables (knobs.RUNTIME_VARS) are not in the name but can change what fits
        key = (model, mode, fp, gpus, variant, is_cpu_profile(row), row.get("runtime_env"))
        by_bs = groups.setdefault(key, {})
        if bs not in by_bs or (row.get("ok") and not by_bs[bs].get("ok")):
            by_bs[bs] = row
    return [[g[b] for b in sorted(g)] for g in groups.values() if len(g) > 1]


def title(row):
    """model [variant] · mode · precision · N GPUs · device (GPU name or CPU) [· runtime variables]."""
    g = row.get("gpu_num")
    gpus = f"{g} {unit(row, g != 1)}" if g is not None else f"? {unit(row, True)}"
    cpu = " (CPU profile)" if is_cpu_profile(row) else ""
    return " · ".join([case_label(row) + cpu, row.get("run_mode") or "?", row.get("fp") or "?", gpus,
                       row.get("device_name") or ("GPU (name not recorded)" if row.get("device") == "cuda"
                                                  else "device not recorded"),
                       *filter(None, [row.get("runtime_env")])])


def _status(row, oom_at):
    if is_oom(row):
        return OOM_TEXT
    if not row.get("ok"):
        return failed_text(row)
    return "ok" if oom_at is None or row["batch_size"] < oom_at else "ok, above an out-of-memory size"


def _sweep(rows, threshold):
    """One sweep's points and its saturation, max and first out-of-memory size."""
    oom_at = min((r["batch_size"] for r in rows if is_oom(r)), default=None)
    points = [{"row": r, "bs": r["batch_size"], "gain": None, "status": _status(r, oom_at)}
              for r in rows]
    on = [p for p in points if p["status"] == "ok"]
    for a, b in zip(on, on[1:]):
        b["gain"] = gain_per_doubling(a["bs"], a["row"]["images_per_s"], b["bs"],
                                      b["row"]["images_per_s"])
    sat = next((a["bs"] for a, b in zip(on, on[1:]) if b["gain"] < threshold), None)
    fitted = on[-1]["bs"] if on and oom_at is not None else None
    for p in points:
        p["saturation"], p["max"] = p["bs"] == sat, p["bs"] == fitted
    # sizes between the largest fit and the first OOM that neither passed nor ran out of memory
    unfinished = [p["bs"] for p in points if fitted is not None and fitted < p["bs"] < oom_at
                  and p["status"] != OOM_TEXT]
    return {"title": title(rows[0]), "row": rows[0], "points": points, "saturation": sat,
            "max": fitted, "oom": oom_at, "unfinished": unfinished,
            "multi": any((r.get("gpu_num") or 1) > 1 for r in rows)}


def sweeps(cases, threshold=DEFAULT_THRESHOLD):
    """The batch sweeps among cases (at least two batch sizes each), in the report's order."""
    return [_sweep(rows, threshold) for rows in _groups(cases)]


def _pct(threshold):
    return f"{100 * threshold:g}%"


def _marks(p):
    marks = [] if p["status"] == "ok" else [p["status"]]
    marks += ["saturation"] * p["saturation"] + ["max"] * p["max"]
    return marks + ["**FLAGGED**"] * bool(p["row"].get("flagged"))


def _busy(row):
    share = row.get("gpu_busy") if row.get("ok") else None
    return "-" if share is None else f"{100 * share:.0f}%"


def _table(sw):
    rows = []
    for p in sw["points"]:
        c, ok = p["row"], p["row"].get("ok")
        rows.append([fmt(p["bs"], "d"), fmt_rate(c.get("images_per_s")) if ok else "-",
                     fmt_rate(c.get("images_per_s_per_gpu")) if ok else "-",
                     fmt(c.get("peak_mem_mb"), ",.0f"), _busy(c),
                     "-" if p["gain"] is None else f"{100 * p['gain']:+.1f}%",
                     ", ".join(_marks(p)) or "-"])
    one = unit(sw["row"])
    return md_table([f"batch per {one}", "images/s", f"images/s per {one}", f"peak MB per {one}",
                     "GPU busy", "gain per doubling", "mark"], rows, "rrrrrrl")


BOUND_TEXT = {"gpu": "the GPU bounds the step",
              "host": "the host (data loading, Python, launches), not the GPU, bounds the step: "
                      "this saturation is the host's",
              "between": "neither the GPU nor the host clearly bounds the step"}


def _bound(at, nxt):
    """What the GPU's busy share says of the flattening step from ``at`` to ``nxt``: the GPU bounds
    it if it was busy at the larger size, the host if at neither; '' where not read (the CPU)."""
    shares = [r.get("gpu_busy") for r in (at, nxt)]
    if None in shares:
        return ""
    bound = ("gpu" if shares[1] >= energy.GPU_BOUND else
             "host" if max(shares) < energy.HOST_BOUND else "between")
    return (f" The GPU was busy {100 * shares[0]:.0f}% of the time at batch {at['batch_size']} and "
            f"{100 * shares[1]:.0f}% at {nxt['batch_size']}: {BOUND_TEXT[bound]}.")


def _max_text(sw):
    """The max as measured: the largest fit, below the first out-of-memory size."""
    fitted, oom = sw["max"], sw["oom"]
    above = [p["bs"] for p in sw["points"] if p["status"].startswith("ok, above")]
    tail = (f" ({', '.join(map(str, above))}, above it, passed: memory does not grow with the "
            "batch alone here)" if above else "")
    if fitted is None:
        return f" Batch {oom} ran out of memory: no smaller size passed{tail}."
    if oom == fitted + 1:
        return f" Batch {oom} ran out of memory: the max is {fitted}{tail}."
    between = (f"; {', '.join(map(str, sw['unfinished']))}, in between, did not finish"
               if sw["unfinished"] else "")
    return (f" Batch {oom} ran out of memory and {fitted} fitted: the max is {fitted} to {oom - 1}"
            f"{between}{tail}.")


def _verdict(sw, threshold):
    """The line under a sweep's table: where it saturates and where memory ends it."""
    on = [p for p in sw["points"] if p["status"] == "ok"]
    if sw["saturation"] is not None:
        nxt = next(p for p in on if p["bs"] > sw["saturation"])
        at = next(p for p in on if p["bs"] == sw["saturation"])
        shaky = any(p["row"].get("flagged") for p in (at, nxt))
        out = (f"Saturation at batch {sw['saturation']}: going to {nxt['bs']} adds "
               f"{100 * nxt['gain']:.1f}% per doubling (< {_pct(threshold)})"
               + (", a step that rests on a FLAGGED figure." if shaky else ".")
               + _bound(at["row"], nxt["row"]))
    elif len(on) > 1:
        out = f"No saturation: every step adds {_pct(threshold)} or more per doubling."
    else:
        out = "Fewer than two sizes passed: no gain to compute."
    if sw["oom"] is not None:
        out += _max_text(sw)
    return out


def markdown(sws, threshold=DEFAULT_THRESHOLD):
    """summary.md's "Batch size" section: a table per sweep, the rule stated under each."""
    if not sws:
        return []
    lines = ["", "## Batch size", "",
             "Cases that differ only in batch size per GPU. gain per doubling = "
             "(r2 / r1) ^ (1 / log2(b2 / b1)) - 1 against the previous measured size b1 (so a step "
             f"that is not a doubling compares); **saturation** = the first size from which the "
             f"doubling to the next measured size adds less than {_pct(threshold)}; out of memory "
             "ends the curve and the largest size that fitted is the **max** (the true largest lies "
             "below the out-of-memory size); GPU busy = NVML's busy share over the measured "
             f"iterations (from {energy.GPU_BOUND:.0%} the GPU bounds the step, below "
             f"{energy.HOST_BOUND:.0%} the host)."]
    for sw in sws:
        lines += ["", f"### {sw['title']}", "", _table(sw), "", f"> {_verdict(sw, threshold)}"]
    return lines


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def write_csv(path, sws, threshold=DEFAULT_THRESHOLD):
    """saturation.csv: one row per (sweep, size), columns CSV_COLUMNS."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for sw in sws:
            for p in sw["points"]:
                rec = dict(p["row"], sweep=sw["title"], gain_per_doubling=p["gain"],
                           status=p["status"], saturation=p["saturation"], max=p["max"],
                           threshold=threshold, flagged=bool(p["row"].get("flagged")))
                if not rec.get("ok"):
                    rec.update(images_per_s=None, images_per_s_per_gpu=None, images_per_j=None)
                w.writerow([_csv_value(rec.get(k)) for k in CSV_COLUMNS])
    return path
