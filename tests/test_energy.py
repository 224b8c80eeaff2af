"""Energy: the counter the timing hook reads, and the sidecar figures made from its readings."""
import json
from types import SimpleNamespace

import pytest
import torch

from segbench import energy, timing


def test_cpu_has_no_counter_and_says_why():
    m = energy.open_meter("cpu")
    assert m.read() is None and m.source is None and "CPU profile" in m.reason


def test_a_failing_counter_gives_none_and_a_reason():
    def broken():
        raise RuntimeError("GPU is lost")
    m = energy.Meter(broken, source="nvml")
    assert m.read() is None and "GPU is lost" in m.reason and m.read() is None


def test_the_hook_reads_the_counter_at_every_log_window_end(tmp_path, monkeypatch):
    reads, busy = iter(range(1000, 100000, 250)), iter([55.0, 97.0, 100.0])
    monkeypatch.setattr(energy, "open_meter",
                        lambda device: energy.Meter(lambda: next(reads), "fake", busy=lambda: next(busy)))
    loop = SimpleNamespace(dataloader_iterator=iter([{"inputs": [torch.zeros(3, 8, 8)]}] * 6))
    runner = SimpleNamespace(model=torch.nn.Linear(1, 1), train_loop=loop, iter=0)
    hook = timing.SegbenchTimerHook(str(tmp_path / "c_iters"), count_flops=False, energy_every=2)
    hook.before_train(runner)
    for i in range(6):
        batch = next(runner.train_loop.dataloader_iterator)
        hook.before_train_iter(runner, i, batch)
        hook.after_train_iter(runner, i, batch, {"loss": torch.tensor(1.0)})
        runner.iter += 1
    hook.after_train(runner)
    meta, *rows = [json.loads(x) for x in (tmp_path / "c_iters.rank0.jsonl").read_text().splitlines()]
    assert meta["energy_source"] == "fake" and meta["energy_every"] == 2
    assert [r.get("energy_mj") for r in rows] == [None, 1000, None, 1250, None, 1500]
    assert ["energy_mj" in r for r in rows] == [False, True] * 3
    assert [r.get("gpu_busy_pct") for r in rows] == [None, 55.0, None, 97.0, None, 100.0]


def _ranks(watts, n=12, dt=0.25, every=2, gpus=2):
    """Per-iteration stamps and readings of GPUs drawing ``watts`` each, read every ``every``."""
    stamps = [100 + dt * (i + 1) for i in range(n)]
    energies = [watts * 1000 * dt * (i + 1) if (i + 1) % every == 0 else None for i in range(n)]
    return [(stamps, energies)] * gpus


def test_summary_joules_images_and_watts():
    s = energy.summarize(_ranks(400.0), warmup=4, images_per_iter=4, reason=None)
    # each GPU: 400 W x 0.25 s = 100 J per iteration; two GPUs: 200 J for 4 images
    assert s["j_per_iter"] == pytest.approx(200.0) and s["images_per_j"] == pytest.approx(0.02)
    assert s["mean_w_per_gpu"] == pytest.approx(400.0) and s["gpus_measured"] == 2
    assert s["window_w"] == [400.0, 400.0, 400.0, 400.0] and s["reason"] is None


def test_short_windows_and_spans_are_not_reported():
    s = energy.summarize(_ranks(400.0, dt=0.2), warmup=4, images_per_iter=4, reason=None)
    assert s["j_per_iter"] == pytest.approx(160.0)
    assert s["window_w"] == [None] * 4          # 0.4 s windows: below MIN_SPAN_S
    short = energy.summarize(_ranks(400.0, n=6, dt=0.05), warmup=4, images_per_iter=4, reason=None)
    assert short["j_per_iter"] is None and "shorter than" in short["reason"]


def test_no_readings_give_nulls_with_the_reason():
    stamps = [1.0 + i for i in range(8)]
    s = energy.summarize([(stamps, [None] * 8)], warmup=4, images_per_iter=2,
                         reason="no GPU: the CPU profile has no energy counter")
    assert s["j_per_iter"] is None and s["images_per_j"] is None and s["mean_w_per_gpu"] is None
    assert s["reason"] == "no GPU: the CPU profile has no energy counter"
    assert energy.summarize([], 4, 2, None)["reason"] == "no energy readings cover the measured iterations"


def test_busy_share_says_which_side_bounds_the_step():
    warm = [99.0] * 4                      # the warm-up's readings never count
    host = energy.summarize_busy([warm + [60.0, None, 64.0], warm + [62.0]], warmup=4)
    assert host["share"] == pytest.approx(0.62) and host["readings"] == 3 and host["bound"] == "host"
    assert energy.summarize_busy([[0.0] * 4 + [95.0, 93.0]], 4)["bound"] == "gpu"
    assert energy.summarize_busy([[0.0] * 4 + [80.0]], 4)["bound"] == "between"
    none = energy.summarize_busy([[None] * 8], 4)
    assert none["share"] is None and none["bound"] is None and "no GPU utilization" in none["reason"]
    m = energy.Meter(busy=lambda: 1 / 0)
    assert m.read_busy() is None and m.read_busy() is None   # a failed read: none from then on


def _write_rank(path, rank, watts, n=100, dt=0.1, every=10):
    rows = [{"kind": "meta", "rank": rank, "energy_source": "nvml", "energy_reason": None}]
    for i in range(n):
        row = {"kind": "iter", "iter": i + 1, "rank": rank, "time": dt, "t": 1000 + dt * (i + 1)}
        if (i + 1) % every == 0:
            row["energy_mj"] = 5e6 + watts * 1000 * dt * (i + 1)
            row["gpu_busy_pct"] = 50.0 + rank * 10
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_sidecar_and_paddle_record_from_a_logged_case(tmp_path):
    """analysis reads the hook's readings from both ranks' files: a 2-GPU case at bs 4 drawing
    300 W a GPU, 0.1 s an iteration: 60 J an iteration for 8 images."""
    from pathlib import Path
    from segbench import analysis, paddle
    log = tmp_path / "fastscnn_mp_bs4_fp32_2"
    log.write_text((Path(__file__).parent / "logs" / "segbench_success.log").read_text())
    for rank in (0, 1):
        _write_rank(tmp_path / f"{log.name}_iters.rank{rank}.jsonl", rank, 300.0)
    res = analysis.analyze(log, "fastscnn")
    e = res.stats["energy"]
    assert e["j_per_iter"] == pytest.approx(60.0) and e["images_per_j"] == pytest.approx(8 / 60, abs=1e-4)
    assert e["mean_w_per_gpu"] == pytest.approx(300.0) and e["gpus_measured"] == 2
    assert res.stats["gpu_busy"]["share"] == pytest.approx(0.55) and res.stats["gpu_busy"]["bound"] == "host"
    analysis.write_outputs(res, tmp_path / f"{log.name}_speed")
    rec = json.loads((tmp_path / f"{log.name}{paddle.SUFFIX}").read_text())
    assert tuple(rec) == paddle.KEYS and rec["ips"] == res.speed["FINAL_RESULT"]
    assert rec["device_num"] == "N1C2"
