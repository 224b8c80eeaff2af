"""What the summary's tables, its chart and compare's table share: the scaling efficiency of a
row, what its processes are (GPUs or CPU processes), the order and grouping of rows, number
formats and the Markdown table.

scaling(cases)                  -> list (same order) of mp scaling efficiency or None
scaling_bases(cases)            -> list (same order) of the sp row each efficiency divides by
"""

from __future__ import annotations

from segbench.results import case_label, identity, is_cpu_profile

# mp images/s cannot exceed its process count times one process's: an efficiency above 1 says the
# sp figure is too low (or the mp one too high). 5% above 1 is let pass as the noise of two
# separate runs; above that the figure is marked not credible.
SCALING_CREDIBLE_MAX = 1.05


# --------------------------------------------------------------------------- scaling

def scaling_bases(cases):
    """Per case, the sp row its scaling efficiency divides by (same order as cases): the first ok
    sp row with the same model, variant, batch size, precision and runtime variables, on the same
    side of the CPU profile; None for sp rows, failed rows, and mp rows without such an sp row."""
    sp = {}
    for row in cases:
        model, mode, bs, fp, gpus, variant = identity(row)
        if (mode == "sp" and row.get("ok") and (row.get("images_per_s") or 0) > 0
                and None not in (model, bs, fp)):
            sp.setdefault((model, variant, bs, fp, is_cpu_profile(row), row.get("runtime_env")), row)
    out = []
    for row in cases:
        model, mode, bs, fp, gpus, variant = identity(row)
        base = sp.get((model, variant, bs, fp, is_cpu_profile(row), row.get("runtime_env")))
        out.append(base if mode == "mp" and row.get("ok") and gpus else None)
    return out


def scaling(cases, bases=None):
    """Scaling efficiency per case, same order as cases: mp images/s / (gpu_num x images/s per
    process of its scaling_bases row); None where there is no such row. bases: scaling_bases(cases),
    where the caller has it already."""
    out = []
    for row, base in zip(cases, scaling_bases(cases) if bases is None else bases):
        gpus, base_gpus = identity(row)[4], identity(base)[4] if base else None
        out.append(None if base is None else
                   row["images_per_s"] / (gpus * (base["images_per_s"] / (base_gpus or 1))))
    return out


def unit(row, plural=False):
    """What a case's processes are: GPUs, or CPU processes in the CPU profile."""
    if is_cpu_profile(row):
        return "processes" if plural else "process"
    return "GPUs" if plural else "GPU"


def units(rows, plural=True):
    """unit() over rows: one word when they agree, both ("GPUs/processes") when they do not."""
    words = list(dict.fromkeys(unit(r, plural) for r in rows)) or [unit({}, plural)]
    return "/".join(words)


def scaling_note(row, eff, base=None):
    """Why a scaling efficiency above SCALING_CREDIBLE_MAX is not credible; None when it is. With
    base (the sp row, scaling_bases), a difference in torch's intra-op threads is named: torchrun
    gives each mp process OMP_NUM_THREADS=1, an sp process keeps torch's default."""
    if eff is None or eff <= SCALING_CREDIBLE_MAX:
        return None
    one = unit(row)
    note = (f"not credible (above {SCALING_CREDIBLE_MAX:g}): the 1-{one} run was slower than each "
            f"{one} of the {row.get('gpu_num')}-{one} run: a busy host or a different setting "
            f"during the sp run")
    sp_threads, mp_threads = (base or {}).get("torch_threads"), row.get("torch_threads")
    if sp_threads and mp_threads and sp_threads != mp_threads:
        note += (f"; the sp process ran {sp_threads} torch threads, each mp process {mp_threads} "
                 f"(more threads than free CPUs slow a CPU-bound step)")
    return note


# --------------------------------------------------------------------------- formatting

def fmt_rate(v):
    if v is None:
        return "-"
    if abs(v) >= 1 or v == 0:
        return f"{v:,.2f}"
    return f"{v:.3g}"


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def md_cell(v):
    s = "-" if v is None else str(v)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_table(headers, rows, align):
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def sort_key(row):
    model, mode, bs, fp, gpus, variant = identity(row)
    return (model or "", variant, is_cpu_profile(row), {"sp": 0, "mp": 1}.get(mode, 2),
            gpus or 0, bs or 0, fp or "", row.get("case") or "")


def failed_text(row):
    return "FAILED: " + row["reason"] if row.get("reason") else "FAILED"


def status_text(row):
    s = "ok" if row.get("ok") else failed_text(row)
    if is_cpu_profile(row):
        s += " (CPU profile)"
    return s


def model_key(row):
    """A table (and a chart colour) per model, variant and side of the CPU profile."""
    return case_label(row) + (" (CPU profile)" if is_cpu_profile(row) else "")
