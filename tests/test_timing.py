"""The timing hook (segbench.timing): what it counts as data wait. Driven the way mmengine's
IterBasedTrainLoop drives it (model.train(), next(dataloader_iterator), the hook points), with a
loader and a model.train() that take known times, so each share of the gap is known."""
import gc
import json
import time
from types import SimpleNamespace

import pytest
import torch

from segbench import timing

LOAD_S, TRAIN_S = 0.03, 0.02   # next() waits this long; model.train() takes this long


class SlowLoader:
    def __iter__(self):
        return self

    def __next__(self):
        time.sleep(LOAD_S)
        return {"inputs": [torch.zeros(3, 8, 8)], "data_samples": []}


class SlowTrainModel(torch.nn.Module):
    def train(self, mode=True):
        time.sleep(TRAIN_S)
        return super().train(mode)


def drive(tmp_path, loop, fetch=None) -> list[dict]:
    """Three iterations of IterBasedTrainLoop.run's body around the hook's points; ``fetch``
    gets a batch (default: next of the loop's dataloader_iterator, as mmengine does)."""
    runner = SimpleNamespace(model=SlowTrainModel(), train_loop=loop, iter=0)
    hook = timing.SegbenchTimerHook(str(tmp_path / "case_iters"), count_flops=False)
    hook.before_train(runner)
    for i in range(3):
        runner.model.train()
        batch = fetch() if fetch else next(runner.train_loop.dataloader_iterator)
        hook.before_train_iter(runner, i, batch)
        hook.after_train_iter(runner, i, batch, {"loss": torch.tensor(1.0)})
        runner.iter += 1
    hook.after_train(runner)
    return [json.loads(ln) for ln in (tmp_path / "case_iters.rank0.jsonl").read_text().splitlines()]


def test_data_time_is_the_wait_for_the_batch_not_the_loop_bookkeeping(tmp_path):
    loop = SimpleNamespace(dataloader_iterator=SlowLoader())
    meta, *iters = drive(tmp_path, loop)
    assert meta["data_time_source"] == "iterator"
    assert meta["pre_train_peak_mb"] is None and meta["pre_train_reserved_mb"] is None   # CPU
    assert meta["device"] == "cpu" and meta["device_index"] is None
    assert isinstance(loop.dataloader_iterator, timing._TimedIterator)   # the loop's own slot
    for row in iters[1:]:       # iteration 1's clock starts after the meta line, mid-gap
        assert LOAD_S * 0.9 <= row["data_time"] < LOAD_S + TRAIN_S * 0.9
        assert row["gap_time"] >= row["data_time"] + TRAIN_S * 0.9       # model.train() too
        assert row["time"] >= row["gap_time"]


def test_without_the_iterator_slot_the_whole_gap_counts(tmp_path):
    """A loop with no dataloader_iterator (e.g. epoch-based): the gap is all the hook can see."""
    loader = SlowLoader()
    meta, *iters = drive(tmp_path, SimpleNamespace(), fetch=lambda: next(loader))
    assert meta["data_time_source"] == "gap"
    for row in iters[1:]:
        assert row["data_time"] == row["gap_time"] >= (LOAD_S + TRAIN_S) * 0.9


def test_garbage_collection_is_counted_in_the_iteration_it_stalled(tmp_path):
    """A full collection forced inside iteration 2 shows there (its time and one full
    collection), not in iteration 3; the hook's gc callback is gone after training."""
    loop = SimpleNamespace(dataloader_iterator=SlowLoader())
    collections = []

    def fetch():
        batch = next(loop.dataloader_iterator)
        if len(collections) == 1:          # iteration 2's fetch
            garbage = [[] for _ in range(200_000)]
            for a, b in zip(garbage, garbage[1:]):
                a.append(b)
                b.append(a)            # cycles: only the collector frees them
            del garbage, a, b
            gc.collect()
        collections.append(True)
        return batch

    callbacks_before = list(gc.callbacks)
    gc.disable()                           # no automatic collection may land in iteration 3
    try:
        meta, *iters = drive(tmp_path, loop, fetch=fetch)
    finally:
        gc.enable()
    assert iters[1]["gc_full"] >= 1 and iters[1]["gc_time"] > 0.001
    assert iters[2]["gc_full"] == 0 and iters[2]["gc_time"] == 0.0
    assert all(row["gc_time"] <= row["time"] for row in iters)
    assert gc.callbacks == callbacks_before


def test_timed_iterator_passes_everything_through():
    class Inner:
        skip = "kept"

        def __init__(self):
            self.n = 0

        def __next__(self):
            self.n += 1
            if self.n > 2:
                raise StopIteration
            return self.n

    timed = timing._TimedIterator(Inner())
    assert timed.last is None and timed.skip == "kept"
    assert list(timed) == [1, 2] and timed.last is not None
    with pytest.raises(StopIteration):
        next(timed)


def test_hook_overhead_benchmark_runs_the_hook_as_the_loop_does(capsys):
    """benchmarks/hook_overhead.py drives the current hook (it broke once, silently, when the hook
    began to read the loop's data iterator): a figure per iteration, with and without the hook."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import hook_overhead
    for flags in ([], ["--no-hook"]):
        assert hook_overhead.main(["--n", "50", "--iter-ms", "100", *flags]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["hook"] is (not flags) and out["n"] == 50 and out["hook_us_per_iter"] > 0
        assert out["share_of_100ms_iter_pct"] == pytest.approx(100 * out["hook_us_per_iter"] / 1e5, abs=1e-4)


def test_cpu_time_is_the_trainer_threads_own(tmp_path):
    """An iteration that spins the CPU has a CPU time close to its wall time; the loader's sleep
    (off the CPU) is wall time without CPU time."""
    loop = SimpleNamespace(dataloader_iterator=SlowLoader())
    spins = []

    def fetch():
        batch = next(loop.dataloader_iterator)
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.05:  # 50 ms of this thread's own CPU time
            pass
        spins.append(True)
        return batch

    meta, *iters = drive(tmp_path, loop, fetch=fetch)
    for row in iters[1:]:
        assert row["cpu_time"] >= 0.045                      # the spin
        assert row["time"] - row["cpu_time"] >= LOAD_S * 0.9  # the sleep, off the CPU
        assert row["cpu_time"] <= row["time"] + 1e-3


class FakeCudaMemory:
    """torch.cuda's peak-memory counter as the hooks use it, with mmengine's LoggerHook reset."""

    def __init__(self):
        self.peak = 0

    def allocate(self, mb):
        self.peak = max(self.peak, mb * 2**20)

    def max_memory_allocated(self, *a, **k):
        return self.peak

    def reset_peak_memory_stats(self, *a, **k):
        self.peak = 0


def test_peak_memory_is_read_before_the_logger_resets_it(tmp_path, monkeypatch):
    """mmengine's LoggerHook resets the device's peak counter on its logging iterations, between
    SegbenchPeakHook (NORMAL) and SegbenchTimerHook (VERY_LOW); the per-iteration peak must still be
    the step's (it read ~0 there before SegbenchPeakHook existed)."""
    from mmengine.hooks import LoggerHook
    from mmengine.logging import MessageHub
    from mmengine.registry import HOOKS

    from mmengine.runner.priority import get_priority
    peak_hook = timing.SegbenchPeakHook()
    timer = timing.SegbenchTimerHook(str(tmp_path / "case_iters"), count_flops=False)
    assert get_priority(peak_hook.priority) < get_priority(LoggerHook.priority) \
        < get_priority(timer.priority)      # smaller runs first
    assert HOOKS.get("SegbenchPeakHook") is timing.SegbenchPeakHook
    hub = MessageHub.get_instance("test_peak_memory")   # before torch.cuda is faked
    mem = FakeCudaMemory()
    cuda = SimpleNamespace(is_available=lambda: True, synchronize=lambda *a: None,
                           max_memory_allocated=mem.max_memory_allocated,
                           reset_peak_memory_stats=mem.reset_peak_memory_stats,
                           get_device_name=lambda *a: "fake", current_device=lambda: 0,
                           memory_reserved=lambda *a: 0)
    monkeypatch.setattr(timing.torch, "cuda", cuda)
    runner = SimpleNamespace(model=torch.nn.Identity(), iter=0,
                             train_loop=SimpleNamespace(dataloader_iterator=SlowLoader()),
                             message_hub=hub)
    timer.before_train(runner)
    for i in range(4):
        batch = next(runner.train_loop.dataloader_iterator)
        timer.before_train_iter(runner, i, batch)
        mem.allocate(1000 + i)                      # the step
        peak_hook.after_train_iter(runner, i, batch, {})
        if i % 2 == 1:                              # a logging iteration: mmengine resets
            mem.reset_peak_memory_stats()
        mem.allocate(10)                            # something after the reset
        timer.after_train_iter(runner, i, batch, {"loss": torch.tensor(1.0)})
        runner.iter += 1
    timer.after_train(runner)
    rows = [json.loads(ln) for ln in (tmp_path / "case_iters.rank0.jsonl").read_text().splitlines()]
    assert [r["mem_mb"] for r in rows[1:]] == [1000.0, 1001.0, 1002.0, 1003.0]

    # without the peak hook (a config that lists only the timer) the timer's own reading stands
    timer2 = timing.SegbenchTimerHook(str(tmp_path / "solo_iters"), count_flops=False)
    runner.iter = 0
    timer2.before_train(runner)
    batch = next(runner.train_loop.dataloader_iterator)
    timer2.before_train_iter(runner, 0, batch)
    mem.allocate(2000)
    timer2.after_train_iter(runner, 0, batch, {"loss": torch.tensor(1.0)})
    timer2.after_train(runner)
    rows = [json.loads(ln) for ln in (tmp_path / "solo_iters.rank0.jsonl").read_text().splitlines()]
    assert rows[1]["mem_mb"] == 2000.0


def test_the_device_is_synchronised_before_every_boundary_clock_read(tmp_path, monkeypatch):
    """On a GPU an iteration boundary is a time only once the device has finished what was queued
    before it: a sync must come right before each clock read that starts or ends an iteration's
    time -- in before_train, after the FLOP probe at iteration 1 (its kernels are no iteration's),
    and in after_train_iter (the step's kernels). A fake torch.cuda and clock record the order."""
    events, clock = [], iter(range(1, 10**6))

    def perf_counter():
        value = float(next(clock))
        events.append(("clock", value))
        return value

    fake_time = SimpleNamespace(perf_counter=perf_counter, thread_time=lambda: 0.0, time=lambda: 0.0)
    cuda = SimpleNamespace(is_available=lambda: True, synchronize=lambda *a: events.append(("sync",)),
                           max_memory_allocated=lambda *a: 0, reset_peak_memory_stats=lambda *a: None,
                           get_device_name=lambda *a: "fake", current_device=lambda: 0,
                           memory_reserved=lambda *a: 0)
    hub = SimpleNamespace(get_info=lambda key: None, update_info=lambda *a, **k: None)
    monkeypatch.setattr(timing, "time", fake_time)
    monkeypatch.setattr(timing.torch, "cuda", cuda)
    monkeypatch.setattr(timing, "count_step_flops",
                        lambda model, batch: events.append(("probe",)) or (1.0, [1, 3, 8, 8]))
    runner = SimpleNamespace(model=torch.nn.Identity(), iter=0, message_hub=hub,
                             train_loop=SimpleNamespace(dataloader_iterator=SlowLoader()))
    hook = timing.SegbenchTimerHook(str(tmp_path / "case_iters"), count_flops=True)
    boundaries = []

    def boundary(what):   # the events up to the clock read the hook now counts from
        boundaries.append((what, events[:events.index(("clock", hook._t_prev))]))

    gc.disable()                       # the hook's gc callback reads the clock too
    try:
        hook.before_train(runner)
        boundary("before_train")
        for i in range(3):
            batch = next(runner.train_loop.dataloader_iterator)
            hook.before_train_iter(runner, i, batch)
            if i == 0:
                boundary("iteration 1's start, after the FLOP probe")
            events.append(("step",))   # the kernels the training step queues
            hook.after_train_iter(runner, i, batch, {"loss": torch.tensor(1.0)})
            boundary(f"iteration {i + 1}'s end")
            runner.iter += 1
        hook.after_train(runner)
    finally:
        gc.enable()
    assert hook.device == "cuda" and len(boundaries) == 5
    for what, before in boundaries:
        assert before and before[-1] == ("sync",), f"{what}: the clock was read after {before[-1:]}"
    assert ("probe",) in boundaries[1][1] and ("probe",) not in boundaries[0][1]
