"""Turn a training log into the contract's speed file and the stats sidecar.

The headline figure keeps the 2021 seed's formula exactly::

    FINAL_RESULT = round(batch_size * gpu_num / mean(window time), 3)

over the *training* log windows of one run, skipping the first ``SKIP_WINDOWS`` (4) of them.
A window is one training log line (every ``log_interval`` iterations); its ``time`` is the
logger's running mean over the window. See ``docs/FORMATS.md`` for the file formats.

Log formats understood (line by line, so mixed files work):

* mmengine stdout / file log: ``... - mmengine - INFO - Iter(train) [ 10/500]  ... time: 0.2``
  and ``Epoch(train) [1][ 10/100] ...``; ``Iter(val)``, ``Iter(test)``, ``Epoch(val)`` never count;
* mmengine ``vis_data/scalars.json``: a line that parses as a JSON object is a training window
  when it has a numeric ``time`` and an ``lr`` or ``loss`` key (validation objects have neither);
* mmseg 0.x / mmcv 1.x: ``... - mmseg - INFO - Iter [50/320000]\\tlr: ..., time: 0.745, ...`` and
  ``Epoch [1][50/100]\\t...``.

The first ``SKIP_WINDOWS`` windows are skipped by position, whatever their value; of the rest, a
window whose time is not a finite positive number is ignored and counted (``ignored_bad``). The
run fails (FINAL_RESULT 0, JOB_FAIL_FLAG 1, reason in the sidecar) when its result record says so
(a reason or a non-zero exit code), when it has a ``case:`` record but no ``result:`` record, when
a log without records shows a Python traceback (``crashed: <the first exception line>``; a
traceback right after ``--- Logging error ---`` or ``Exception ignored in`` does not count), when
a loss is NaN or infinite (``loss not finite from iteration N``: the first such iteration of any
rank's per-iteration file when they hold losses, else the first such window's iteration), when no
window is left, when the batch size or the GPU count is unknown, or when the figure rounds to 0 or
is not finite. A failed run's figure is kept as ``partial_images_per_s``.

``time:`` is matched with a word boundary, so ``data_time:`` never counts. ANSI colour codes, CR
line ends and torchrun's ``[rank0]:`` / ``[default0]:`` line prefixes are stripped first. A final
line without a newline is dropped when it does not parse completely (a cut JSON object, a record
whose JSON is cut, a training line whose ``time`` value runs into the end of the file).

Launches. A ``[segbench] case:`` line always starts a new launch. An mmengine ``System
environment:`` header or an mmseg 0.x ``Environment info:`` header starts a new launch when the
current one already has training windows, a result record or a header of its own (so the header
that follows a ``case:`` line belongs to that case). Inside a launch, a training iteration key
(``(0, iter)`` or ``(epoch, iter)``) that goes backwards starts a new run of the same launch, which
keeps the launch's record and config evidence -- except that a key equal to one of the last
``RANK_LAG_WINDOWS`` keys of the run is another rank's copy of a window already counted: each
iteration counts once per run (first copy wins), tolerating ranks whose output lags a few windows
behind. The LAST launch decides, through its last run: when it crashed, with or without windows,
the case failed, whatever an earlier launch measured. Earlier launches are listed in the sidecar's
``earlier_launches`` (their own figure and reason), never used for FINAL_RESULT.

Batch size (per process): the run's ``case:`` record > ``batch_size`` argument > ``batch_size=``
directly inside the config dump's ``train_dataloader = dict(...)`` > mmseg 0.x ``samples_per_gpu=``
directly inside ``data = dict(...)``; unknown fails the analysis.
GPU count (world size) and run mode: a log with a ``case:`` record states the record's
``gpu_num`` and ``run_mode`` exactly as recorded (a bad-input record may hold ``"xp"`` or null),
or the argument where the record lacks the key, never an inferred value; a recorded GPU count that
is not a positive int fails the analysis. A log without a record: argument > the log's stated count
(mmengine header ``GPU number: N``, else mmseg 0.x's ``gpu_ids = range(0, N)``, which mmseg 0.x's
tools/train.py sets to the world size in distributed runs) > the ranks the log shows (torchrun's
line prefixes, its failure report's ``rank : N (local_rank: ...)`` lines, NCCL's per-rank
messages) > 1 with a warning, except that a distributed log (``Distributed training: True``) with
no evidence fails the analysis (never a silent 1). Where the ranks seen exceed the stated count,
the ranks win (rank N proves N + 1 processes), with a warning naming both; run mode: argument >
``sp`` when the GPU count is 1, else ``mp``.

Statistics. Per-iteration files (``<log basename>_iters.rank<R>.jsonl`` next to the log) give the
sidecar's ``per_iter`` block, from the lowest rank present (rank 0 normally), warm-up = the first
``4 * log_interval`` iterations (by position). In such a file a ``meta`` line or an iteration
number that does not increase starts over (the latest run wins). The ``window`` block gives the
same statistics over the measured log windows (:func:`iteration_stats` with the skipped windows as
warm-up), for every log. Spread is the sample standard deviation (ddof=1). The 95% confidence
interval of the mean iteration time uses two-sided Student-t quantiles from a table (exact to 3
decimals for df <= 30; above that the quantile of the largest tabulated df not above the real one,
which is conservative; the normal 1.960 beyond df 1000), and is mapped to images/s:
[bs*gpus / (mean + h), bs*gpus / (mean - h)]. The steady-state check compares the mean of the
first half of the measured times with the second's (``STEADY_THRESHOLD``). FLOP utilisation is per
GPU: one process's FLOPs per iteration / mean iteration time / one GPU's datasheet peak.

Warnings. ``warnings`` (a list of one-line strings, each starting with a stable keyword, and
``flagged`` = it is not empty) hold the guesses made and every sign that the figure may not be
trusted; they never change JOB_FAIL_FLAG. ``gpu count``: a guessed or conflicting GPU count;
``host load``: a 1-minute load average above the host's CPU count (``env.host_cpus``) in the case
or result record's ``host`` probe; ``steal``: ``host.during.cpu_steal_share`` above
``STEAL_THRESHOLD``; ``not steady``: the per-iteration steady-state check failed (the window-level
one for logs without per-iteration files); ``noisy``: the per-iteration CV above ``NOISY_CV`` (the
window CV above ``NOISY_WINDOW_CV`` without per-iteration files); ``host slowed``: the result
record's ``cpu_mloops_per_s`` below ``HOST_SLOWED_RATIO`` times the case record's; ``profiler``:
the case record's ``profile_window`` overlaps the measured iterations (after the warm-up).
"""

from __future__ import annotations

import argparse
import calendar
import glob
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segbench import energy, paddle


PROG = "analysis_log.py"
SKIP_WINDOWS = 4
DEFAULT_LOG_INTERVAL = 10
WARMUP_LOG_INTERVALS = 4
STEADY_THRESHOLD = 0.05
RANK_LAG_WINDOWS = 4
# Warning thresholds (see the module doc), set from the lent H200 hosts' healthy runs of
# 2026-11-29 to 2026-12-01 (benchmarks/h200*): per-iteration CV 0.02-0.51 (stock fastscnn is
# data-loader bound: some iterations wait for a batch, most do not), window CV 0.013-0.16, the
# host's CPU probe at the end 0.54-1.84x the start's, no steal; a CPU suite on a busy 2-core host
# reached a per-iteration CV of 0.94.
NOISY_CV = 0.60
NOISY_WINDOW_CV = 0.25
STEAL_THRESHOLD = 0.02
HOST_SLOWED_RATIO = 0.5
MISSION_NAME = "图像分割"
UNIT = "images/s"
SPEED_KEYS = ("log_file", "model_name", "mission_name", "direction_id", "run_mode", "index",
              "gpu_num", "FINAL_RESULT", "JOB_FAIL_FLAG", "UNIT")
STATS_SCHEMA = 1

# Two-sided 95% Student-t quantiles (the 0.975 quantile) by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
        17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
        25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
        80: 1.990, 100: 1.984, 120: 1.980, 200: 1.972, 500: 1.965, 1000: 1.962}
_Z95 = 1.960

# Dense datasheet peaks in TFLOP/s: (name pattern, basis label, {precision class: peak}).
# fp32 runs use the TF32 figure where the GPU has one (cuDNN convolutions use TF32 by default).
_PEAKS: tuple[tuple[re.Pattern[str], str, dict[str, float]], ...] = (
    (re.compile(r"\bH(?:100|200)\b(?!.*\b(?:PCIe|NVL)\b)", re.I), "H100/H200 SXM datasheet",
     {"tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (re.compile(r"\bA100\b", re.I), "A100 datasheet",
     {"tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (re.compile(r"\bV100\b(?!.*\bPCIe\b)", re.I), "V100 SXM2 datasheet",
     {"fp32": 15.7, "fp16": 125.0}),
)
_PEAK_LABELS = {"tf32": "dense TF32 (cuDNN convs use TF32 by default)", "bf16": "dense BF16",
                "fp16": "dense FP16", "fp32": "FP32"}

_NUM = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?))"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)(\d{1,6})\]:\s?")
_RECORD = re.compile(r"\[segbench\] (case|result):\s*(.*)$")
_STAMP = re.compile(r"^(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)\s")   # mmengine's "11/29 18:37:50 - mmengine ..."
_ITER_MARK = re.compile(r"\bIter(?:\(train\))?\s*\[\s*(\d{1,12})\s*/\s*\d{1,12}\s*\]")
_EPOCH_MARK = re.compile(
    r"\bEpoch(?:\(train\))?\s*\[\s*(\d{1,12})\s*\]\s*\[\s*(\d{1,12})\s*/\s*\d{1,12}\s*\]")
_TIME = re.compile(rf"\btime:\s*({_NUM})(?=[\s,]|$)")
_LOSS = re.compile(rf"(?<![\w.])loss:\s*({_NUM})(?=[\s,]|$)")
_HEADER = re.compile(r"(?:^|\s)(?:System environment|Environment info):\s*$")
_GPU_NUMBER = re.compile(r"\bGPU number:\s*(\d{1,6})\b")
_DISTRIBUTED = re.compile(r"\bDistributed training:\s*(True|False)\b")
_GPU_IDS = re.compile(
    r"^\s*gpu_ids\s*=\s*(?:range\(\s*(\d{1,6})\s*(?:,\s*(\d{1,6})\s*)?\)|\[([\d,\s]*)\])")
# (what, pattern): lines that show a process of some rank ran (the rank is the first group that matched)
_RANK_SEEN = (
    ("torchrun's failure report", re.compile(r"^\s*rank\s*:\s*(\d{1,6})\s*\(local_rank:")),
    ("per-rank NCCL messages",
     re.compile(r"\bRank (\d{1,6}) using best-guess GPU\b|\[Rank (\d{1,6})\]")),
)
_PREFIX_EVIDENCE = "torchrun's [rankN]: line prefixes"
_TRACEBACK = "Traceback (most recent call last):"
_NOT_A_CRASH = ("--- Logging error ---", "Exception ignored in")   # the line before a traceback
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*)(?::(.*))?$")    # the line that ends a traceback
_TRAIN_LOADER = re.compile(r"^[ \t]*train_dataloader\s*=\s*dict\(", re.M)
_DATA_DICT = re.compile(r"^[ \t]*data\s*=\s*dict\(", re.M)
_CONFIG_SCAN_LIMIT = 200_000
_RANK_FILE = re.compile(r"_iters\.rank(\d{1,6})\.jsonl$")


@dataclass(frozen=True)
class Result:
    """Outcome of :func:`analyze`.

    ``speed`` is the 10-key speed dict, ``stats`` the sidecar dict, ``reason`` why the run failed
    (None when it passed), ``exit_code`` what the CLI exits with (0 passed, 1 failed analysis,
    2 unreadable log) and ``warnings`` one-line notes about guesses made and signs that the figure
    may not be trusted (also in ``stats``; see the module doc).
    """

    speed: dict[str, Any]
    stats: dict[str, Any]
    reason: str | None
    exit_code: int
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the run passed and FINAL_RESULT holds its figure."""
        return self.reason is None


@dataclass
class _Window:
    key: tuple[int, int] | None
    time: float
    loss: float | None                # as logged: NaN and inf kept (a diverged run fails)
    stamp: int | None = None   # the line's logging second (see stamped_windows); None: no stamp


@dataclass
class _Run:
    """One run of a log: its record lines, training windows and evidence lines. ``launch``
    numbers the launch it belongs to (several runs when the iteration counter restarted in it)."""

    launch: int = 0
    case: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    result_malformed: bool = False
    header: bool = False
    windows: list[_Window] = field(default_factory=list)
    keys: list[tuple[int, int]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    gpu_number: int | None = None
    distributed: bool | None = None
    gpu_ids: int | None = None
    gpu_ids_text: str | None = None
    ranks: dict[str, int] = field(default_factory=dict)   # what showed ranks -> the highest one
    crashes: list[str] = field(default_factory=list)      # exception lines that ended tracebacks

    def continuation(self) -> _Run:
        """A run started by the iteration counter going backwards inside one launch (a crash
        before it is not carried over: training went on)."""
        return _Run(launch=self.launch, case=self.case, header=self.header, text=list(self.text),
                    gpu_number=self.gpu_number, distributed=self.distributed,
                    gpu_ids=self.gpu_ids, gpu_ids_text=self.gpu_ids_text, ranks=dict(self.ranks))

    def add_window(self, window: _Window) -> _Run:
        """Add a window; return the run it landed in (a new one when the counter restarted)."""
        key = window.key
        if key is None or not self.keys or key > self.keys[-1]:
            self.windows.append(window)
            if key is not None:
                self.keys.append(key)
            return self
        if key in self.keys[-RANK_LAG_WINDOWS:]:
            return self  # another rank's copy of a window already counted
        run = self.continuation()
        return run.add_window(window)


@dataclass
class _RankFile:
    """The latest run of one ``_iters.rank<R>.jsonl`` file, as parallel per-iteration lists."""

    rank: int
    meta: dict[str, Any]
    iters: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    data_times: list[float | None] = field(default_factory=list)
    gap_times: list[float | None] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)   # NaN and inf kept
    mems: list[float | None] = field(default_factory=list)
    gc_times: list[float | None] = field(default_factory=list)
    gc_fulls: list[float | None] = field(default_factory=list)
    cpu_times: list[float | None] = field(default_factory=list)
    stamps: list[float | None] = field(default_factory=list)   # wall clock at each iteration's end
    energies: list[float | None] = field(default_factory=list)   # the GPU's counter, mJ (some rows)


# ----------------------------------------------------------------------------- small helpers

def _pos_int(value: Any) -> int | None:
    """``value`` when it is a positive int (bools excluded), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (bools excluded; huge ints become +-inf)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return None


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (keeps NaN out of JSON)."""
    number = _number(value)
    return number if number is not None and math.isfinite(number) else None


def _good_time(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown failure"


def t95(df: int) -> float:
    """Two-sided 95% Student-t quantile for ``df`` >= 1 degrees of freedom (see module doc)."""
    if df > max(_T95):
        return _Z95
    return _T95[max(k for k in _T95 if k <= df)]


def _mean(xs: Sequence[float]) -> float:
    """Plain float arithmetic: overflow gives inf (as numpy would), never an exception."""
    return sum(xs) / len(xs)


def _std(xs: Sequence[float], mean: float) -> float:
    """Sample standard deviation (ddof=1); ``d * d``, not ``d ** 2``, which raises on overflow."""
    return math.sqrt(sum((x - mean) * (x - mean) for x in xs) / (len(xs) - 1))


def _percentile(xs: Sequence[float], q: float) -> float:
    """numpy's default ('linear') percentile, q in 0..100."""
    ordered = sorted(xs)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _Constant(str):
    """A JSON ``NaN`` / ``Infinity`` / ``-Infinity`` literal, kept as its text: no number
    (:func:`_number` and :func:`_finite` see None), but a loss that became one shows (``_loss``)."""


def _loss(value: Any) -> float | None:
    """A loss as logged: a number (NaN and inf kept, as a ``_Constant`` is) or None."""
    return float(value) if isinstance(value, _Constant) else _number(value)


def _parse_json(text: str, *, drop_constants: bool, constant: Any = None) -> Any:
    """``json.loads`` that returns None instead of raising; NaN/Infinity become None if asked,
    or what ``constant`` makes of their text."""
    try:
        if constant is not None:
            return json.loads(text, parse_constant=constant)
        if drop_constants:
            return json.loads(text, parse_constant=lambda _: None)
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _clean_line(raw: str) -> tuple[str, int | None]:
    """The line without colour codes, CR and torchrun's rank prefix, and that prefix's rank."""
    line = raw.rstrip("\r")
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if line.startswith("[") and (prefix := _RANK_PREFIX.match(line)):
        return line[prefix.end():], int(prefix.group(1))
    return line, None


# ----------------------------------------------------------------------------- log parsing

def _read_log(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")


def _json_window(obj: dict[str, Any]) -> _Window | None:
    """The training window a scalars.json object stands for, if it is one."""
    time = _number(obj.get("time"))
    if time is None or not ("lr" in obj or "loss" in obj):
        return None
    iteration = _pos_int(obj.get("iter")) or _pos_int(obj.get("step"))
    return _Window(key=None if iteration is None else (0, iteration), time=time,
                   loss=_loss(obj.get("loss")))


def _text_window(line: str, partial: bool) -> _Window | None:
    """The training window of a text line, if it is one (a ``partial`` line's time must end)."""
    mark = _ITER_MARK.search(line)
    if mark is not None:
        key = (0, int(mark.group(1)))
    else:
        mark = _EPOCH_MARK.search(line)
        if mark is None:
            return None
        key = (int(mark.group(1)), int(mark.group(2)))
    rest = line[mark.end():]
    time = _TIME.search(rest)
    if time is None or (partial and time.end(1) == len(rest)):
        return None
    loss = _LOSS.search(rest)
    stamp = _STAMP.match(line)
    return _Window(key=key, time=float(time.group(1)),
                   loss=float(loss.group(1)) if loss else None,
                   stamp=calendar.timegm((2000, *map(int, stamp.groups()))) if stamp else None)


def _exception_text(line: str) -> str | None:
    """``Name: message`` (the dotted name's last part, cut to 200 characters) of the line that
    ends a traceback, or None when the line is not an exception's."""
    match = _EXCEPTION.match(line)
    if match is None:
        return None
    name, message = match.group(1).rsplit(".", 1)[-1], (match.group(2) or "").strip()
    return _one_line(f"{name}: {message}" if message else name)[:200]


class _LogParser:
    """Feeds cleaned lines into a list of runs (see the module doc for the splitting rules)."""

    def __init__(self) -> None:
        self.runs: list[_Run] = [_Run()]
        self._in_traceback: set[int | None] = set()   # the rank prefixes whose traceback is open
        self._previous = ""

    @property
    def current(self) -> _Run:
        return self.runs[-1]

    def _launch(self, run: _Run) -> None:
        run.launch = self.current.launch + 1
        self.runs.append(run)

    def feed(self, line: str, rank: int | None, partial: bool) -> None:
        if "[segbench]" in line and self._record(line, partial):
            return
        if rank is not None:
            self._rank_seen(_PREFIX_EVIDENCE, rank)
        stripped = line.strip()
        if stripped.startswith("{"):
            obj = _parse_json(stripped, drop_constants=False)
            if isinstance(obj, dict):
                window = _json_window(obj)
                if window is not None:
                    self._add_window(window)
                return
            if partial:
                return
        if _HEADER.search(line):
            run = self.current
            if run.windows or run.result is not None or run.result_malformed or run.header:
                self._launch(_Run())
            self.current.header = True
        if "time:" in line:
            window = _text_window(line, partial)
            if window is not None:
                self._add_window(window)
        self._evidence(line)
        self._traceback(line, stripped, rank)
        self.current.text.append(line)

    def _record(self, line: str, partial: bool) -> bool:
        match = _RECORD.search(line)
        if match is None:
            return False
        obj = _parse_json(match.group(2).strip(), drop_constants=True)
        if not isinstance(obj, dict):
            obj = None
        if obj is None and partial:
            return True
        if match.group(1) == "case":
            self._launch(_Run(case=obj or {}))
        else:
            self.current.result = obj
            self.current.result_malformed = obj is None
        return True

    def _add_window(self, window: _Window) -> None:
        run = self.current.add_window(window)
        if run is not self.current:
            self.runs.append(run)

    def _rank_seen(self, what: str, rank: int) -> None:
        ranks = self.current.ranks
        ranks[what] = max(rank, ranks.get(what, 0))

    def _traceback(self, line: str, stripped: str, rank: int | None) -> None:
        """Track tracebacks (per rank prefix: ranks' lines interleave) and note the exception
        line that ends each, unless the traceback is a logging error's or an ignored one's."""
        if stripped == _TRACEBACK:
            if not self._previous.startswith(_NOT_A_CRASH):
                self._in_traceback.add(rank)
        elif rank in self._in_traceback and stripped and not line[0].isspace():
            self._in_traceback.discard(rank)
            if (text := _exception_text(stripped)) is not None:
                self.current.crashes.append(text)
        self._previous = stripped

    def _evidence(self, line: str) -> None:
        run = self.current
        if "GPU number" in line and (match := _GPU_NUMBER.search(line)):
            run.gpu_number = _pos_int(int(match.group(1))) or run.gpu_number
        if "Distributed training" in line and (match := _DISTRIBUTED.search(line)):
            run.distributed = match.group(1) == "True"
        if "gpu_ids" in line and (match := _GPU_IDS.match(line)):
            if match.group(3) is not None:
                count = len(re.findall(r"\d+", match.group(3)))
            elif match.group(2) is not None:
                count = int(match.group(2)) - int(match.group(1))
            else:
                count = int(match.group(1))
            if _pos_int(count):
                run.gpu_ids, run.gpu_ids_text = count, match.group(0).strip()
        if "ank" in line:
            for what, pattern in _RANK_SEEN:
                if match := pattern.search(line):
                    self._rank_seen(what, int(next(g for g in match.groups() if g is not None)))


def _split_runs(text: str) -> list[_Run]:
    parser = _LogParser()
    lines = text.split("\n")
    ends_cut = lines[-1] != ""
    if not ends_cut:
        lines.pop()
    for index, raw in enumerate(lines):
        parser.feed(*_clean_line(raw), partial=ends_cut and index == len(lines) - 1)
    return parser.runs


def _launch_ends(runs: list[_Run]) -> list[_Run]:
    """The last run of each launch, in order (the run a launch's figures come from)."""
    return [run for run, after in zip(runs, runs[1:] + [None])
            if after is None or after.launch != run.launch]


def _measured_run(runs: list[_Run]) -> _Run:
    """The run a log's figures come from: the last launch's last run."""
    return runs[-1]


def stamped_windows(log_path: str | os.PathLike[str]) -> list[tuple[int | None, float]]:
    """The training windows of the run :func:`analyze` measures, as (the second the window's line
    was logged, its mean iteration time). The second is mmengine's ``MM/DD HH:MM:SS`` stamp counted
    into a leap year (the log has no year: only differences between stamps of one log or of logs of
    one host mean anything); None for a window without one (a scalars.json line, an mmcv 1.x log)."""
    run = _measured_run(_split_runs(_read_log(log_path)))
    return [(w.stamp, w.time) for w in run.windows]


def _dict_key_in_config(text: str, start: re.Pattern[str], key: str) -> int | None:
    """``key=<int>`` directly inside the last ``name = dict(...)`` that ``start`` finds."""
    starts = list(start.finditer(text))
    if not starts:
        return None
    body = text[starts[-1].end():starts[-1].end() + _CONFIG_SCAN_LIMIT]
    token = re.compile(r"'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"|[()\[\]{}]"
                       rf"|(?<![\w.]){key}\s*=\s*(\d{{1,9}})\b")
    depth = 1
    for match in token.finditer(body):
        piece = match.group(0)
        if piece in ("(", "[", "{"):
            depth += 1
        elif piece in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return None
        elif match.group(1) is not None and depth == 1:
            return _pos_int(int(match.group(1)))
    return None


def _config_batch_size(run: _Run) -> int | None:
    text = "\n".join(run.text)
    return (_dict_key_in_config(text, _TRAIN_LOADER, "batch_size")
            or _dict_key_in_config(text, _DATA_DICT, "samples_per_gpu"))


def _log_gpu_num(run: _Run) -> tuple[int | None, str | None]:
    """GPU count from the log's own evidence (see the module doc), and a warning when it was
    guessed or the evidence conflicts; None for a distributed log without evidence."""
    stated, said = ((run.gpu_number, f"GPU number: {run.gpu_number}") if run.gpu_number
                    else (run.gpu_ids, run.gpu_ids_text))
    seen = max(run.ranks.values()) + 1 if run.ranks else None
    shown = f"ranks 0-{seen - 1} appear ({', '.join(sorted(run.ranks))})" if seen else ""
    if stated is not None and (seen is None or seen <= stated):
        return stated, None
    if stated is not None:
        return seen, f"gpu count: the log says {said} but {shown}; using {seen}"
    if seen is not None and (run.distributed or seen > 1):
        return seen, f"gpu count: the log states none; {shown}; using {seen} (pass --gpu-num)"
    if run.distributed:
        return None, None
    return 1, "gpu count unknown: no record, --gpu-num or log evidence; assuming 1"


# ----------------------------------------------------------------------------- per-iteration files

def _json_objects(path: str, constant: Any = None) -> list[dict] | None:
    """The JSON objects of a JSON-lines file, one per line (NaN/Infinity as None, or what
    ``constant`` makes of them; lines that are not an object skipped); None when the file cannot
    be read."""
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
    except (OSError, ValueError):   # ValueError: a NUL byte in the path
        return None
    objects = (_parse_json(line, drop_constants=True, constant=constant)
               for line in text.splitlines())
    return [obj for obj in objects if isinstance(obj, dict)]


def _read_rank_file(path: str, rank: int) -> _RankFile | None:
    objects = _json_objects(path, constant=_Constant)
    if objects is None:
        return None
    data = _RankFile(rank=rank, meta={})
    last_iter = 0
    for obj in objects:
        if obj.get("kind") == "meta":
            meta = {k: None if isinstance(v, _Constant) else v for k, v in obj.items()}
            data = _RankFile(rank=rank, meta=meta)
            last_iter = 0
            continue
        iteration, time = _pos_int(obj.get("iter")), _number(obj.get("time"))
        if obj.get("kind") != "iter" or iteration is None or time is None:
            continue
        if iteration <= last_iter:  # a re-run appended without its own meta line
            data = _RankFile(rank=rank, meta=data.meta)
        last_iter = iteration
        data.iters.append(iteration)
        data.times.append(time)
        data.data_times.append(_finite(obj.get("data_time")))
        data.gap_times.append(_finite(obj.get("gap_time")))
        data.losses.append(_loss(obj.get("loss")))
        data.mems.append(_finite(obj.get("mem_mb")))
        data.gc_times.append(_finite(obj.get("gc_time")))
        data.gc_fulls.append(_finite(obj.get("gc_full")))
        data.cpu_times.append(_finite(obj.get("cpu_time")))
        data.stamps.append(_finite(obj.get("t")))
        data.energies.append(_finite(obj.get("energy_mj")))
    return data


def _rank_files(log_path: str) -> list[_RankFile]:
    pattern = glob.escape(os.path.basename(log_path)) + "_iters.rank*.jsonl"
    found = []
    for path in glob.glob(os.path.join(glob.escape(os.path.dirname(log_path)), pattern)):
        match = _RANK_FILE.search(path)
        if match is not None and (data := _read_rank_file(path, int(match.group(1)))):
            found.append(data)
    return sorted(found, key=lambda data: data.rank)


def _precision_class(precision: Any) -> str | None:
    if not isinstance(precision, str):
        return None
    text = precision.lower()
    if "bf16" in text or "bfloat16" in text:
        return "bf16"
    if "fp16" in text or "float16" in text or "half" in text or "amp" in text:
        return "fp16"
    if "fp32" in text or "float32" in text or "tf32" in text:
        return "fp32"
    return None


def _peak_tflops(device_name: Any, precision: Any) -> tuple[float | None, str | None]:
    """Datasheet dense peak (TFLOP/s) and its basis for a GPU name and precision, or Nones."""
    cls = _precision_class(precision)
    if not isinstance(device_name, str) or cls is None:
        return None, None
    for pattern, basis, peaks in _PEAKS:
        if pattern.search(device_name):
            column = "tf32" if cls == "fp32" and "tf32" in peaks else cls
            if column not in peaks:
                return None, None
            return peaks[column], f"{basis}, {_PEAK_LABELS[column]}"
    return None, None


# ----------------------------------------------------------------------------- statistics

def iteration_stats(times: Sequence[float], data_times: Sequence[float | None] | None,
                    warmup: int, batch_size: int, gpu_num: int) -> dict[str, Any]:
    """Statistics of per-iteration times after dropping the first ``warmup`` iterations.

    Times that are not finite and positive are left out (with their ``data_times`` entry).
    ``images_per_s`` = batch_size * gpu_num / mean time; ``images_per_s_ci95`` maps the 95% CI of
    the mean time (mean +- t * std / sqrt(n)) to images/s, its upper end None when mean - half
    width <= 0; ``std`` is the sample std (ddof=1), None for one iteration, as are ``cv``, the CI
    and ``steady``. The images/s figures are None when batch_size * gpu_num is not positive.
    Raises ValueError when no iteration is left or the arguments do not fit together.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if data_times is not None and len(data_times) != len(times):
        raise ValueError("times and data_times differ in length")
    waits = list(data_times) if data_times is not None else [None] * len(times)
    pairs = [(t, d) for t, d in list(zip(times, waits))[warmup:] if _good_time(t)]
    if not pairs:
        raise ValueError("no iteration left after warm-up")
    arr = [float(t) for t, _ in pairs]
    n = len(arr)
    images = batch_size * gpu_num
    mean = _mean(arr)
    p10, median, p90 = (_percentile(arr, q) for q in (10, 50, 90))
    std = _std(arr, mean) if n >= 2 else None
    halves = (_mean(arr[:n // 2]), _mean(arr[n // 2:])) if n >= 2 else None
    ci95 = None
    if std is not None and images > 0:
        half = t95(n - 1) * std / math.sqrt(n)
        ci95 = [_finite(images / (mean + half)),
                _finite(images / (mean - half)) if mean - half > 0 else None]
    waited = [(t, d) for t, d in pairs if d is not None and math.isfinite(d) and d >= 0]
    share = sum(d for _, d in waited) / sum(t for t, _ in waited) if waited else None
    steady = None
    if halves is not None:
        drift = _finite((halves[1] - halves[0]) / halves[0])
        steady = {"first_half_mean": _finite(halves[0]), "second_half_mean": _finite(halves[1]),
                  "drift": drift, "threshold": STEADY_THRESHOLD,
                  "ok": drift is not None and abs(drift) <= STEADY_THRESHOLD}
    return {"n": n, "warmup": warmup, "mean": _finite(mean), "median": _finite(median),
            "p10": _finite(p10), "p90": _finite(p90), "std": _finite(std),
            "cv": _finite(std / mean) if std is not None else None,
            "images_per_s": _finite(images / mean) if images > 0 else None,
            "images_per_s_ci95": ci95, "data_wait_share": _finite(share), "steady": steady}


def summarize_repeats(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary of ``REPEAT=N`` runs, each a speed dict or a stats dict (both carry FINAL_RESULT).

    ``runs`` lists every run's FINAL_RESULT in order; the statistics cover the passed runs only
    (JOB_FAIL_FLAG 0 and FINAL_RESULT > 0; ``failed`` counts the others). ``median`` is the
    FINAL_RESULT of the median run (the lower middle one for an even count), ``median_index`` its
    position in ``results``, so the caller can take that run's files. ``cv`` is the sample
    std / mean (None below two passed runs). All statistics are None when no run passed.
    """
    if not results:
        raise ValueError("no runs to summarize")
    runs = [_finite(r.get("FINAL_RESULT")) or 0.0 for r in results]
    passed = sorted((value, index) for index, (r, value) in enumerate(zip(results, runs))
                    if r.get("JOB_FAIL_FLAG") == 0 and value > 0)
    summary: dict[str, Any] = {"runs": runs, "median": None, "mean": None, "min": None,
                               "max": None, "cv": None, "median_index": None,
                               "failed": len(runs) - len(passed)}
    if passed:
        values = [value for value, _ in passed]
        median, median_index = passed[(len(passed) - 1) // 2]
        mean = _mean(values)
        summary.update(median=median, median_index=median_index, mean=mean,
                       min=min(values), max=max(values),
                       cv=_std(values, mean) / mean if len(passed) > 1 else None)
    return summary


def ratio_ci95(numer: Sequence[float], denom: Sequence[float]) -> dict[str, Any] | None:
    """The ratio of the means of two independent sets of run figures (e.g. the harness's
    images/s over plain mmseg's, one figure per run) with a 95% confidence interval, or None
    below two positive runs on either side.

    On the log scale, log(mean) has variance ~ s^2 / (n * mean^2) (delta method), so the log
    ratio's standard error is the root of the two sides' sum; Welch-Satterthwaite gives its
    degrees of freedom (rounded down), and the interval is ratio * exp(+-t95 * se): asymmetric, as
    a ratio's should be. Run-to-run spread, not the spread of iterations inside a run, is what
    decides how well a few runs resolve a ratio.
    """
    if len(numer) < 2 or len(denom) < 2 or min(*numer, *denom) <= 0:
        return None
    parts = []
    for xs in (numer, denom):
        mean = _mean(xs)
        parts.append((mean, (_std(xs, mean) / mean) ** 2 / len(xs), len(xs)))
    (m_n, v_n, n_n), (m_d, v_d, n_d) = parts
    var = v_n + v_d
    df = var * var / (v_n * v_n / (n_n - 1) + v_d * v_d / (n_d - 1)) if var > 0 else math.inf
    half = t95(max(1, int(df)) if math.isfinite(df) else 10**6) * math.sqrt(var)
    ratio = m_n / m_d
    return {"ratio": ratio, "low": ratio * math.exp(-half), "high": ratio * math.exp(half),
            "df": df if math.isfinite(df) else None, "n": [n_n, n_d],
            "cv": [math.sqrt(v_n * n_n), math.sqrt(v_d * n_d)]}


def paired_ratio_ci95(numer: Sequence[float], denom: Sequence[float]) -> dict[str, Any] | None:
    """The geometric-mean ratio of matched pairs (``numer[i]`` ran at the same time as, and beside,
    ``denom[i]``: the two sides of a pair share the host's state) with a 95% confidence interval,
    or None below two positive pairs. On the log scale: the mean of the pairs' log ratios, its
    standard error from their spread, Student t with n - 1 degrees of freedom. Host drift common
    to both sides of a pair cancels in its ratio, so matched pairs resolve a ratio with fewer runs
    than :func:`ratio_ci95`'s independent sets when the host's speed moves run to run.
    ``cv`` is the spread of the pairs' ratios (the log ratios' standard deviation)."""
    if len(numer) != len(denom):
        raise ValueError(f"pairs need as many runs a side, not {len(numer)} and {len(denom)}")
    if len(numer) < 2 or min(*numer, *denom) <= 0:
        return None
    logs = [math.log(x / y) for x, y in zip(numer, denom)]
    n = len(logs)
    mean = _mean(logs)
    sd = _std(logs, mean)
    half = t95(n - 1) * sd / math.sqrt(n)
    ratio = math.exp(mean)
    return {"ratio": ratio, "low": ratio * math.exp(-half), "high": ratio * math.exp(half),
            "df": n - 1, "n": [n, n], "cv": sd, "paired": True}


# ----------------------------------------------------------------------------- analysis

HOST_BUSY = ("user", "nice", "system", "irq", "softirq")


def _host_samples(log_path: str) -> list[dict]:
    """``<log>_host.jsonl``'s samples (the launcher's, segbench.launch._HostSampler), oldest
    first; [] when there is no such file."""
    samples = [obj for obj in _json_objects(log_path + "_host.jsonl") or []
               if _finite(obj.get("t")) is not None
               and all(_number(obj.get(k)) is not None for k in (*HOST_BUSY, "idle"))]
    return sorted(samples, key=lambda o: o["t"])


def host_during(samples: Sequence[Mapping[str, Any]], start: float,
                end: float) -> dict[str, Any] | None:
    """The host's CPU use between wall-clock seconds ``start`` and ``end``, from cumulative
    /proc/stat samples: the shares of all CPUs' time that were busy, in iowait and stolen by the
    hypervisor over the samples spanning the period (the last at or before ``start`` to the first
    at or after ``end``; the nearest inside it where the sampling began late or ended early), and
    the largest steal share of any one interval between samples in it. None without two samples
    in or around the period."""
    inside = [s for s in samples if start <= s["t"] <= end]
    before = [s for s in samples if s["t"] < start][-1:]
    after = [s for s in samples if s["t"] > end][:1]
    span = before + inside + after
    if len(span) < 2:
        return None

    def delta(a, b, keys):
        return sum(max(0, (b.get(k) or 0) - (a.get(k) or 0)) for k in keys)

    every = (*HOST_BUSY, "idle", "iowait", "steal")
    total = delta(span[0], span[-1], every)
    if total <= 0:
        return None
    steals = [delta(a, b, ("steal",)) / t for a, b in zip(span, span[1:])
              if (t := delta(a, b, every)) > 0]
    return {"samples": len(span), "seconds": _finite(span[-1]["t"] - span[0]["t"]),
            "cpu_busy_share": _finite(delta(span[0], span[-1], HOST_BUSY) / total),
            "cpu_iowait_share": _finite(delta(span[0], span[-1], ("iowait",)) / total),
            "cpu_steal_share": _finite(delta(span[0], span[-1], ("steal",)) / total),
            "cpu_steal_share_max": _finite(max(steals)) if steals else None}


def _measured_span(rank: _RankFile, warmup: int) -> tuple[float, float] | None:
    """Wall-clock seconds from the end of the last warm-up iteration (or the first measured
    iteration's start) to the end of the last iteration, from the per-iteration ``t`` stamps."""
    if len(rank.stamps) <= warmup or rank.stamps[-1] is None:
        return None
    first = rank.stamps[warmup - 1] if warmup > 0 else None
    if first is None:
        start = rank.stamps[warmup]
        first = None if start is None else start - rank.times[warmup]
    return None if first is None else (first, rank.stamps[-1])


def _host_block(case: Mapping[str, Any], result: Mapping[str, Any] | None,
                log_path: str, ranks: list[_RankFile], warmup: int) -> dict | None:
    """The host's state before and after the run (segbench.env.host_probe), from the case and
    result records, and ``during``: its CPU use over the measured iterations (:func:`host_during`,
    from ``<log>_host.jsonl``); None for logs with neither."""
    before = case.get("host") if isinstance(case.get("host"), dict) else None
    after = result.get("host") if isinstance(result, Mapping) else None
    after = after if isinstance(after, dict) else None
    span = _measured_span(ranks[0], warmup) if ranks else None
    during = host_during(_host_samples(log_path), *span) if span else None
    if not (before or after or during):
        return None
    return {"before": before, "after": after, "during": during}


def _record_failure(run: _Run) -> str | None:
    """Why the run's harness record says it failed, or None."""
    if run.result_malformed:
        return "malformed result record"
    if run.result is None:
        return "incomplete run: no result record" if run.case is not None else None
    exit_code, reason = run.result.get("exit_code"), run.result.get("reason")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        return "malformed result record"
    if reason is not None:
        return _one_line(str(reason))
    if exit_code:
        return f"exit code {exit_code}"
    return None


def _window_block(run: _Run, images: int | None) -> tuple[dict[str, Any], float | None]:
    """The sidecar's ``window`` block -- :func:`iteration_stats` over the windows, the skipped ones
    as warm-up -- and the window images/s figure (None if unknown)."""
    times = [w.time for w in run.windows]
    counted = times[SKIP_WINDOWS:]
    good = [t for t in counted if _good_time(t)]
    block: dict[str, Any] = {"n": len(good), "skipped": len(times) - len(counted),
                             "ignored_bad": len(counted) - len(good), "mean_time": None,
                             "median_time": None, "std_time": None, "cv": None,
                             "images_per_s": None, "images_per_s_median": None,
                             "images_per_s_ci95": None, "steady": None}
    if not good:
        return block, None
    stats = iteration_stats(times, None, SKIP_WINDOWS, images or 0, 1)
    median = stats["median"]
    block.update(mean_time=stats["mean"], median_time=median, std_time=stats["std"],
                 cv=stats["cv"], images_per_s=stats["images_per_s"],
                 images_per_s_median=_finite(images / median) if images and median else None,
                 images_per_s_ci95=stats["images_per_s_ci95"], steady=stats["steady"])
    return block, stats["images_per_s"]


def _time_share(times: Sequence[float], parts: Sequence[float | None], warmup: int) -> float | None:
    """The share of the measured iterations' time that a per-iteration part (``parts[i]`` of
    ``times[i]``) took, as :func:`iteration_stats` counts the data wait; None when no iteration
    has the part (a file written before the field existed)."""
    if not any(p is not None for p in parts):
        return None
    return iteration_stats(times, parts, warmup, 0, 0)["data_wait_share"]


def _per_iter_block(ranks: list[_RankFile], warmup: int, images: tuple[int, int] | None,
                    window_ips: float | None) -> dict[str, Any] | None:
    if not ranks:
        return None
    first = ranks[0]
    try:
        stats = iteration_stats(first.times, first.data_times, warmup, *(images or (0, 0)))
    except ValueError:
        return None
    ratio = None
    if window_ips is not None and stats["images_per_s"]:
        ratio = _finite(window_ips / stats["images_per_s"])
    # between_share: the share of time between iterations -- the data wait plus mmengine's loop
    # bookkeeping (model.train(), hooks); data_wait_source says whether data_wait_share is the
    # timed wait for the batch ("iterator") or, in older files, that whole gap ("gap")
    between = _time_share(first.times, first.gap_times, warmup)
    source = first.meta.get("data_time_source") or "gap"
    # gc_share: the share of time Python's garbage collector ran (files written before it: None)
    gc_share = _time_share(first.times, first.gc_times, warmup)
    gc_full = (int(sum(f for f in first.gc_fulls[warmup:] if f is not None))
               if any(g is not None for g in first.gc_times) else None)
    return {"n": stats.pop("n"), "warmup": stats.pop("warmup"), "rank_files": len(ranks),
            **stats, "between_share": between, "data_wait_source": source,
            "gc_share": gc_share, "gc_full_collections": gc_full,
            **_cpu_fields(first, warmup), "window_vs_per_iter": ratio}


def _cpu_fields(rank: _RankFile, warmup: int) -> dict[str, Any]:
    """The trainer thread's CPU time over the measured iterations: ``cpu_share`` of their wall
    time, and the mean and CV of it per iteration. Where the step is the host launching kernels,
    runs that differ in wall time but not in CPU time per iteration waited longer (for the device,
    the batch or a host that did not run the thread); runs that differ in both did the same work
    on a slower CPU -- or spun longer in a device synchronisation (CUDA may spin on the CPU while
    it waits), which a profiler trace's GPU busy time tells apart. None for files written before
    the field existed."""
    share = _time_share(rank.times, rank.cpu_times, warmup)
    cpu = [c for t, c in list(zip(rank.times, rank.cpu_times))[warmup:]
           if _good_time(t) and c is not None]
    mean = _mean(cpu) if cpu else None
    std = _std(cpu, mean) if len(cpu) >= 2 else None
    return {"cpu_share": share, "cpu_time_mean": _finite(mean),
            "cpu_time_cv": _finite(std / mean) if std is not None and mean else None}


def _flops_block(meta: Mapping[str, Any], gpu_num: int | None, mean_time: float | None,
                 device: Any, precision: Any) -> dict[str, Any] | None:
    """FLOPs and TFLOP/s of all processes together; ``fraction_of_peak`` per GPU (one process's
    TFLOP/s over one GPU's peak)."""
    per_process = _finite(meta.get("flops_per_iter"))
    if per_process is None or per_process <= 0:
        return None
    total = _finite(per_process * gpu_num) if gpu_num else None
    achieved = _finite(total / mean_time / 1e12) if total and mean_time else None
    per_gpu = _finite(per_process / mean_time / 1e12) if mean_time else None
    peak, basis = (None, None) if device == "cpu" else _peak_tflops(meta.get("device_name"),
                                                                    precision)
    return {"per_iter_per_process": per_process, "per_iter_total": total,
            "tflops_achieved": achieved, "tflops_per_gpu": per_gpu, "peak_tflops": peak,
            "peak_basis": basis,
            "fraction_of_peak": _finite(per_gpu / peak) if per_gpu and peak else None}


def _peak_memory(ranks: list[_RankFile]) -> list[float | None] | None:
    peaks = [max((m for m in r.mems if m is not None), default=None) for r in ranks]
    return peaks if any(p is not None for p in peaks) else None


def _warmup_block(ranks: list[_RankFile], warmup: int) -> dict[str, Any] | None:
    """The warm-up iterations' cost, reported apart (they are excluded from ``per_iter``): the
    first iteration (where torch.compile, cuDNN autotuning and lazy initialisation land) and the
    sum over the warm-up iterations, from the lowest rank's per-iteration file."""
    if not ranks or not ranks[0].times:
        return None
    times = ranks[0].times[:warmup]
    return {"first_iter_s": _finite(ranks[0].times[0]), "warmup_total_s": _finite(sum(times)),
            "warmup_iters": len(times)}


def _tuned_switches(case: Mapping[str, Any]) -> list[str]:
    value = case.get("tuned")
    return [str(x) for x in value] if isinstance(value, list) else []


def _last_loss(ranks: list[_RankFile], run: _Run) -> float | None:
    """The last loss logged (per-iteration file first); None when it is not finite."""
    losses = [loss for loss in ranks[0].losses if loss is not None] if ranks else []
    losses = losses or [w.loss for w in run.windows if w.loss is not None]
    return _finite(losses[-1]) if losses else None


def _nonfinite_loss(ranks: list[_RankFile], run: _Run) -> str | None:
    """``loss not finite from iteration N``: the first NaN/inf loss of any rank's per-iteration
    file when they hold losses, else of the log's windows; None when every loss is finite."""
    if any(loss is not None for r in ranks for loss in r.losses):
        bad = [i for r in ranks for i, loss in zip(r.iters, r.losses)
               if loss is not None and not math.isfinite(loss)]
        return f"loss not finite from iteration {min(bad)}" if bad else None
    for index, w in enumerate(run.windows, 1):
        if w.loss is not None and not math.isfinite(w.loss):
            where = (f"window {index}" if w.key is None else f"iteration {w.key[1]}"
                     if w.key[0] == 0 else f"epoch {w.key[0]} iteration {w.key[1]}")
            return f"loss not finite from {where}"
    return None


def _speed(log_name: str, model_name: str, run_mode: Any, gpu_num: Any,
           final: float | None) -> dict[str, Any]:
    """The speed file's 10 keys, in order; ``final`` None marks a failed run."""
    return {"log_file": log_name, "model_name": model_name, "mission_name": MISSION_NAME,
            "direction_id": 0, "run_mode": run_mode, "index": 1, "gpu_num": gpu_num,
            "FINAL_RESULT": 0.0 if final is None else final,
            "JOB_FAIL_FLAG": 1 if final is None else 0, "UNIT": UNIT}


def _check_argument(name: str, value: int | None) -> None:
    if value is not None and _pos_int(value) is None:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class _Settings:
    """A run's batch size and GPU count for the figure, and the ``gpu_num`` / ``run_mode`` its
    speed file states (a record's exactly as recorded), with the warnings of guessing them."""

    bs: int | None
    gpus: int | None
    gpu_num: Any
    run_mode: Any
    warnings: tuple[str, ...]

    @property
    def images(self) -> int | None:
        return self.bs * self.gpus if self.bs and self.gpus else None


def _settings(run: _Run, batch_size: int | None, gpu_num: int | None,
              run_mode: str | None) -> _Settings:
    """See the module doc: a record's values as recorded (arguments only for missing keys), else
    arguments and the log's evidence."""
    case = run.case
    bs = _pos_int((case or {}).get("batch_size")) or batch_size or _config_batch_size(run)
    if case is not None:
        stated = case.get("gpu_num", gpu_num)    # a key present, even as null, wins
        return _Settings(bs, _pos_int(stated), stated, case.get("run_mode", run_mode), ())
    gpus, warning = (gpu_num, None) if gpu_num is not None else _log_gpu_num(run)
    mode = run_mode or (None if gpus is None else "sp" if gpus == 1 else "mp")
    return _Settings(bs, gpus, gpus, mode, (warning,) if warning else ())


def _figure(window_ips: float | None) -> float | None:
    return round(window_ips, 3) if window_ips is not None and math.isfinite(window_ips) else None


def _failure(run: _Run, s: _Settings, window: Mapping[str, Any], window_ips: float | None,
             ranks: list[_RankFile]) -> str | None:
    """Why the run failed (see the module doc), or None."""
    reason = _record_failure(run)
    if reason is None and run.case is None and run.crashes:
        reason = f"crashed: {run.crashes[0]}"
    reason = reason or _nonfinite_loss(ranks, run)
    if reason is None and not run.windows:
        reason = "no training windows"
    if reason is None and not window["n"]:
        reason = (f"no usable training window after skipping the first {SKIP_WINDOWS} "
                  f"({len(run.windows)} found, {window['ignored_bad']} ignored as bad)")
    if reason is None and s.bs is None:
        reason = ("unknown batch size: no case record, --batch-size, train_dataloader batch_size "
                  "or samples_per_gpu in the log")
    if reason is None and s.gpus is None:
        reason = (f"unknown gpu count: the case record says gpu_num {s.gpu_num!r}"
                  if run.case is not None else
                  "unknown gpu count: a distributed log (Distributed training: True) with no GPU "
                  "number, gpu_ids or ranks in it; pass --gpu-num")
    if reason is None and not _figure(window_ips):
        reason = (f"implausible throughput {window_ips!r} images/s "
                  f"(mean window time {window['mean_time']} s)")
    return reason


def _earlier_launches(runs: list[_Run], batch_size: int | None, gpu_num: int | None,
                      run_mode: str | None) -> list[dict[str, Any]]:
    """The launches before the last one (each through its last run): their own figure, window
    count and failure reason, by the same rules. Launches with no windows, record or crash (text
    before the first launch) are left out."""
    out = []
    for run in _launch_ends(runs)[:-1]:
        if not (run.windows or run.case is not None or run.result is not None or run.crashes):
            continue
        s = _settings(run, batch_size, gpu_num, run_mode)
        window, ips = _window_block(run, s.images)
        name = (run.case or {}).get("case")
        out.append({"case": name if isinstance(name, str) else None, "images_per_s": _figure(ips),
                    "windows": len(run.windows), "gpu_num": s.gpus, "batch_size": s.bs,
                    "reason": _failure(run, s, window, ips, [])})
    return out


def _spread_warnings(window: Mapping[str, Any], per_iter: Mapping[str, Any] | None) -> list[str]:
    """``not steady`` and ``noisy``: per-iteration checks where the files exist, else windows."""
    source, limit = ("per-iteration", NOISY_CV) if per_iter else ("window", NOISY_WINDOW_CV)
    block = per_iter or window
    steady, cv, out = block.get("steady"), block.get("cv"), []
    if steady and not steady["ok"]:
        drift = steady["drift"]
        change = "not finitely" if drift is None else f"{drift:+.1%}"
        out.append(f"not steady: {source} times drifted {change} from the first half of the "
                   f"measured ones to the second (threshold {STEADY_THRESHOLD:.0%})")
    if cv is not None and cv > limit:
        out.append(f"noisy: {source} CV {cv:.0%} (threshold {limit:.0%})")
    return out


def _load1(probe: Mapping[str, Any] | None) -> float | None:
    load = (probe or {}).get("loadavg")
    return _finite(load[0]) if isinstance(load, list) and load else None


def _host_warnings(host: Mapping[str, Any] | None, cpus: int | None) -> list[str]:
    """``host load``, ``steal`` and ``host slowed`` from the sidecar's ``host`` block."""
    if not host:
        return []
    before, after, during = host["before"] or {}, host["after"] or {}, host["during"] or {}
    out = []
    high = [f"{load:g} at the {when}" for when, load in (("start", _load1(before)),
                                                          ("end", _load1(after)))
            if cpus and load is not None and load > cpus]
    if high:
        out.append(f"host load: 1-minute load average {' and '.join(high)}, above the host's "
                   f"{cpus} CPUs")
    steal = _finite(during.get("cpu_steal_share"))
    if steal is not None and steal > STEAL_THRESHOLD:
        out.append(f"steal: the hypervisor took {steal:.1%} of the CPUs' time over the measured "
                   f"iterations (threshold {STEAL_THRESHOLD:.0%})")
    start, end = _finite(before.get("cpu_mloops_per_s")), _finite(after.get("cpu_mloops_per_s"))
    if start and start > 0 and end is not None and end < HOST_SLOWED_RATIO * start:
        out.append(f"host slowed: its CPU probe ran {end:g} M loops/s at the end against {start:g} "
                   f"at the start ({end / start:.2f}x; threshold {HOST_SLOWED_RATIO}x)")
    return out


def _profile_window(case: Mapping[str, Any]) -> list[int] | None:
    value = case.get("profile_window")
    if (isinstance(value, list) and len(value) == 2 and all(_pos_int(v) for v in value)
            and value[0] <= value[1]):
        return value
    return None


def _last_iteration(ranks: list[_RankFile], run: _Run, case: Mapping[str, Any]) -> int | None:
    """The last iteration the run reached: per-iteration file > last window > ``max_iter``."""
    if ranks and ranks[0].iters:
        return ranks[0].iters[-1]
    if run.keys and run.keys[-1][0] == 0:
        return run.keys[-1][1]
    return _pos_int(case.get("max_iter"))


def _profiler_warning(window: list[int] | None, warmup: int, last: int | None) -> list[str]:
    """``profiler``: the profiler window's part inside the measured iterations, if any."""
    if window is None:
        return []
    first, end = max(window[0], warmup + 1), window[1] if last is None else min(window[1], last)
    if first > end:
        return []
    return [f"profiler: iterations {first}-{end} of the measured ones ran under torch.profiler"]


def analyze(log_path: str | os.PathLike[str], model_name: str, *, batch_size: int | None = None,
            gpu_num: int | None = None, run_mode: str | None = None) -> Result:
    """Analyse one log: the speed dict, the stats sidecar dict and the failure reason if any.

    ``batch_size`` (per process), ``gpu_num`` (world size) and ``run_mode`` (``sp``|``mp``) are the
    command-line values; the log's ``[segbench] case:`` record overrides them. Never raises for
    any log content; an unreadable log gives a failed Result with ``exit_code`` 2. Raises
    ValueError only for invalid arguments.
    """
    _check_argument("batch_size", batch_size)
    _check_argument("gpu_num", gpu_num)
    if run_mode not in (None, "sp", "mp"):
        raise ValueError(f"run_mode must be 'sp' or 'mp', got {run_mode!r}")
    log_path = os.fspath(log_path)
    try:
        runs, read_error = _split_runs(_read_log(log_path)), None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        runs, read_error = [_Run()], f"cannot read log: {getattr(exc, 'strerror', None) or exc}"
    run = _measured_run(runs)
    s = _settings(run, batch_size, gpu_num, run_mode)
    window, window_ips = _window_block(run, s.images)
    ranks = [] if read_error else _rank_files(log_path)
    reason = read_error or _failure(run, s, window, window_ips, ranks)
    final = _figure(window_ips)
    speed = _speed(os.path.basename(log_path), model_name, s.run_mode, s.gpu_num,
                   final if reason is None else None)
    stats = _sidecar(log_path, model_name, run, s, window, window_ips, ranks, speed, reason)
    stats["earlier_launches"] = _earlier_launches(runs, batch_size, gpu_num, run_mode)
    exit_code = 0 if reason is None else 2 if read_error else 1
    return Result(speed=speed, stats=stats, reason=reason, exit_code=exit_code,
                  warnings=tuple(stats["warnings"]))


def _sidecar(log_path: str, model_name: str, run: _Run, s: _Settings, window: dict[str, Any],
             window_ips: float | None, ranks: list[_RankFile], speed: Mapping[str, Any],
             reason: str | None) -> dict[str, Any]:
    """The stats sidecar (see docs/FORMATS.md), its warnings included."""
    case = run.case or {}
    warmup = WARMUP_LOG_INTERVALS * (_pos_int(case.get("log_interval")) or DEFAULT_LOG_INTERVAL)
    meta = ranks[0].meta if ranks else {}
    per_iter = _per_iter_block(ranks, warmup, (s.bs, s.gpus) if s.images else None, window_ips)
    device = case.get("device") or meta.get("device")
    mean_time = per_iter["mean"] if per_iter else window["mean_time"]
    precision = meta.get("precision") or case.get("fp_item")
    host = _host_block(case, run.result, log_path, ranks, warmup)
    env_info = case.get("env") if isinstance(case.get("env"), dict) else {}
    profile_window = _profile_window(case)
    warnings = [*s.warnings, *_spread_warnings(window, per_iter),
                *_host_warnings(host, _pos_int(env_info.get("host_cpus"))),
                *_profiler_warning(profile_window, warmup, _last_iteration(ranks, run, case))]
    log_name = os.path.basename(log_path)
    case_name = case.get("case") if isinstance(case.get("case"), str) else None
    final = _figure(window_ips)
    median = window["images_per_s_median"]
    return {"schema": STATS_SCHEMA, "case": case_name or log_name, "model": model_name,
            "run_mode": s.run_mode, "fp_item": case.get("fp_item"), "batch_size": s.bs,
            "gpu_num": s.gpu_num, "nnodes": _pos_int(case.get("nnodes")), "device": device,
            "profile": case.get("profile"),
            "run_seconds": _finite((run.result or {}).get("elapsed_s")),
            "FINAL_RESULT": speed["FINAL_RESULT"], "JOB_FAIL_FLAG": speed["JOB_FAIL_FLAG"],
            "images_per_s_median": round(median, 3) if median is not None else None,
            "reason": reason, "partial_images_per_s": final if reason is not None else None,
            "flagged": bool(warnings), "warnings": warnings,
            "tuned": _tuned_switches(case), "compile_mode": case.get("compile_mode"),
            "compile_scope": case.get("compile_scope"),
            "cudnn_benchmark": case.get("cudnn_benchmark"), "cpu_affinity": case.get("cpu_affinity"),
            "profile_window": profile_window, "window": window, "per_iter": per_iter,
            "warmup": _warmup_block(ranks, warmup),
            "memory": {"peak_mb_per_rank": _peak_memory(ranks),
                       "device_index_per_rank": [r.meta.get("device_index") for r in ranks] or None},
            "flops": _flops_block(meta, s.gpus, mean_time, device, precision),
            "energy": energy.summarize([(r.stamps, r.energies) for r in ranks], warmup, s.images,
                                       meta.get("energy_reason") or (None if ranks else
                                                                     "no per-iteration files")),
            "last_loss": _last_loss(ranks, run), "env": case.get("env"), "host": host,
            "command": case.get("command"), "log_file": log_name}


# ----------------------------------------------------------------------------- output

def speed_path_to_stats_path(speed_path: str | os.PathLike[str]) -> str:
    """``<dir>/<case>_stats.json`` for ``<dir>/<case>_speed`` (no ``_speed`` suffix: whole name)."""
    directory, name = os.path.split(os.fspath(speed_path))
    case = name[:-len("_speed")] if name.endswith("_speed") and name != "_speed" else name
    return os.path.join(directory, case + "_stats.json")


def _discard(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as one line of UTF-8 JSON (non-ASCII kept) to ``path`` atomically.

    The text goes to a temporary file in the same directory, is flushed to disk and renamed over
    ``path``; readers see the old file or the whole new one. Mode 0644. On failure the temporary
    file is removed and OSError is raised with ``filename`` = ``path`` (ValueError for NaN or
    infinite numbers in ``obj``).
    """
    path = os.fspath(path)
    data = (json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n").encode(
        "utf-8", errors="backslashreplace")
    directory, name = os.path.split(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OSError(exc.errno, exc.strerror or str(exc), path) from exc
    except BaseException:
        _discard(tmp)
        raise


def write_outputs(result: Result, speed_path: str | os.PathLike[str]) -> None:
    """Write ``result``'s speed file to ``speed_path``, its stats sidecar and the later PaddlePaddle
    benchmark's 14-key record (segbench.paddle, ``<case>_paddle.json``) beside it.

    All are written atomically; raises OSError whose ``filename`` is the file not written.
    """
    write_json_atomic(speed_path, result.speed)
    stats_path = speed_path_to_stats_path(speed_path)
    write_json_atomic(stats_path, result.stats)
    write_json_atomic(stats_path[:-len("_stats.json")] + paddle.SUFFIX,
                      paddle.result(result.stats, result.stats.get("nnodes") or 1,
                                    result.stats.get("run_seconds")))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Write the speed file and stats sidecar for one training log.")
    parser.add_argument("model_name", metavar="MODEL_NAME")
    parser.add_argument("log_file", metavar="LOG_FILE")
    parser.add_argument("speed_file", metavar="SPEED_FILE")
    parser.add_argument("--batch-size", type=_positive_int, help="per-process batch size")
    parser.add_argument("--gpu-num", type=_positive_int, help="world size")
    parser.add_argument("--run-mode", choices=("sp", "mp"))
    return parser


def _print_json(obj: Any) -> None:
    try:
        print(json.dumps(obj, ensure_ascii=False))
    except UnicodeEncodeError:
        print(json.dumps(obj))


def main(argv: Sequence[str]) -> int:
    """CLI entry: analyse, write the speed file and sidecar; exit 0 passed, 1 failed, 2 I/O error.

    On success the speed JSON goes to stdout (warnings to stderr); on failure one line
    ``analysis_log.py: <model> <log>: <reason>`` goes to stderr.
    """
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    result = analyze(args.log_file, args.model_name, batch_size=args.batch_size,
                     gpu_num=args.gpu_num, run_mode=args.run_mode)
    label = _one_line(f"{args.model_name} {args.log_file}")
    if result.reason is not None:
        print(f"{PROG}: {label}: {result.reason}", file=sys.stderr)
    try:
        write_outputs(result, args.speed_file)
    except OSError as exc:
        print(f"{PROG}: cannot write {_one_line(str(exc.filename))}: {exc.strerror}",
              file=sys.stderr)
        return 2
    if result.ok:
        for warning in result.warnings:
            print(f"{PROG}: warning: {label}: {warning}", file=sys.stderr)
        _print_json(result.speed)
    return result.exit_code
