"""Summaries and comparisons of segbench speed files.

Reads the contract's speed files (one JSON object with exactly the 10 keys
below, see docs/FORMATS.md) and, when present, the ``<case>_stats.json``
sidecar beside each one.  It does not import ``segbench.analysis``: the
files are the interface.

A case is identified by model, run mode, batch size, precision, GPUs and its
*variant*: the tokens the case-name grammar adds after the GPU count
(``fastscnn_sp_bs2_fp32_1_crop128x256_li2`` is the variant ``crop128x256_li2``
of ``fastscnn_sp_bs2_fp32_1``), taken from the sidecar's recorded settings
where it has them, else from the name.  A variant is never matched, compared
or scaled against another; the tables show it as ``model [variant]``.

    python -m segbench.report report DIR [--out OUTDIR]
    python -m segbench.report compare BASELINE_DIR CURRENT_DIR [--threshold 5%]
        [--baseline-label Paddle] [--current-label PyTorch] [--markdown FILE]

Exit codes: 0 fine, 1 compare found a regressed or missing case,
2 bad arguments / unreadable input / no speed files (one line on stderr).

Python API
----------
load_cases(dir)                 -> list of flat dicts, one per speed file
parse_case_name(name)           -> model/run_mode/batch_size/fp/gpu_num/tuned/variant of a name
identity(row)                   -> the tuple rows are matched and scaled by
scaling(cases)                  -> list (same order) of mp scaling efficiency or None
write_report(dir_in, dir_out)   -> {"md": path, "csv": path, "png": path}
build_chart(cases, note)        -> the summary.png matplotlib Figure (for inspection)
compare(base_dir, cur_dir, t)   -> (rows, ok)
compare_markdown(rows, ...)     -> Markdown text of a compare result
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import re
import sys

from segbench import configs, env, tuned

SPEED_KEYS = frozenset({
    "log_file", "model_name", "mission_name", "direction_id", "run_mode", "index",
    "gpu_num", "FINAL_RESULT", "JOB_FAIL_FLAG", "UNIT",
})

# Row keys of load_cases(), in CSV column order (scaling_efficiency is added by
# write_report right after images_per_s_per_gpu).
CASE_KEYS = (
    "case", "model", "variant", "run_mode", "batch_size", "fp", "gpu_num", "images_per_s",
    "images_per_s_per_gpu", "ok", "reason", "flagged", "warnings", "cv", "peak_mem_mb", "tflops",
    "repeats",
    "device", "profile", "source",
)
CSV_COLUMNS = CASE_KEYS[:9] + ("scaling_efficiency", "scaling_note") + CASE_KEYS[9:]

STATUSES = ("ok", "regressed", "improved", "missing", "new")
CHART_DPI = 110
FLAG_COLOUR = "#d35400"
# mp images/s cannot exceed its process count times one process's: an efficiency above 1 says the
# sp figure is too low (or the mp one too high). 5% above 1 is let pass as the noise of two
# separate runs; above that the figure is marked not credible.
SCALING_CREDIBLE_MAX = 1.05

_MAX_SPEED_FILE_BYTES = 64 * 1024  # a speed file is ~250 bytes; logs are skipped unread
_STATS_SUFFIX = "_stats.json"

# ${MODEL}_${RUN_MODE}_bs${BS}_${FP}_${NGPU}[_${TOKEN}]...; greedy model => parsed from the right
_SEGBENCH_NAME = re.compile(
    r"^(?P<model>.+)_(?P<mode>[A-Za-z0-9]+)_bs(?P<bs>\d+)_(?P<fp>[A-Za-z0-9]+)_(?P<ngpu>\d+)"
    r"(?:_(?P<tail>.+))?$")
# The variant tokens of docs/names.md, in the order a name carries them: a setting that changes
# the figure and is not the default. A case's variant is the "_"-joined tokens ("" for the seed's
# settings); a variant is never matched, compared or scaled against another.
VARIANT_KINDS = ("tuned", "crop", "li", "nobench", "cpus", "prof")
DEFAULT_LOG_INTERVAL = 10


def _alternatives(words):
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_SWITCH = f"(?:{_alternatives(tuned.SWITCHES)})"
_TOKEN_PATTERNS = {
    "tuned": (rf"tuned(?:-{_SWITCH}(?:\+{_SWITCH})*)?(?:-cm(?:{_alternatives(tuned.COMPILE_MODES)}))?"
              rf"(?:-cs(?:{_alternatives(tuned.COMPILE_SCOPES)}))?"),
    "crop": r"crop\d+x\d+",
    "li": r"li\d+",
    "nobench": r"nobench",
    "cpus": r"cpus\d+(?:-\d+)?(?:\.\d+(?:-\d+)?)*",
    "prof": r"prof\d+-\d+",
}
_VARIANT_TAIL = re.compile("".join(f"(?:_(?P<{k}>{_TOKEN_PATTERNS[k]}))?" for k in VARIANT_KINDS))
_FP_TOKEN = re.compile(r"^(fp\d+|bf16|tf32|amp\w*|int8|o[0-3]|pure_?fp16|mixed)$", re.I)
_BS_TOKEN = re.compile(r"^bs(\d+)$", re.I)
_NC_TOKEN = re.compile(r"^N(\d+)C(\d+)$", re.I)
# a model_name that carries a batch-size suffix, Paddle style: fastscnn_bs2_fp32_DP
_MODEL_WITH_BS = re.compile(r"^(?P<model>.+?)_bs(?P<bs>\d+)(?:_(?P<rest>.*))?$", re.I)


class ReportError(Exception):
    """A user-facing problem (missing directory, no speed files, bad option)."""


# --------------------------------------------------------------------------- helpers

def _num(value):
    """float(value) when it is a finite number (or numeric string), else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value):
    f = _num(value)
    if f is None or f != int(f):
        return None
    return int(f)


def _get(d, dotted):
    """d['a']['b'] for 'a.b', None where any level is missing or not a dict."""
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _first(*values):
    for v in values:
        if v is not None and v != "":
            return v
    return None


def _str_or_none(value):
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def variant_tokens(tail):
    """A name's token tail (after ngpu, without the leading ``_``) -> {kind: token}. A tail that
    is not names.md's grammar (a token this version does not know) is kept whole under ``other``:
    it is still a variant of its own."""
    if not tail:
        return {}
    m = _VARIANT_TAIL.fullmatch("_" + tail)
    if m is None:
        return {"other": tail}
    return {k: v for k, v in m.groupdict().items() if v}


def join_variant(tokens):
    """{kind: token} -> the variant string, tokens in names.md's order ("" when none)."""
    return "_".join(tokens[k] for k in VARIANT_KINDS + ("other",) if tokens.get(k))


def parse_case_name(name):
    """Pull model/run_mode/bs/fp/gpus and the variant out of a log-file name.

    segbench names (``ocrnet_hrnetw48_mp_bs2_fp32_8``, ``fastscnn_sp_bs2_fp32_1_crop128x256_li2``)
    are parsed from the right; ``variant`` is the token tail ("" for the seed's settings) and
    ``tuned`` True when it holds a tuned token.  Other names (Paddle's
    ``seg_fastscnn_bs2_fp32_SingleP_DP_N1C1_log``) yield whatever tokens they have: ``bsN``, a
    precision token, ``NxCy``; their variant is "" (the seed's settings).  Unknown fields are None.
    """
    out = {"model": None, "run_mode": None, "batch_size": None, "fp": None, "gpu_num": None,
           "tuned": None, "variant": ""}
    if not name:
        return out
    base = os.path.basename(str(name).rstrip("/"))
    for suffix in ("_speed", ".log", "_log"):
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
    m = _SEGBENCH_NAME.match(base)
    tokens = variant_tokens(m and m["tail"])
    if m and ("other" not in tokens or m["mode"] in ("sp", "mp")):
        out.update(model=m["model"], run_mode=m["mode"], batch_size=int(m["bs"]),
                   fp=m["fp"], gpu_num=int(m["ngpu"]), tuned=True if "tuned" in tokens else None,
                   variant=join_variant(tokens))
        return out
    parts = base.split("_")
    for i, tok in enumerate(parts):
        bs = _BS_TOKEN.match(tok)
        if bs and out["batch_size"] is None:
            out["batch_size"] = int(bs.group(1))
            if i > 0:
                out["model"] = "_".join(parts[:i])
        elif _FP_TOKEN.match(tok) and out["fp"] is None:
            out["fp"] = tok
        nc = _NC_TOKEN.match(tok)
        if nc:
            out["gpu_num"] = int(nc.group(1)) * int(nc.group(2))
    return out


def _tuned_token(switches, compile_mode=None, compile_scope=None, device=None):
    """names.md's tuned token for recorded switches. The sidecar records the compile mode that
    ran: the mode ``auto`` resolves to on that device counts as ``auto`` (no ``-cm``)."""
    if not switches:
        return ""
    names = [s for s in tuned.SWITCHES if s in switches] + sorted(
        str(s) for s in switches if s not in tuned.SWITCHES)
    tok = "tuned" if tuple(names) == tuned.DEFAULT_SWITCHES else "tuned-" + "+".join(names)
    if "compile" in names:
        if compile_mode not in (None, "auto", tuned.resolve_compile_mode("auto", device)):
            tok += f"-cm{compile_mode}"
        if compile_scope not in (None, "modules"):
            tok += f"-cs{compile_scope}"
    return tok


def recorded_tokens(stats, model):
    """{kind: token, "" for the default} for each names.md setting the sidecar records; the
    kinds it does not record (older sidecars) are absent, and the name decides them."""
    out = {}
    if isinstance(stats.get("tuned"), list):
        out["tuned"] = _tuned_token(stats["tuned"], stats.get("compile_mode"),
                                    stats.get("compile_scope"), stats.get("device"))
    crop = stats.get("crop")
    if isinstance(crop, list) and len(crop) == 2 and all(_int(x) for x in crop):
        crop = (_int(crop[0]), _int(crop[1]))
        out["crop"] = "" if crop == configs.MODELS.get(model) else f"crop{crop[0]}x{crop[1]}"
    if _int(stats.get("log_interval")):
        li = _int(stats["log_interval"])
        out["li"] = "" if li == DEFAULT_LOG_INTERVAL else f"li{li}"
    if isinstance(stats.get("cudnn_benchmark"), bool):
        out["nobench"] = "" if stats["cudnn_benchmark"] else "nobench"
    cpus = stats.get("cpu_affinity", False)
    if cpus is None or (isinstance(cpus, list) and cpus and all(_int(c) is not None for c in cpus)):
        out["cpus"] = "cpus" + env.cpu_ranges(map(_int, cpus)).replace(",", ".") if cpus else ""
    window = stats.get("profile_window", False)
    if window is None or (isinstance(window, list) and len(window) == 2
                          and all(_int(x) for x in window)):
        out["prof"] = f"prof{window[0]}-{window[1]}" if window else ""
    return out


def _norm_mode(run_mode, gpu_num):
    """segbench's sp/mp; another harness' mode (DP, ...) maps by GPU count."""
    mode = (run_mode or "").strip().lower()
    if mode in ("sp", "mp"):
        return mode
    if gpu_num is not None:
        return "sp" if gpu_num == 1 else "mp"
    return mode or None


def identity(row):
    """(model, run_mode, batch_size, fp, gpu_num, variant), normalised for matching; fields but
    the variant may be None.  The variant is always known ("" for the seed's settings)."""
    model = row.get("model")
    fp = row.get("fp")
    return (
        model.lower() if isinstance(model, str) else None,
        _norm_mode(row.get("run_mode"), row.get("gpu_num")),
        row.get("batch_size"),
        fp.lower() if isinstance(fp, str) else None,
        row.get("gpu_num"),
        row.get("variant") or "",
    )


def case_label(row):
    """The model and its variant, as the tables and the chart show a case's model."""
    model = row.get("model") or "(unknown model)"
    return f"{model} [{row['variant']}]" if row.get("variant") else model


# --------------------------------------------------------------------------- loading

def _candidate_files(directory):
    """Files in directory, then in its direct subdirectories (sorted, no deeper)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise ReportError(f"cannot read directory {directory}: {exc.strerror or exc}") from None
    files, subdirs = [], []
    for e in entries:
        try:
            if e.is_file():
                files.append(e.path)
            elif e.is_dir() and not e.name.startswith("."):
                subdirs.append(e.path)
        except OSError:
            continue
    for d in subdirs:
        try:
            files.extend(sorted(e.path for e in os.scandir(d) if e.is_file()))
        except OSError:
            continue
    return files


def _read_speed_file(path):
    """The speed record at path, or None when the file is not one."""
    if path.endswith(_STATS_SUFFIX):
        return None
    try:
        if os.path.getsize(path) > _MAX_SPEED_FILE_BYTES:
            return None
        with open(path, "rb") as fh:
            raw = fh.read()
        obj = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or not SPEED_KEYS.issubset(obj):
        return None
    return obj


def _read_sidecar(speed_path, log_file):
    folder = os.path.dirname(speed_path)
    name = os.path.basename(speed_path)
    candidates = []
    if name.endswith("_speed"):
        candidates.append(name[: -len("_speed")] + _STATS_SUFFIX)
    candidates.append(name + _STATS_SUFFIX)
    if log_file:
        candidates.append(os.path.basename(str(log_file).rstrip("/")) + _STATS_SUFFIX)
    for cand in dict.fromkeys(candidates):
        p = os.path.join(folder, cand)
        if not os.path.isfile(p):
            continue
        try:
            with open(p, encoding="utf-8") as fh:
                obj = json.load(fh)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return {}
        return obj if isinstance(obj, dict) else {}
    return {}


def _model_from_name(model_name):
    """model_name, minus a Paddle-style ``_bsN_fp.._MODE`` tail; also returns bs/fp found there."""
    model_name = _str_or_none(model_name)
    if model_name is None:
        return None, None, None
    m = _MODEL_WITH_BS.match(model_name)
    if not m:
        return model_name, None, None
    fp = None
    for tok in (m["rest"] or "").split("_"):
        if _FP_TOKEN.match(tok):
            fp = tok
            break
    return m["model"], int(m["bs"]), fp


def _build_row(path, speed, stats):
    log_file = _str_or_none(speed.get("log_file"))
    from_name = parse_case_name(log_file)
    if not any(from_name.values()):
        from_name = parse_case_name(os.path.basename(path))
    model, bs_from_model, fp_from_model = _model_from_name(speed.get("model_name"))

    gpu_num = _first(_int(speed.get("gpu_num")), _int(stats.get("gpu_num")),
                     _int(_get(stats, "case.gpu_num")), from_name["gpu_num"])
    batch_size = _first(_int(stats.get("batch_size")), _int(_get(stats, "case.batch_size")),
                        from_name["batch_size"], bs_from_model)
    fp = _first(_str_or_none(stats.get("fp_item")), _str_or_none(_get(stats, "case.fp_item")),
                from_name["fp"], fp_from_model)
    run_mode = _first(_str_or_none(speed.get("run_mode")), from_name["run_mode"])
    model = _first(model, from_name["model"])
    variant = join_variant({**variant_tokens(from_name["variant"]),
                            **recorded_tokens(stats, model)})

    images = _num(speed.get("FINAL_RESULT"))
    flag = _int(speed.get("JOB_FAIL_FLAG"))
    # JOB_FAIL_FLAG 0 with no positive FINAL_RESULT breaks the contract: not ok either
    ok = flag == 0 and images is not None and images > 0
    reason = _str_or_none(_first(stats.get("reason"), _get(stats, "result.reason")))
    if not ok and reason is None and flag == 0:
        reason = f"bad FINAL_RESULT {speed.get('FINAL_RESULT')!r} with JOB_FAIL_FLAG 0"

    per_gpu = images / gpu_num if images is not None and gpu_num else None
    warnings = [str(w) for w in stats.get("warnings") or () if _str_or_none(w)] \
        if isinstance(stats.get("warnings"), list) else []
    flagged = stats.get("flagged")

    mem = _get(stats, "memory.peak_mb_per_rank")
    if isinstance(mem, (list, tuple)):
        mems = [m for m in (_num(x) for x in mem) if m is not None]
        peak = max(mems) if mems else None
    else:
        peak = _num(mem)

    reps = stats.get("repeats")
    runs = None
    if isinstance(reps, dict) and isinstance(reps.get("runs"), list):
        vals = [_num(x) for x in reps["runs"]]
        runs = [v for v in vals if v is not None] or None
    elif isinstance(reps, list):
        vals = [_num(x) for x in reps]
        runs = [v for v in vals if v is not None] or None

    return {
        "case": log_file or os.path.basename(path),
        "model": model,
        "variant": variant,
        "run_mode": run_mode,
        "batch_size": batch_size,
        "fp": fp,
        "gpu_num": gpu_num,
        "images_per_s": images,
        "images_per_s_per_gpu": per_gpu,
        "ok": ok,
        "reason": reason,
        # the analysis's signs of a busy or noisy host (older sidecars: no ``flagged`` key)
        "flagged": flagged if isinstance(flagged, bool) else bool(warnings),
        "warnings": warnings,
        "cv": _num(_get(stats, "per_iter.cv")),
        "peak_mem_mb": peak,
        "tflops": _num(_get(stats, "flops.tflops_achieved")),
        "repeats": runs,
        "device": _str_or_none(_first(stats.get("device"), _get(stats, "case.device"))),
        "profile": _str_or_none(_first(stats.get("profile"), _get(stats, "case.profile"))),
        "source": path,
    }


def load_cases(directory):
    """One flat dict per speed file in directory (and its direct subdirectories).

    Keys: see CASE_KEYS.  Files that are not speed files are skipped.  Raises
    ReportError when the directory cannot be read (not when it holds no
    speed files: that is an empty list).
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ReportError(f"not a directory: {directory}")
    rows = []
    for path in _candidate_files(directory):
        speed = _read_speed_file(path)
        if speed is None:
            continue
        rows.append(_build_row(path, speed, _read_sidecar(path, speed.get("log_file"))))
    return rows


def _load_nonempty(directory):
    rows = load_cases(directory)
    if not rows:
        raise ReportError(f"no speed files in {directory}")
    return rows


def is_cpu_profile(row):
    return (row.get("profile") or "").lower() == "cpu"


# --------------------------------------------------------------------------- scaling

def scaling(cases):
    """Scaling efficiency per case, same order as cases.

    For an mp row: mp images/s / (gpu_num x images/s of the ok sp row with the
    same model, variant, batch size and precision, and on the same side of the CPU
    profile).  None for sp rows, failed rows, and mp rows without such an sp row.
    """
    sp = {}
    for row in cases:
        model, mode, bs, fp, gpus, variant = identity(row)
        if (mode == "sp" and row.get("ok") and (row.get("images_per_s") or 0) > 0
                and None not in (model, bs, fp)):
            sp.setdefault((model, variant, bs, fp, is_cpu_profile(row)),
                          row["images_per_s"] / (gpus or 1))
    out = []
    for row in cases:
        model, mode, bs, fp, gpus, variant = identity(row)
        base = sp.get((model, variant, bs, fp, is_cpu_profile(row)))
        if mode != "mp" or not row.get("ok") or base is None or not gpus:
            out.append(None)
        else:
            out.append(row["images_per_s"] / (gpus * base))
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


def scaling_note(row, eff):
    """Why a scaling efficiency above SCALING_CREDIBLE_MAX is not credible; None when it is."""
    if eff is None or eff <= SCALING_CREDIBLE_MAX:
        return None
    one = unit(row)
    return (f"not credible (above {SCALING_CREDIBLE_MAX:g}): the 1-{one} run was slower than each "
            f"{one} of the {row.get('gpu_num')}-{one} run: a busy host or a different setting "
            f"during the sp run")


# --------------------------------------------------------------------------- formatting

def _fmt_rate(v):
    if v is None:
        return "-"
    if abs(v) >= 1 or v == 0:
        return f"{v:,.2f}"
    return f"{v:.3g}"


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _md_cell(v):
    s = "-" if v is None else str(v)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(headers, rows, align):
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _sort_key(row):
    model, mode, bs, fp, gpus, variant = identity(row)
    return (model or "", variant, is_cpu_profile(row), {"sp": 0, "mp": 1}.get(mode, 2),
            gpus or 0, bs or 0, fp or "", row.get("case") or "")


def _failed_text(row):
    return "FAILED: " + row["reason"] if row.get("reason") else "FAILED"


def _status_text(row):
    s = "ok" if row.get("ok") else _failed_text(row)
    if is_cpu_profile(row):
        s += " (CPU profile)"
    return s


def _model_key(row):
    """A table (and a chart colour) per model, variant and side of the CPU profile."""
    return case_label(row) + (" (CPU profile)" if is_cpu_profile(row) else "")


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
            _fmt(c.get("batch_size"), "d") if c.get("batch_size") is not None else "?",
            c.get("fp") or "?",
            _fmt(c.get("gpu_num"), "d") if c.get("gpu_num") is not None else "?",
            _fmt_rate(c.get("images_per_s")) if ok else "-",
            _fmt_rate(c.get("images_per_s_per_gpu")) if ok else "-",
            _fmt(eff[i], ".2f") + (" (not credible)" if scaling_note(c, eff[i]) else ""),
            _fmt(None if c.get("cv") is None else 100 * c["cv"], ".1f"),
            _fmt(c.get("peak_mem_mb"), ",.0f"),
            _fmt(c.get("tflops"), ".2f"),
            _status_text(c),
            "**FLAGGED**" if c.get("flagged") else "-",
        ])
    return table


def _md_notes(rows, effs):
    """Under a table: each flagged row's warnings and each not-credible scaling figure."""
    flagged = [c for c in rows if c.get("flagged")]
    out = ["", f"> **FLAGGED:** {FLAG_TEXT}:"] if flagged else []
    for c in flagged:
        for w in c.get("warnings") or ["flagged (the sidecar lists no warning)"]:
            out.append(f"> - `{c['case']}`: {_md_cell(w)}")
    odd = [(c, e) for c, e in zip(rows, effs) if scaling_note(c, e)]
    if odd:
        out += ["", "> **Scaling efficiency above 1:**"]
        out += [f"> - `{c['case']}`: {e:.2f} is {scaling_note(c, e)}." for c, e in odd]
    return out


def summary_markdown(cases, source_dir=None, generated=None):
    """The summary.md text for cases (a list from load_cases)."""
    generated = generated or _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    eff = scaling(cases)
    order = sorted(range(len(cases)), key=lambda i: _sort_key(cases[i]))
    n_fail = sum(1 for c in cases if not c.get("ok"))
    n_flag = sum(1 for c in cases if c.get("flagged"))
    lines = ["# segbench training throughput", ""]
    src = f" from `{source_dir}`" if source_dir else ""
    lines.append(f"Generated {generated}{src}: {len(cases)} case(s), {n_fail} failed, "
                 f"{n_flag} flagged.")
    lines.append("")
    every = units(cases)
    lines.append(f"images/s = training images per second over all {every} (FINAL_RESULT); "
                 f"scaling eff. = mp images/s / ({every} x sp images/s), above "
                 f"{SCALING_CREDIBLE_MAX:g} not credible; "
                 "CV % = per-iteration coefficient of variation; "
                 f"flag = FLAGGED when {FLAG_TEXT}.")
    models = list(dict.fromkeys(_model_key(cases[i]) for i in order))
    align = "lrlrrrrrrrll"
    for model in models:
        idx = [i for i in order if _model_key(cases[i]) == model]
        rows = [cases[i] for i in idx]
        headers = ["mode", "bs", "precision", units(rows), "images/s",
                   f"images/s/{units(rows, plural=False)}", "scaling eff.", "CV %",
                   "peak mem MB", "TFLOP/s", "status", "flag"]
        lines += ["", f"## {model}", "", _md_table(headers, _md_model_table(cases, idx, eff), align)]
        lines += _md_notes(rows, [eff[i] for i in idx])
        if any(is_cpu_profile(c) for c in rows):
            lines += ["", "> **CPU profile:** rows marked *(CPU profile)* ran with "
                          "`profile = cpu` on the CPU, one CPU process where a GPU would be. "
                          "They are not GPU throughput; do not compare them with GPU rows."]
    return "\n".join(lines) + "\n"


def _write_csv(path, cases, eff):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for c, e in zip(cases, eff):
            rec = dict(c, scaling_efficiency=e, scaling_note=scaling_note(c, e))
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


# --------------------------------------------------------------------------- chart

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


def build_chart(cases, title_note=None):
    """The matplotlib Figure (Agg) of write_chart: horizontal bars of images/s per case,
    coloured by model, min-max error bars from repeats, failed cases as a hatched stub
    labelled FAILED, value labels fitted inside the axes.  Caller closes it."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.lines import Line2D

    eff = scaling(cases)
    order = sorted(range(len(cases)), key=lambda i: _sort_key(cases[i]))
    models = list(dict.fromkeys(_model_key(cases[i]) for i in order))
    palette = plt.get_cmap("tab10").colors
    colour = {m: palette[k % len(palette)] for k, m in enumerate(models)}

    # y positions, with a gap between models
    ys, y, prev = [], 0.0, None
    for i in order:
        m = _model_key(cases[i])
        if prev is not None and m != prev:
            y += 0.6
        ys.append(y)
        y += 1.0
        prev = m
    n = len(order)
    labels = [_bar_label(cases[i]) for i in order]

    vmax = 0.0
    for i in order:
        c = cases[i]
        if c.get("ok"):
            vmax = max(vmax, c["images_per_s"], max(c.get("repeats") or [0]))
    vmax = vmax or 1.0

    longest = max((len(s) for s in labels), default=10)
    height = min(0.42 * (y if n else 1) + 2.2, 300.0)
    width = max(9.0, min(7.0 + 0.085 * longest, 24.0))
    fig, ax = plt.subplots(figsize=(width, height), dpi=CHART_DPI, layout="constrained")

    has_err = has_fail = has_cpu = False
    value_texts = []
    fail_w = vmax * 0.02
    for y_i, i in zip(ys, order):
        c = cases[i]
        col = colour[_model_key(c)]
        if not c.get("ok"):
            has_fail = True
            ax.add_patch(Rectangle((0, y_i - 0.35), fail_w, 0.7, facecolor="white",
                                   edgecolor="#c0392b", hatch="xxx", linewidth=1.0))
            value_texts.append(ax.annotate(
                _failed_text(c), (fail_w, y_i), xytext=(5, 0),
                textcoords="offset points", va="center", ha="left", fontsize=9,
                color="#c0392b", fontweight="bold"))
            continue
        v = c["images_per_s"]
        cpu = is_cpu_profile(c)
        has_cpu |= cpu
        ax.barh(y_i, v, height=0.7, color=col, alpha=0.45 if cpu else 0.9,
                hatch="..." if cpu else None, edgecolor=col if cpu else "none")
        end = v
        runs = c.get("repeats")
        if runs and len(runs) > 1:
            lo, hi = min(runs), max(runs)
            ax.errorbar(v, y_i, xerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="none",
                        ecolor="#222222", elinewidth=1.2, capsize=4, capthick=1.2)
            end = max(v, hi)
            has_err = True
        text = _fmt_rate(v)
        if eff[i] is not None:
            text += f"  (scaling {eff[i]:.2f}" + (", not credible)" if scaling_note(c, eff[i])
                                                  else ")")
        if runs and len(runs) > 1:
            text += f"  [n={len(runs)}]"
        value_texts.append(ax.annotate(text, (end, y_i), xytext=(5, 0),
                                       textcoords="offset points", va="center", ha="left",
                                       fontsize=9))

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

    handles = [Patch(facecolor=colour[m], label=m) for m in models]
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
    # widen the x range until every value label ends inside the axes
    for _ in range(3):
        fig.canvas.draw()
        right = max((t.get_window_extent().x1 for t in value_texts), default=0.0)
        ax_right = ax.get_window_extent().x1
        if right <= ax_right - 4:
            break
        x0, x1 = ax.get_xlim()
        inv = ax.transData.inverted()
        need = inv.transform((right + 8, 0))[0]
        ax.set_xlim(x0, x0 + (need - x0) * 1.02)
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


# --------------------------------------------------------------------------- report

def write_report(dir_in, dir_out=None):
    """Write summary.md, summary.csv and summary.png for the speed files in dir_in.

    dir_out defaults to dir_in and is created when missing.  Returns
    {"md": path, "csv": path, "png": path}.  Raises ReportError when dir_in
    is missing or holds no speed files.
    """
    dir_in = os.fspath(dir_in)
    cases = _load_nonempty(dir_in)
    dir_out = os.fspath(dir_out) if dir_out is not None else dir_in
    try:
        os.makedirs(dir_out, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {dir_out}: {exc.strerror or exc}") from None
    generated = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    order = sorted(range(len(cases)), key=lambda i: _sort_key(cases[i]))
    cases = [cases[i] for i in order]
    paths = {k: os.path.join(dir_out, "summary." + k) for k in ("md", "csv", "png")}
    with open(paths["md"], "w", encoding="utf-8") as fh:
        fh.write(summary_markdown(cases, source_dir=dir_in, generated=generated))
    _write_csv(paths["csv"], cases, scaling(cases))
    shown = dir_in if len(dir_in) <= 60 else "..." + dir_in[-57:]
    note = f"generated {generated} from {shown}; {len(cases)} case(s)"
    write_chart(paths["png"], cases, title_note=note)
    return paths


# --------------------------------------------------------------------------- compare

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


def _match(base, cur):
    """Match baseline rows to current rows in three passes: full identity, then a
    unique and mutual identity-compatible partner (names of other harnesses yield
    partial identities), then the log-file name.

    Returns (pairs, unmatched_base, unmatched_current, duplicates) where duplicates
    maps ("b"|"c", kept index) -> number of later files with the same identity
    (those are ignored; the first in directory order is kept).
    """
    used_b, used_c, dups = set(), set(), {}

    def index_full(rows, side, used):
        idx = {}
        for i, r in enumerate(rows):
            key = identity(r)
            if None in key:
                continue
            if key in idx:
                dups[(side, idx[key])] = dups.get((side, idx[key]), 0) + 1
                used.add(i)  # ignored duplicate
                continue
            idx[key] = i
        return idx

    bidx = index_full(base, "b", used_b)
    cidx = index_full(cur, "c", used_c)
    ignored_b, ignored_c = set(used_b), set(used_c)
    pairs = []

    def pair(bi, ci):
        pairs.append((bi, ci))
        used_b.add(bi)
        used_c.add(ci)

    for key, bi in bidx.items():
        if key in cidx:
            pair(bi, cidx[key])

    def candidates(row, rows, used):
        ident = identity(row)
        return [j for j, r in enumerate(rows) if j not in used and _compatible(ident, identity(r))]

    for bi, r in enumerate(base):
        if bi in used_b:
            continue
        cands = candidates(r, cur, used_c)
        if len(cands) == 1 and candidates(cur[cands[0]], base, used_b) == [bi]:
            pair(bi, cands[0])

    by_name = {}
    for ci, r in enumerate(cur):
        if ci not in used_c:
            by_name.setdefault(_case_name_key(r), ci)
    for bi, r in enumerate(base):
        ci = by_name.get(_case_name_key(r))
        if bi not in used_b and ci is not None and _no_conflict(identity(r), identity(cur[ci])):
            pair(bi, by_name.pop(_case_name_key(r)))

    unmatched_b = [i for i in range(len(base)) if i not in used_b and i not in ignored_b]
    unmatched_c = [i for i in range(len(cur)) if i not in used_c and i not in ignored_c]
    return pairs, unmatched_b, unmatched_c, dups


def _compare_row(b, c, threshold):
    src = c if c is not None else b
    row = {
        "case": (c or b)["case"],
        "model": src.get("model"),
        "variant": src.get("variant") or "",
        "run_mode": src.get("run_mode"),
        "batch_size": _first(src.get("batch_size"), (b or {}).get("batch_size")),
        "fp": _first(src.get("fp"), (b or {}).get("fp")),
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
            row["note"] = _failed_text(c).lower()
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
    if is_cpu_profile(b) != is_cpu_profile(c):
        row["note"] = "CPU profile on one side only"
    return row


def compare(baseline_dir, current_dir, threshold=0.05):
    """Match cases of two result directories and compare images/s.

    Returns (rows, ok).  Each row: case, model, variant, run_mode, batch_size, fp,
    gpu_num, profile, baseline, current (images/s, None when absent or failed), ratio
    (current/baseline), status (ok|regressed|improved|missing|new),
    baseline_case, current_case, note.  ok is False when any case regressed
    (ratio < 1 - threshold) or is missing (absent or failed in current).
    Cases are matched by (model, run_mode, bs, precision, GPUs, variant); a baseline
    from another harness (other log-file names, run_mode DP, ...) matches on
    whatever it yields, then on the log-file name.
    """
    threshold = float(threshold)
    if not (0 <= threshold < 1):
        raise ReportError(f"threshold must be in [0, 1): {threshold}")
    base = _load_nonempty(os.fspath(baseline_dir))
    cur = _load_nonempty(os.fspath(current_dir))
    pairs, ub, uc, dups = _match(base, cur)
    rows = []
    for bi, ci in pairs + [(bi, None) for bi in ub] + [(None, ci) for ci in uc]:
        row = _compare_row(None if bi is None else base[bi], None if ci is None else cur[ci],
                           threshold)
        extra = [f"{dups[(side, i)]} duplicate {name} file(s) ignored"
                 for side, i, name in (("b", bi, "baseline"), ("c", ci, "current"))
                 if (side, i) in dups]
        if extra:
            row["note"] = "; ".join(([row["note"]] if row["note"] else []) + extra)
        rows.append(row)
    rows.sort(key=lambda r: (r["model"] or "", r["variant"], {"sp": 0, "mp": 1}.get(
        _norm_mode(r["run_mode"], r["gpu_num"]), 2), r["gpu_num"] or 0, r["batch_size"] or 0,
        r["fp"] or "", r["case"] or ""))
    ok = not any(r["status"] in ("regressed", "missing") for r in rows)
    return rows, ok


def compare_markdown(rows, ok, threshold=0.05, baseline_label="baseline",
                     current_label="current"):
    """A Markdown report of compare()'s result, with the labels in the headers."""
    headers = ["case", "mode", "bs", "precision", units(rows), f"{baseline_label} images/s",
               f"{current_label} images/s", f"{current_label}/{baseline_label}", "change",
               "status"]
    table = []
    for r in rows:
        case = r["case"]
        if r["baseline_case"] and r["current_case"] and r["baseline_case"] != r["current_case"]:
            case = f"{r['current_case']} (= {r['baseline_case']})"
        if r["variant"] and not str(r["case"]).endswith("_" + r["variant"]):
            case += f" [{r['variant']}]"  # a variant the sidecar records and the name does not
        status = r["status"] + (f" ({r['note']})" if r.get("note") else "")
        if r["status"] in ("regressed", "missing"):
            status = f"**{status}**"
        table.append([
            case, _norm_mode(r["run_mode"], r["gpu_num"]) or "?",
            r["batch_size"] if r["batch_size"] is not None else "?", r["fp"] or "?",
            r["gpu_num"] if r["gpu_num"] is not None else "?",
            _fmt_rate(r["baseline"]), _fmt_rate(r["current"]), _fmt(r["ratio"], ".3f"),
            "-" if r["ratio"] is None else f"{100 * (r['ratio'] - 1):+.1f}%", status,
        ])
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    verdict = "PASS" if ok else "FAIL"
    return (f"## {current_label} vs {baseline_label}: training throughput\n\n"
            f"{verdict}: {len(rows)} case(s): {summary}; threshold ±{100 * threshold:g}%\n\n"
            + _md_table(headers, table, "llrlrrrrrl") + "\n")


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
                description="Summaries and comparisons of segbench speed files.")
    sub = p.add_subparsers(dest="command", metavar="{report,compare}", parser_class=_Parser)
    r = sub.add_parser("report", help="write summary.md/.csv/.png for a result directory")
    r.add_argument("dir", help="directory holding *_speed files (and *_stats.json)")
    r.add_argument("--out", default=None, help="output directory (default: DIR)")
    c = sub.add_parser("compare", help="compare two result directories; exit 1 on regression")
    c.add_argument("baseline_dir")
    c.add_argument("current_dir")
    c.add_argument("--threshold", default="5%", help="allowed slowdown: 5%% or 0.05 (default 5%%)")
    c.add_argument("--baseline-label", default="baseline")
    c.add_argument("--current-label", default="current")
    c.add_argument("--markdown", default=None, metavar="FILE", help="also write the table here")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise ReportError("missing command: report or compare (see --help)")
        if args.command == "report":
            paths = write_report(args.dir, args.out)
            for kind in ("md", "csv", "png"):
                print(f"wrote {paths[kind]}")
            print()
            with open(paths["md"], encoding="utf-8") as fh:
                sys.stdout.write(fh.read())
            return 0
        threshold = parse_threshold(args.threshold)
        for d in (args.baseline_dir, args.current_dir):
            if not os.path.isdir(d):
                raise ReportError(f"not a directory: {d}")
        rows, ok = compare(args.baseline_dir, args.current_dir, threshold)
        text = compare_markdown(rows, ok, threshold, args.baseline_label, args.current_label)
        if args.markdown:
            try:
                with open(args.markdown, "w", encoding="utf-8") as fh:
                    fh.write(text)
            except OSError as exc:
                raise ReportError(f"cannot write {args.markdown}: {exc.strerror or exc}") \
                    from None
        sys.stdout.write(text)
        return 0 if ok else 1
    except ReportError as exc:
        print(f"segbench.report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"segbench.report: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
