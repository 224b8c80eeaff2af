"""Result directories as report rows: which files are results, what each case is.

Reads the contract's speed files (one JSON object with exactly the 10 keys
below, see docs/FORMATS.md) and, when present, the ``<case>_stats.json``
sidecar beside each one; and the later PaddlePaddle benchmark's 14-key
records (segbench.paddle: ``<case>_paddle.json`` beside a speed file, or any
JSON file with at least those keys, as a framework team's platform writes
them), each read as a speed record.  A case with both a speed file and its
record counts once, from the speed file.  It does not import
``segbench.analysis``: the files are the interface.

A case is identified by model, run mode, batch size, precision, GPUs and its
*variant*: the tokens the case-name grammar adds after the GPU count
(``fastscnn_sp_bs2_fp32_1_crop128x256_li2`` is the variant ``crop128x256_li2``
of ``fastscnn_sp_bs2_fp32_1``), taken from the sidecar's recorded settings
where it has them, else from the name.  A variant is never matched, compared
or scaled against another; the tables show it as ``model [variant]``.

load_cases(dir)                 -> list of flat dicts, one per case (speed file or 14-key record)
history_rows(rows, db)          -> the same rows from segbench.history rows
parse_case_name(name)           -> model/run_mode/batch_size/fp/gpu_num/tuned/variant of a name
identity(row)                   -> the tuple rows are matched and scaled by
"""

from __future__ import annotations

import json
import math
import os
import re

from segbench import configs, env, legacy, paddle, tuned

SPEED_KEYS = frozenset({
    "log_file", "model_name", "mission_name", "direction_id", "run_mode", "index",
    "gpu_num", "FINAL_RESULT", "JOB_FAIL_FLAG", "UNIT",
})

# Row keys of load_cases(), in CSV column order (scaling_efficiency is added by
# write_report right after images_per_s_per_gpu).
CASE_KEYS = (
    "case", "model", "variant", "run_mode", "batch_size", "fp", "gpu_num", "images_per_s",
    "images_per_s_per_gpu", "ok", "reason", "failure_kind", "flagged", "warnings", "cv", "peak_mem_mb",
    "peak_from", "tflops", "gpu_busy", "gpu_bound", "images_per_j", "mean_w_per_gpu", "j_per_iter",
    "energy_reason", "repeats",
    "device", "device_name", "profile", "torch_threads", "runtime_env", "source",
)

_MAX_SPEED_FILE_BYTES = 64 * 1024  # a speed file is ~250 bytes; logs are skipped unread
_STATS_SUFFIX = "_stats.json"

# ${MODEL}_${RUN_MODE}_bs${BS}_${FP}_${NGPU}[_${TOKEN}]...; greedy model => parsed from the right
# a bad input's name (segbench.case.bad_input_name) has NA for its GPUs and ends in bad<hash>
_SEGBENCH_NAME = re.compile(
    r"^(?P<model>.+)_(?P<mode>[A-Za-z0-9]+)_bs(?P<bs>\d+)_(?P<fp>[A-Za-z0-9]+)_(?P<ngpu>\d+|NA)"
    r"(?:_(?P<tail>.+?))??(?:_bad[0-9a-f]{8})?$")
# The variant tokens of docs/names.md, in the order a name carries them: a setting that changes
# the figure and is not the default. A case's variant is the "_"-joined tokens ("" for the seed's
# settings); a variant is never matched, compared or scaled against another.
VARIANT_KINDS = ("tuned", "crop", "li", "nobench", "cpus", "prof", "stack")
DEFAULT_LOG_INTERVAL = 10


def _alternatives(words):
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_SWITCH = f"(?:{_alternatives(tuned.SWITCHES)})"
SWITCH_LIST = rf"{_SWITCH}(?:\+{_SWITCH})*"   # a tuned token's switches: foreach+graph+...
_TOKEN_PATTERNS = {
    "tuned": (rf"tuned(?:-{SWITCH_LIST})?(?:-cm(?:{_alternatives(tuned.COMPILE_MODES)}))?"
              rf"(?:-cs(?:{_alternatives(tuned.COMPILE_SCOPES)}))?"),
    "crop": r"crop\d+x\d+",
    "li": r"li\d+",
    "nobench": r"nobench",
    "cpus": r"cpus\d+(?:-\d+)?(?:\.\d+(?:-\d+)?)*",
    "prof": r"prof\d+-\d+",
    "stack": re.escape(legacy.LEGACY),   # last: STACK=mmseg0 (segbench.legacy)
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


def first(*values):
    for v in values:
        if v is not None and v != "":
            return v
    return None


def _str_or_none(value):
    if value is None:
        return None
    s = str(value).strip()
    return s or None


# --------------------------------------------------------------------------- case names

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
                   fp=m["fp"], gpu_num=None if m["ngpu"] == "NA" else int(m["ngpu"]),
                   tuned=True if "tuned" in tokens else None,
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
        if compile_mode not in (None, "auto", tuned.resolve_compile_mode("auto", device, "graph" in names)):
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
    stack = _get(stats, "env.stack")   # the legacy stack's env says so; older and 1.x envs do not
    if stack in legacy.STACKS:
        out["stack"] = "" if stack == legacy.STACKS[0] else stack
    return out


def norm_mode(run_mode, gpu_num):
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
        norm_mode(row.get("run_mode"), row.get("gpu_num")),
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


def _read_json(path):
    """The JSON object in a small file that is not a sidecar, else None."""
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
    return obj if isinstance(obj, dict) else None


def _record_name(file_name):
    """The case name of a 14-key record's file: ``<case>_paddle.json`` or ``<name>.json``."""
    for suffix in (paddle.SUFFIX, ".json"):
        if file_name.endswith(suffix) and len(file_name) > len(suffix):
            return file_name[: -len(suffix)]
    return file_name


def _read_result(path):
    """(speed record, fields) of a result file, None when it is none: a speed file (fields None),
    or a 14-key record read as a speed record (segbench.paddle.to_speed; fields: the batch size
    and precision it carries, which the speed record has no key for)."""
    obj = _read_json(path)
    if obj is None:
        return None
    if SPEED_KEYS.issubset(obj):
        return obj, None
    speed = paddle.to_speed(obj, _record_name(os.path.basename(path)))
    return None if speed is None else (speed, {"batch_size": obj["batch_size"],
                                               "fp_item": obj["fp_item"]})


def _case_keys(path, speed):
    """(folder, case name) by the file's name and by its log_file: a speed file and the 14-key
    record of the same case share one."""
    folder, name = os.path.split(path)
    names = {_record_name(name.removesuffix("_speed"))}
    if _str_or_none(speed.get("log_file")):
        names.add(os.path.basename(str(speed["log_file"]).rstrip("/")))
    return {(folder, n) for n in names}


def read_sidecar(speed_path, log_file):
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


def _identity_fields(path, speed, stats):
    """model, variant, run_mode, batch_size, fp and gpu_num of a case: the sidecar's record, the
    speed file's fields, then what its log-file name (or file name) and model_name say."""
    log_file = _str_or_none(speed.get("log_file"))
    from_name = parse_case_name(log_file)
    if not any(from_name.values()):
        from_name = parse_case_name(os.path.basename(path))
    model, bs_from_model, fp_from_model = _model_from_name(speed.get("model_name"))
    model = first(model, from_name["model"])
    return {
        "model": model,
        "variant": join_variant({**variant_tokens(from_name["variant"]),
                                 **recorded_tokens(stats, model)}),
        "run_mode": first(_str_or_none(speed.get("run_mode")), from_name["run_mode"]),
        "batch_size": first(_int(stats.get("batch_size")), _int(_get(stats, "case.batch_size")),
                            from_name["batch_size"], bs_from_model),
        "fp": first(_str_or_none(stats.get("fp_item")), _str_or_none(_get(stats, "case.fp_item")),
                    from_name["fp"], fp_from_model),
        "gpu_num": first(_int(speed.get("gpu_num")), _int(stats.get("gpu_num")),
                         _int(_get(stats, "case.gpu_num")), from_name["gpu_num"]),
    }


def _outcome(speed, stats):
    """(images/s, ok, reason). JOB_FAIL_FLAG 0 with no positive FINAL_RESULT breaks the contract:
    not ok either."""
    images = _num(speed.get("FINAL_RESULT"))
    flag = _int(speed.get("JOB_FAIL_FLAG"))
    ok = flag == 0 and images is not None and images > 0
    reason = _str_or_none(first(stats.get("reason"), _get(stats, "result.reason")))
    if not ok and reason is None and flag == 0:
        reason = f"bad FINAL_RESULT {speed.get('FINAL_RESULT')!r} with JOB_FAIL_FLAG 0"
    return images, ok, reason


def peak_mb(stats):
    """The highest peak memory over the ranks."""
    mem = _get(stats, "memory.peak_mb_per_rank")
    if isinstance(mem, (list, tuple)):
        mems = [m for m in (_num(x) for x in mem) if m is not None]
        return max(mems) if mems else None
    return _num(mem)


def torch_threads(stats):
    """The most intra-op threads torch ran in any rank (its meta line), or None."""
    per_rank = stats.get("torch_threads_per_rank")
    threads = [n for n in (_int(x) for x in per_rank) if n] if isinstance(per_rank, list) else []
    return max(threads) if threads else None


def runtime_env(stats):
    """The sidecar's ``env.runtime_env`` (segbench.knobs.RUNTIME_VARS set as the case ran) as
    ``K=V`` pairs joined by spaces; None when none was set or the sidecar does not say."""
    got = _get(stats, "env.runtime_env")
    pairs = [f"{k}={v}" for k, v in sorted(got.items())] if isinstance(got, dict) else []
    return " ".join(pairs) or None


def _repeat_runs(stats):
    """The figures of a repeated case's runs (a ``repeats`` block or a plain list), or None."""
    reps = stats.get("repeats")
    if isinstance(reps, dict) and isinstance(reps.get("runs"), list):
        reps = reps["runs"]
    elif not isinstance(reps, list):
        return None
    return [v for v in (_num(x) for x in reps) if v is not None] or None


def energy_figures(stats):
    """images/J, mean W per GPU, J per iteration and why they are null (the sidecar's energy block,
    segbench.energy.summarize; a sidecar without one: older than the block)."""
    block = stats.get("energy")
    if not isinstance(block, dict):
        return {"images_per_j": None, "mean_w_per_gpu": None, "j_per_iter": None,
                "energy_reason": "no energy block (no sidecar, or one written before the block)"}
    out = {k: _num(block.get(k)) for k in ("images_per_j", "mean_w_per_gpu", "j_per_iter")}
    reason = _str_or_none(block.get("reason"))
    return {**out, "energy_reason": reason or (None if out["images_per_j"] is not None
                                               else "no energy figure in the sidecar")}


def _device_name(stats):
    """The GPU's name (the sidecar's env.gpu_names), "CPU" on the CPU, else None."""
    names = _get(stats, "env.gpu_names")
    device = _str_or_none(first(stats.get("device"), _get(stats, "case.device")))
    if device == "cpu":
        return "CPU"
    return ", ".join(str(n) for n in names) if isinstance(names, list) and names else None


def _build_row(path, speed, stats):
    """One report row (CASE_KEYS) from a speed record and its sidecar dict ({} when none)."""
    fields = _identity_fields(path, speed, stats)
    images, ok, reason = _outcome(speed, stats)
    gpu_num = fields["gpu_num"]
    warnings = [str(w) for w in stats.get("warnings") or () if _str_or_none(w)] \
        if isinstance(stats.get("warnings"), list) else []
    flagged = stats.get("flagged")
    return {
        "case": _str_or_none(speed.get("log_file")) or os.path.basename(path),
        **fields,
        "images_per_s": images,
        "images_per_s_per_gpu": images / gpu_num if images is not None and gpu_num else None,
        "ok": ok,
        "reason": reason,
        "failure_kind": _str_or_none(first(stats.get("failure_kind"), _get(stats, "result.failure_kind"))),
        # the analysis's signs of a busy or noisy host (older sidecars: no ``flagged`` key)
        "flagged": flagged if isinstance(flagged, bool) else bool(warnings),
        "warnings": warnings,
        # per-iteration only: a window_sync file's per_iter counts windows (its iterations' own
        # times are the host's), so its spread is not this column's
        "cv": None if (_num(_get(stats, "per_iter.synced_every")) or 1) > 1
        else _num(_get(stats, "per_iter.cv")),
        "peak_mem_mb": peak_mb(stats),
        # where the peak counts from ("iteration 1"); None: a record that does not say
        "peak_from": _str_or_none(_get(stats, "memory.peak_from")),
        "tflops": _num(_get(stats, "flops.tflops_achieved")),
        # NVML's busy share over the measured iterations and what it says bounds the step
        "gpu_busy": _num(_get(stats, "gpu_busy.share")),
        "gpu_bound": _str_or_none(_get(stats, "gpu_busy.bound")),
        **energy_figures(stats),
        "repeats": _repeat_runs(stats),
        "device": _str_or_none(first(stats.get("device"), _get(stats, "case.device"))),
        "device_name": _device_name(stats),
        "profile": _str_or_none(first(stats.get("profile"), _get(stats, "case.profile"))),
        "torch_threads": torch_threads(stats),
        "runtime_env": runtime_env(stats),
        "source": path,
    }


def load_cases(directory):
    """One flat dict per case in directory (and its direct subdirectories): per speed file, and
    per 14-key record (segbench.paddle) that is not the record of a speed file beside it (the
    speed file and its sidecar win).

    Keys: see CASE_KEYS.  Files that are neither are skipped.  Raises ReportError when the
    directory cannot be read (not when it holds no results: that is an empty list).
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ReportError(f"not a directory: {directory}")
    found = [(path, *res) for path in _candidate_files(directory) if (res := _read_result(path))]
    speed_cases = set().union(*(_case_keys(p, speed) for p, speed, fields in found if fields is None))
    rows = []
    for path, speed, fields in found:
        if fields is not None and speed_cases & _case_keys(path, speed):
            continue
        stats = {**(fields or {}), **read_sidecar(path, speed.get("log_file"))}
        rows.append(_build_row(path, speed, stats))
    return rows


def history_rows(rows, db):
    """Report rows of segbench.history rows (history.select): each row's stored sidecar with its
    speed fields, through the row builder of the directory path; ``source`` is ``DB#id=N``."""
    out = []
    for h in rows:
        try:
            stats = json.loads(h.get("stats") or "{}")
        except (TypeError, ValueError, RecursionError):
            stats = {}
        speed = {"log_file": h.get("case_name"), "model_name": h.get("model"),
                 "run_mode": h.get("run_mode"), "gpu_num": h.get("gpu_num"),
                 "FINAL_RESULT": h.get("images_per_s"), "JOB_FAIL_FLAG": h.get("job_fail_flag")}
        out.append(_build_row(f"{db}#id={h.get('id')}", speed, stats if isinstance(stats, dict) else {}))
    return out


def load_nonempty(directory):
    rows = load_cases(directory)
    if not rows:
        raise ReportError(f"no speed files or 14-key records in {directory}")
    return rows


def is_cpu_profile(row):
    return (row.get("profile") or "").lower() == "cpu"
