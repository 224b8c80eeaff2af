"""segbench.sweep's decisions: the listed sizes, then doubling to the first OOM, bisecting to
--max-within, the cap, an OOM at a listed size, a crash mid-sweep; and --bs's grammar."""
import pytest

from segbench import sweep
from segbench.sweep import PASSED, Plan

OOM = "gpu_oom"


def simulate(plan, outcome, limit=60):
    """Run the sweep against ``outcome(bs) -> status``: the sizes in order, the stop, the max."""
    tried = []
    for _ in range(limit):
        bs, stop = sweep.next_size(plan, tried)
        if bs is None:
            return [b for b, _ in tried], stop[0], sweep.found_max(plan, tried)
        assert bs not in [b for b, _ in tried], f"{bs} tried twice: {tried}"
        tried.append((bs, outcome(bs)))
    raise AssertionError(f"no end after {limit} sizes: {tried}")


def fits_up_to(k):
    return lambda bs: PASSED if bs <= k else OOM


def test_listed_sizes_only_run_ascending_every_one_even_after_an_oom_or_a_crash():
    plan = Plan((2, 4, 8))
    assert simulate(plan, fits_up_to(100)) == ([2, 4, 8], "listed", None)
    assert simulate(plan, lambda bs: "failed" if bs == 2 else OOM) == ([2, 4, 8], "listed", None)


def test_grow_then_bisect_to_within_an_eighth():
    # 2, 4, 8 fit; doubling: 16, 32 fit, 64 OOMs; bisect 48 (fits) 56 (OOM) 52 (OOM): gap 4 <= 48/8
    sizes, stop, found = simulate(Plan((2, 4, 8), True), fits_up_to(50))
    assert sizes == [2, 4, 8, 16, 32, 64, 48, 56, 52] and stop == "bracketed" and found == 48
    sizes, stop, found = simulate(Plan((2, 4, 8), True, within=0), fits_up_to(50))
    assert sizes[-3:] == [52, 50, 51] and found == 50


@pytest.mark.parametrize("k", [1, 3, 7, 9, 33, 100, 257, 1000])
@pytest.mark.parametrize("within", [0.0, 0.125, 0.5])
def test_the_max_found_is_within_max_within_of_the_true_one(k, within):
    sizes, stop, found = simulate(Plan((2,), True, within=within), fits_up_to(k))
    if k == 1:
        assert (sizes, stop, found) == ([2, 1], "bracketed", 1)
        return
    assert stop == "bracketed" and found <= k
    assert k - found <= max(1, within * found), (sizes, found)
    if within == 0:
        assert found == k


def test_the_cap_stops_growth_and_is_tried_itself():
    # the cap fits: no max is found, the cap is a lower bound
    assert simulate(Plan((2,), True, cap=20), fits_up_to(10**6)) == ([2, 4, 8, 16, 20], "cap", None)
    assert simulate(Plan((2,), True, cap=16), fits_up_to(10**6)) == ([2, 4, 8, 16], "cap", None)
    assert sweep.largest_fit(Plan((2,), True, cap=16), [(2, PASSED), (4, PASSED), (16, PASSED)]) == 16
    # a cap that runs out of memory is bisected below like any OOM
    sizes, stop, found = simulate(Plan((2,), True, cap=20, within=0), fits_up_to(18))
    assert sizes == [2, 4, 8, 16, 20, 18, 19] and (stop, found) == ("bracketed", 18)


def test_an_oom_at_a_listed_size_skips_the_larger_listed_ones_and_bisects_below():
    sizes, stop, found = simulate(Plan((2, 16, 64), True, within=0), fits_up_to(5))
    assert sizes == [2, 16, 9, 5, 7, 6] and (stop, found) == ("bracketed", 5)
    sizes, stop, found = simulate(Plan((8,), True), fits_up_to(2))
    assert sizes == [8, 4, 2, 3] and (stop, found) == ("bracketed", 2)


def test_no_size_fits():
    assert simulate(Plan((4,), True), fits_up_to(0)) == ([4, 2, 1], "none_fit", None)


def test_a_crash_mid_sweep_ends_the_search_with_no_bisecting():
    outcome = lambda bs: "failed" if bs == 16 else fits_up_to(40)(bs)   # noqa: E731
    assert simulate(Plan((2, 4), True), outcome) == ([2, 4, 8, 16], "failed", None)
    assert sweep.largest_fit(Plan((2, 4), True), [(2, PASSED), (4, PASSED), (8, PASSED), (16, "failed")]) == 8
    stop = sweep.next_size(Plan((2,), True), [(2, PASSED), (4, "interrupted")])[1]
    assert stop == ("failed", "stopped: batch 4 interrupted (not out of memory)")
    # the listed sizes still run after a crash (each is a case asked for); then no growing
    assert sweep.next_size(Plan((2, 4), True), [(2, "failed")])[0] == 4
    assert sweep.next_size(Plan((2, 4), True), [(2, "failed"), (4, PASSED)]) == (
        None, ("failed", "stopped: batch 2 failed (not out of memory)"))


def test_host_memory_brackets_only_where_it_bounds_the_batch():
    """On a GPU a host_oom (or an unexplained SIGKILL) is no evidence of the max batch per GPU: it
    ends the search as a failure; on the CPU host memory is the batch's memory and brackets."""
    tried = [(2, PASSED), (4, PASSED), (8, "host_oom")]
    bs, stop = sweep.next_size(Plan((2,), True), tried)
    assert bs is None and stop == (
        "failed", "stopped: out of host memory at batch 8, not the GPU memory that bounds the batch")
    assert sweep.found_max(Plan((2,), True), tried) is None
    assert sweep.largest_fit(Plan((2,), True), tried) == 4
    cpu = Plan((2,), True, within=0.5, bounds=sweep.BOUNDS["cpu"])
    assert sweep.next_size(cpu, tried) == (6, None)
    assert sweep.next_size(cpu, tried + [(6, PASSED)]) == (None, (
        "bracketed", "max 6: batch 8 runs out of host memory (gap 2 <= 3)"))
    assert sweep.found_max(cpu, tried + [(6, PASSED)]) == 6
    assert "out of GPU memory" in sweep.next_size(Plan((2,), True), [(2, PASSED), (3, OOM)])[1][1]


def test_a_resumed_sweep_continues_from_what_is_recorded():
    assert sweep.next_size(Plan((2,), True), [(2, PASSED), (4, PASSED), (8, OOM)]) == (6, None)


@pytest.mark.parametrize("text, want", [("2", ((2,), False)), ("8,2,4", ((2, 4, 8), False)),
                                        ("2,4,max", ((2, 4), True)), (" 4 , max ", ((4,), True)),
                                        ("4,4", ((4,), False))])
def test_bs_grammar(text, want):
    assert sweep.parse_bs(text) == want


@pytest.mark.parametrize("text, says", [("max", "at least one batch size"), ("2,max,4", "only come last"),
                                        ("2,x", "integers"), ("0,max", "at least 1"), ("", "at least one")])
def test_bs_grammar_errors(text, says):
    with pytest.raises(ValueError, match=says):
        sweep.parse_bs(text)


def test_plan_describes_itself_and_rejects_bad_settings():
    assert Plan((2, 4), True).describe() == "2, 4, then grow/bisect to max (cap 4096, within 12.5%)"
    assert Plan((2,)).describe() == "2" and Plan((2,)).search() == ""
    assert Plan((8,), True, cap=64, within=0).search() == "then grow/bisect to max (cap 64, exact)"
    for bad, says in ((dict(listed=()), "ascending"), (dict(listed=(4, 2)), "ascending"),
                      (dict(listed=(2,), within=1.0), r"--max-within must be in \[0, 1\)"),
                      (dict(listed=(2,), cap=0), "--bs-cap must be >= 1"),
                      (dict(listed=(2, 64), to_max=True, cap=16),
                       "--bs-cap 16 is below the listed batch size 64")):
        with pytest.raises(ValueError, match=says):
            Plan(**bad)
    assert Plan((2, 64), cap=16).listed == (2, 64)   # no max: the cap is not used
