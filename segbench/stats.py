"""The statistics of the analysis: of iteration (or window) times, of repeated runs, of ratios.

Spread is the sample standard deviation (ddof=1). The 95% confidence interval of a mean uses
two-sided Student-t quantiles from a table (:func:`t95`: exact to 3 decimals for df <= 30; above
that the quantile of the largest tabulated df not above the real one, which is conservative; the
normal 1.960 beyond df 1000); :func:`iteration_stats` maps the interval of the mean iteration time
to images/s: [bs*gpus / (mean + h), bs*gpus / (mean - h)]. Its steady-state check compares the mean
of the first half of the measured times with the second's (``STEADY_THRESHOLD``). Arithmetic is
plain float arithmetic: an overflow gives inf (as numpy would), never an exception; results that
are not finite are None, never NaN in JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from segbench.values import finite, good_time


STEADY_THRESHOLD = 0.05

# Two-sided 95% Student-t quantiles (the 0.975 quantile) by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
        17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
        25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
        80: 1.990, 100: 1.984, 120: 1.980, 200: 1.972, 500: 1.965, 1000: 1.962}
_Z95 = 1.960


def t95(df: int) -> float:
    """Two-sided 95% Student-t quantile for ``df`` >= 1 degrees of freedom (see module doc)."""
    if df > max(_T95):
        return _Z95
    return _T95[max(k for k in _T95 if k <= df)]


def mean_of(xs: Sequence[float]) -> float:
    """The mean; plain float arithmetic: overflow gives inf (as numpy would), never an exception."""
    return sum(xs) / len(xs)


def sample_std(xs: Sequence[float], mean: float) -> float:
    """Sample standard deviation (ddof=1); ``d * d``, not ``d ** 2``, which raises on overflow."""
    return math.sqrt(sum((x - mean) * (x - mean) for x in xs) / (len(xs) - 1))


def _percentile(xs: Sequence[float], q: float) -> float:
    """numpy's default ('linear') percentile, q in 0..100."""
    ordered = sorted(xs)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


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
    pairs = [(t, d) for t, d in list(zip(times, waits))[warmup:] if good_time(t)]
    if not pairs:
        raise ValueError("no iteration left after warm-up")
    arr = [float(t) for t, _ in pairs]
    n = len(arr)
    images = batch_size * gpu_num
    mean = mean_of(arr)
    p10, median, p90 = (_percentile(arr, q) for q in (10, 50, 90))
    std = sample_std(arr, mean) if n >= 2 else None
    halves = (mean_of(arr[:n // 2]), mean_of(arr[n // 2:])) if n >= 2 else None
    ci95 = None
    if std is not None and images > 0:
        half = t95(n - 1) * std / math.sqrt(n)
        ci95 = [finite(images / (mean + half)),
                finite(images / (mean - half)) if mean - half > 0 else None]
    waited = [(t, d) for t, d in pairs if d is not None and math.isfinite(d) and d >= 0]
    share = sum(d for _, d in waited) / sum(t for t, _ in waited) if waited else None
    steady = None
    if halves is not None:
        drift = finite((halves[1] - halves[0]) / halves[0])
        steady = {"first_half_mean": finite(halves[0]), "second_half_mean": finite(halves[1]),
                  "drift": drift, "threshold": STEADY_THRESHOLD,
                  "ok": drift is not None and abs(drift) <= STEADY_THRESHOLD}
    return {"n": n, "warmup": warmup, "mean": finite(mean), "median": finite(median),
            "p10": finite(p10), "p90": finite(p90), "std": finite(std),
            "cv": finite(std / mean) if std is not None else None,
            "images_per_s": finite(images / mean) if images > 0 else None,
            "images_per_s_ci95": ci95, "data_wait_share": finite(share), "steady": steady}


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
    runs = [finite(r.get("FINAL_RESULT")) or 0.0 for r in results]
    passed = sorted((value, index) for index, (r, value) in enumerate(zip(results, runs))
                    if r.get("JOB_FAIL_FLAG") == 0 and value > 0)
    summary: dict[str, Any] = {"runs": runs, "median": None, "mean": None, "min": None,
                               "max": None, "cv": None, "median_index": None,
                               "failed": len(runs) - len(passed)}
    if passed:
        values = [value for value, _ in passed]
        median, median_index = passed[(len(passed) - 1) // 2]
        mean = mean_of(values)
        summary.update(median=median, median_index=median_index, mean=mean,
                       min=min(values), max=max(values),
                       cv=sample_std(values, mean) / mean if len(passed) > 1 else None)
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
        mean = mean_of(xs)
        parts.append((mean, (sample_std(xs, mean) / mean) ** 2 / len(xs), len(xs)))
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
    mean = mean_of(logs)
    sd = sample_std(logs, mean)
    half = t95(n - 1) * sd / math.sqrt(n)
    ratio = math.exp(mean)
    return {"ratio": ratio, "low": ratio * math.exp(-half), "high": ratio * math.exp(half),
            "df": n - 1, "n": [n, n], "cv": sd, "paired": True}
