"""segbench.windowsync (the tuned switch ``window_sync``): the host reads the step's values once per
log window, the log and the training are the stock run's, and the per-iteration statistics of such
a file are over windows."""
import json
import re
import subprocess
import types
from pathlib import Path

import pytest
import torch
from mmengine.hooks import LoggerHook, RuntimeInfoHook
from mmengine.logging import MessageHub

from segbench import graphstep, iterfiles, tuned, windowsync
from segbench.iterfiles import RankFile

REPO = Path(__file__).resolve().parent.parent


def test_the_timing_hook_syncs_at_the_first_iteration_and_each_windows_end():
    assert [it for it in range(1, 26) if windowsync.synced(it, 10, 25)] == [1, 10, 20, 25]
    assert all(windowsync.synced(it, 1) for it in range(1, 5))


def test_host_values_are_what_item_gives_without_an_item_per_value(monkeypatch):
    values = [torch.tensor(1.1), torch.tensor([2.5], dtype=torch.float64), torch.tensor(7),
              torch.tensor(True), torch.tensor(0.3), 4.0, None]
    expected = [v.item() if isinstance(v, torch.Tensor) else v for v in values]

    def no_item(self):
        raise AssertionError("one .item() per value: one wait for the device each")
    monkeypatch.setattr(torch.Tensor, "item", no_item)
    got = windowsync.host_values(values)
    assert got == expected and [type(g) for g in got] == [type(e) for e in expected]
    with pytest.raises(ValueError, match="one element"):
        windowsync.host_values([torch.zeros(2)])


class _Loader(list):
    dataset = types.SimpleNamespace()


def _runner(interval, max_iters=7, batches=100):
    return types.SimpleNamespace(
        message_hub=MessageHub(f"windowsync-{interval}-{max_iters}"), hooks=[LoggerHook(interval=interval)],
        iter=0, epoch=0, max_epochs=1, max_iters=max_iters, train_dataloader=_Loader(range(batches)))


def _drive(hook, runner, steps, probe=None):
    hook.before_train(runner)
    seen = []
    for i, outputs in enumerate(steps):
        runner.iter = i
        hook.after_train_iter(runner, i, None, outputs)
        if probe:
            buf = runner.message_hub.log_scalars.get("train/loss")
            seen.append(0 if buf is None else len(buf.data[0]))
    return seen


def test_the_runtime_info_hook_puts_the_stock_values_in_the_hub_at_each_window():
    """The same values, in the same order, as mmengine's RuntimeInfoHook puts -- there by the
    logger's iterations (every 3rd and the last), not before."""
    windowsync.register()
    hook_cls = windowsync._REGISTERED["runtime_info_hook"]
    g = torch.Generator().manual_seed(0)
    steps = [{"loss": torch.rand((), generator=g), "decode.acc_seg": torch.rand((), generator=g) * 100}
             for _ in range(7)]
    stock, held = _runner(3), _runner(3)
    _drive(RuntimeInfoHook(), stock, steps)
    seen = _drive(hook_cls(), held, steps, probe=True)
    assert seen == [0, 0, 3, 3, 3, 6, 7]
    for key in ("train/loss", "train/decode.acc_seg"):
        a, b = stock.message_hub.log_scalars[key], held.message_hub.log_scalars[key]
        assert a.data[0].tolist() == b.data[0].tolist() and a.data[1].tolist() == b.data[1].tolist()


def test_the_hub_gets_the_values_after_the_gpu_finished_the_window(monkeypatch):
    """The put is the window's end for mmengine's IterTimerHook (FINAL_RESULT's times): on a GPU it
    waits for the device before the values reach the hub, whatever they are."""
    windowsync.register()
    events = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: events.append("sync"))
    runner = _runner(2, max_iters=3)
    hook = windowsync._REGISTERED["runtime_info_hook"]()
    hook.before_train(runner)
    real = runner.message_hub.update_scalar
    monkeypatch.setattr(runner.message_hub, "update_scalar",
                        lambda *a, **k: (events.append("put"), real(*a, **k)))
    for i in range(3):
        runner.iter = i
        hook.after_train_iter(runner, i, None, {"loss": 0.5 + i})   # floats: nothing to read
    assert events == ["sync", "put", "put", "sync", "put"]


def _file(every, times, synced=None):
    rank = RankFile(rank=0, meta={"sync_every": every})
    for i, t in enumerate(times, 1):
        rank.iters.append(i)
        rank.synced.append(None if synced is None else (i in synced))
        rank.times.append(t)
        for name in ("data_times", "gap_times", "gc_times", "cpu_times"):
            getattr(rank, name).append(t / 10)
        for name in ("gc_fulls", "losses", "mems", "energies", "busy"):
            getattr(rank, name).append(None)
        rank.stamps.append(float(i))
    return rank


def test_a_file_synced_once_per_window_has_window_statistics():
    """Inside a window an iteration's time is how long the host took to queue it; the window's
    last iteration waits for the rest. Counted as iterations, the median would be the host's
    time (10x the images/s); counted as windows it is the true one."""
    window = [0.01, 0.01, 0.01, 0.01, 0.46]          # 0.5 s for 5 iterations
    block = iterfiles.per_iter_block([_file(5, window * 4)], 5, (2, 1), 20.0)
    assert block["synced_every"] == 5 and block["n"] == 3 and block["warmup"] == 1
    assert block["median"] == pytest.approx(0.1) and block["images_per_s"] == pytest.approx(20.0)
    assert block["window_vs_per_iter"] == pytest.approx(1.0)
    assert block["between_share"] == pytest.approx(0.1)
    plain = iterfiles.per_iter_block([_file(1, window * 4)], 5, (2, 1), 20.0)
    assert plain["synced_every"] == 1 and plain["n"] == 15 and plain["median"] == pytest.approx(0.01)
    # a run that ended mid-window: its last rows were never synchronised, their times the host's
    cut = iterfiles.per_iter_block([_file(5, window * 4 + [0.01, 0.01], synced={1, 5, 10, 15, 20})],
                                   5, (2, 1), 20.0)
    assert cut["n"] == 3 and cut["median"] == pytest.approx(0.1)


def test_a_window_sync_case_has_no_per_iteration_cv_in_the_report(tmp_path):
    from segbench import results
    speed = {"log_file": "x", "model_name": "fastscnn", "mission_name": "图像分割", "direction_id": 0,
             "run_mode": "sp", "index": 1, "gpu_num": 1, "FINAL_RESULT": 50.0, "JOB_FAIL_FLAG": 0,
             "UNIT": "images/s"}
    for name, every in (("a", 1), ("b", 10)):
        (tmp_path / f"{name}_speed").write_text(json.dumps({**speed, "log_file": name}))
        (tmp_path / f"{name}_stats.json").write_text(json.dumps(
            {"per_iter": {"cv": 0.02, "synced_every": every}, "warnings": [], "flagged": False}))
    cvs = {Path(r["source"]).name.removesuffix("_speed"): r["cv"] for r in results.load_cases(tmp_path)}
    assert cvs == {"a": 0.02, "b": None}


def test_the_learning_rate_copy_does_not_make_the_host_wait(monkeypatch):
    """On a GPU the graph's learning-rate tensor is filled from pinned memory, queued: a copy from
    pageable memory is followed by a wait for the whole stream."""
    copies = []

    class OnGpu:   # the graph's learning-rate tensor, as the step sees it on a GPU
        is_cuda, dtype = True, torch.float32

        def copy_(self, src, non_blocking=False):
            copies.append((getattr(src, "pinned", False), non_blocking, src.tolist()))

    def pin(self):
        self.pinned = True
        return self
    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    step = graphstep.GraphedTrainStep.__new__(graphstep.GraphedTrainStep)
    step.lr_all = OnGpu()
    step._set_lrs(types.SimpleNamespace(optimizer=types.SimpleNamespace(
        param_groups=[{"lr": 0.5}, {"lr": 0.25}])))
    assert copies == [(True, True, [0.5, 0.25])]


def test_the_preprocessor_swaps_channels_on_the_device_as_mmseg_does():
    tuned.register()
    cls = tuned._REGISTERED["preprocessor"]
    kw = dict(mean=[1.0, 2.0, 3.0], std=[2.0, 3.0, 4.0], bgr_to_rgb=True, size=(4, 6),
              pad_val=0, seg_pad_val=255)
    from mmseg.models.data_preprocessor import SegDataPreProcessor
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    g = torch.Generator().manual_seed(1)
    data = {"inputs": [torch.randint(0, 255, (3, 4, 6), generator=g, dtype=torch.uint8) for _ in range(2)],
            "data_samples": [SegDataSample(gt_sem_seg=PixelData(data=torch.zeros(1, 4, 6).long()))
                             for _ in range(2)]}
    want = SegDataPreProcessor(**kw)(data, True)["inputs"]
    flipped = cls(**kw, flip_channels=True)
    assert flipped.flip_channels and not flipped.channel_conversion
    assert torch.equal(flipped(data, True)["inputs"], want)
    assert not torch.equal(cls(**{**kw, "bgr_to_rgb": False}, flip_channels=True)(data, True)["inputs"], want)


def _window_losses(log: str) -> list[str]:
    return re.findall(r"Iter\(train\)\s+\[\s*\d+/\d+\].*?\bloss: (\S+)", log)


def test_window_sync_logs_and_trains_what_the_stock_case_does(cpu_env):
    """Through run_benchmark.sh: the log's per-window losses and the per-iteration losses are the
    stock case's to the last digit; the file says it was synchronised once per window and the
    sidecar's statistics count windows."""
    env = dict(cpu_env, CROP="64x128")
    runs = {}
    for name, value in (("stock", ""), ("window", "window_sync")):
        e = dict(env, TUNED=value) if value else env
        r = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "12", "1"],
                           env=e, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr + r.stdout
    log_dir = Path(env["TRAIN_LOG_DIR"])
    for name, case in (("stock", "fastscnn_sp_bs2_fp32_1_crop64x128_li2"),
                       ("window", "fastscnn_sp_bs2_fp32_1_tuned-window_sync_crop64x128_li2")):
        lines = (log_dir / f"{case}_iters.rank0.jsonl").read_text().splitlines()
        runs[name] = {"log": _window_losses((log_dir / case).read_text(encoding="utf-8")),
                      "meta": json.loads(lines[0]),
                      "losses": [json.loads(x)["loss"] for x in lines[1:]],
                      "stats": json.loads((log_dir / f"{case}_stats.json").read_text())}
    stock, window = runs["stock"], runs["window"]
    assert len(stock["log"]) == 6 and window["log"] == stock["log"]
    assert len(stock["losses"]) == 12 and window["losses"] == stock["losses"]
    assert stock["meta"]["sync_every"] == 1 and window["meta"]["sync_every"] == 2
    assert window["stats"]["tuned"] == ["window_sync"] and window["stats"]["per_iter"]["synced_every"] == 2
    assert window["stats"]["per_iter"]["n"] == 2 and stock["stats"]["per_iter"]["n"] == 4
    rows = [json.loads(x) for x in (log_dir / "fastscnn_sp_bs2_fp32_1_tuned-window_sync_crop64x128_li2"
                                    "_iters.rank0.jsonl").read_text().splitlines()[1:]]
    assert [r["iter"] for r in rows if r["synced"]] == [1, 2, 4, 6, 8, 10, 12]
