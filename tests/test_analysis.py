"""Tests for segbench.analysis and the analysis_log.py CLI.

Expected FINAL_RESULT values are worked out by hand next to each test from the canned logs in
tests/logs (window times listed in the comments; the first 4 windows are always skipped).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import statistics
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segbench import analysis
from segbench.analysis import (Result, analyze, main, speed_path_to_stats_path, write_json_atomic,
                               write_outputs)

REPO = Path(__file__).resolve().parents[1]
LOGS = Path(__file__).parent / "logs"
CLI = REPO / "analysis_log.py"
SPEED_KEYS = ["log_file", "model_name", "mission_name", "direction_id", "run_mode", "index",
              "gpu_num", "FINAL_RESULT", "JOB_FAIL_FLAG", "UNIT"]
HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


def check_result(result: Result) -> None:
    """The invariants every Result must hold, whatever the input."""
    speed = result.speed
    assert list(speed) == SPEED_KEYS
    assert isinstance(speed["log_file"], str) and isinstance(speed["model_name"], str)
    assert speed["mission_name"] == "图像分割" and speed["UNIT"] == "images/s"
    assert speed["direction_id"] == 0 and speed["index"] == 1
    # run_mode / gpu_num: a record's as recorded (anything, null included), else inferred or null
    assert speed["run_mode"] == result.stats["run_mode"] and speed["gpu_num"] == result.stats["gpu_num"]
    assert type(speed["FINAL_RESULT"]) is float and type(speed["JOB_FAIL_FLAG"]) is int
    json.dumps(speed, allow_nan=False)
    json.dumps(result.stats, allow_nan=False)  # the sidecar is valid JSON (no NaN/inf)
    assert result.stats["FINAL_RESULT"] == speed["FINAL_RESULT"]
    warnings = result.stats["warnings"]
    assert all(isinstance(w, str) and w and "\n" not in w for w in warnings)
    assert result.stats["flagged"] is bool(warnings) and tuple(warnings) == result.warnings
    if result.ok:
        assert type(speed["gpu_num"]) is int and speed["gpu_num"] >= 1
        assert speed["JOB_FAIL_FLAG"] == 0 and speed["FINAL_RESULT"] > 0
        assert result.exit_code == 0 and result.stats["reason"] is None
    else:
        assert speed["JOB_FAIL_FLAG"] == 1 and speed["FINAL_RESULT"] == 0.0
        assert result.exit_code in (1, 2)
        assert result.reason and "\n" not in result.reason
        assert result.reason == result.stats["reason"]


def run(name: str, **kwargs: object) -> Result:
    result = analyze(LOGS / name, "fastscnn", **kwargs)
    check_result(result)
    return result


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def mmengine_line(iteration: int, time: str, total: int = 500, loss: float = 1.5) -> str:
    return (f"11/29 02:52:31 - mmengine - INFO - Iter(train) [{iteration:>3}/{total}]  base_lr: "
            f"1.2000e-01 lr: 1.1999e-01  eta: 0:00:09  time: {time}  data_time: 0.0106  "
            f"memory: 1210  loss: {loss:.4f}  decode.loss_ce: {loss:.4f}  "
            "decode.acc_seg: 10.0000\n")


# ----------------------------------------------------------------------------- formats

def test_mmengine_stdout_single_gpu() -> None:
    # windows 3.0991 0.5012 0.3 0.25 | 0.2 0.2 0.25 0.15 0.2 0.2 -> mean 0.2; bs 2 (train loader,
    # not test/val's 1), GPU number 1 -> 2 * 1 / 0.2; val lines (time 0.05) do not count.
    result = run("mmengine_stdout_1gpu.log")
    assert result.ok and result.speed["FINAL_RESULT"] == 10.0
    assert result.speed["gpu_num"] == 1 and result.speed["run_mode"] == "sp"
    assert result.speed["log_file"] == "mmengine_stdout_1gpu.log"
    stats = result.stats
    assert stats["batch_size"] == 2 and stats["last_loss"] == 2.0
    assert stats["window"]["n"] == 6 and stats["window"]["skipped"] == 4
    assert stats["window"]["median_time"] == 0.2 and stats["window"]["images_per_s_median"] == 10.0
    # halves 0.65 / 3 and 0.55 / 3 of the measured windows: a drift the window check flags
    assert stats["window"]["steady"]["drift"] == pytest.approx(0.55 / 0.65 - 1)
    assert stats["warnings"] == ["not steady: window times drifted -15.4% from the first half of "
                                 "the measured ones to the second (threshold 5%)"]
    assert stats["flagged"] is True and stats["JOB_FAIL_FLAG"] == 0
    assert stats["per_iter"] is None and stats["flops"] is None
    assert stats["memory"] == {"peak_mb_per_rank": None, "peak_from": None, "device_index_per_rank": None}


def test_mmengine_file_log_epoch_based_two_gpus() -> None:
    # Epoch(train) [1][10..40] then [2][10..40]: the per-epoch counter restarting is not a new run.
    # windows 1.8124 0.6221 0.5003 0.4518 | 0.4 0.5 0.4 0.3 -> mean 0.4; bs 4, GPU number 2 -> 20.
    result = run("mmengine_filelog_2gpu.log")
    assert result.speed["FINAL_RESULT"] == 20.0
    assert result.speed["gpu_num"] == 2 and result.speed["run_mode"] == "mp"
    assert result.stats["window"]["n"] == 4 and result.stats["last_loss"] == 2.15


def test_scalars_json() -> None:
    # train objects time 1.2 0.5 0.45 0.3 | 0.25 0.3 0.2 -> mean 0.25; --batch-size 8, no GPU
    # evidence -> 1 with a warning -> 32; validation objects (time 0.05, no lr/loss) ignored.
    result = run("scalars.json", batch_size=8)
    assert result.speed["FINAL_RESULT"] == 32.0 and result.speed["gpu_num"] == 1
    assert len(result.warnings) == 1 and "gpu count unknown" in result.warnings[0]
    assert result.stats["warnings"] == list(result.warnings)
    assert result.stats["last_loss"] == 2.3


def test_scalars_json_without_batch_size_fails() -> None:
    result = run("scalars.json")
    assert result.reason is not None and result.reason.startswith("unknown batch size")
    assert result.exit_code == 1 and result.stats["window"]["mean_time"] == 0.25


def test_scalars_validation_objects_never_count(tmp_path: Path) -> None:
    objs = [{"lr": 0.1, "loss": 1.0, "time": 0.25, "iter": 10 * (i + 1), "step": 10 * (i + 1)}
            for i in range(8)]
    objs.append({"aAcc": 80.0, "mIoU": 40.0, "data_time": 0.01, "time": 0.05, "step": 500})
    path = write(tmp_path / "scalars.json", "".join(json.dumps(o) + "\n" for o in objs))
    result = analyze(path, "m", batch_size=2)
    assert result.speed["FINAL_RESULT"] == 8.0 and result.stats["window"]["n"] == 4


def test_mmseg0x_log() -> None:
    # Iter [50..350]: 0.912 0.803 0.798 0.801 | 0.745 0.755 0.750 -> mean 0.75; samples_per_gpu 2
    # (not test_dataloader's 1), gpu_ids range(0, 1) -> 2 / 0.75 = 2.6667; Iter(val) lines ignored.
    result = run("mmseg0x_1gpu.log")
    assert result.speed["FINAL_RESULT"] == 2.667 and result.speed["gpu_num"] == 1
    assert result.stats["batch_size"] == 2 and result.stats["window"]["n"] == 3
    assert result.warnings == ()


def test_mmseg0x_gpu_ids_when_not_distributed(tmp_path: Path) -> None:
    text = (LOGS / "mmseg0x_1gpu.log").read_text().replace("gpu_ids = range(0, 1)",
                                                          "gpu_ids = range(0, 4)")
    result = analyze(write(tmp_path / "x", text), "fastscnn")
    assert result.speed["gpu_num"] == 4 and result.speed["run_mode"] == "mp"
    assert result.speed["FINAL_RESULT"] == 10.667  # 2 * 4 / 0.75


def test_mmseg0x_distributed_8_gpus_from_gpu_ids() -> None:
    """mmseg 0.x's tools/train.py sets cfg.gpu_ids = range(world_size) in distributed runs: the
    seed platform's 8-GPU log says range(0, 8). Windows 1.912 0.803 0.650 0.612 | 0.600 0.604
    0.596 0.600 -> mean 0.6; samples_per_gpu 4 -> 4 * 8 / 0.6."""
    result = run("mmseg0x_dist_8gpu.log")
    assert result.ok and result.speed["gpu_num"] == 8 and result.speed["run_mode"] == "mp"
    assert result.speed["FINAL_RESULT"] == 53.333 and result.warnings == ()
    assert result.stats["flagged"] is False


def test_mmseg0x_conflicting_gpu_evidence_uses_the_ranks_seen(tmp_path: Path) -> None:
    """A fork printed gpu_ids = range(0, 1) for a torchrun run of four processes: NCCL's per-rank
    barrier warnings and torchrun's failure report show ranks 0-3. The ranks win, with a warning;
    the run crashed (rank 2's CUDA error), so it failed, its figure 2 * 4 / 0.81 kept as partial."""
    result = run("mmseg0x_fork_4proc_crash.log")
    assert result.speed["gpu_num"] == 4 and result.speed["run_mode"] == "mp"
    assert result.reason == "crashed: RuntimeError: CUDA error: an illegal memory access was encountered"
    assert result.stats["partial_images_per_s"] == 9.877
    assert result.warnings == ("gpu count: the log says gpu_ids = range(0, 1) but ranks 0-3 appear "
                               "(per-rank NCCL messages, torchrun's failure report); using 4",)
    # cut before the crash: the NCCL messages alone still prove four processes; the run passes
    text = (LOGS / "mmseg0x_fork_4proc_crash.log").read_text()
    ok = analyze(write(tmp_path / "x", text[:text.index("Traceback")]), "fastscnn")
    assert ok.ok and ok.speed["FINAL_RESULT"] == 9.877 and ok.speed["gpu_num"] == 4
    assert ok.warnings == ("gpu count: the log says gpu_ids = range(0, 1) but ranks 0-3 appear "
                           "(per-rank NCCL messages); using 4",)


def test_mmseg0x_distributed_log_without_a_count_fails(tmp_path: Path) -> None:
    """Distributed, and no gpu_ids, GPU number or rank in the log: never a silent 1."""
    text = (LOGS / "mmseg0x_1gpu.log").read_text().replace(
        "Distributed training: False", "Distributed training: True").replace(
        "gpu_ids = range(0, 1)\n", "")
    result = analyze(write(tmp_path / "x", text), "fastscnn")
    check_result(result)
    assert result.reason is not None and result.reason.startswith("unknown gpu count")
    assert result.speed["gpu_num"] is None and result.speed["JOB_FAIL_FLAG"] == 1
    assert result.stats["partial_images_per_s"] is None
    assert analyze(tmp_path / "x", "fastscnn", gpu_num=2).speed["FINAL_RESULT"] == 5.333


def test_mmseg0x_epoch_style(tmp_path: Path) -> None:
    lines = ["2021-09-29 10:00:00,000 - mmseg - INFO - Distributed training: False\n",
             "data = dict(samples_per_gpu=3, workers_per_gpu=2)\n", "gpu_ids = [0]\n"]
    times = ["0.9", "0.8", "0.7", "0.6", "0.3", "0.3", "0.3", "0.3"]
    for i, time in enumerate(times):
        epoch, it = 1 + i // 2, 50 * (i % 2 + 1)
        lines.append(f"2021-09-29 10:00:{i:02d},000 - mmseg - INFO - Epoch [{epoch}][{it}/100]\t"
                     f"lr: 9.997e-03, eta: 0:10:00, time: {time}, data_time: 0.010, memory: 3000, "
                     f"decode.loss_ce: 1.2, decode.acc_seg: 60.1, loss: 1.2\n")
    lines.append("2021-09-29 10:01:00,000 - mmseg - INFO - Epoch(val) [4][500]\taAcc: 0.9, "
                 "mIoU: 0.5, time: 0.010\n")
    result = analyze(write(tmp_path / "x", "".join(lines)), "fastscnn")
    assert result.speed["FINAL_RESULT"] == 10.0  # 3 * 1 / 0.3


def test_train_loader_batch_size_only_at_its_top_level(tmp_path: Path) -> None:
    config = ("auto_scale_lr = dict(base_batch_size=16, enable=False)\n"
              "val_dataloader = dict(batch_size=1, num_workers=4)\n"
              "train_dataloader = dict(\n"
              "    dataset=dict(data_root='data/(odd) batch_size=7', pipeline=[\n"
              "        dict(type='Pack', batch_size=9),\n"
              "    ]),\n"
              "    batch_size=6,\n"
              "    num_workers=5)\n"
              "test_dataloader = dict(batch_size=1)\n")
    text = config + "".join(mmengine_line(10 * (i + 1), "0.2000") for i in range(6))
    result = analyze(write(tmp_path / "x", text), "m")
    assert result.stats["batch_size"] == 6 and result.speed["FINAL_RESULT"] == 30.0  # 6 / 0.2


# ----------------------------------------------------------------------------- several runs

def test_three_launches_the_last_one_crashed() -> None:
    # launch 1: bs 2, 1 GPU, all 0.5 (-> 4.0); launch 2 (torchrun [rankN]: prefixes, both ranks
    # print, rank 1 lags and says 0.99): rank-0 copies 2.0 1.0 0.9 0.9 | 0.8 0.8 0.8 0.8, bs 4, GPU
    # number 2 -> 4 * 2 / 0.8 = 10; launch 3 ran out of memory before training: it decides.
    result = run("two_runs.log")
    assert result.reason == "crashed: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    assert result.speed["FINAL_RESULT"] == 0.0 and result.speed["gpu_num"] == 1
    assert result.stats["window"]["n"] == 0
    assert [(e["images_per_s"], e["gpu_num"], e["batch_size"], e["windows"], e["reason"])
            for e in result.stats["earlier_launches"]] == [(4.0, 1, 2, 8, None), (10.0, 2, 4, 8, None)]


def test_two_launches_the_last_one_measured(tmp_path: Path) -> None:
    text = (LOGS / "two_runs.log").read_text()
    text = text[:text.rindex("11/29 03:20:00 - mmengine - INFO - \n")]   # without launch 3
    result = analyze(write(tmp_path / "x", text), "fastscnn")
    assert result.ok and result.speed["FINAL_RESULT"] == 10.0 and result.speed["gpu_num"] == 2
    assert result.stats["batch_size"] == 4 and result.stats["window"]["n"] == 4
    assert [e["images_per_s"] for e in result.stats["earlier_launches"]] == [4.0]


def test_plain_log_crashed_after_its_windows(tmp_path: Path) -> None:
    crash = ("Traceback (most recent call last):\n  File \"tools/train.py\", line 104, in <module>\n"
             "    main()\nRuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed.\n")
    text = (LOGS / "mmengine_stdout_1gpu.log").read_text() + crash
    result = analyze(write(tmp_path / "x", text), "fastscnn")
    check_result(result)
    assert result.reason == "crashed: RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed."
    assert result.stats["partial_images_per_s"] == 10.0
    ignored = text.replace("Traceback", "--- Logging error ---\nTraceback")   # not a crash
    assert analyze(write(tmp_path / "y", ignored), "fastscnn").ok


def test_counter_going_backwards_starts_new_run(tmp_path: Path) -> None:
    objs = [{"lr": 0.1, "loss": 1.0, "time": 0.5, "iter": 10 * (i + 1), "step": 10 * (i + 1)}
            for i in range(8)]
    objs += [{"lr": 0.1, "loss": 0.5, "time": 0.25, "iter": 10 * (i + 1), "step": 10 * (i + 1)}
             for i in range(8)]
    path = write(tmp_path / "scalars.json", "".join(json.dumps(o) + "\n" for o in objs))
    result = analyze(path, "m", batch_size=2)
    assert result.speed["FINAL_RESULT"] == 8.0  # 2 / 0.25: only the second run
    assert result.stats["last_loss"] == 0.5
    assert result.stats["earlier_launches"] == []   # a restarted counter is not a new launch


def test_rerun_appended_after_record_runs(tmp_path: Path) -> None:
    text = (LOGS / "segbench_timeout.log").read_text() + (LOGS / "segbench_success.log").read_text()
    result = analyze(write(tmp_path / "x", text), "fastscnn")
    assert result.ok and result.speed["FINAL_RESULT"] == 20.0


@pytest.mark.parametrize("windows", [0, 6])
def test_crashed_relaunch_after_a_good_run_fails(tmp_path: Path, windows: int) -> None:
    """The last launch crashed, before or after training windows: the case failed, whatever the
    good run before it measured (that figure stays in the sidecar, labelled as earlier)."""
    crash = ('[segbench] case: {"case": "c", "batch_size": 2, "gpu_num": 1}\n'
             + "".join(mmengine_line(10 * (i + 1), "0.25") for i in range(windows))
             + "Traceback (most recent call last):\nRuntimeError: boom\n"
             '[segbench] result: {"exit_code": 1, "reason": "crash", "elapsed_s": 3.0}\n')
    text = (LOGS / "segbench_success.log").read_text() + crash
    result = analyze(write(tmp_path / "x", text), "fastscnn")
    check_result(result)
    assert result.reason == "crash" and result.speed["JOB_FAIL_FLAG"] == 1
    assert result.stats["partial_images_per_s"] == (8.0 if windows else None)   # 2 / 0.25
    assert result.stats["earlier_launches"] == [
        {"case": "fastscnn_mp_bs4_fp32_2", "images_per_s": 20.0, "windows": 8, "gpu_num": 2,
         "batch_size": 4, "reason": None}]


# ----------------------------------------------------------------------------- damaged input

def test_truncated_last_line_dropped() -> None:
    # 8 windows of 0.2 -> n 4 -> 10.0; the cut final "time: 0.1" would give 2 / 0.18 = 11.111.
    result = run("truncated.log")
    assert result.speed["FINAL_RESULT"] == 10.0 and result.stats["window"]["n"] == 4


@pytest.mark.parametrize("tail, n", [
    ("11/29 04:00:18 - mmengine - INFO - Iter(train) [ 90/500]  eta: 0:00:09  time:", 4),
    ("11/29 04:00:18 - mmengine - INFO - Iter(train) [ 90/500]  eta: 0:00:09  time: 0.2000  "
     "data_time: 0.0106  memory: 1210  loss: 1.0000", 5),
    ('{"lr": 0.1, "loss": 1.0, "time": 0.1, "it', 4),
    ('[segbench] result: {"exit_code": 0, "rea', 4),
])
def test_final_line_without_newline(tmp_path: Path, tail: str, n: int) -> None:
    text = (LOGS / "truncated.log").read_text()
    text = text[:text.rindex("\n") + 1] + tail
    result = analyze(write(tmp_path / "x", text), "fastscnn")
    assert result.stats["window"]["n"] == n and result.speed["FINAL_RESULT"] == 10.0


def test_crlf_and_ansi() -> None:
    # 1.0 0.6 0.5 0.45 | 0.25 x4 -> 2 / 0.25 = 8; the 'time' key itself is wrapped in colour codes.
    result = run("crlf_ansi.log")
    assert result.speed["FINAL_RESULT"] == 8.0 and result.stats["window"]["n"] == 4


def test_bad_times_ignored_and_counted() -> None:
    # 2.0 1.0 nan 0.5 | 0.2 nan 0.2 inf -0.1 0.0 0.2 -> 4 bad ignored, mean 0.2 -> 10; the lines
    # whose time is nan also log loss: nan (iterations 30 and 60), so the run failed.
    result = run("nan_times.log")
    assert result.reason == "loss not finite from iteration 30"
    assert result.stats["partial_images_per_s"] == 10.0 and result.speed["FINAL_RESULT"] == 0.0
    assert result.stats["window"]["ignored_bad"] == 4 and result.stats["window"]["n"] == 3


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_loss_not_finite_in_the_log_windows_fails(tmp_path: Path, bad: str) -> None:
    text = "".join(mmengine_line(10 * (i + 1), "0.2") for i in range(8))
    text = text.replace("loss: 1.5000  decode", f"loss: {bad}  decode")   # every window
    text = "".join(mmengine_line(10 * (i + 1), "0.2") for i in range(5)) + text.split("\n", 5)[5]
    result = analyze(write(tmp_path / "x", text), "m", batch_size=2)
    check_result(result)
    assert result.reason == "loss not finite from iteration 60"
    assert result.stats["partial_images_per_s"] == 10.0 and result.stats["last_loss"] is None
    assert result.stats["window"]["n"] == 4 and result.stats["window"]["mean_time"] == 0.2


def test_loss_not_finite_in_epoch_windows_names_the_epoch(tmp_path: Path) -> None:
    lines = [f"2026/11/29 02:53:24 - mmengine - INFO - Epoch(train) [{1 + i // 4}][{10 * (i % 4 + 1)}/40]"
             f"  lr: 1e-2  time: 0.2  loss: {'nan' if i >= 5 else '1.0'}\n" for i in range(8)]
    result = analyze(write(tmp_path / "x", "".join(lines)), "m", batch_size=2)
    assert result.reason == "loss not finite from epoch 2 iteration 20"


def test_loss_not_finite_in_the_per_iteration_files_fails(tmp_path: Path) -> None:
    """The per-iteration files give the exact iteration (any rank's); the times stay."""
    log = record_log_with_interval(tmp_path, 2)
    iters_files(tmp_path, log.name, [1.0] * 8 + [0.2] * 10, device_name="NVIDIA H200",
                precision="fp32", gap_time=0.05)
    rank1 = tmp_path / f"{log.name}_iters.rank1.jsonl"
    rows = rank1.read_text().splitlines()
    rows[13] = json.dumps({**json.loads(rows[13]), "loss": math.nan})   # iteration 13 on rank 1
    assert json.loads(rows[13])["iter"] == 13 and '"loss": NaN' in rows[13]
    rank1.write_text("\n".join(rows) + "\n")
    result = analyze(log, "fastscnn")
    check_result(result)
    assert result.reason == "loss not finite from iteration 13"
    assert result.stats["partial_images_per_s"] == 20.0 and result.stats["per_iter"]["n"] == 10
    rank1.write_text("\n".join(rows).replace('"loss": NaN', '"loss": Infinity') + "\n")
    assert analyze(log, "fastscnn").reason == "loss not finite from iteration 13"


@pytest.mark.parametrize("name", ["val_only.log", "empty.log"])
def test_no_training_windows(name: str) -> None:
    result = run(name)
    assert result.reason == "no training windows" and result.exit_code == 1


def test_too_few_windows(tmp_path: Path) -> None:
    text = "".join(mmengine_line(10 * (i + 1), "0.2") for i in range(4))
    result = analyze(write(tmp_path / "x", text), "m", batch_size=2)
    assert result.reason is not None and "after skipping the first 4" in result.reason


def test_only_the_total_loss_is_last_loss(tmp_path: Path) -> None:
    line = ("2021-09-29 10:00:01,234 - mmseg - INFO - Iter [{i}/320000]\tlr: 9.997e-03, "
            "time: 0.200, data_time: 0.010, distill.loss: 0.5, aux_loss: 0.7, loss: 1.2\n")
    text = "".join(line.format(i=50 * (i + 1)) for i in range(6))
    result = analyze(write(tmp_path / "x", text), "m", batch_size=2)
    assert result.stats["last_loss"] == 1.2 and result.speed["FINAL_RESULT"] == 10.0


def test_data_time_never_counts(tmp_path: Path) -> None:
    line = ("11/29 02:52:31 - mmengine - INFO - Iter(train) [{i:>3}/500]  lr: 1.0e-01  "
            "eta: 0:00:09  data_time: 0.0106  memory: 1210  loss: 2.9000\n")
    text = "".join(line.format(i=10 * (i + 1)) for i in range(8))
    result = analyze(write(tmp_path / "x", text), "m", batch_size=2)
    assert result.reason == "no training windows"


def test_missing_log() -> None:
    result = analyze(LOGS / "does_not_exist.log", "m")
    check_result(result)
    assert result.exit_code == 2 and result.reason.startswith("cannot read log")
    assert result.speed["log_file"] == "does_not_exist.log"


# ----------------------------------------------------------------------------- harness records

def test_record_success_wins_over_arguments() -> None:
    # record: bs 4, gpu_num 2, mp; windows 2.0 0.9 0.5 0.45 | 0.4 0.35 0.45 0.4 -> 4 * 2 / 0.4.
    result = run("segbench_success.log", batch_size=1, gpu_num=3, run_mode="sp")
    assert result.ok and result.speed["FINAL_RESULT"] == 20.0
    assert result.speed["gpu_num"] == 2 and result.speed["run_mode"] == "mp"
    stats = result.stats
    assert stats["case"] == "fastscnn_mp_bs4_fp32_2" and stats["fp_item"] == "fp32"
    assert stats["device"] == "cuda" and stats["profile"] == "gpu"
    assert stats["env"]["torch"] == "2.13.0" and stats["command"].startswith("torchrun")
    assert stats["host"] is None   # a log written before the records carried the host's state


def test_host_state_comes_from_the_case_and_result_records(tmp_path: Path) -> None:
    line = ("11/29 02:52:31 - mmengine - INFO - Iter(train) [{i:>3}/500]  lr: 1.0e-01  "
            "eta: 0:00:09  time: 0.1000  data_time: 0.0106  memory: 1210  loss: 2.9000\n")
    host = {"time": "t", "cpu_mloops_per_s": 8.0, "loadavg": [0.1, 0.2, 0.3], "gpus": None}
    text = ('[segbench] case: {"case": "c", "batch_size": 2, "gpu_num": 1, "host": %s}\n'
            % json.dumps(host)
            + "".join(line.format(i=10 * (i + 1)) for i in range(8))
            + '[segbench] result: {"exit_code": 0, "reason": null, "elapsed_s": 1.0, "host": %s}\n'
            % json.dumps(dict(host, cpu_mloops_per_s=4.0)))
    stats = analyze(write(tmp_path / "x", text), "m").stats
    assert stats["host"]["before"]["cpu_mloops_per_s"] == 8.0
    assert stats["host"]["after"]["cpu_mloops_per_s"] == 4.0


def test_record_timeout_keeps_partial_figure() -> None:
    # windows ... | 0.25 0.25 0.2 0.3 -> 2 * 1 / 0.25 = 8, kept only as partial_images_per_s.
    result = run("segbench_timeout.log")
    assert result.reason == "timeout" and result.exit_code == 1
    assert result.stats["partial_images_per_s"] == 8.0 and result.speed["FINAL_RESULT"] == 0.0


def test_record_without_result() -> None:
    result = run("segbench_no_result.log")
    assert result.reason == "incomplete run: no result record"
    assert result.stats["partial_images_per_s"] == 8.0


@pytest.mark.parametrize("record, reason", [
    ('{"exit_code": 137, "reason": null, "elapsed_s": 1.0}', "exit code 137"),
    ('{"exit_code": 1, "reason": "bad input:\\nmissing data", "elapsed_s": 1.0}',
     "bad input: missing data"),
    ("{not json", "malformed result record"),
])
def test_record_failure_reasons(tmp_path: Path, record: str, reason: str) -> None:
    text = (LOGS / "segbench_no_result.log").read_text() + f"[segbench] result: {record}\n"
    result = analyze(write(tmp_path / "x", text), "fastscnn")
    check_result(result)
    assert result.reason == reason


def test_record_missing_keys_fall_back(tmp_path: Path) -> None:
    text = (LOGS / "segbench_success.log").read_text()
    text = text.replace('"batch_size": 4, ', "").replace('"run_mode": "mp", ', "")
    result = analyze(write(tmp_path / "x", text), "fastscnn", batch_size=8, run_mode="sp")
    assert result.speed["FINAL_RESULT"] == 40.0 and result.speed["run_mode"] == "sp"  # 8 * 2 / 0.4


# ----------------------------------------------------------------------------- precedence

def test_arguments_win_over_log_evidence() -> None:
    result = run("mmengine_stdout_1gpu.log", batch_size=4, gpu_num=2)
    assert result.speed["FINAL_RESULT"] == 40.0  # 4 * 2 / 0.2
    assert result.speed["gpu_num"] == 2 and result.speed["run_mode"] == "mp"
    assert run("mmengine_stdout_1gpu.log", gpu_num=2, run_mode="sp").speed["run_mode"] == "sp"


def test_gpu_num_never_from_file_name(tmp_path: Path) -> None:
    text = "".join(mmengine_line(10 * (i + 1), "0.2") for i in range(6))
    result = analyze(write(tmp_path / "fastscnn_mp_bs2_fp32_8", text), "m", batch_size=2)
    assert result.speed["gpu_num"] == 1 and result.speed["FINAL_RESULT"] == 10.0


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError):
        analyze(LOGS / "empty.log", "m", batch_size=0)
    with pytest.raises(ValueError):
        analyze(LOGS / "empty.log", "m", run_mode="dp")


# ----------------------------------------------------------------------------- per-iteration stats

def iters_files(directory: Path, case: str, rank0_times: list[float], *, device_name: str,
                precision: str, flops: float | None = 1e12, gap_time: float | None = None,
                gc_time: float | None = None, cpu_share: float | None = None) -> None:
    """Rank files as the timing hook writes them; ``gap_time`` set = the current format (data
    wait timed at the iterator, the whole gap beside it), None = the older one (no gap_time);
    ``gc_time`` set: the collector's time in each iteration, a full collection every 4th;
    ``cpu_share`` set: the trainer thread's CPU time as that share of each iteration."""
    for rank, mem_peak in ((0, 1000.0), (1, 1100.0)):
        meta = {"kind": "meta", "rank": rank, "world_size": 2, "device": "cuda",
                "device_name": device_name, "batch_size": 4, "input_shape": [4, 3, 512, 1024],
                "precision": precision, "flops_per_iter": flops, "flops_error": None,
                "device_index": rank}
        if gap_time is not None:
            meta["data_time_source"] = "iterator"
        lines = [json.dumps(meta)]
        for i, time in enumerate(rank0_times if rank == 0 else [0.5] * len(rank0_times)):
            row = {"kind": "iter", "iter": i + 1, "rank": rank, "time": time,
                   "data_time": 0.02, "loss": 3.0 - 0.1 * i,
                   "mem_mb": mem_peak - len(rank0_times) + i + 1, "t": 1.7e9 + i}
            if gap_time is not None:
                row["gap_time"] = gap_time
            if gc_time is not None:
                row["gc_time"], row["gc_full"] = gc_time, int(i % 4 == 3)
            if cpu_share is not None:
                row["cpu_time"] = time * cpu_share
            lines.append(json.dumps(row))
        (directory / f"{case}_iters.rank{rank}.jsonl").write_text("\n".join(lines) + "\n")


def record_log_with_interval(tmp_path: Path, log_interval: int) -> Path:
    text = (LOGS / "segbench_success.log").read_text().replace(
        '"log_interval": 10', f'"log_interval": {log_interval}')
    return write(tmp_path / "fastscnn_mp_bs4_fp32_2", text)


def test_sidecar_splits_the_gap_into_data_wait_and_loop_time(tmp_path: Path) -> None:
    log = record_log_with_interval(tmp_path, 2)
    iters_files(tmp_path, log.name, [1.0] * 8 + [0.2] * 10, device_name="NVIDIA H200",
                precision="fp32", gap_time=0.05)
    per_iter = analyze(log, "fastscnn").stats["per_iter"]
    assert per_iter["data_wait_source"] == "iterator"
    assert per_iter["data_wait_share"] == pytest.approx(0.1)    # 0.02 of 0.2 s
    assert per_iter["between_share"] == pytest.approx(0.25)     # 0.05 of 0.2 s
    assert per_iter["gc_share"] is None and per_iter["gc_full_collections"] is None   # no gc_time


def test_sidecar_gives_the_garbage_collectors_share(tmp_path: Path) -> None:
    log = record_log_with_interval(tmp_path, 2)  # warm-up: the first 8 iterations
    iters_files(tmp_path, log.name, [1.0] * 8 + [0.2] * 10, device_name="NVIDIA H200",
                precision="fp32", gap_time=0.05, gc_time=0.01)
    per_iter = analyze(log, "fastscnn").stats["per_iter"]
    assert per_iter["gc_share"] == pytest.approx(0.05)          # 0.01 of 0.2 s
    assert per_iter["gc_full_collections"] == 2    # one every 4th: iterations 12 and 16 of 9..18


def test_sidecar_gives_the_trainer_threads_cpu_time(tmp_path: Path) -> None:
    log = record_log_with_interval(tmp_path, 2)  # warm-up: the first 8 iterations
    iters_files(tmp_path, log.name, [1.0] * 8 + [0.2, 0.3] * 5, device_name="NVIDIA H200",
                precision="fp32", gap_time=0.05, cpu_share=0.6)
    per_iter = analyze(log, "fastscnn").stats["per_iter"]
    assert per_iter["cpu_share"] == pytest.approx(0.6)
    assert per_iter["cpu_time_mean"] == pytest.approx(0.15)          # 0.6 x mean(0.2, 0.3)
    assert per_iter["cpu_time_cv"] == pytest.approx(statistics.stdev([0.12, 0.18] * 5) / 0.15)
    iters_files(tmp_path, log.name, [1.0] * 8 + [0.2] * 10, device_name="NVIDIA H200",
                precision="fp32", gap_time=0.05)                  # a file from before the field
    per_iter = analyze(log, "fastscnn").stats["per_iter"]
    assert per_iter["cpu_share"] is None and per_iter["cpu_time_mean"] is None
    assert per_iter["cpu_time_cv"] is None


def host_sample(t: float, busy: int, idle: int, steal: int = 0, iowait: int = 0) -> dict:
    return {"t": t, "user": busy, "nice": 0, "system": 0, "idle": idle, "iowait": iowait,
            "irq": 0, "softirq": 0, "steal": steal}


def test_sidecar_host_during_comes_from_the_launchers_samples(tmp_path: Path) -> None:
    log = record_log_with_interval(tmp_path, 2)   # iterations end at t = 1.7e9 + i, i = 0..17
    iters_files(tmp_path, log.name, [1.0] * 8 + [0.2] * 10, device_name="NVIDIA H200",
                precision="fp32", gap_time=0.05)
    t0 = 1.7e9
    samples = [host_sample(t0 + 7, 0, 0), host_sample(t0 + 12, 50, 50, steal=0),
               host_sample(t0 + 17, 100, 60, steal=40), "not json", "{\"t\": 3}"]
    (tmp_path / f"{log.name}_host.jsonl").write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in samples) + "\n")
    during = analyze(log, "fastscnn").stats["host"]["during"]
    # measured: from the end of warm-up iteration 8 (t0 + 7) to the last one (t0 + 17)
    assert during["samples"] == 3 and during["seconds"] == 10
    assert during["cpu_steal_share"] == pytest.approx(40 / 200)
    assert during["cpu_busy_share"] == pytest.approx(100 / 200)
    (tmp_path / f"{log.name}_host.jsonl").unlink()
    host = analyze(log, "fastscnn").stats["host"]
    assert host is None or host["during"] is None


def test_sidecar_per_iteration_block(tmp_path: Path) -> None:
    log = record_log_with_interval(tmp_path, 2)  # warm-up = 4 * 2 = 8 iterations
    times = [1.0] * 8 + [0.1] * 5 + [0.3] * 5
    iters_files(tmp_path, log.name, times, device_name="NVIDIA H100 80GB HBM3", precision="fp32")
    stats = analyze(log, "fastscnn").stats
    per_iter = stats["per_iter"]
    assert per_iter["n"] == 10 and per_iter["warmup"] == 8 and per_iter["rank_files"] == 2
    assert per_iter["mean"] == pytest.approx(0.2) and per_iter["median"] == pytest.approx(0.2)
    assert per_iter["p10"] == pytest.approx(0.1) and per_iter["p90"] == pytest.approx(0.3)
    std = math.sqrt(10 * 0.1 ** 2 / 9)  # sample std: every time is 0.1 away from the mean
    assert per_iter["std"] == pytest.approx(std) and per_iter["cv"] == pytest.approx(std / 0.2)
    assert per_iter["images_per_s"] == pytest.approx(40.0)  # 4 * 2 / 0.2
    half = 2.262 * std / math.sqrt(10)  # t(0.975, df 9)
    lo, hi = per_iter["images_per_s_ci95"]
    assert lo == pytest.approx(8 / (0.2 + half)) and hi == pytest.approx(8 / (0.2 - half))
    assert lo < per_iter["images_per_s"] < hi
    assert per_iter["data_wait_share"] == pytest.approx(0.1)  # 0.2 s of 2.0 s
    assert per_iter["between_share"] is None and per_iter["data_wait_source"] == "gap"  # old format
    steady = per_iter["steady"]
    assert steady["first_half_mean"] == pytest.approx(0.1)
    assert steady["second_half_mean"] == pytest.approx(0.3)
    assert steady["drift"] == pytest.approx(2.0) and steady["ok"] is False
    assert per_iter["window_vs_per_iter"] == pytest.approx(20.0 / 40.0)
    assert stats["memory"]["peak_mb_per_rank"] == [1000.0, 1100.0]
    assert stats["memory"]["device_index_per_rank"] == [0, 1]  # each rank on its own GPU
    assert stats["last_loss"] == pytest.approx(3.0 - 0.1 * 17)
    flops = stats["flops"]
    assert flops["per_iter_per_process"] == 1e12 and flops["per_iter_total"] == 2e12
    assert flops["tflops_achieved"] == pytest.approx(10.0)  # 2e12 / 0.2 s / 1e12
    assert flops["tflops_per_gpu"] == pytest.approx(5.0)    # each of the 2 GPUs did 1e12 / 0.2 s
    assert flops["peak_tflops"] == 494.7 and "TF32" in flops["peak_basis"]
    assert flops["fraction_of_peak"] == pytest.approx(5.0 / 494.7)   # per GPU: one GPU's peak


def with_records(text: str, case: dict, result: dict) -> str:
    """``text`` (a log with records) with ``case`` / ``result`` merged into its records."""
    out = []
    for line in text.splitlines(keepends=True):
        for kind, extra in (("case", case), ("result", result)):
            head = f"[segbench] {kind}: "
            if line.startswith(head):
                line = head + json.dumps({**json.loads(line[len(head):]), **extra}) + "\n"
        out.append(line)
    return "".join(out)


def probe(mloops: float, load: float) -> dict:
    return {"time": "2026-12-02T10:00:00+0000", "cpu_mloops_per_s": mloops,
            "loadavg": [load, load, load], "gpus": None}


def test_busy_host_signs_are_warnings_not_failures(tmp_path: Path) -> None:
    """The CPU suite on a busy 2-core host: load 3.4 / 4.8 on 2 CPUs, the probe 3.2x slower at
    the end, 10% steal, alternating 0.05 / 0.5 s iterations (CV 86%) drifting +39%. The run still
    passed (JOB_FAIL_FLAG 0); every sign is one warning, keyword first, and the sidecar is flagged."""
    log = tmp_path / "fastscnn_mp_bs4_fp32_2"
    log.write_text(with_records(
        (LOGS / "segbench_success.log").read_text().replace('"log_interval": 10', '"log_interval": 2'),
        {"env": {"host_cpus": 2}, "host": probe(8.0, 3.4)}, {"host": probe(2.5, 4.8)}))
    iters_files(tmp_path, log.name, [1.0] * 8 + [0.05, 0.5] * 5, device_name="x", precision="fp32")
    t0 = 1.7e9   # the measured iterations end at t0 + 7 .. t0 + 17
    (tmp_path / f"{log.name}_host.jsonl").write_text("".join(
        json.dumps(host_sample(t0 + t, 90 * t, 0, steal=10 * t)) + "\n" for t in (7, 12, 17)))
    result = analyze(log, "fastscnn")
    check_result(result)
    assert result.ok and result.speed["FINAL_RESULT"] == 20.0 and result.speed["JOB_FAIL_FLAG"] == 0
    assert [w.split(":")[0] for w in result.warnings] == [
        "not steady", "noisy", "host load", "steal", "host slowed"]
    assert result.warnings[0].startswith("not steady: per-iteration times drifted +39.1%")
    assert result.warnings[1] == "noisy: per-iteration CV 86% (threshold 60%)"
    assert result.warnings[2] == ("host load: 1-minute load average 3.4 at the start and 4.8 at the "
                                  "end, above the host's 2 CPUs")
    assert result.warnings[3].startswith("steal: the hypervisor took 10.0% of the CPUs' time")
    assert result.warnings[4].startswith("host slowed: its CPU probe ran 2.5 M loops/s at the end "
                                         "against 8 at the start (0.31x")
    assert result.stats["flagged"] is True


def test_healthy_run_is_not_flagged(tmp_path: Path) -> None:
    text = "".join(mmengine_line(10 * (i + 1), t) for i, t in enumerate(
        ["1.0", "0.5", "0.3", "0.3", "0.2", "0.21", "0.2", "0.19", "0.2", "0.2"]))
    log = write(tmp_path / "c", with_records(
        '[segbench] case: {"case": "c", "batch_size": 2, "gpu_num": 1, "run_mode": "sp"}\n' + text
        + '[segbench] result: {"exit_code": 0, "reason": null, "elapsed_s": 9.0}\n',
        {"env": {"host_cpus": 16}, "host": probe(8.0, 2.0)}, {"host": probe(7.0, 3.0)}))
    stats = analyze(log, "m").stats
    assert stats["warnings"] == [] and stats["flagged"] is False
    assert stats["window"]["steady"]["ok"] is True and stats["window"]["cv"] < 0.05


def test_healthy_h200_runs_pass_the_noise_and_host_thresholds() -> None:
    """Calibration: real H200 logs kept as fixtures (plain mmseg's and mmengine's own output) pass
    and are not noisy or on a busy, stolen or slowed host by the thresholds (they may drift by more
    than 5%, which the steady-state check rightly says). The thresholds themselves were set on the
    stock H200 runs of 2026-11-29 to 12-01 (docs/FORMATS.md)."""
    logs = [LOGS / "h200_segformer_b0_plain.log", LOGS / "mmengine_stdout_1gpu.log",
            LOGS / "mmengine_filelog_2gpu.log"]
    for log in logs:
        result = analyze(log, "m", batch_size=2)
        assert result.ok, log
        signs = [w for w in result.warnings if w.split(":")[0] in
                 ("noisy", "host load", "steal", "host slowed")]
        assert signs == [], log


@pytest.mark.parametrize("window, warning", [
    ([50, 60], "profiler: iterations 50-60 of the measured ones ran under torch.profiler"),
    ([35, 45], "profiler: iterations 41-45 of the measured ones ran under torch.profiler"),
    ([75, 90], "profiler: iterations 75-80 of the measured ones ran under torch.profiler"),
    ([5, 40], None),
    (None, None),
])
def test_profiler_window_inside_the_measured_iterations(tmp_path: Path, window: list | None,
                                                        warning: str | None) -> None:
    # log_interval 10: warm-up = iterations 1-40; the last window is iteration 80
    log = write(tmp_path / "x", with_records((LOGS / "segbench_success.log").read_text(),
                                             {"profile_window": window}, {}))
    stats = analyze(log, "fastscnn").stats
    assert stats["profile_window"] == window
    assert [w for w in stats["warnings"] if w.startswith("profiler")] == ([warning] if warning else [])


def test_window_statistics_of_a_plain_h200_log() -> None:
    """A real plain-mmseg segformer_b0 log (H200, 2026-11-29, benchmarks/h200x2_2026-11-29_s7/
    fid_conc_seg/plain_p2, no per-iteration files): its windows drift from ~0.085 s to ~0.10 s.
    The window block gives their spread, 95% interval, median figure and the drift check."""
    log = LOGS / "h200_segformer_b0_plain.log"
    times = [float(t) for t in re.findall(r"Iter\(train\).*?(?<!data_)time: ([0-9.]+)",
                                          log.read_text())][4:]
    result = run("h200_segformer_b0_plain.log")
    window = result.stats["window"]
    assert result.ok and result.stats["per_iter"] is None and window["n"] == len(times) == 46
    assert result.speed["FINAL_RESULT"] == round(2 / statistics.mean(times), 3)   # the seed's formula
    assert result.stats["images_per_s_median"] == round(2 / statistics.median(times), 3)
    assert window["cv"] == pytest.approx(statistics.stdev(times) / statistics.mean(times))
    half = 23
    drift = statistics.mean(times[half:]) / statistics.mean(times[:half]) - 1
    assert window["steady"]["drift"] == pytest.approx(drift) and drift > 0.1
    assert window["steady"]["ok"] is False
    lo, hi = window["images_per_s_ci95"]
    assert lo < window["images_per_s"] < hi and hi - lo < 0.1 * window["images_per_s"]
    assert result.warnings == (f"not steady: window times drifted {drift:+.1%} from the first half of "
                               "the measured ones to the second (threshold 5%)",)


def bad_input_log(tmp_path: Path, **record: object) -> Path:
    case = {"case": "fastscnn_xp_bs2_fp32_NA", "argv": ["fastscnn", "xp", "fp32", "2", "500"],
            "command": "fastscnn xp fp32 2 500", **record}
    return write(tmp_path / "fastscnn_xp_bs2_fp32_NA",
                 f"[segbench] case: {json.dumps(case)}\n[segbench] result: "
                 + json.dumps({"exit_code": 2, "reason": "bad input: RUN_MODE must be sp or mp, not 'xp'",
                               "elapsed_s": 0.0}) + "\n")


@pytest.mark.parametrize("record", [{"run_mode": "xp", "gpu_num": None}, {"run_mode": "mp", "gpu_num": 8},
                                    {}])
def test_speed_file_states_the_records_values(tmp_path: Path, record: dict) -> None:
    """A record's run_mode and gpu_num as recorded (null stays null); a missing key is not
    inferred either (no "sp" / 1 the user never gave)."""
    log = bad_input_log(tmp_path, **record)
    for kwargs in ({}, {"run_mode": "sp", "gpu_num": 1}):
        result = analyze(log, "fastscnn", **kwargs)
        check_result(result)
        expected = {k: record.get(k, kwargs.get(k)) for k in ("run_mode", "gpu_num")}
        assert {k: result.speed[k] for k in expected} == expected
        assert result.reason == "bad input: RUN_MODE must be sp or mp, not 'xp'"


def test_launchers_bad_input_record_is_stated_as_written(tmp_path: Path) -> None:
    """The launcher's own bad-input path (launch._write_bad_input): the speed file says what its
    record says, whatever shape the record has."""
    from segbench import launch
    argv = ["fastscnn", "xp", "fp32", "2", "500", "5"]
    assert launch._write_bad_input(argv, "RUN_MODE must be sp or mp", {"TRAIN_LOG_DIR": str(tmp_path)}) == 2
    (speed_path,) = tmp_path.glob("*_speed")
    speed = json.loads(speed_path.read_text())
    head = "[segbench] case: "
    record = json.loads(next(line[len(head):] for line in
                             Path(str(speed_path)[:-len("_speed")]).read_text().splitlines()
                             if line.startswith(head)))
    assert speed["JOB_FAIL_FLAG"] == 1
    assert (speed["run_mode"], speed["gpu_num"]) == (record.get("run_mode"), record.get("gpu_num"))


def test_default_warmup_is_40_iterations(tmp_path: Path) -> None:
    log = record_log_with_interval(tmp_path, 10)
    iters_files(tmp_path, log.name, [1.0] * 40 + [0.25] * 4, device_name="x", precision="fp32")
    per_iter = analyze(log, "fastscnn").stats["per_iter"]
    assert per_iter["n"] == 4 and per_iter["mean"] == 0.25


@pytest.mark.parametrize("device_name, precision, peak", [
    ("NVIDIA H200", "bf16", 989.4),
    ("NVIDIA A100-SXM4-80GB", "fp32", 156.0),
    ("NVIDIA A100-SXM4-80GB", "fp16", 312.0),
    ("Tesla V100-SXM2-32GB", "fp32", 15.7),
    ("Tesla V100-SXM2-32GB", "fp16", 125.0),
    ("Tesla V100-SXM2-32GB", "bf16", None),
    ("NVIDIA RTX A1000", "fp32", None),
    ("NVIDIA H100 PCIe", "fp32", None),
])
def test_peak_table(tmp_path: Path, device_name: str, precision: str, peak: float | None) -> None:
    log = record_log_with_interval(tmp_path, 1)
    iters_files(tmp_path, log.name, [0.2] * 10, device_name=device_name, precision=precision)
    flops = analyze(log, "fastscnn").stats["flops"]
    assert flops["peak_tflops"] == peak
    assert (flops["fraction_of_peak"] is None) == (peak is None)


def test_flops_null_when_not_counted(tmp_path: Path) -> None:
    log = record_log_with_interval(tmp_path, 1)
    iters_files(tmp_path, log.name, [0.2] * 10, device_name="NVIDIA H100", precision="fp32",
                flops=None)
    assert analyze(log, "fastscnn").stats["flops"] is None


# ----------------------------------------------------------------------------- output paths

@pytest.mark.parametrize("speed, stats", [
    ("/d/fastscnn_sp_bs2_fp32_1_speed", "/d/fastscnn_sp_bs2_fp32_1_stats.json"),
    ("/d/result.json", "/d/result.json_stats.json"),
    ("x_speed", "x_stats.json"),
    ("/d/_speed", "/d/_speed_stats.json"),
])
def test_speed_path_to_stats_path(speed: str, stats: str) -> None:
    assert speed_path_to_stats_path(speed) == stats


def test_write_json_atomic(tmp_path: Path) -> None:
    path = tmp_path / "c_speed"
    path.write_text("old")
    write_json_atomic(path, {"mission_name": "图像分割", "x": 1.5})
    assert "图像分割" in path.read_bytes().decode("utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == {"mission_name": "图像分割", "x": 1.5}
    assert os.listdir(tmp_path) == ["c_speed"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError) as info:
        write_json_atomic(blocker / "c_speed", {})
    assert info.value.filename == str(blocker / "c_speed")


def test_write_outputs(tmp_path: Path) -> None:
    result = run("segbench_timeout.log")
    write_outputs(result, tmp_path / "fastscnn_sp_bs2_fp32_1_speed")
    speed = json.loads((tmp_path / "fastscnn_sp_bs2_fp32_1_speed").read_text(encoding="utf-8"))
    stats = json.loads((tmp_path / "fastscnn_sp_bs2_fp32_1_stats.json").read_text())
    assert speed == result.speed and stats["reason"] == "timeout"
    assert stats["partial_images_per_s"] == 8.0


def test_write_failure_cleans_up_and_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def no_space(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(analysis.os, "replace", no_space)
    speed = tmp_path / "c_speed"
    code = main(["fastscnn", str(LOGS / "mmengine_stdout_1gpu.log"), str(speed)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert str(speed) in err[0] and "No space left on device" in err[0]
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- CLI

def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(CLI), *args], cwd=cwd, capture_output=True,
                          text=True, encoding="utf-8", timeout=60, check=False)


def test_cli_success(tmp_path: Path) -> None:
    speed = tmp_path / "fastscnn_sp_bs2_fp32_1_speed"
    log = LOGS / "mmengine_stdout_1gpu.log"
    proc = cli(tmp_path, "fastscnn", str(log), str(speed))
    assert proc.returncode == 0   # passed, flagged: the sidecar's warning also goes to stderr
    assert proc.stderr == f"analysis_log.py: warning: fastscnn {log}: not steady: window times drifted " \
                          "-15.4% from the first half of the measured ones to the second (threshold 5%)\n"
    written = json.loads(speed.read_text(encoding="utf-8"))
    assert json.loads(proc.stdout) == written and list(written) == SPEED_KEYS
    assert written["FINAL_RESULT"] == 10.0 and written["JOB_FAIL_FLAG"] == 0
    assert "图像分割" in speed.read_bytes().decode("utf-8")
    stats = json.loads((tmp_path / "fastscnn_sp_bs2_fp32_1_stats.json").read_text())
    assert stats["schema"] == 1 and stats["FINAL_RESULT"] == 10.0


def test_cli_arguments_and_warning(tmp_path: Path) -> None:
    speed = tmp_path / "s_speed"
    proc = cli(tmp_path, "fastscnn", str(LOGS / "scalars.json"), str(speed), "--batch-size", "8")
    assert proc.returncode == 0 and json.loads(proc.stdout)["FINAL_RESULT"] == 32.0
    assert proc.stderr.startswith("analysis_log.py: warning:")
    proc = cli(tmp_path, "fastscnn", str(LOGS / "scalars.json"), str(speed), "--batch-size", "8",
               "--gpu-num", "2", "--run-mode", "sp")
    written = json.loads(speed.read_text())
    assert proc.returncode == 0 and proc.stderr == ""
    assert written["FINAL_RESULT"] == 64.0  # 8 * 2 / 0.25
    assert written["gpu_num"] == 2 and written["run_mode"] == "sp"


def test_cli_analysis_failure(tmp_path: Path) -> None:
    speed, log = tmp_path / "v_speed", LOGS / "val_only.log"
    proc = cli(tmp_path, "fastscnn", str(log), str(speed))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"analysis_log.py: fastscnn {log}: no training windows\n"
    written = json.loads(speed.read_text())
    assert written["FINAL_RESULT"] == 0 and written["JOB_FAIL_FLAG"] == 1
    assert json.loads((tmp_path / "v_stats.json").read_text())["reason"] == "no training windows"


def test_cli_missing_log(tmp_path: Path) -> None:
    speed = tmp_path / "m_speed"
    proc = cli(tmp_path, "fastscnn", str(tmp_path / "nope.log"), str(speed))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "cannot read log" in proc.stderr and "Traceback" not in proc.stderr
    written = json.loads(speed.read_text())
    assert written["JOB_FAIL_FLAG"] == 1 and written["log_file"] == "nope.log"


def test_cli_unwritable_speed_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    speed = blocker / "c_speed"
    proc = cli(tmp_path, "fastscnn", str(LOGS / "mmengine_stdout_1gpu.log"), str(speed))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"analysis_log.py: cannot write {speed}: Not a directory\n"


def test_cli_rejects_bad_batch_size(tmp_path: Path) -> None:
    proc = cli(tmp_path, "m", str(LOGS / "empty.log"), str(tmp_path / "s"), "--batch-size", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- properties

@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hypothesis")


def analyze_bytes(directory: Path, data: bytes, **kwargs: object) -> Result:
    path = directory / "case"
    path.write_bytes(data)
    result = analyze(path, "m", **kwargs)
    check_result(result)
    return result


@HYPOTHESIS
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash(scratch: Path, data: bytes) -> None:
    analyze_bytes(scratch, data)


TIME_TEXT = st.sampled_from(["0.2", "0.2000", "1e-3", "nan", "inf", "-0.5", "0", "", "0.", "x",
                             "1e999", "12345678901234567890"])
TEMPLATES = [
    "11/29 02:52:31 - mmengine - INFO - Iter(train) [{i:>3}/500]  lr: 1.0e-01  eta: 0:00:09  "
    "time: {t}  data_time: 0.0106  loss: {t}",
    "2026/11/29 02:53:24 - mmengine - INFO - Epoch(train) [{i}][{i}/100]  lr: 1e-2  time: {t}",
    "2021-09-29 10:00:01,234 - mmseg - INFO - Iter [{i}/320000]\tlr: 9.997e-03, time: {t}, "
    "data_time: 0.010, loss: 1.2",
    "11/29 02:52:31 - mmengine - INFO - Iter(val) [{i}/500]    eta: 0:00:01  time: {t}",
    '{{"lr": 0.1, "loss": 1.0, "time": {t}, "iter": {i}}}',
    '{{"aAcc": 80.0, "time": {t}, "step": {i}}}',
    '[segbench] case: {{"case": "c", "batch_size": {i}, "gpu_num": {i}, "log_interval": {i}}}',
    '[segbench] result: {{"exit_code": {i}, "reason": null}}',
    "[segbench] result: {{{t}",
    "System environment:",
    "2021-09-29 10:00:00,000 - mmseg - INFO - Environment info:",
    "    GPU number: {i}",
    "Distributed training: True",
    "gpu_ids = range(0, {i})",
    "train_dataloader = dict(batch_size={i},",
    "data = dict(samples_per_gpu={i}, workers_per_gpu=2)",
    "\x1b[32m{t}\x1b[0m [rank1]:",
]


@st.composite
def mixed_logs(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.booleans()):
            template = draw(st.sampled_from(TEMPLATES))
            lines.append(template.format(i=draw(st.integers(0, 200)), t=draw(TIME_TEXT)))
        else:
            lines.append(draw(st.text(max_size=80)))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    data = text.encode("utf-8", errors="surrogatepass")
    return data[:draw(st.integers(0, len(data)))]


@HYPOTHESIS
@given(mixed_logs(), st.none() | st.integers(1, 16), st.none() | st.integers(1, 8))
def test_mixed_valid_and_garbage_lines(scratch: Path, data: bytes, batch_size: int | None,
                                       gpu_num: int | None) -> None:
    analyze_bytes(scratch, data, batch_size=batch_size, gpu_num=gpu_num)


RANK_LINES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda kind, it, t, d, mem: json.dumps(
        {"kind": kind, "iter": it, "rank": 0, "time": t, "data_time": d, "loss": t,
         "mem_mb": mem, "device_name": "NVIDIA A100", "precision": "bf16",
         "flops_per_iter": mem}),
        st.sampled_from(["meta", "iter", "iter", "iter", "other"]),
        st.integers(-2, 60) | st.booleans() | st.floats(),
        st.floats() | st.integers() | st.none(), st.floats() | st.none(),
        st.floats() | st.integers(-10, 10 ** 400) | st.none()))


@HYPOTHESIS
@given(st.lists(RANK_LINES, max_size=80), st.lists(RANK_LINES, max_size=20))
def test_random_per_iteration_files(scratch: Path, rank0: list[str], rank1: list[str]) -> None:
    log = scratch / "fastscnn_mp_bs4_fp32_2"
    log.write_text((LOGS / "segbench_success.log").read_text().replace(
        '"log_interval": 10', '"log_interval": 1'))
    for rank, lines in enumerate((rank0, rank1)):
        (scratch / f"{log.name}_iters.rank{rank}.jsonl").write_text("\n".join(lines))
    result = analyze(log, "fastscnn")
    check_result(result)
    per_iter = result.stats["per_iter"]
    # per-iteration files never change the figure; a non-finite loss in them fails the run
    assert result.speed["FINAL_RESULT"] == 20.0 or result.reason.startswith("loss not finite")
    assert per_iter is None or per_iter["rank_files"] == 2


JUNK = st.text(alphabet=string.ascii_letters + string.digits + " .,:;-_/+*!?#%&|<>@~", max_size=60)


@HYPOTHESIS
@given(st.lists(st.tuples(st.integers(0, 10_000), JUNK), max_size=20))
def test_junk_lines_do_not_change_the_result(scratch: Path, junk: list[tuple[int, str]]) -> None:
    lines = (LOGS / "mmengine_stdout_1gpu.log").read_text().splitlines(keepends=True)
    for position, text in junk:
        lines.insert(position % (len(lines) + 1), text + "\n")
    result = analyze_bytes(scratch, "".join(lines).encode())
    assert result.speed["FINAL_RESULT"] == 10.0 and result.stats["batch_size"] == 2


@HYPOTHESIS
@given(st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=30),
       st.integers(1, 64), st.integers(1, 8))
def test_final_result_formula(scratch: Path, times: list[float], batch_size: int,
                              gpu_num: int) -> None:
    text = "".join(mmengine_line(i + 1, repr(t)) for i, t in enumerate(times))
    result = analyze_bytes(scratch, text.encode(), batch_size=batch_size, gpu_num=gpu_num)
    if len(times) <= 4:
        assert not result.ok
    else:
        expected = round(batch_size * gpu_num / float(np.mean(times[4:])), 3)
        assert result.ok and result.speed["FINAL_RESULT"] == expected
