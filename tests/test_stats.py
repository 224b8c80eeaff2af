"""Tests for segbench.stats: iteration statistics, repeat summaries and ratio intervals."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segbench.stats import iteration_stats, paired_ratio_ci95, ratio_ci95, summarize_repeats, t95

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("df, quantile", [
    (1, 12.706), (4, 2.776), (30, 2.042),   # tabulated
    (35, 2.042), (59, 2.021), (60, 2.000),  # between rows: the largest tabulated df not above
    (1000, 1.962), (1001, 1.960),           # beyond the table: the normal quantile
])
def test_t95_table(df: int, quantile: float) -> None:
    assert t95(df) == quantile


def test_iteration_stats_steady_and_filters() -> None:
    times = [9.0, 9.0, 0.2, 0.21, 0.2, 0.21, float("nan"), -1.0, 0.2, 0.21]
    stats = iteration_stats(times, None, 2, 2, 1)
    assert stats["n"] == 6 and stats["data_wait_share"] is None
    assert stats["steady"]["ok"] is True and abs(stats["steady"]["drift"]) < 0.05
    assert stats["mean"] == pytest.approx(0.205)
    single = iteration_stats([0.5], [0.1], 0, 1, 1)
    assert single["std"] is None and single["images_per_s_ci95"] is None
    assert single["steady"] is None
    with pytest.raises(ValueError):
        iteration_stats([0.1, 0.2], None, 2, 1, 1)
    with pytest.raises(ValueError):
        iteration_stats([0.1, 0.2], [0.0], 0, 1, 1)


@HYPOTHESIS
@given(st.lists(st.floats(min_value=1e-4, max_value=1e3), min_size=2, max_size=60),
       st.integers(1, 64), st.integers(1, 8))
def test_iteration_stats_ordering(times: list[float], batch_size: int, gpu_num: int) -> None:
    stats = iteration_stats(times, [0.0] * len(times), 0, batch_size, gpu_num)
    assert stats["p10"] <= stats["median"] <= stats["p90"]
    assert min(times) <= stats["mean"] * (1 + 1e-9) and stats["mean"] <= max(times) * (1 + 1e-9)
    lo, hi = stats["images_per_s_ci95"]
    assert lo <= stats["images_per_s"] * (1 + 1e-9)
    assert hi is None or hi >= stats["images_per_s"] * (1 - 1e-9)
    assert stats["cv"] >= 0 and stats["data_wait_share"] == 0.0


def test_summarize_repeats() -> None:
    runs = [{"FINAL_RESULT": 10.0, "JOB_FAIL_FLAG": 0}, {"FINAL_RESULT": 12.0, "JOB_FAIL_FLAG": 0},
            {"FINAL_RESULT": 0.0, "JOB_FAIL_FLAG": 1}, {"FINAL_RESULT": 11.0, "JOB_FAIL_FLAG": 0}]
    summary = summarize_repeats(runs)
    assert summary["runs"] == [10.0, 12.0, 0.0, 11.0] and summary["failed"] == 1
    assert summary["median"] == 11.0 and summary["median_index"] == 3
    assert summary["mean"] == 11.0 and summary["min"] == 10.0 and summary["max"] == 12.0
    assert summary["cv"] == pytest.approx(1.0 / 11.0)
    even = summarize_repeats(runs[:2])
    assert even["median"] == 10.0 and even["median_index"] == 0  # the lower middle run
    none = summarize_repeats(runs[2:3])
    assert none["median"] is None and none["failed"] == 1
    with pytest.raises(ValueError):
        summarize_repeats([])


def test_ratio_ci95_cases() -> None:
    """The ratio of means, an interval around it that narrows with more runs, None below two."""
    assert ratio_ci95([1.0], [1.0, 1.0]) is None and ratio_ci95([1.0, 2.0], [0.0, 1.0]) is None
    same = ratio_ci95([2.0, 2.0], [1.0, 1.0])
    assert same["ratio"] == same["low"] == same["high"] == 2.0
    few = ratio_ci95([10.0, 11.0], [10.5, 9.5])
    many = ratio_ci95([10.0, 11.0] * 8, [10.5, 9.5] * 8)
    assert few["ratio"] == pytest.approx(10.5 / 10.0) == many["ratio"]
    assert few["low"] < many["low"] < many["ratio"] < many["high"] < few["high"]
    assert few["n"] == [2, 2] and few["cv"][0] == pytest.approx(0.7071 / 10.5, rel=1e-3)


def test_ratio_ci95_covers_the_true_ratio_about_95_percent_of_the_time() -> None:
    """Simulated run figures with a known ratio (1.05) and this host's spread (CV 5% and 8%,
    4 and 6 runs): the interval holds the true ratio in ~95% of 4000 draws (a wrong standard
    error or quantile lands far from that: using the normal 1.96 instead of t gives ~90%)."""
    import random
    rng = random.Random(0)
    hits = 0
    for _ in range(4000):
        a = [rng.gauss(10.5, 0.525) for _ in range(4)]
        b = [rng.gauss(10.0, 0.8) for _ in range(6)]
        ci = ratio_ci95(a, b)
        hits += ci["low"] <= 1.05 <= ci["high"]
    assert 0.93 <= hits / 4000 <= 0.975


def test_paired_ratio_ci95_cancels_what_both_sides_of_a_pair_share() -> None:
    """Pairs that ran side by side: a host speed that moves from pair to pair (here by +-20%)
    moves both runs of a pair and cancels in their ratio, so the interval stays narrow where the
    independent-sets interval of the same figures is wide."""
    host = [1.0, 0.8, 1.2, 0.9, 1.1]
    plain = [10.0 * h for h in host]
    harness = [10.0 * h * r for h, r in zip(host, [0.99, 1.0, 0.985, 1.005, 0.995])]
    ci = paired_ratio_ci95(harness, plain)
    assert ci["paired"] and ci["n"] == [5, 5] and ci["df"] == 4
    assert 0.97 < ci["low"] < ci["ratio"] < ci["high"] < 1.01
    wide = ratio_ci95(harness, plain)
    assert wide["high"] - wide["low"] > 10 * (ci["high"] - ci["low"])
    assert paired_ratio_ci95([1.0], [1.0]) is None and paired_ratio_ci95([1.0, 2.0], [0.0, 1.0]) is None
    with pytest.raises(ValueError, match="as many runs a side"):
        paired_ratio_ci95([1.0, 2.0], [1.0])


def test_paired_ratio_ci95_covers_the_true_ratio_about_95_percent_of_the_time() -> None:
    """Simulated pairs (true ratio 0.98, a shared host factor with CV 10%, each run's own noise
    CV 2%, 4 pairs): the interval holds 0.98 in ~95% of 4000 draws."""
    import random
    rng = random.Random(1)
    hits = 0
    for _ in range(4000):
        host = [rng.gauss(1.0, 0.1) for _ in range(4)]
        p = [10.0 * h * rng.gauss(1.0, 0.02) for h in host]
        q = [9.8 * h * rng.gauss(1.0, 0.02) for h in host]
        ci = paired_ratio_ci95(q, p)
        hits += ci["low"] <= 0.98 <= ci["high"]
    assert 0.93 <= hits / 4000 <= 0.975
