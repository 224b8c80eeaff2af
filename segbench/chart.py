"""summary.png: a horizontal bar per case, coloured by model; saturation.png: a panel per model
(mode, precision, GPUs, device) with a line per batch sweep, stock and tuned (segbench.report writes
both).

build_chart(cases, note)        -> the summary.png matplotlib Figure (for inspection)
write_chart(path, cases, note)  -> path
build_saturation_chart(sweeps, threshold, note) -> the saturation.png Figure
"""

from __future__ import annotations

import re
from collections import Counter

from segbench.results import SWITCH_LIST, case_label, is_cpu_profile, join_variant, variant_tokens
from segbench.saturation import OOM_TEXT, title
from segbench.tables import (failed_text, fmt_rate, model_key, scaling, scaling_note, sort_key, unit,
                             units)

CHART_DPI = 110
FLAG_COLOUR = "#d35400"
_SWITCH_LIST = re.compile(rf"\btuned-({SWITCH_LIST})")
FAILED_CHARS = 64


def short(label):
    """A label with a tuned token's switch list counted (``tuned (7 switches)``): summary.png's
    labels stay narrow enough for the bars; the tables and the panel notes name them in full."""
    def counted(m):
        n = m.group(1).count("+") + 1
        return f"tuned ({n} switch{'es' if n > 1 else ''})"
    return _SWITCH_LIST.sub(counted, label)


def _short_map(labels):
    """{label: short(label)}, but a label whose short form another label shares stays whole (two
    switch sets of one size)."""
    out = {label: short(label) for label in labels}
    shared = Counter(out.values())
    return {label: s if shared[s] == 1 else label for label, s in out.items()}


def _failed_label(row):
    """FAILED and its reason up to the first parenthesis (torch's OOM text is long), cut short."""
    text = failed_text(row).split(" (", 1)[0]
    return text if len(text) <= FAILED_CHARS else text[:FAILED_CHARS - 1] + "…"


def _bar_label(row, names):
    parts = [names[case_label(row)], row.get("run_mode") or "?",
             f"bs{row['batch_size']}" if row.get("batch_size") is not None else "bs?",
             row.get("fp") or "?"]
    g = row.get("gpu_num")
    parts.append(f"{g} {unit(row, g != 1)}" if g is not None else f"? {unit(row, True)}")
    label = " · ".join(parts)
    if is_cpu_profile(row):
        label += " (CPU profile)"
    if row.get("flagged"):
        label += " [FLAGGED]"
    return label


def _y_positions(cases, order):
    """A bar's y per case in order, with a gap between models; and the height they span."""
    ys, y, prev = [], 0.0, None
    for i in order:
        m = model_key(cases[i])
        if prev is not None and m != prev:
            y += 0.6
        ys.append(y)
        y += 1.0
        prev = m
    return ys, y


def _draw_failed(ax, c, y, width):
    """A failed case: a hatched stub labelled FAILED; returns the label."""
    from matplotlib.patches import Rectangle
    ax.add_patch(Rectangle((0, y - 0.35), width, 0.7, facecolor="white",
                           edgecolor="#c0392b", hatch="xxx", linewidth=1.0))
    return ax.annotate(_failed_label(c), (width, y), xytext=(5, 0), textcoords="offset points",
                       va="center", ha="left", fontsize=9, color="#c0392b", fontweight="bold")


def _draw_bar(ax, c, y, colour, eff):
    """A passed case's bar, min-max error bar over its repeats and value label; returns the
    label and whether it drew an error bar."""
    v = c["images_per_s"]
    cpu = is_cpu_profile(c)
    ax.barh(y, v, height=0.7, color=colour, alpha=0.45 if cpu else 0.9,
            hatch="..." if cpu else None, edgecolor=colour if cpu else "none")
    end = v
    runs = c.get("repeats")
    repeated = bool(runs and len(runs) > 1)
    if repeated:
        lo, hi = min(runs), max(runs)
        ax.errorbar(v, y, xerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="none",
                    ecolor="#222222", elinewidth=1.2, capsize=4, capthick=1.2)
        end = max(v, hi)
    text = fmt_rate(v)
    if eff is not None:
        text += f"  (scaling {eff:.2f}" + (", not credible)" if scaling_note(c, eff) else ")")
    if repeated:
        text += f"  [n={len(runs)}]"
    label = ax.annotate(text, (end, y), xytext=(5, 0), textcoords="offset points", va="center",
                        ha="left", fontsize=9)
    return label, repeated


def _decorate(ax, cases, order, ys, labels, vmax, title_note):
    """Ticks (failed red, flagged orange), limits, axis labels, the note above and the title."""
    ax.set_yticks(ys, labels, fontsize=9)
    for tick, i in zip(ax.get_yticklabels(), order):
        if not cases[i].get("ok"):
            tick.set_color("#c0392b")
        elif cases[i].get("flagged"):
            tick.set_color(FLAG_COLOUR)
    ax.set_ylim(max(ys, default=0) + 0.8, min(ys, default=0) - 0.8)  # first case on top
    ax.set_xlim(0, vmax * 1.15)
    ax.set_xlabel(f"training throughput (images/s, all {units(cases)}; higher is better)",
                  fontsize=10)
    ax.set_ylabel("case", fontsize=10)
    note = [title_note] if title_note else []
    note.append(f"bar label: model · mode · batch size per {units(cases, plural=False)} · "
                f"precision · {units(cases)}")
    if any(c.get("flagged") for c in cases):
        note.append("[FLAGGED]: signs of a busy or noisy host (warnings in summary.md)")
    ax.text(0.0, 1.0, "\n".join(note), transform=ax.transAxes, fontsize=8, color="#555555",
            va="bottom", ha="left", linespacing=1.4)
    ax.set_title("segbench: training throughput per case", fontsize=13, fontweight="bold",
                 loc="left", pad=6 + 12 * len(note))
    ax.grid(axis="x", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _legend(ax, colour, has_cpu, has_err, has_fail):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    names = _short_map(colour)
    handles = [Patch(facecolor=c, label=names[m]) for m, c in colour.items()]
    if has_cpu:
        handles.append(Patch(facecolor="#bbbbbb", hatch="...", edgecolor="#777777",
                             label="CPU profile (not GPU)"))
    if has_err:
        handles.append(Line2D([], [], color="#222222", marker="|", markersize=10,
                              linewidth=1.2, label="min–max over repeats"))
    if has_fail:
        handles.append(Patch(facecolor="white", edgecolor="#c0392b", hatch="xxx",
                             label="failed run"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9,
              frameon=False)


def _fit_value_labels(fig, ax, texts):
    """Widen the x range until every value label ends inside the axes."""
    for _ in range(3):
        fig.canvas.draw()
        right = max((t.get_window_extent().x1 for t in texts), default=0.0)
        if right <= ax.get_window_extent().x1 - 4:
            break
        x0, _x1 = ax.get_xlim()
        need = ax.transData.inverted().transform((right + 8, 0))[0]
        ax.set_xlim(x0, x0 + (need - x0) * 1.02)


def build_chart(cases, title_note=None):
    """The matplotlib Figure (Agg) of write_chart: horizontal bars of images/s per case,
    coloured by model, min-max error bars from repeats, failed cases as a hatched stub
    labelled FAILED, value labels fitted inside the axes.  Caller closes it."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    eff = scaling(cases)
    order = sorted(range(len(cases)), key=lambda i: sort_key(cases[i]))
    palette = plt.get_cmap("tab10").colors
    colour = {m: palette[k % len(palette)]
              for k, m in enumerate(dict.fromkeys(model_key(cases[i]) for i in order))}
    ys, y_end = _y_positions(cases, order)
    names = _short_map({case_label(c) for c in cases})
    labels = [_bar_label(cases[i], names) for i in order]
    vmax = max((max(c["images_per_s"], *(c.get("repeats") or [0])) for c in cases if c.get("ok")),
               default=0.0) or 1.0
    longest = max((len(s) for s in labels), default=10)
    height = min(0.42 * (y_end if order else 1) + 2.2, 300.0)
    width = max(9.0, min(7.0 + 0.085 * longest, 24.0))
    fig, ax = plt.subplots(figsize=(width, height), dpi=CHART_DPI, layout="constrained")

    texts, has_err = [], False
    for y, i in zip(ys, order):
        c = cases[i]
        if not c.get("ok"):
            texts.append(_draw_failed(ax, c, y, vmax * 0.02))
            continue
        text, repeated = _draw_bar(ax, c, y, colour[model_key(c)], eff[i])
        texts.append(text)
        has_err |= repeated
    _decorate(ax, cases, order, ys, labels, vmax, title_note)
    _legend(ax, colour, any(c.get("ok") and is_cpu_profile(c) for c in cases), has_err,
            not all(c.get("ok") for c in cases))
    _fit_value_labels(fig, ax, texts)
    return fig


def write_chart(path, cases, title_note=None):
    """Save build_chart(cases) as a PNG at path."""
    import matplotlib.pyplot as plt

    fig = build_chart(cases, title_note)
    try:
        fig.savefig(path, dpi=CHART_DPI)
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------- saturation.png

SAT_COLOUR, OOM_COLOUR, MEM_COLOUR = "#27ae60", "#c0392b", "#7f8c8d"
_LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5}


# a sweep's colour says which side it is: blues and browns untuned, pinks and cyans tuned
STOCK_COLOURS, TUNED_COLOURS = ("#1f77b4", "#8c564b", "#7f7f7f"), ("#e377c2", "#17becf", "#9467bd")


def _tuned(sw):
    return bool(variant_tokens(sw["row"].get("variant") or "").get("tuned"))


def _colours(sws):
    """A colour per sweep of a panel, from its side's palette."""
    seen = {False: 0, True: 0}
    out = []
    for sw in sws:
        side = _tuned(sw)
        palette = TUNED_COLOURS if side else STOCK_COLOURS
        out.append(palette[seen[side] % len(palette)])
        seen[side] += 1
    return out


def _panels(sweeps):
    """The sweeps by panel, in order: one panel per model, mode, precision, GPUs, device and side of
    the CPU profile, a line per variant (untuned first)."""
    panels = {}
    for sw in sweeps:
        r = sw["row"]
        key = ((r.get("model") or "").lower(), r.get("run_mode"), r.get("fp"), r.get("gpu_num"),
               r.get("device_name"), is_cpu_profile(r))
        panels.setdefault(key, []).append(sw)
    return [sorted(sws, key=lambda sw: (_tuned(sw), sw["row"].get("variant") or ""))
            for sws in panels.values()]


def _names(sws):
    """Short names of a panel's sweeps, for the legend: their variants less the tokens they all
    share (but a tuned token, always named), a tuned token as ``tuned`` (``stock`` for none); the
    full variants go under the title. Two sweeps that would share a short name keep their tuned
    tokens whole."""
    toks = [variant_tokens(sw["row"].get("variant") or "") for sw in sws]
    shared = {k for k in toks[0] if k != "tuned" and all(t.get(k) == toks[0][k] for t in toks)} \
        if len(sws) > 1 else set()

    def name(t, whole):
        return join_variant({k: v if whole or k != "tuned" else "tuned"
                             for k, v in t.items() if k not in shared}) or "stock"
    runtime = [f" {sw['row']['runtime_env']}" if sw["row"].get("runtime_env") else "" for sw in sws]
    short = [name(t, False) + r for t, r in zip(toks, runtime)]
    return short if len(set(short)) == len(short) else [name(t, True) + r for t, r in zip(toks, runtime)]


def _sat_lines(ax, sw, colour, name, mem_ax):
    """images/s (and per GPU with several) against batch per GPU; flagged sizes ringed orange;
    peak memory dashed on mem_ax. name ("" alone in its panel) prefixes each label."""
    ok = [p for p in sw["points"] if p["row"].get("ok")]
    xs = [p["bs"] for p in ok]
    one = unit(sw["row"])
    ax.plot(xs, [p["row"]["images_per_s"] for p in ok], "o-", color=colour,
            label=name + (f"images/s (all {unit(sw['row'], True)})" if sw["multi"] else "images/s"))
    if sw["multi"]:
        ax.plot(xs, [p["row"]["images_per_s_per_gpu"] for p in ok], "s-", color=colour, alpha=0.6,
                label=f"{name}images/s per {one}")
    flagged = [p for p in ok if p["row"].get("flagged")]
    if flagged:
        ax.plot([p["bs"] for p in flagged], [p["row"]["images_per_s"] for p in flagged], "o",
                markersize=12, markerfacecolor="none", markeredgecolor=FLAG_COLOUR,
                markeredgewidth=2, linestyle="none", label=f"{name}FLAGGED (busy or noisy host)")
    top = next((p for p in ok if p["max"]), None)   # the largest fit below an out-of-memory size
    if top is not None:
        ax.plot([top["bs"]], [top["row"]["images_per_s"]], "*", markersize=16, color=colour,
                markeredgecolor="black", linestyle="none",
                label=f"{name}largest fit: batch {top['bs']} (the max is {top['bs']}–{sw['oom'] - 1})")
    failed = [p["bs"] for p in sw["points"] if not p["row"].get("ok") and p["status"] != OOM_TEXT]
    if failed:
        ax.plot(failed, [0] * len(failed), "X", color=colour, markeredgecolor=OOM_COLOUR, markersize=9,
                linestyle="none", clip_on=False, label=f"{name}failed (not out of memory)")
    mem = [p for p in ok if p["row"].get("peak_mem_mb") is not None]
    if mem:
        mem_ax.plot([p["bs"] for p in mem], [p["row"]["peak_mem_mb"] for p in mem], "^--",
                    color=colour if name else MEM_COLOUR, alpha=0.7 if name else 1.0, linewidth=1.0,
                    markerfacecolor="white", label=f"{name}peak MB per {one}")


def _sat_marks(ax, sws, names, threshold):
    """The saturation batches and out-of-memory sizes: a vertical line each (per sweep, its style,
    named in the legend) and one label along each batch that has one."""
    foot = ax.get_xaxis_transform()
    styles = ((":", "-"), ("--", "--"), ("-.", "-."), ((0, (1, 1)), (0, (1, 1))))
    marks = {}
    for i, (sw, name) in enumerate(zip(sws, names)):
        sat_style, oom_style = styles[i % len(styles)]
        if sw["saturation"] is not None:
            ax.axvline(sw["saturation"], color=SAT_COLOUR, linestyle=sat_style, linewidth=1.6,
                       label=f"{name}saturation: batch {sw['saturation']}")
            marks[sw["saturation"], "sat"] = (f"doubling adds <{100 * threshold:g}%", SAT_COLOUR, "left")
        if sw["oom"] is not None:
            ax.axvline(sw["oom"], color=OOM_COLOUR, linewidth=1.6, linestyle=oom_style,
                       label=f"{name}{OOM_TEXT}: batch {sw['oom']}")
            marks[sw["oom"], "oom"] = (OOM_TEXT, OOM_COLOUR, "right")
    for (x, _kind), (text, colour, ha) in marks.items():
        ax.text(x, 0.03, f" {text}", transform=foot, color=colour, fontsize=9, rotation=90,
                ha=ha, va="bottom", fontweight="bold", bbox=_LABEL_BOX)


def _sat_panel(ax, sws, threshold):
    """One panel: a line per sweep (variant), each in its colour, memory on a twin axis; the
    variants under the title, the legend to the right."""
    sizes = sorted({p["bs"] for sw in sws for p in sw["points"]})
    mem_ax = ax.twinx()
    short = _names(sws)
    names = [f"{n}: " if len(sws) > 1 else "" for n in short]
    for sw, name, colour in zip(sws, names, _colours(sws)):
        _sat_lines(ax, sw, colour, name, mem_ax)
    _sat_marks(ax, sws, names, threshold)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes], fontsize=9)
    ax.minorticks_off()
    ax.set_xlim(min(sizes) / 1.25, max(sizes) * 1.25)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)   # headroom: a star at the top stays whole
    one = unit(sws[0]["row"])
    if mem_ax.get_lines():
        mem_ax.set_ylabel(f"peak memory per {one} (MB)", fontsize=9, color=MEM_COLOUR)
        mem_ax.set_ylim(bottom=0)
        ax.set_zorder(mem_ax.get_zorder() + 1)   # the marks' labels over the memory lines
        ax.patch.set_visible(False)
    else:
        mem_ax.set_axis_off()
    ax.set_xlabel(f"batch per {one} (log2 scale)", fontsize=9)
    ax.set_ylabel("training images/s", fontsize=9)
    variants = [f"{s} = {sw['row']['variant']}" if len(sws) > 1 else f"variant {sw['row']['variant']}"
                for s, sw in zip(short, sws) if sw["row"].get("variant")]
    ax.set_title(title({**sws[0]["row"], "variant": None, "runtime_env": None}), fontsize=10,
                 fontweight="bold", loc="left", pad=4 + 11 * len(variants))
    if variants:
        ax.text(0.0, 1.01, "\n".join(variants), transform=ax.transAxes, fontsize=7.5, color="#555555",
                va="bottom", ha="left", linespacing=1.3)
    ax.grid(color="#dddddd", linewidth=0.8)
    ax.legend(handles=ax.get_lines() + mem_ax.get_lines(), loc="upper left", bbox_to_anchor=(1.1, 1.0),
              fontsize=8, frameon=False)


def build_saturation_chart(sweeps, threshold, title_note=None):
    """The saturation.png Figure (Agg): a panel per model, mode, precision, GPUs and device, with a
    line per batch sweep (segbench.saturation.sweeps; stock and each tuned variant): images/s
    against batch per GPU on a log2 axis, per GPU too with several GPUs, peak memory on a twin axis
    (dashed), the saturation batch and the out-of-memory size marked. Caller closes it."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = _panels(sweeps)
    n = max(len(panels), 1)
    fig, axes = plt.subplots(n, 1, figsize=(13, min(3.8 * n + 0.8, 300.0)), dpi=CHART_DPI,
                             layout="constrained", squeeze=False)
    for ax, sws in zip(axes[:, 0], panels):
        _sat_panel(ax, sws, threshold)
    rule = (f"saturation: the first batch from which the doubling to the next measured size adds "
            f"<{100 * threshold:g}%; out of memory ends the curve")
    fig.suptitle("segbench: training throughput against batch size\n" + "\n".join(
        filter(None, [title_note, rule])), fontsize=10, x=0.01, ha="left", linespacing=1.4)
    return fig


def write_saturation_chart(path, sweeps, threshold, title_note=None):
    """Save build_saturation_chart(...) as a PNG at path."""
    import matplotlib.pyplot as plt

    fig = build_saturation_chart(sweeps, threshold, title_note)
    try:
        fig.savefig(path, dpi=CHART_DPI)
    finally:
        plt.close(fig)
    return path
