"""summary.png: a horizontal bar per case, coloured by model (segbench.report writes it).

build_chart(cases, note)        -> the summary.png matplotlib Figure (for inspection)
write_chart(path, cases, note)  -> path
"""

from __future__ import annotations

from segbench.results import case_label, is_cpu_profile
from segbench.tables import (failed_text, fmt_rate, model_key, scaling, scaling_note, sort_key, unit,
                             units)

CHART_DPI = 110
FLAG_COLOUR = "#d35400"


def _bar_label(row):
    parts = [case_label(row), row.get("run_mode") or "?",
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
    return ax.annotate(failed_text(c), (width, y), xytext=(5, 0), textcoords="offset points",
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
    handles = [Patch(facecolor=c, label=m) for m, c in colour.items()]
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
    labels = [_bar_label(cases[i]) for i in order]
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
