"""Tests for segbench.iterfiles: the per-iteration files and host samples beside a log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from segbench.iterfiles import host_during, measured_host_use, rank_files


def host_sample(t: float, busy: int, idle: int, steal: int = 0, iowait: int = 0) -> dict:
    return {"t": t, "user": busy, "nice": 0, "system": 0, "idle": idle, "iowait": iowait,
            "irq": 0, "softirq": 0, "steal": steal}


def iter_row(iteration: object, time: object, **extra: object) -> str:
    """One ``iter`` line; string values are written as they are (``NaN``, ``"x"``)."""
    fields = {"kind": '"iter"', "iter": iteration, "time": time, **extra}
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


def test_rank_files_keep_each_files_latest_run_lowest_rank_first(tmp_path: Path) -> None:
    """A meta line starts the file over with its meta, an iteration number that does not increase
    starts it over keeping the meta (a re-run appended without one); rows that are not a
    positive iteration with a numeric time are skipped, NaN losses kept; ranks sort numerically."""
    log = tmp_path / "case"
    rank1 = ['{"kind": "meta", "device_name": "A"}', iter_row(1, 0.5), iter_row(2, 0.5),
             '{"kind": "meta", "device_name": "B", "flops_per_iter": NaN}',
             iter_row(1, 0.2), iter_row(2, 0.3), iter_row(3, 0.4),
             iter_row(2, 0.1, loss=1.5), iter_row(3, 0.1, loss="NaN")]
    rank0 = ['{"kind": "meta", "device_name": "C"}', iter_row(0, 0.2), iter_row(1, '"x"'),
             '{"kind": "other", "iter": 1, "time": 0.2}', "not json", iter_row(1, 0.2, t=5.0)]
    for rank, rows in ((1, rank1), (0, rank0), (10, rank0), (2, rank0)):
        (tmp_path / f"case_iters.rank{rank}.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "case_iters.rank3.jsonl.bak").write_text(iter_row(1, 0.2))
    (tmp_path / "other_iters.rank4.jsonl").write_text(iter_row(1, 0.2))
    files = rank_files(str(log))
    assert [f.rank for f in files] == [0, 1, 2, 10]
    first, second = files[0], files[1]
    assert first.meta == {"kind": "meta", "device_name": "C"}
    assert first.iters == [1] and first.times == [0.2] and first.stamps == [5.0]
    assert first.losses == [None] and first.gap_times == [None]
    assert second.meta == {"kind": "meta", "device_name": "B", "flops_per_iter": None}
    assert second.iters == [2, 3] and second.times == [0.1, 0.1]
    assert second.losses[0] == 1.5 and math.isnan(second.losses[1])
    assert rank_files(str(tmp_path / "absent")) == []


def test_measured_host_use_spans_the_measured_iterations(tmp_path: Path) -> None:
    """From the end of the last warm-up iteration (or the first measured one's start) to the end
    of the last iteration, by the lowest rank's stamps; None without a host file or stamps."""
    log = tmp_path / "case"
    rows = [iter_row(i + 1, 1.0, t=10.0 + i) for i in range(4)]    # iterations end at t = 10..13
    (tmp_path / "case_iters.rank0.jsonl").write_text("\n".join(rows) + "\n")
    ranks = rank_files(str(log))
    assert measured_host_use(str(log), ranks, 2) is None             # no host file yet
    samples = [host_sample(8.5, 0, 0), host_sample(9.5, 5, 5), host_sample(10.5, 10, 10),
               host_sample(11.5, 20, 15, steal=5), host_sample(12.0, 40, 20, steal=10),
               host_sample(13.5, 70, 30, steal=20), host_sample(20.0, 900, 900, steal=20)]
    (tmp_path / "case_host.jsonl").write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    during = measured_host_use(str(log), ranks, 2)     # measured: t = 11 to 13, samples 10.5-13.5
    assert during["samples"] == 4 and during["seconds"] == 3.0
    assert during["cpu_steal_share"] == pytest.approx(20 / 100)
    assert measured_host_use(str(log), ranks, 0)["samples"] == 6     # from 9 (10 - 1.0 s) to 13
    assert measured_host_use(str(log), ranks, 4) is None             # nothing measured
    assert measured_host_use(str(log), [], 2) is None


def test_host_during_takes_the_samples_that_span_the_period() -> None:
    samples = [host_sample(0, 0, 0), host_sample(10, 100, 100),         # before: not counted
               host_sample(20, 200, 200, steal=0),
               host_sample(21, 250, 220, steal=30, iowait=0),            # 30 of 100 ticks stolen
               host_sample(22, 300, 290, steal=30, iowait=10),
               host_sample(30, 900, 900, steal=30, iowait=10)]           # after: not counted
    during = host_during(samples, 20.5, 21.5)    # spans the samples at 20 and 22
    assert during["samples"] == 3 and during["seconds"] == 2
    total = 100 + 90 + 30 + 10       # busy, idle, steal, iowait between t=20 and t=22
    assert during["cpu_busy_share"] == pytest.approx(100 / total)
    assert during["cpu_steal_share"] == pytest.approx(30 / total)
    assert during["cpu_iowait_share"] == pytest.approx(10 / total)
    assert during["cpu_steal_share_max"] == pytest.approx(30 / 100)
    assert host_during(samples, 40, 50) is None      # only one sample near it
    assert host_during([], 0, 1) is None
    assert host_during([host_sample(0, 5, 5), host_sample(1, 5, 5)], 0, 1) is None   # no ticks
