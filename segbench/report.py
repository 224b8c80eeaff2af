"""The summary of a result directory (summary.md, summary.csv, summary.png) and the CLI.

    python -m segbench.report report DIR [--out OUTDIR] [--saturation-threshold 5%]
    python -m segbench.report compare BASELINE_DIR CURRENT_DIR [--threshold 5%]
        [--baseline-label Paddle] [--current-label PyTorch] [--markdown FILE]
    python -m segbench.report compare --db FILE_OR_DIR --baseline torch=2.10 --current torch=2.11
        [--where device_name=...] [--threshold 5%] [--markdown FILE]
    python -m segbench.report compare BASELINE_DIR CURRENT_DIR --across-stacks ...
    python -m segbench.report compare --stacks DIR [DIR ...] [--markdown FILE]

Exit codes: 0 fine, 1 compare found a regressed or missing case,
2 bad arguments / unreadable input / no results (one line on stderr).

A result directory holds the seed's speed files (``*_speed``, with their ``*_stats.json``)
and/or the later PaddlePaddle benchmark's 14-key records (``*_paddle.json``, or a platform's
own JSON files with those keys); see segbench.results.

The parts: segbench.results reads result directories into rows (which files are results, what
each case is: the case-name grammar, a case's identity); segbench.tables holds what the tables,
the chart and compare share (scaling efficiency, units, formats); segbench.saturation finds the
batch sweeps (cases differing only in batch size) and where they saturate; segbench.chart draws
summary.png and saturation.png; segbench.compare matches two sets of rows and tells which regressed.

Python API
----------
results.load_cases(dir)         -> list of flat dicts, one per speed file
results.parse_case_name(name)   -> model/run_mode/batch_size/fp/gpu_num/tuned/variant of a name
results.identity(row)           -> the tuple rows are matched and scaled by
tables.scaling(cases)           -> list (same order) of mp scaling efficiency or None
report.write_report(in, out, t) -> {"md": path, "csv": path, "png": path} (+ saturation_csv/_png)
saturation.sweeps(cases, t)     -> the batch sweeps: gain per doubling, saturation, max, out of memory
chart.build_chart(cases, note)  -> the summary.png matplotlib Figure (for inspection)
compare.compare(base, cur, t)   -> (rows, ok)
compare.compare_history(db, ..) -> (rows, ok, note) of two selections of the results history
compare.compare_markdown(rows)  -> Markdown text of a compare result
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import sys
from collections import Counter

from segbench import saturation
from segbench.chart import write_chart, write_saturation_chart
from segbench.compare import (compare, compare_across_stacks, compare_history, compare_markdown,
                              compare_stacks, split_filters, stacks_markdown)
from segbench.results import CASE_KEYS, ReportError, is_cpu_profile, load_nonempty
from segbench.tables import (SCALING_CREDIBLE_MAX, fmt, fmt_rate, md_cell, md_table, model_key, scaling,
                             scaling_bases, scaling_note, sort_key, status_text, units)

CSV_COLUMNS = CASE_KEYS[:9] + ("scaling_efficiency", "scaling_note") + CASE_KEYS[9:]
FLAG_TEXT = ("the analysis saw signs that the figure describes a busy or noisy host rather than "
             "the hardware (the `warnings` of the case's `_stats.json`)")


def _md_model_table(cases, idx, eff):
    """The rows of one model's table."""
    table = []
    for i in idx:
        c = cases[i]
        ok = c.get("ok")
        table.append([
            c.get("run_mode") or "?",
            fmt(c.get("batch_size"), "d") if c.get("batch_size") is not None else "?",
            c.get("fp") or "?",
            fmt(c.get("gpu_num"), "d") if c.get("gpu_num") is not None else "?",
            fmt_rate(c.get("images_per_s")) if ok else "-",
            fmt_rate(c.get("images_per_s_per_gpu")) if ok else "-",
            fmt(eff[i], ".2f") + (" (not credible)" if scaling_note(c, eff[i]) else ""),
            fmt(None if c.get("cv") is None else 100 * c["cv"], ".1f"),
            fmt(c.get("peak_mem_mb"), ",.0f"),
            fmt(c.get("tflops"), ".2f"),
            fmt(c.get("images_per_j"), ".3g") if ok else "-",
            fmt(c.get("mean_w_per_gpu"), ".0f") if ok else "-",
            status_text(c),
            "**FLAGGED**" if c.get("flagged") else "-",
        ])
    return table


def _md_notes(rows, effs, bases):
    """Under a table: each flagged row's warnings and each not-credible scaling figure."""
    flagged = [c for c in rows if c.get("flagged")]
    out = ["", f"> **FLAGGED:** {FLAG_TEXT}:"] if flagged else []
    for c in flagged:
        for w in c.get("warnings") or ["flagged (the sidecar lists no warning)"]:
            out.append(f"> - `{c['case']}`: {md_cell(w)}")
    odd = [(c, e, note) for c, e, b in zip(rows, effs, bases) if (note := scaling_note(c, e, b))]
    if odd:
        out += ["", "> **Scaling efficiency above 1:**"]
        out += [f"> - `{c['case']}`: {e:.2f} is {note}." for c, e, note in odd]
    return out


def _runtime_note(rows):
    """Under a table: the cases that ran with a runtime variable set (knobs.RUNTIME_VARS): it is not
    in the case's name, and it can change speed or what fits."""
    odd = [c for c in rows if c.get("runtime_env")]
    if not odd:
        return []
    return ["", "> **Runtime environment:** these cases ran with variables set that change how "
                "torch, CUDA or NCCL run (not in the name; the sidecar's `env.runtime_env`):"] + [
        f"> - `{c['case']}`: `{md_cell(c['runtime_env'])}`" for c in odd]


def _energy_note(cases):
    """Once per summary: why images/J and W are missing for passed cases, each reason once."""
    reasons = Counter(c.get("energy_reason") or "no reason given" for c in cases
                      if c.get("ok") and c.get("images_per_j") is None)
    if not reasons:
        return []
    return ["", f"> **No energy figure** (images/J, W/{units(cases, plural=False)} `-`): " + "; ".join(
        f"{md_cell(r)} ({n} case{'s' if n > 1 else ''})" for r, n in reasons.items()) + "."]


def summary_markdown(cases, source_dir=None, generated=None,
                     saturation_threshold=saturation.DEFAULT_THRESHOLD):
    """The summary.md text for cases (a list from load_cases)."""
    generated = generated or _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    bases = scaling_bases(cases)
    eff = scaling(cases, bases)
    order = sorted(range(len(cases)), key=lambda i: sort_key(cases[i]))
    n_fail = sum(1 for c in cases if not c.get("ok"))
    n_oom = sum(1 for c in cases if saturation.is_oom(c))
    n_flag = sum(1 for c in cases if c.get("flagged"))
    lines = ["# segbench training throughput", ""]
    src = f" from `{source_dir}`" if source_dir else ""
    oom = f" ({n_oom} of them out of memory, as a batch sweep's search expects)" if n_oom else ""
    lines.append(f"Generated {generated}{src}: {len(cases)} case(s), {n_fail} failed{oom}, "
                 f"{n_flag} flagged.")
    lines.append("")
    every = units(cases)
    lines.append(f"images/s = training images per second over all {every} (FINAL_RESULT); "
                 f"scaling eff. = mp images/s / ({every} x sp images/s), above "
                 f"{SCALING_CREDIBLE_MAX:g} not credible; "
                 "CV % = per-iteration coefficient of variation (- for window_sync runs, whose "
                 "iterations inside a window are timed by the host); "
                 f"images/J = images per joule and W/{units(cases, plural=False)} = mean watts per "
                 f"{units(cases, plural=False)} over the measured iterations (the GPU's energy "
                 f"counter); flag = FLAGGED when {FLAG_TEXT}.")
    if any(c.get("variant") for c in cases):
        lines.append("")
        lines.append("A section's `[variant]` holds the settings that set its cases apart from the "
                     "seed's (docs/FORMATS.md): `tuned...` the tuned mode and its switches (a case "
                     "without it is stock), `li<N>` a log interval of N, `crop<H>x<W>` a crop, "
                     "`mmseg0` the 0.x stack; a variant is only compared with itself.")
    lines += _energy_note(cases)
    models = list(dict.fromkeys(model_key(cases[i]) for i in order))
    align = "lrlrrrrrrrrrll"
    for model in models:
        idx = [i for i in order if model_key(cases[i]) == model]
        rows = [cases[i] for i in idx]
        headers = ["mode", "bs", "precision", units(rows), "images/s",
                   f"images/s/{units(rows, plural=False)}", "scaling eff.", "CV %",
                   "peak mem MB", "TFLOP/s", "images/J", f"W/{units(rows, plural=False)}", "status",
                   "flag"]
        lines += ["", f"## {model}", "", md_table(headers, _md_model_table(cases, idx, eff), align)]
        lines += _md_notes(rows, [eff[i] for i in idx], [bases[i] for i in idx])
        lines += _runtime_note(rows)
        if any(is_cpu_profile(c) for c in rows):
            lines += ["", "> **CPU profile:** rows marked *(CPU profile)* ran with "
                          "`profile = cpu` on the CPU, one CPU process where a GPU would be. "
                          "They are not GPU throughput; do not compare them with GPU rows."]
    lines += saturation.markdown(saturation.sweeps(cases, saturation_threshold), saturation_threshold)
    return "\n".join(lines) + "\n"


def _write_csv(path, cases):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        bases = scaling_bases(cases)
        for c, e, b in zip(cases, scaling(cases, bases), bases):
            rec = dict(c, scaling_efficiency=e, scaling_note=scaling_note(c, e, b))
            out = []
            for k in CSV_COLUMNS:
                v = rec.get(k)
                if v is None:
                    out.append("")
                elif isinstance(v, bool):
                    out.append("true" if v else "false")
                elif k in ("repeats", "warnings"):
                    out.append(json.dumps(v, ensure_ascii=False))
                else:
                    out.append(v)
            w.writerow(out)


# --------------------------------------------------------------------------- report

def write_report(dir_in, dir_out=None, saturation_threshold=saturation.DEFAULT_THRESHOLD):
    """Write summary.md, summary.csv and summary.png for the results in dir_in, and where it holds
    batch sweeps saturation.csv and saturation.png (segbench.saturation).

    dir_out defaults to dir_in and is created when missing.  Returns
    {"md": path, "csv": path, "png": path} (+ "saturation_csv", "saturation_png" with sweeps).
    Raises ReportError when dir_in is missing or holds no results.
    """
    dir_in = os.fspath(dir_in)
    cases = load_nonempty(dir_in)
    dir_out = os.fspath(dir_out) if dir_out is not None else dir_in
    try:
        os.makedirs(dir_out, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {dir_out}: {exc.strerror or exc}") from None
    generated = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    order = sorted(range(len(cases)), key=lambda i: sort_key(cases[i]))
    cases = [cases[i] for i in order]
    paths = {k: os.path.join(dir_out, "summary." + k) for k in ("md", "csv", "png")}
    with open(paths["md"], "w", encoding="utf-8") as fh:
        fh.write(summary_markdown(cases, source_dir=dir_in, generated=generated,
                                  saturation_threshold=saturation_threshold))
    _write_csv(paths["csv"], cases)
    shown = dir_in if len(dir_in) <= 60 else "..." + dir_in[-57:]
    note = f"generated {generated} from {shown}; {len(cases)} case(s)"
    write_chart(paths["png"], cases, title_note=note)
    sweeps = saturation.sweeps(cases, saturation_threshold)
    if sweeps:
        paths.update({f"saturation_{k}": os.path.join(dir_out, "saturation." + k) for k in ("csv", "png")})
        saturation.write_csv(paths["saturation_csv"], sweeps, saturation_threshold)
        write_saturation_chart(paths["saturation_png"], sweeps, saturation_threshold,
                               title_note=f"generated {generated} from {shown}")
    return paths


# --------------------------------------------------------------------------- CLI

def parse_threshold(text):
    """'5%' -> 0.05, '0.05' -> 0.05; ReportError on anything else or outside [0, 1)."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ReportError(f"bad threshold {text!r}: use e.g. 5% or 0.05") from None
    if not math.isfinite(value) or not (0 <= value < 1):
        hint = f" (did you mean {s}%?)" if not s.endswith("%") and value >= 1 else ""
        raise ReportError(f"threshold {text!r} out of range [0%, 100%){hint}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ReportError(message)


def _parser():
    p = _Parser(prog="python -m segbench.report",
                description="Summaries and comparisons of benchmark results (speed files, 14-key records).")
    sub = p.add_subparsers(dest="command", metavar="{report,compare}", parser_class=_Parser)
    r = sub.add_parser("report", help="write summary.md/.csv/.png for a result directory")
    r.add_argument("dir", help="directory holding *_speed files (and *_stats.json) and/or "
                   "14-key records (*_paddle.json)")
    r.add_argument("--out", default=None, help="output directory (default: DIR)")
    r.add_argument("--saturation-threshold", default="5%", metavar="GAIN",
                   help="a batch sweep saturates where a doubling adds less than this: 5%% or 0.05 "
                        "(default 5%%)")
    c = sub.add_parser("compare", help="compare two result directories, or two selections of the "
                       "results history (--db); exit 1 on regression")
    c.add_argument("baseline_dir", nargs="?")
    c.add_argument("current_dir", nargs="?")
    c.add_argument("--db", metavar="FILE_OR_DIR",
                   help="the results history (segbench.history): a database or its log directory")
    for side in ("baseline", "current"):
        c.add_argument(f"--{side}", action="append", default=[], metavar="COLUMN=VALUE[,...]",
                       help=f"with --db: the {side} rows (comma- or repeat-list; the latest row of "
                            "a case counts)")
    c.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,...]",
                   help="with --db: filters for both selections (e.g. device_name=NVIDIA H200)")
    c.add_argument("--threshold", default="5%", help="allowed slowdown: 5%% or 0.05 (default 5%%)")
    c.add_argument("--baseline-label", default=None,
                   help="default: baseline, or the --baseline selection")
    c.add_argument("--current-label", default=None,
                   help="default: current, or the --current selection")
    c.add_argument("--across-stacks", action="store_true",
                   help="match a case of one stack (mmseg 0.x / 1.x) with the other's: the stack is "
                        "left out of a case's identity")
    c.add_argument("--stacks", nargs="+", metavar="DIR",
                   help="instead: each mmseg 0.x case of these directories beside its mmseg 1.x twin")
    c.add_argument("--markdown", default=None, metavar="FILE", help="also write the table here")
    return p


def _report(args):
    paths = write_report(args.dir, args.out, parse_threshold(args.saturation_threshold))
    for path in paths.values():
        print(f"wrote {path}")
    print()
    with open(paths["md"], encoding="utf-8") as fh:
        sys.stdout.write(fh.read())
    return 0


def _compared(args, threshold):
    """(rows, ok, baseline label, current label, note) of the compare the arguments ask for."""
    dirs = [d for d in (args.baseline_dir, args.current_dir) if d is not None]
    if args.db is None:
        if args.baseline or args.current or args.where:
            raise ReportError("--baseline, --current and --where select from a database: give --db")
        if len(dirs) != 2:
            raise ReportError("compare takes BASELINE_DIR CURRENT_DIR, or --db with --baseline "
                              "and --current")
        for d in dirs:
            if not os.path.isdir(d):
                raise ReportError(f"not a directory: {d}")
        if args.across_stacks:
            rows, ok, note = compare_across_stacks(*dirs, threshold)
            return rows, ok, "baseline", "current", note
        return (*compare(*dirs, threshold), "baseline", "current", None)
    if args.across_stacks:
        raise ReportError("--across-stacks compares two directories, not --db selections")
    if dirs:
        raise ReportError("compare takes two directories or --db, not both")
    if not (args.baseline and args.current):
        raise ReportError("--db needs --baseline and --current (COLUMN=VALUE filters)")
    rows, ok, note = compare_history(args.db, args.baseline, args.current, args.where, threshold)
    labels = (", ".join(split_filters(args.baseline)), ", ".join(split_filters(args.current)))
    return rows, ok, *labels, note


def _stacks_text(args):
    """compare --stacks DIR [DIR ...]: the two stacks side by side per case (always exit 0)."""
    if args.baseline_dir or args.db or args.across_stacks:
        raise ReportError("--stacks takes its own directories, without BASELINE_DIR CURRENT_DIR, --db "
                          "or --across-stacks")
    for d in args.stacks:
        if not os.path.isdir(d):
            raise ReportError(f"not a directory: {d}")
    return stacks_markdown(*compare_stacks(args.stacks)), True


def _compare(args):
    threshold = parse_threshold(args.threshold)
    if args.stacks:
        text, ok = _stacks_text(args)
    else:
        rows, ok, base_label, cur_label, note = _compared(args, threshold)
        text = compare_markdown(rows, ok, threshold, args.baseline_label or base_label,
                                args.current_label or cur_label, note)
    if args.markdown:
        try:
            with open(args.markdown, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise ReportError(f"cannot write {args.markdown}: {exc.strerror or exc}") from None
    sys.stdout.write(text)
    return 0 if ok else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise ReportError("missing command: report or compare (see --help)")
        return _report(args) if args.command == "report" else _compare(args)
    except (ReportError, OSError) as exc:
        print(f"segbench.report: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
