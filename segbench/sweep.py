"""The suite's batch-size sweep of one group (one model, mode, precision and setting; only the batch
per GPU varies): which batch size runs next, from the results so far. Pure: no files, no processes.

``--bs 2,4,8`` runs the listed sizes, ascending; each is a case asked for, so every one runs. With
``max`` last (``--bs 2,4,8,max``) the group also finds the largest batch per GPU that fits in memory,
the way timm's benchmark.py decays its batch on an OOM: the listed sizes run ascending (none above a
size that ran out of memory); from the largest that fit the batch doubles until a size runs out of
memory or the cap (``--bs-cap``) is reached, then bisects between the last fit and the first OOM
until the gap is at most max(1, within x the fitting size) (``--max-within``; 0: exact to one
image). A listed size that runs out of memory bisects below it. Only the memory that bounds the
batch brackets a max (``Plan.bounds``: on a GPU its memory; on the CPU the host's): in a max search
any other failure -- a crash, or running out of host memory on a GPU (or an unexplained SIGKILL,
which segbench.failure reads as host_oom) -- ends the search once the listed sizes have run (each
is a case asked for): it is no evidence about the batch's memory. The max is known only once
bracketed (:func:`found_max`); after the cap, a failure or an interrupt the largest size that fit
is a lower bound (:func:`largest_fit`).

Statuses of the tried sizes: ``passed`` (or kept from an earlier run), ``gpu_oom`` / ``host_oom``
(segbench.failure's kinds: out of that memory), anything else a failure (``failed``, ``interrupted``).
"""
from __future__ import annotations

from dataclasses import dataclass

from segbench.failure import GPU_OOM, HOST_OOM

PASSED = "passed"
MEMORY = {GPU_OOM: "GPU memory", HOST_OOM: "host memory"}
BOUNDS = {"cuda": (GPU_OOM,), "cpu": (GPU_OOM, HOST_OOM)}   # by device: the OOMs that bracket a max
MAX = "max"
DEFAULT_CAP = 4096
DEFAULT_WITHIN = 0.125
# why a group's search stopped (suite_sweep.json's ``stopped``)
LISTED, BRACKETED, CAP, NONE_FIT, FAILED = "listed", "bracketed", "cap", "none_fit", "failed"
INTERRUPTED = "interrupted"   # the suite's: it was interrupted mid-search


@dataclass(frozen=True)
class Plan:
    """A group's batch sizes: ``listed`` (ascending, unique), ``to_max``: then search for the max."""
    listed: tuple[int, ...]
    to_max: bool = False
    cap: int = DEFAULT_CAP
    within: float = DEFAULT_WITHIN
    bounds: tuple[str, ...] = BOUNDS["cuda"]   # the OOM kinds that bracket the max

    def __post_init__(self):
        if not self.listed or list(self.listed) != sorted(set(self.listed)) or self.listed[0] < 1:
            raise ValueError(f"listed batch sizes must be ascending positive integers: {self.listed}")
        if self.cap < 1:
            raise ValueError(f"--bs-cap must be >= 1, not {self.cap}")
        if not 0 <= self.within < 1:
            raise ValueError(f"--max-within must be in [0, 1), not {self.within:g}")
        if self.to_max and self.cap < self.listed[-1]:
            raise ValueError(f"--bs-cap {self.cap} is below the listed batch size {self.listed[-1]}")

    def search(self) -> str:
        """The max search in words, e.g. ``then grow/bisect to max (cap 4096, within 12.5%)``."""
        within = f"within {self.within:.1%}" if self.within else "exact"
        return f"then grow/bisect to max (cap {self.cap}, {within})" if self.to_max else ""

    def describe(self) -> str:
        """The plan in words, e.g. ``2, 4, then grow/bisect to max (cap 4096, within 12.5%)``."""
        return ", ".join([*map(str, self.listed), *([self.search()] if self.to_max else [])])


def parse_bs(text: str) -> tuple[tuple[int, ...], bool]:
    """``--bs``'s value -> (the listed sizes ascending, whether ``max`` ends it); ValueError."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    to_max = bool(items) and items[-1] == MAX
    sizes = items[:-1] if to_max else items
    if MAX in sizes:
        raise ValueError(f"--bs: max may only come last, not in {text!r}")
    try:
        listed = sorted({int(x) for x in sizes})
    except ValueError:
        raise ValueError(f"--bs takes batch sizes (integers) and optionally max last, not {text!r}") from None
    if not listed:
        raise ValueError(f"--bs {text!r}: give at least one batch size to start from, e.g. 2,max")
    if listed[0] < 1:
        raise ValueError(f"--bs: batch sizes are at least 1, not {listed[0]}")
    return tuple(listed), to_max


def _bracket(plan: Plan, tried: list[tuple[int, str]]) -> tuple[int, tuple[int, str] | None]:
    """(the largest size that fit below the first bounding OOM, 0 if none; (the smallest bounding
    OOM size, its kind) or None)."""
    hi = min(((bs, st) for bs, st in tried if st in plan.bounds), default=None)
    lo = max((bs for bs, st in tried if st == PASSED and (hi is None or bs < hi[0])), default=0)
    return lo, hi


def _failure(plan: Plan, tried: list[tuple[int, str]]) -> tuple[str, str] | None:
    """A max search's first failure (not the memory that bounds the batch), as a stop."""
    bs, st = next(((bs, st) for bs, st in tried if st != PASSED and st not in plan.bounds), (0, None))
    if st is None:
        return None
    what = (f"out of {MEMORY[st]} at batch {bs}, not the {' or '.join(MEMORY[k] for k in plan.bounds)} "
            "that bounds the batch" if st in MEMORY else f"batch {bs} {st} (not out of memory)")
    return FAILED, f"stopped: {what}"


def next_size(plan: Plan, tried: list[tuple[int, str]]) -> tuple[int | None, tuple[str, str] | None]:
    """(the batch size to run next, None), or (None, (why it stopped: a code above, in words)).
    ``tried``: (batch size, status) in the order they ran."""
    done = {bs for bs, _ in tried}
    if not plan.to_max:
        rest = [bs for bs in plan.listed if bs not in done]
        return (rest[0], None) if rest else (None, (LISTED, "ran the listed sizes"))
    lo, oom = _bracket(plan, tried)
    hi = oom[0] if oom else None
    rest = [bs for bs in plan.listed if bs not in done and (hi is None or bs < hi)]
    if rest:   # each listed size is a case asked for: it runs, also after another one failed
        return rest[0], None
    failed = _failure(plan, tried)
    if failed:
        return None, failed
    if hi is None:
        if lo >= plan.cap:
            return None, (CAP, f"batch {lo} fits and the cap is {plan.cap} (--bs-cap): max >= {lo}")
        return min(2 * lo, plan.cap), None
    tolerance = max(1.0, plan.within * lo)
    if hi - lo <= tolerance:
        if lo == 0:
            return None, (NONE_FIT, f"batch {hi} runs out of {MEMORY[oom[1]]}; no size fits")
        return None, (BRACKETED, f"max {lo}: batch {hi} runs out of {MEMORY[oom[1]]} (gap {hi - lo} "
                                 f"<= {tolerance:g})")
    return (lo + hi) // 2, None


def largest_fit(plan: Plan, tried: list[tuple[int, str]]) -> int | None:
    """A max search's lower bound: the largest size that fit below the first bounding OOM (None:
    none fit, or the plan does not search)."""
    return (_bracket(plan, tried)[0] or None) if plan.to_max else None


def found_max(plan: Plan, tried: list[tuple[int, str]]) -> int | None:
    """A max search's answer: the largest size that fit, once an OOM of the bounding memory
    brackets it within --max-within (None otherwise: not yet, the cap, a failure, none fit)."""
    stop = next_size(plan, tried)[1] if plan.to_max else None
    return largest_fit(plan, tried) if stop and stop[0] == BRACKETED else None
