"""Tests for segbench.logparse: a log read into launches, runs, windows and evidence.

How these rules decide the figures (FINAL_RESULT, failure reasons, warnings) is tested through
segbench.analysis.analyze in tests/test_analysis.py; here the parser's own results are checked.
"""

from __future__ import annotations

from pathlib import Path

from segbench.logparse import (RANK_LAG_WINDOWS, config_batch_size, launch_ends, log_gpu_num,
                               measured_run, read_log, split_runs)

LOGS = Path(__file__).parent / "logs"
HEADER = "11/29 03:00:00 - mmengine - INFO - \nSystem environment:\n    GPU number: {n}\n"


def line(iteration: int, time: str = "0.2000", prefix: str = "") -> str:
    return (f"{prefix}11/29 03:00:{iteration % 60:02d} - mmengine - INFO - Iter(train) "
            f"[{iteration:>3}/500]  lr: 1.0e-02  time: {time}  data_time: 0.0100  loss: 1.5000\n")


def windows(text: str) -> list[list[int]]:
    """Each run's window iterations, in order."""
    return [[w.key[1] for w in run.windows] for run in split_runs(text)]


def test_launches_of_a_log_with_three_of_them() -> None:
    """two_runs.log: a plain launch, a torchrun relaunch (both ranks print), and a relaunch that
    ran out of memory before training; each launch's last run, the last one measured."""
    runs = split_runs(read_log(LOGS / "two_runs.log"))
    ends = launch_ends(runs)
    assert [(r.launch, len(r.windows), r.gpu_number) for r in ends] == [(0, 8, 1), (1, 8, 2), (2, 0, 1)]
    assert measured_run(runs) is ends[-1] and ends[-1].crashes == [
        "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."]
    assert ends[1].ranks == {"torchrun's [rankN]: line prefixes": 1}


def test_headers_and_case_records_start_launches() -> None:
    """A header starts a launch only when the current one has windows, a result or a header; the
    header that follows a case record belongs to that case; a case record always starts one."""
    text = (HEADER.format(n=1) + line(10) + HEADER.format(n=2) + line(10)
            + '[segbench] case: {"case": "c"}\n' + HEADER.format(n=4) + line(10)
            + '[segbench] result: {"exit_code": 0}\n' + HEADER.format(n=8) + HEADER.format(n=16))
    runs = split_runs(text)
    assert [(r.launch, r.gpu_number, len(r.windows)) for r in runs] == [
        (0, 1, 1), (1, 2, 1), (2, 4, 1), (3, 8, 0), (4, 16, 0)]
    assert runs[2].case == {"case": "c"} and runs[2].result == {"exit_code": 0}
    assert runs[3].case is None and runs[3].result is None and runs[4].header


def test_counter_going_back_starts_a_run_of_the_same_launch() -> None:
    """Another rank's copy of one of the last RANK_LAG_WINDOWS windows counts once; a key further
    back starts a new run that keeps the launch's record and evidence, not its crash."""
    lagging = "".join(line(10 * i) for i in range(1, 7)) + line(60 - 10 * (RANK_LAG_WINDOWS - 1))
    assert windows(lagging) == [[10, 20, 30, 40, 50, 60]]
    text = ('[segbench] case: {"case": "c"}\n' + HEADER.format(n=2)
            + "".join(line(10 * i) for i in range(1, 7))
            + "Traceback (most recent call last):\nRuntimeError: once\n"
            + line(10) + line(20))
    runs = split_runs(text)
    assert [[w.key[1] for w in r.windows] for r in runs[1:]] == [[10, 20, 30, 40, 50, 60], [10, 20]]
    assert runs[1].launch == runs[2].launch == 1
    assert runs[2].case == {"case": "c"} and runs[2].gpu_number == 2
    assert runs[1].crashes == ["RuntimeError: once"] and runs[2].crashes == []


def test_lines_are_cleaned_and_a_cut_last_line_dropped() -> None:
    """Colour codes, CR and torchrun's rank prefix go; a last line without a newline counts only
    when its time value ends before the end of the file."""
    text = ("\x1b[32m" + line(10).replace("\n", "\r\n") + line(20, prefix="[rank3]:")
            + line(30, prefix="[default1]:") + line(40).rstrip("\n"))
    run = measured_run(split_runs(text))
    assert [w.key[1] for w in run.windows] == [10, 20, 30, 40] and run.windows[0].time == 0.2
    assert run.ranks == {"torchrun's [rankN]: line prefixes": 3}
    cut = line(10) + line(20) + "11/29 03:00:30 - mmengine - INFO - Iter(train) [ 30/500]  time: 0.2"
    assert windows(cut) == [[10, 20]]


def test_tracebacks_per_rank_prefix_and_the_ones_that_are_not_crashes() -> None:
    text = ("[rank0]:Traceback (most recent call last):\n[rank1]:Traceback (most recent call last):\n"
            '[rank0]:  File "x.py", line 1, in <module>\n[rank1]:ValueError: rank one\n'
            "[rank0]:KeyError: 'rank zero'\n--- Logging error ---\nTraceback (most recent call last):\n"
            "OSError: a logging handler's\n")
    assert measured_run(split_runs(text)).crashes == ["ValueError: rank one", "KeyError: 'rank zero'"]


def test_config_batch_size_and_the_logs_gpu_count() -> None:
    config = ("train_dataloader = dict(\n    dataset=dict(batch_size=9),\n    batch_size=6)\n"
              "data = dict(samples_per_gpu=3)\n")
    assert config_batch_size(measured_run(split_runs(config))) == 6
    assert config_batch_size(measured_run(split_runs(config.split("train_dataloader")[0]
                                                     + "data = dict(samples_per_gpu=3)\n"))) == 3
    assert config_batch_size(measured_run(split_runs("batch_size=4\n"))) is None
    stated = measured_run(split_runs(HEADER.format(n=2) + "[rank1]:x\n"))
    assert log_gpu_num(stated) == (2, None)
    more = measured_run(split_runs("gpu_ids = range(0, 1)\n[rank3]:x\n"))
    assert log_gpu_num(more) == (4, "gpu count: the log says gpu_ids = range(0, 1) but ranks 0-3 "
                                    "appear (torchrun's [rankN]: line prefixes); using 4")
    assert log_gpu_num(measured_run(split_runs("Distributed training: True\n"))) == (None, None)
    assert log_gpu_num(measured_run(split_runs("nothing\n")))[0] == 1
