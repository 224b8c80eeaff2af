"""Compare two sets of cases: match them by identity and tell which regressed.

    python -m segbench.report compare BASELINE_DIR CURRENT_DIR [--threshold 5%]
        [--baseline-label Paddle] [--current-label PyTorch] [--markdown FILE]
    python -m segbench.report compare --db FILE_OR_DIR --baseline torch=2.10 --current torch=2.11
        [--where device_name=...] [--threshold 5%] ...

    python -m segbench.report compare BASELINE_DIR CURRENT_DIR --across-stacks ...
    python -m segbench.report compare --stacks DIR [DIR ...] [--markdown FILE]

Two directories, or two selections of the results history (segbench.history): rows either way
come from segbench.results' one row builder, so the matching and the threshold are the same.
The stack (``mmseg0`` in a variant: mmseg 0.30 + mmcv 1.7, segbench.legacy) is part of a case's
identity; ``--across-stacks`` leaves it out of the matching (a baseline of 0.x runs against a
current of 1.x runs), and ``--stacks`` puts each 0.x case beside its 1.x twin (compare_stacks).

compare(base_dir, cur_dir, t)   -> (rows, ok)
compare_across_stacks(b, c, t)  -> (rows, ok, note), the stack left out of the matching
compare_rows(base, cur, t)      -> (rows, ok) of two lists of report rows
compare_history(db, b, c, w, t) -> (rows, ok, note) of two selections of the history
compare_markdown(rows, ...)     -> Markdown text of a compare result
compare_stacks(dirs)            -> (rows, note): each 0.x case beside its 1.x twin
stacks_markdown(rows, note)     -> Markdown text of compare_stacks' result
"""

from __future__ import annotations

import os
import re
import sqlite3

from segbench import history, legacy
from segbench.results import (ReportError, read_sidecar, first, history_rows, identity, is_cpu_profile,
                              join_variant, load_nonempty, norm_mode, variant_tokens)
from segbench.tables import fmt, fmt_rate, md_table, sort_key, units

STATUSES = ("ok", "regressed", "improved", "missing", "new")


def _compatible(a, b):
    """Identities agree on every field known on both sides; model and GPUs must be known."""
    if a[0] is None or b[0] is None or a[0] != b[0]:
        return False
    if a[4] is None or b[4] is None:
        return False
    return _no_conflict(a, b)


def _no_conflict(a, b):
    """No field is known on both sides with different values."""
    return all(x is None or y is None or x == y for x, y in zip(a, b))


def _case_name_key(row):
    name = os.path.basename(str(row.get("case") or "")).lower()
    for suffix in ("_speed", ".log", "_log"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _full_index(rows):
    """({identity: index} of the rows with a full identity, {kept index: number of later rows
    with its identity}, the indices of those later rows)."""
    idx, dups, ignored = {}, {}, set()
    for i, r in enumerate(rows):
        key = identity(r)
        if None in key:
            continue
        if key in idx:
            dups[idx[key]] = dups.get(idx[key], 0) + 1
            ignored.add(i)
            continue
        idx[key] = i
    return idx, dups, ignored


class _Pairs:
    """The pairs found so far and the rows of each side they (or an ignored duplicate) use."""

    def __init__(self, ignored_b, ignored_c):
        self.pairs, self.used_b, self.used_c = [], set(ignored_b), set(ignored_c)

    def add(self, bi, ci):
        self.pairs.append((bi, ci))
        self.used_b.add(bi)
        self.used_c.add(ci)


def _compatible_partners(row, rows, used):
    ident = identity(row)
    return [j for j, r in enumerate(rows) if j not in used and _compatible(ident, identity(r))]


def _pair_compatible(base, cur, p):
    """A unique and mutual identity-compatible partner (names of other harnesses yield partial
    identities)."""
    for bi, r in enumerate(base):
        if bi in p.used_b:
            continue
        cands = _compatible_partners(r, cur, p.used_c)
        if len(cands) == 1 and _compatible_partners(cur[cands[0]], base, p.used_b) == [bi]:
            p.add(bi, cands[0])


def _pair_by_name(base, cur, p):
    """The same log-file name, where the identities do not conflict."""
    by_name = {}
    for ci, r in enumerate(cur):
        if ci not in p.used_c:
            by_name.setdefault(_case_name_key(r), ci)
    for bi, r in enumerate(base):
        ci = by_name.get(_case_name_key(r))
        if bi not in p.used_b and ci is not None and _no_conflict(identity(r), identity(cur[ci])):
            p.add(bi, by_name.pop(_case_name_key(r)))


def _match(base, cur):
    """Match baseline rows to current rows in three passes: full identity, then a
    unique and mutual identity-compatible partner (names of other harnesses yield
    partial identities), then the log-file name.

    Returns (pairs, unmatched_base, unmatched_current, duplicates) where duplicates
    maps ("b"|"c", kept index) -> number of later files with the same identity
    (those are ignored; the first in directory order is kept).
    """
    bidx, bdups, ignored_b = _full_index(base)
    cidx, cdups, ignored_c = _full_index(cur)
    p = _Pairs(ignored_b, ignored_c)
    for key, bi in bidx.items():
        if key in cidx:
            p.add(bi, cidx[key])
    _pair_compatible(base, cur, p)
    _pair_by_name(base, cur, p)
    unmatched_b = [i for i in range(len(base)) if i not in p.used_b]
    unmatched_c = [i for i in range(len(cur)) if i not in p.used_c]
    dups = {**{("b", i): n for i, n in bdups.items()}, **{("c", i): n for i, n in cdups.items()}}
    return p.pairs, unmatched_b, unmatched_c, dups


def _compare_row(b, c, threshold):
    src = c if c is not None else b
    row = {
        "case": (c or b)["case"],
        "model": src.get("model"),
        "variant": src.get("variant") or "",
        "run_mode": src.get("run_mode"),
        "batch_size": first(src.get("batch_size"), (b or {}).get("batch_size")),
        "fp": first(src.get("fp"), (b or {}).get("fp")),
        "gpu_num": src.get("gpu_num"),
        "profile": src.get("profile"),
        "baseline": None, "current": None, "ratio": None, "status": None,
        "baseline_case": b["case"] if b else None,
        "current_case": c["case"] if c else None,
        "note": None,
    }
    if b is not None and b.get("ok"):
        row["baseline"] = b["images_per_s"]
    if c is not None and c.get("ok"):
        row["current"] = c["images_per_s"]
    if b is None:
        row["status"] = "new"
        if c is not None and not c.get("ok"):
            row["note"] = _failed(c)
        return row
    if c is None:
        row["status"] = "missing"
        row["note"] = "not in current"
        return row
    if not c.get("ok"):
        row["status"] = "missing"
        row["note"] = "failed in current" + (f": {c['reason']}" if c.get("reason") else "")
        return row
    if not b.get("ok"):
        row["status"] = "improved"
        row["note"] = "baseline failed" + (f": {b['reason']}" if b.get("reason") else "")
        return row
    ratio = c["images_per_s"] / b["images_per_s"]
    row["ratio"] = ratio
    if ratio < 1 - threshold:
        row["status"] = "regressed"
    elif ratio > 1 + threshold:
        row["status"] = "improved"
    else:
        row["status"] = "ok"
    notes = ["CPU profile on one side only"] if is_cpu_profile(b) != is_cpu_profile(c) else []
    if b.get("runtime_env") != c.get("runtime_env"):   # not in the name: matched all the same
        notes.append(f"runtime variables differ: baseline {b.get('runtime_env') or 'none'}, "
                     f"current {c.get('runtime_env') or 'none'}")
    # a figure the analysis flagged (a busy or noisy host) keeps its flag here too
    notes += [f"FLAGGED {side}" for side, r in (("baseline", b), ("current", c)) if r.get("flagged")]
    row["note"] = "; ".join(notes) or None
    return row


def _failed(row):
    """'failed' and the reason as the record says it (its case kept: exception names, shapes)."""
    return "failed" + (f": {row['reason']}" if row.get("reason") else "")


def _check_threshold(threshold):
    threshold = float(threshold)
    if not (0 <= threshold < 1):
        raise ReportError(f"threshold must be in [0, 1): {threshold}")
    return threshold


def compare(baseline_dir, current_dir, threshold=0.05):
    """Match cases of two result directories and compare images/s: compare_rows of their rows."""
    _check_threshold(threshold)
    return compare_rows(load_nonempty(os.fspath(baseline_dir)), load_nonempty(os.fspath(current_dir)),
                        threshold)


def compare_across_stacks(baseline_dir, current_dir, threshold=0.05):
    """compare() with a case's stack left out of its identity (stackless): a baseline of mmseg 0.x
    runs against a current of 1.x runs, or the other way. Returns (rows, ok, note): the note
    names each side's stacks as the records describe them (stacks_note)."""
    _check_threshold(threshold)
    base, cur = (load_nonempty(os.fspath(d)) for d in (baseline_dir, current_dir))
    return (*compare_rows(stackless(base), stackless(cur), threshold),
            "Matched across the stacks (a case's stack is not part of its identity):\n\n"
            + stacks_note(base, cur))


def compare_rows(base, cur, threshold=0.05, notes=None):
    """Match two lists of report rows (segbench.results) and compare images/s.

    Returns (rows, ok).  Each row: case, model, variant, run_mode, batch_size, fp,
    gpu_num, profile, baseline, current (images/s, None when absent or failed), ratio
    (current/baseline), status (ok|regressed|improved|missing|new),
    baseline_case, current_case, note.  ok is False when any case regressed
    (ratio < 1 - threshold) or is missing (absent or failed in current).
    Cases are matched by (model, run_mode, bs, precision, GPUs, variant); a baseline
    from another harness (other log-file names, run_mode DP, ...) matches on
    whatever it yields, then on the log-file name.  ``notes`` maps ("b"|"c", index) to a
    text added to that row's note.
    """
    threshold = _check_threshold(threshold)
    pairs, ub, uc, dups = _match(base, cur)
    notes = notes or {}

    def texts(key):
        side = "baseline" if key[0] == "b" else "current"
        return ([notes[key]] if key in notes else []) + (
            [f"{dups[key]} duplicate {side} file(s) ignored"] if key in dups else [])

    rows = []
    for bi, ci in pairs + [(bi, None) for bi in ub] + [(None, ci) for ci in uc]:
        row = _compare_row(None if bi is None else base[bi], None if ci is None else cur[ci],
                           threshold)
        extra = texts(("b", bi)) + texts(("c", ci))
        if extra:
            row["note"] = "; ".join(([row["note"]] if row["note"] else []) + extra)
        rows.append(row)
    rows.sort(key=lambda r: (r["model"] or "", r["variant"], {"sp": 0, "mp": 1}.get(
        norm_mode(r["run_mode"], r["gpu_num"]), 2), r["gpu_num"] or 0, r["batch_size"] or 0,
        r["fp"] or "", r["case"] or ""))
    ok = not any(r["status"] in ("regressed", "missing") for r in rows)
    return rows, ok


# --------------------------------------------------------------------------- from the history

def split_filters(values):
    """COLUMN=VALUE filters from comma- or repeat-lists.  A comma starts a new filter only
    before a column's name and ``=``: a device_name of several GPUs holds ", "."""
    cut = re.compile(r",\s*(?=(?:%s)=)" % "|".join(history.NAMES))
    return [f.strip() for v in values for f in cut.split(v) if f.strip()]


def _select(db, filters):
    try:
        rows = history.select(db, filters)
    except (OSError, ValueError, sqlite3.Error) as exc:
        raise ReportError(str(exc)) from None
    if not rows:
        raise ReportError(f"no rows in {history.db_path(db)} where {' and '.join(filters)}")
    return rows


def _latest(rows):
    """The latest of the rows (oldest first) of each case, in the order of their first run;
    and {kept index: number of earlier rows of its case}."""
    last, count = {}, {}
    for i, r in enumerate(rows):
        key = identity(r) if None not in identity(r) else ("case", r["case"])
        last[key] = i
        count[key] = count.get(key, 0) + 1
    kept = sorted((i, count[k] - 1) for k, i in last.items())
    return [rows[i] for i, _ in kept], {j: n for j, (_, n) in enumerate(kept) if n}


def _described(side, label, hrows, cases):
    """One line on a selection: its runs, cases, torch versions and devices."""
    torches = ", ".join(sorted({str(h["torch"]) for h in hrows}))
    devices = sorted({str(h["device_name"]) for h in hrows})
    several = " (several devices: narrow it with --where device_name=...)" if len(devices) > 1 else ""
    return (f"- {side} ({label}): {len(hrows)} run(s) of {cases} case(s); torch {torches}; "
            f"on {'; '.join(devices)}{several}")


def compare_history(db, baseline, current, where=(), threshold=0.05):
    """Compare two selections of the results history (segbench.history): ``baseline`` and
    ``current`` lists of COLUMN=VALUE filters (split_filters), ``where`` filters for both.
    Where a selection has several rows of one case, the latest counts.  Returns (rows, ok,
    note): compare_rows' result and a Markdown paragraph saying what was selected."""
    threshold = _check_threshold(threshold)
    where = split_filters(where)
    sides, notes, lines = [], {}, []
    for side, key, filters in (("baseline", "b", baseline), ("current", "c", current)):
        own = split_filters(filters)
        hrows = _select(db, [*where, *own])
        rows, earlier = _latest(history_rows(hrows, history.db_path(db)))
        notes.update({(key, i): f"{n} earlier {side} run(s) ignored: the latest counts"
                      for i, n in earlier.items()})
        sides.append(rows)
        lines.append(_described(side, ", ".join(own), hrows, len(rows)))
    common = f" where {' and '.join(where)}" if where else ""
    note = (f"From `{history.db_path(db)}`{common}; where a selection has several runs of one "
            f"case, the latest counts.\n\n" + "\n".join(lines))
    return (*compare_rows(*sides, threshold, notes), note)


def compare_markdown(rows, ok, threshold=0.05, baseline_label="baseline",
                     current_label="current", note=None):
    """A Markdown report of compare()'s result, with the labels in the headers and ``note``
    (Markdown) under the verdict."""
    headers = ["case", "mode", "bs", "precision", units(rows), f"{baseline_label} images/s",
               f"{current_label} images/s", f"{current_label}/{baseline_label}", "change",
               "status"]
    table = []
    for r in rows:
        case = r["case"]
        if r["baseline_case"] and r["current_case"] and r["baseline_case"] != r["current_case"]:
            case = f"{r['current_case']} (= {r['baseline_case']})"
        if r["variant"] and not str(r["case"]).removesuffix(legacy.NAME_TOKEN).endswith("_" + r["variant"]):
            case += f" [{r['variant']}]"  # a variant the sidecar records and the name does not
        status = r["status"] + (f" ({r['note']})" if r.get("note") else "")
        if r["status"] in ("regressed", "missing"):
            status = f"**{status}**"
        table.append([
            case, norm_mode(r["run_mode"], r["gpu_num"]) or "?",
            r["batch_size"] if r["batch_size"] is not None else "?", r["fp"] or "?",
            r["gpu_num"] if r["gpu_num"] is not None else "?",
            fmt_rate(r["baseline"]), fmt_rate(r["current"]), fmt(r["ratio"], ".3f"),
            "-" if r["ratio"] is None else f"{100 * (r['ratio'] - 1):+.1f}%", status,
        ])
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    verdict = "PASS" if ok else "FAIL"
    return (f"## {current_label} vs {baseline_label}: training throughput\n\n"
            f"{verdict}: {len(rows)} case(s): {summary}; threshold ±{100 * threshold:g}%\n\n"
            + (f"{note}\n\n" if note else "") + md_table(headers, table, "llrlrrrrrl") + "\n")


# --------------------------------------------------------------------------- the two stacks

STACK_SHORT = {legacy.STACKS[0]: "1.x", legacy.LEGACY: "0.x"}   # mmseg 1.x (default), mmseg 0.x


def stack_of(row):
    """The stack a row ran on: its variant's stack token, else the default stack (mmseg1)."""
    return variant_tokens(row.get("variant")).get("stack") or legacy.STACKS[0]


def stackless(rows):
    """Copies of the rows whose variant has no stack token: matched across the stacks."""
    out = []
    for r in rows:
        tokens = variant_tokens(r.get("variant"))
        tokens.pop("stack", None)
        out.append(dict(r, variant=join_variant(tokens)))
    return out


def _env(row):
    """The environment the row's sidecar records (its case record's ``env``); {} where none."""
    source = str(row.get("source") or "")
    env = read_sidecar(source, row.get("case")).get("env") if os.path.isfile(source) else None
    return env if isinstance(env, dict) else {}


def _mmcv(env):
    """(build, version) of the mmcv a record names: build 'full' (compiled ops) or 'lite'."""
    flavour = env.get("mmcv_flavour")
    return (None if not flavour else "full" if flavour == "full" else "lite",
            first(env.get("mmcv"), env.get("mmcv-lite"), env.get("mmcv_full")))


def mmcv_build(env):
    """'lite 2.1.0', 'full 1.7.2': mmcv's build and version as recorded; None where neither is."""
    return " ".join(str(x) for x in _mmcv(env) if x) or None


def _stack_text(envs):
    """What the records say a stack is, e.g. 'mmseg 0.30.0 + mmcv 1.7.2 (lite), torch 2.14.1',
    one text per set of versions seen."""
    seen = []
    for e in filter(None, envs):
        build, version = _mmcv(e)
        seen.append(f"mmseg {e.get('mmsegmentation') or '?'} + mmcv {version or '?'}"
                    + (f" ({build})" if build else "") + f", torch {e.get('torch') or '?'}")
    return "; ".join(dict.fromkeys(seen)) or "not recorded"


def stacks_note(base, cur, base_label="baseline", current_label="current"):
    """A Markdown line per side naming the stacks its rows ran on, from their records."""
    lines = []
    for label, rows in ((base_label, base), (current_label, cur)):
        parts = [f"`{s}` = {_stack_text([_env(r) for r in rows if stack_of(r) == s])}"
                 for s in dict.fromkeys(stack_of(r) for r in rows)]
        lines.append(f"- {label}: {'; '.join(parts)}")
    return "\n".join(lines)


def _stack_row(one, zero, notes):
    """A row of compare_stacks: the 1.x and the 0.x report rows (either None when unpaired)."""
    sides = list(zip((one, zero), STACK_SHORT.values()))
    figures = [r["images_per_s"] if r is not None and r.get("ok") else None for r in (one, zero)]
    flags = [f"FLAGGED {short}" for r, short in sides if r is not None and r.get("flagged")]
    flags += [f"unpaired: no {short} run" if r is None else f"{short} {_failed(r)}"
              for r, short in sides if r is None or not r.get("ok")]
    if zero is not None and zero.get("peak_mem_mb") is not None and not zero.get("peak_from"):
        # the mmcv 1.x hook reset the peak after its FLOP probe from ee05b67 on (its meta says so)
        flags.append("0.x peak includes the FLOP probe's cuDNN search (a record from before the "
                     "hook reset it): not comparable")
    cpu = {is_cpu_profile(r) for r in (one, zero) if r is not None}
    if True in cpu:   # CPU processes where GPUs would be: no GPU throughput
        flags.append("CPU profile" if cpu == {True} else "CPU profile on one side only")
    return {"case": (one or zero)["case"], "one": one, "zero": zero, "images_per_s": figures,
            "peak_mem_mb": [None if r is None else r.get("peak_mem_mb") for r in (one, zero)],
            "mmcv": [None if r is None else mmcv_build(_env(r)) for r in (one, zero)],
            "ratio": figures[1] / figures[0] if None not in figures else None,
            "flags": flags + notes}


def compare_stacks(dirs):
    """Each mmseg 0.x case of the directories beside the mmseg 1.x case of the same identity but
    the stack (model, mode, bs, precision, GPUs and every other token), matched as compare_rows
    matches. Returns (rows, note): rows (case, one, zero: the 1.x and 0.x report rows or None,
    images_per_s, peak_mem_mb, mmcv: [1.x, 0.x], ratio: 0.x / 1.x images/s, flags) and a Markdown
    paragraph naming each stack as its records describe it."""
    rows = [r for d in dirs for r in load_nonempty(os.fspath(d))]
    one = [r for r in rows if stack_of(r) == legacy.STACKS[0]]
    zero = [r for r in rows if stack_of(r) == legacy.LEGACY]
    pairs, ub, uc, dups = _match(stackless(one), stackless(zero))

    def noted(key):
        short = STACK_SHORT[legacy.STACKS[0] if key[0] == "b" else legacy.LEGACY]
        return [f"{dups[key]} duplicate {short} file(s) ignored"] if key in dups else []

    out = [_stack_row(None if bi is None else one[bi], None if ci is None else zero[ci],
                      noted(("b", bi)) + noted(("c", ci)))
           for bi, ci in pairs + [(bi, None) for bi in ub] + [(None, ci) for ci in uc]]
    out.sort(key=lambda r: (sort_key(stackless([r["one"] or r["zero"]])[0]), r["one"] is None))
    note = "\n".join(f"- {STACK_SHORT[s]} = `{s}`: {_stack_text([_env(r) for r in side])} "
                     f"({len(side)} case(s))" for s, side in ((legacy.STACKS[0], one), (legacy.LEGACY, zero)))
    return out, note


def stacks_markdown(rows, note=None):
    """A Markdown report of compare_stacks' result."""
    headers = ["case", "images/s 1.x", "images/s 0.x", "0.x / 1.x", "peak MB per GPU 1.x",
               "peak MB per GPU 0.x", "mmcv 1.x", "mmcv 0.x", "flags"]
    table = []
    for r in rows:
        case = r["case"]
        if r["one"] and r["zero"] and r["zero"]["case"] != r["one"]["case"] + legacy.NAME_TOKEN:
            case += f" (= {r['zero']['case']})"
        table.append([case, *map(fmt_rate, r["images_per_s"]), fmt(r["ratio"], ".3f"),
                      *(fmt(m, ",.0f") for m in r["peak_mem_mb"]), *(m or "-" for m in r["mmcv"]),
                      "; ".join(f"**{f}**" if f.startswith("FLAGGED") else f for f in r["flags"]) or "-"])
    paired = sum(1 for r in rows if r["one"] and r["zero"])
    return ("## mmseg 0.x vs mmseg 1.x: training throughput per case\n\n"
            f"{paired} case(s) on both stacks, {len(rows) - paired} unpaired; 0.x / 1.x = images/s "
            "on mmseg 0.x over images/s on mmseg 1.x; peak MB per GPU: the highest rank's peak\n\n"
            + (f"{note}\n\n" if note else "") + md_table(headers, table, "lrrrrrlll") + "\n")
