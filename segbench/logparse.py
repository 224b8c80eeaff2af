"""Reading a training log into launches and runs: their training windows, records and evidence.

A window is one training log line (every ``log_interval`` iterations); its ``time`` is the
logger's running mean over the window. Log formats understood (line by line, so mixed files work):

* mmengine stdout / file log: ``... - mmengine - INFO - Iter(train) [ 10/500]  ... time: 0.2``
  and ``Epoch(train) [1][ 10/100] ...``; ``Iter(val)``, ``Iter(test)``, ``Epoch(val)`` never count;
* mmengine ``vis_data/scalars.json``: a line that parses as a JSON object is a training window
  when it has a numeric ``time`` and an ``lr`` or ``loss`` key (validation objects have neither);
* mmseg 0.x / mmcv 1.x: ``... - mmseg - INFO - Iter [50/320000]\\tlr: ..., time: 0.745, ...`` and
  ``Epoch [1][50/100]\\t...``.

``time:`` is matched with a word boundary, so ``data_time:`` never counts. ANSI colour codes, CR
line ends and torchrun's ``[rank0]:`` / ``[default0]:`` line prefixes are stripped first. A final
line without a newline is dropped when it does not parse completely (a cut JSON object, a record
whose JSON is cut, a training line whose ``time`` value runs into the end of the file).

Records. ``[segbench] case:`` and ``[segbench] result:`` lines carry the launcher's JSON (NaN and
infinities dropped); a result record that is not a JSON object marks the run's
``result_malformed``. Crashes: a Python traceback (tracked per rank prefix, as ranks' lines
interleave) is noted by its last line, the exception's ``Name: message`` (``Run.crashes``); a
traceback right after ``--- Logging error ---`` or ``Exception ignored in`` does not count.

Launches. A ``[segbench] case:`` line always starts a new launch. An mmengine ``System
environment:`` header or an mmseg 0.x ``Environment info:`` header starts a new launch when the
current one already has training windows, a result record or a header of its own (so the header
that follows a ``case:`` line belongs to that case). Inside a launch, a training iteration key
(``(0, iter)`` or ``(epoch, iter)``) that goes backwards starts a new run of the same launch, which
keeps the launch's record and config evidence -- except that a key equal to one of the last
``RANK_LAG_WINDOWS`` keys of the run is another rank's copy of a window already counted: each
iteration counts once per run (first copy wins), tolerating ranks whose output lags a few windows
behind. A log's figures come from the LAST launch, through its last run (:func:`measured_run`);
:func:`launch_ends` gives every launch's last run.

Evidence. Batch size from the config dump (:func:`config_batch_size`): ``batch_size=`` directly
inside the config dump's ``train_dataloader = dict(...)`` > mmseg 0.x ``samples_per_gpu=``
directly inside ``data = dict(...)``. GPU count from the log alone (:func:`log_gpu_num`, for logs
without a ``case:`` record): the log's stated count (mmengine header ``GPU number: N``, else mmseg
0.x's ``gpu_ids = range(0, N)``, which mmseg 0.x's tools/train.py sets to the world size in
distributed runs) > the ranks the log shows (torchrun's line prefixes, its failure report's
``rank : N (local_rank: ...)`` lines, NCCL's per-rank messages) > 1 with a warning, except that a
distributed log (``Distributed training: True``) with no evidence gives None (never a silent 1).
Where the ranks seen exceed the stated count, the ranks win (rank N proves N + 1 processes), with
a warning naming both.
"""

from __future__ import annotations

import calendar
import os
import re
from dataclasses import dataclass, field
from typing import Any

from segbench.values import as_loss, number, one_line, parse_json, pos_int


RANK_LAG_WINDOWS = 4
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


@dataclass
class Window:
    """One training window: its iteration key (``(0, iter)`` or ``(epoch, iter)``; None for a
    scalars.json line without one), mean iteration time, loss and logging second."""

    key: tuple[int, int] | None
    time: float
    loss: float | None                # as logged: NaN and inf kept (a diverged run fails)
    stamp: int | None = None   # the line's logging second (see stamped_windows); None: no stamp


@dataclass
class Run:
    """One run of a log: its record lines, training windows and evidence lines. ``launch``
    numbers the launch it belongs to (several runs when the iteration counter restarted in it)."""

    launch: int = 0
    case: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    result_malformed: bool = False
    header: bool = False
    windows: list[Window] = field(default_factory=list)
    keys: list[tuple[int, int]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    gpu_number: int | None = None
    distributed: bool | None = None
    gpu_ids: int | None = None
    gpu_ids_text: str | None = None
    ranks: dict[str, int] = field(default_factory=dict)   # what showed ranks -> the highest one
    crashes: list[str] = field(default_factory=list)      # exception lines that ended tracebacks

    def continuation(self) -> Run:
        """A run started by the iteration counter going backwards inside one launch (a crash
        before it is not carried over: training went on)."""
        return Run(launch=self.launch, case=self.case, header=self.header, text=list(self.text),
                   gpu_number=self.gpu_number, distributed=self.distributed,
                   gpu_ids=self.gpu_ids, gpu_ids_text=self.gpu_ids_text, ranks=dict(self.ranks))

    def add_window(self, window: Window) -> Run:
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


def _clean_line(raw: str) -> tuple[str, int | None]:
    """The line without colour codes, CR and torchrun's rank prefix, and that prefix's rank."""
    line = raw.rstrip("\r")
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if line.startswith("[") and (prefix := _RANK_PREFIX.match(line)):
        return line[prefix.end():], int(prefix.group(1))
    return line, None


def read_log(path: str | os.PathLike[str]) -> str:
    """The log's text (undecodable bytes replaced); raises OSError (ValueError: a NUL in the path)."""
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")


def _json_window(obj: dict[str, Any]) -> Window | None:
    """The training window a scalars.json object stands for, if it is one."""
    time = number(obj.get("time"))
    if time is None or not ("lr" in obj or "loss" in obj):
        return None
    iteration = pos_int(obj.get("iter")) or pos_int(obj.get("step"))
    return Window(key=None if iteration is None else (0, iteration), time=time,
                  loss=as_loss(obj.get("loss")))


def _text_window(line: str, partial: bool) -> Window | None:
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
    return Window(key=key, time=float(time.group(1)),
                  loss=float(loss.group(1)) if loss else None,
                  stamp=calendar.timegm((2000, *map(int, stamp.groups()))) if stamp else None)


def _exception_text(line: str) -> str | None:
    """``Name: message`` (the dotted name's last part, cut to 200 characters) of the line that
    ends a traceback, or None when the line is not an exception's."""
    match = _EXCEPTION.match(line)
    if match is None:
        return None
    name, message = match.group(1).rsplit(".", 1)[-1], (match.group(2) or "").strip()
    return one_line(f"{name}: {message}" if message else name)[:200]


class _LogParser:
    """Feeds cleaned lines into a list of runs (see the module doc for the splitting rules)."""

    def __init__(self) -> None:
        self.runs: list[Run] = [Run()]
        self._in_traceback: set[int | None] = set()   # the rank prefixes whose traceback is open
        self._previous = ""

    @property
    def current(self) -> Run:
        return self.runs[-1]

    def _launch(self, run: Run) -> None:
        run.launch = self.current.launch + 1
        self.runs.append(run)

    def feed(self, line: str, rank: int | None, partial: bool) -> None:
        if "[segbench]" in line and self._record(line, partial):
            return
        if rank is not None:
            self._rank_seen(_PREFIX_EVIDENCE, rank)
        stripped = line.strip()
        if stripped.startswith("{"):
            obj = parse_json(stripped, drop_constants=False)
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
                self._launch(Run())
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
        obj = parse_json(match.group(2).strip(), drop_constants=True)
        if not isinstance(obj, dict):
            obj = None
        if obj is None and partial:
            return True
        if match.group(1) == "case":
            self._launch(Run(case=obj or {}))
        else:
            self.current.result = obj
            self.current.result_malformed = obj is None
        return True

    def _add_window(self, window: Window) -> None:
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
            run.gpu_number = pos_int(int(match.group(1))) or run.gpu_number
        if "Distributed training" in line and (match := _DISTRIBUTED.search(line)):
            run.distributed = match.group(1) == "True"
        if "gpu_ids" in line and (match := _GPU_IDS.match(line)):
            if match.group(3) is not None:
                count = len(re.findall(r"\d+", match.group(3)))
            elif match.group(2) is not None:
                count = int(match.group(2)) - int(match.group(1))
            else:
                count = int(match.group(1))
            if pos_int(count):
                run.gpu_ids, run.gpu_ids_text = count, match.group(0).strip()
        if "ank" in line:
            for what, pattern in _RANK_SEEN:
                if match := pattern.search(line):
                    self._rank_seen(what, int(next(g for g in match.groups() if g is not None)))


def split_runs(text: str) -> list[Run]:
    """A log's text as its runs, in order (see the module doc); never empty."""
    parser = _LogParser()
    lines = text.split("\n")
    ends_cut = lines[-1] != ""
    if not ends_cut:
        lines.pop()
    for index, raw in enumerate(lines):
        parser.feed(*_clean_line(raw), partial=ends_cut and index == len(lines) - 1)
    return parser.runs


def launch_ends(runs: list[Run]) -> list[Run]:
    """The last run of each launch, in order (the run a launch's figures come from)."""
    return [run for run, after in zip(runs, runs[1:] + [None])
            if after is None or after.launch != run.launch]


def measured_run(runs: list[Run]) -> Run:
    """The run a log's figures come from: the last launch's last run."""
    return runs[-1]


def stamped_windows(log_path: str | os.PathLike[str]) -> list[tuple[int | None, float]]:
    """The training windows of the run segbench.analysis.analyze measures, as (the second the window's line
    was logged, its mean iteration time). The second is mmengine's ``MM/DD HH:MM:SS`` stamp counted
    into a leap year (the log has no year: only differences between stamps of one log or of logs of
    one host mean anything); None for a window without one (a scalars.json line, an mmcv 1.x log)."""
    run = measured_run(split_runs(read_log(log_path)))
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
            return pos_int(int(match.group(1)))
    return None


def config_batch_size(run: Run) -> int | None:
    """The per-process batch size the run's config dump states (see the module doc), or None."""
    text = "\n".join(run.text)
    return (_dict_key_in_config(text, _TRAIN_LOADER, "batch_size")
            or _dict_key_in_config(text, _DATA_DICT, "samples_per_gpu"))


def log_gpu_num(run: Run) -> tuple[int | None, str | None]:
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
