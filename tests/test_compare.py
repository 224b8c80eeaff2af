"""Tests for segbench.compare: matching, statuses, labels."""

import json

import pytest

from resultfiles import by_case, make_records, pair_dirs, write_speed, write_stats
from segbench import compare, history, report, results


def test_compare_statuses(tmp_path):
    base, cur = pair_dirs(tmp_path, 9.0)  # 10% slower
    rows, ok = compare.compare(base, cur, 0.05)
    r = by_case(rows)["fastscnn_sp_bs2_fp32_1"]
    assert (r["baseline"], r["current"], r["status"]) == (10.0, 9.0, "regressed")
    assert r["ratio"] == pytest.approx(0.9)
    assert by_case(rows)["ocrnet_hrnetw48_mp_bs2_fp32_8"]["status"] == "ok"
    assert ok is False
    rows, ok = compare.compare(base, cur, 0.15)
    assert by_case(rows)["fastscnn_sp_bs2_fp32_1"]["status"] == "ok" and ok is True
    base2, cur2 = pair_dirs(tmp_path / "faster", 11.0)
    rows, ok = compare.compare(base2, cur2, 0.05)
    assert by_case(rows)["fastscnn_sp_bs2_fp32_1"]["status"] == "improved" and ok is True


def test_compare_missing_failed_and_new(tmp_path):
    base, cur = pair_dirs(tmp_path, 10.0)
    write_speed(base, "pspnet_r50_sp_bs2_fp32_1", 4.0)  # absent from current
    write_speed(base, "knet_sp_bs2_fp32_1", 4.0)
    write_speed(cur, "knet_sp_bs2_fp32_1", 0, fail=True)  # failed in current
    write_stats(cur, "knet_sp_bs2_fp32_1", reason="timeout")
    write_speed(cur, "unet_sp_bs2_fp32_1", 2.0)  # new
    rows, ok = compare.compare(base, cur)
    st = {r["case"]: r["status"] for r in rows}
    assert st["pspnet_r50_sp_bs2_fp32_1"] == "missing"
    assert st["knet_sp_bs2_fp32_1"] == "missing"
    assert "timeout" in by_case(rows)["knet_sp_bs2_fp32_1"]["note"]
    assert st["unet_sp_bs2_fp32_1"] == "new"
    assert st["fastscnn_sp_bs2_fp32_1"] == "ok"
    assert ok is False
    # only a new case: still ok
    base2, cur2 = pair_dirs(tmp_path / "n", 10.0)
    write_speed(cur2, "unet_sp_bs2_fp32_1", 2.0)
    assert compare.compare(base2, cur2)[1] is True


def test_a_flagged_figure_keeps_its_flag_and_a_reason_its_case(tmp_path):
    base, cur = pair_dirs(tmp_path, 9.0)
    write_stats(cur, "fastscnn_sp_bs2_fp32_1", flagged=True, warnings=["host load: 3.2 on 2 CPUs"])
    write_speed(cur, "unet_sp_bs2_fp32_1", 0, fail=True)
    write_stats(cur, "unet_sp_bs2_fp32_1", reason="crash: ValueError: Expected more than 1 value")
    rows, _ = compare.compare(base, cur)
    r = by_case(rows)["fastscnn_sp_bs2_fp32_1"]
    assert r["status"] == "regressed" and r["note"] == "FLAGGED current"
    note = by_case(rows)["unet_sp_bs2_fp32_1"]["note"]
    assert note == "failed: crash: ValueError: Expected more than 1 value"
    assert "FLAGGED current" in compare.compare_markdown(rows, False)


def test_a_runtime_variable_on_one_side_is_said(tmp_path):
    """PYTORCH_CUDA_ALLOC_CONF is not in the name, so the cases still match; the note says it."""
    base, cur = pair_dirs(tmp_path, 9.9)
    write_stats(cur, "fastscnn_sp_bs2_fp32_1",
                env={"runtime_env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}})
    rows, _ = compare.compare(base, cur)
    r = by_case(rows)["fastscnn_sp_bs2_fp32_1"]
    assert r["note"] == ("runtime variables differ: baseline none, "
                         "current PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")
    same, _ = compare.compare(cur, cur)
    assert by_case(same)["fastscnn_sp_bs2_fp32_1"]["note"] is None


def test_compare_matches_by_identity_not_name(tmp_path):
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_speed(base, "fastscnn_sp_bs2_fp32_1", 10.0, file_name="a_speed")
    write_speed(cur, "fastscnn_sp_bs2_fp32_1", 10.0, file_name="b_speed")
    # same name, different precision in the sidecar: a different case
    write_speed(base, "bisenet_sp_bs2_fp32_1", 10.0)
    write_speed(cur, "bisenet_sp_bs2_fp32_1", 5.0)
    write_stats(cur, "bisenet_sp_bs2_fp32_1", fp_item="amp")
    rows, ok = compare.compare(base, cur)
    st = sorted((r["fp"], r["status"]) for r in rows if r["model"] == "bisenet")
    assert st == [("amp", "new"), ("fp32", "missing")]
    assert [r["status"] for r in rows if r["model"] == "fastscnn"] == ["ok"]


def test_compare_duplicate_identity_noted(tmp_path):
    base, cur = pair_dirs(tmp_path, 10.0)
    write_speed(cur / "again", "fastscnn_sp_bs2_fp32_1", 3.0)  # same case, in a subdir
    rows, ok = compare.compare(base, cur)
    fast = [r for r in rows if r["model"] == "fastscnn"]
    assert len(fast) == 1 and fast[0]["current"] == 10.0  # top-level file wins
    assert "1 duplicate current file(s) ignored" in fast[0]["note"] and ok


def make_paddle(d):
    """Speed files as Paddle's benchmark writes them: same 10 keys, other naming."""
    write_speed(d, "x", 8.0, model="fastscnn", run_mode="DP", gpu_num=1,
                log_file="seg_fastscnn_bs2_fp32_SingleP_DP_N1C1_log",
                file_name="seg_fastscnn_bs2_fp32_SingleP_DP_N1C1_log_speed")
    write_speed(d, "x", 36.0, model="ocrnet_hrnetw48_bs2_fp32_DP", run_mode="DP", gpu_num=8,
                log_file="run42", file_name="run42_speed")
    return d


def test_compare_paddle_baseline_with_labels(tmp_path):
    base = make_paddle(tmp_path / "paddle")
    cur = tmp_path / "torch"
    write_speed(cur, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_speed(cur, "ocrnet_hrnetw48_mp_bs2_fp32_8", 40.0)
    rows, ok = compare.compare(base, cur, 0.05)
    r = by_case(rows)
    assert len(rows) == 2, rows
    assert r["fastscnn_sp_bs2_fp32_1"]["baseline"] == 8.0
    assert r["fastscnn_sp_bs2_fp32_1"]["ratio"] == pytest.approx(1.25)
    assert r["fastscnn_sp_bs2_fp32_1"]["baseline_case"] == \
        "seg_fastscnn_bs2_fp32_SingleP_DP_N1C1_log"
    assert r["ocrnet_hrnetw48_mp_bs2_fp32_8"]["baseline"] == 36.0
    assert all(x["status"] == "improved" for x in rows) and ok
    md = compare.compare_markdown(rows, ok, 0.05, "Paddle", "PyTorch")
    header = next(line for line in md.splitlines() if line.startswith("| case"))
    assert "Paddle images/s" in header and "PyTorch images/s" in header
    assert "PyTorch/Paddle" in header
    assert "1.250" in md and "+25.0%" in md


def test_compare_ambiguous_partial_identity_not_guessed(tmp_path):
    base = tmp_path / "paddle"
    write_speed(base, "x", 36.0, model="ocrnet_hrnetw48", run_mode="DP", gpu_num=8,
                log_file="run42", file_name="run42_speed")
    cur = tmp_path / "torch"
    write_speed(cur, "ocrnet_hrnetw48_mp_bs2_fp32_8", 40.0)
    write_speed(cur, "ocrnet_hrnetw48_mp_bs4_fp32_8", 60.0)
    rows, ok = compare.compare(base, cur)
    assert sorted(r["status"] for r in rows) == ["missing", "new", "new"] and not ok


def test_a_directory_of_fourteen_key_records_compares_against_speed_files(tmp_path):
    """Paddle's own results (14-key records, its names) against segbench's speed files."""
    base = make_records(tmp_path / "paddle")
    cur = tmp_path / "torch"
    write_speed(cur, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_speed(cur, "fastscnn_mp_bs2_fp32_2_li5", 15.0)
    write_speed(cur, "ocrnet_hrnetw48_mp_bs2_fp32_8", 30.0)
    write_speed(cur, "deeplabv3plus_r101_d8_mp_bs4_fp16_8", 6.6)
    write_speed(cur, "deeplabv3plus_r101_d8_mp_bs2_fp16_8", 3.0)   # another batch size: no match
    write_speed(cur, "segformer_b0_sp_bs2_fp32_1", 5.0)
    rows, ok = compare.compare(base, cur, 0.05)
    got = {r["case"]: (r["baseline_case"], r["status"]) for r in rows}
    assert got == {
        "fastscnn_sp_bs2_fp32_1": ("fastscnn_sp_bs2_fp32_1", "improved"),
        "fastscnn_mp_bs2_fp32_2_li5": ("fastscnn_mp_bs2_fp32_2_li5", "ok"),
        "ocrnet_hrnetw48_mp_bs2_fp32_8": ("PaddleSeg_ocrnet_N1C8", "regressed"),
        "deeplabv3plus_r101_d8_mp_bs4_fp16_8": ("result", "ok"),
        "deeplabv3plus_r101_d8_mp_bs2_fp16_8": (None, "new"),
        "segformer_b0_sp_bs2_fp32_1": ("segformer_b0_bs2_fp32", "improved"),   # baseline failed
    } and not ok
    assert by_case(rows)["ocrnet_hrnetw48_mp_bs2_fp32_8"]["ratio"] == pytest.approx(30.0 / 36.0)


# --------------------------------------------------------------------------- from the history

def _sidecar(case, ips, torch, device="NVIDIA H200", **settings):
    """A sidecar as analysis writes it, as far as the report reads it."""
    r = results.parse_case_name(case)
    return {"case": case, "log_file": case, "model": r["model"], "run_mode": r["run_mode"],
            "fp_item": r["fp"], "batch_size": r["batch_size"], "gpu_num": r["gpu_num"],
            "device": "cuda", "profile": "gpu", "FINAL_RESULT": ips, "JOB_FAIL_FLAG": 0 if ips else 1,
            "reason": None if ips else "oom", "warnings": [], "flagged": False,
            "per_iter": {"cv": 0.02}, "memory": {"peak_mb_per_rank": [1400.0]},
            "env": {"torch": torch, "gpu_names": [device]}, **settings}


HISTORY = [  # finished, case, images/s, torch, device, settings
    ("2026-11-01T10:00", "fastscnn_sp_bs2_fp32_1", 10.0, "2.10.0+cu128", "NVIDIA H200", {}),
    ("2026-11-02T10:00", "fastscnn_sp_bs2_fp32_1", 40.0, "2.10.0+cu128", "NVIDIA H200", {}),  # latest
    ("2026-11-02T11:00", "fastscnn_mp_bs2_fp32_2", 70.0, "2.10.0+cu128", "NVIDIA H200", {}),
    ("2026-11-03T10:00", "fastscnn_sp_bs2_fp32_1", 20.0, "2.10.0+cu128", "NVIDIA A100", {}),
    ("2026-11-04T10:00", "fastscnn_sp_bs2_fp32_1", 44.0, "2.11.0+cu130", "NVIDIA H200", {}),
    ("2026-11-04T11:00", "fastscnn_mp_bs2_fp32_2", 60.0, "2.11.0+cu130", "NVIDIA H200", {}),
    ("2026-11-04T12:00", "fastscnn_sp_bs2_fp32_1_li5", 41.0, "2.11.0+cu130", "NVIDIA H200",
     {"log_interval": 5}),
]


def make_history(d):
    for finished, case, ips, torch, device, settings in HISTORY:
        history.append(d, _sidecar(case, ips, torch, device, **settings), settings, finished)
    return history.db_path(d)


def test_history_rows_are_the_rows_of_the_same_files(tmp_path):
    """The row builder is the directory path's: a history row and the speed file + sidecar of
    the same case give the same report row (but for where it came from)."""
    db = make_history(tmp_path)
    d = tmp_path / "files"
    for finished, case, ips, torch, device, settings in HISTORY[4:]:
        stats = _sidecar(case, ips, torch, device, **settings)
        write_speed(d, case, ips, model=stats["model"])
        (d / f"{case}_stats.json").write_text(json.dumps(stats))
    from_db = by_case(results.history_rows(history.select(db, ["torch=2.11"]), db))
    from_files = by_case(results.load_cases(d))
    assert {k: dict(r, source=None) for k, r in from_db.items()} == \
        {k: dict(r, source=None) for k, r in from_files.items()}
    assert len(from_db) == 3 and from_db["fastscnn_sp_bs2_fp32_1_li5"]["variant"] == "li5"
    assert from_db["fastscnn_sp_bs2_fp32_1"]["source"].startswith(f"{db}#id=")


def test_compare_two_selections_of_the_history(tmp_path):
    db = make_history(tmp_path)
    rows, ok, text = compare.compare_history(db, ["torch=2.10"], ["torch=2.11"],
                                             ["device_name=NVIDIA H200"], 0.05)
    got = {r["case"]: (r["baseline"], r["current"], r["status"]) for r in rows}
    assert got == {"fastscnn_sp_bs2_fp32_1": (40.0, 44.0, "improved"),     # the latest 2.10 run
                   "fastscnn_mp_bs2_fp32_2": (70.0, 60.0, "regressed"),
                   "fastscnn_sp_bs2_fp32_1_li5": (None, 41.0, "new")} and not ok
    assert by_case(rows)["fastscnn_sp_bs2_fp32_1"]["note"] == \
        "1 earlier baseline run(s) ignored: the latest counts"
    assert "the latest counts" in text and "2.10.0+cu128" in text and "NVIDIA H200" in text
    # without the device filter the A100 run is 2.10's latest of that case
    rows, _, text = compare.compare_history(db, ["torch=2.10"], ["torch=2.11"], [], 0.05)
    assert by_case(rows)["fastscnn_sp_bs2_fp32_1"]["baseline"] == 20.0
    assert "on NVIDIA A100; NVIDIA H200 (several devices: narrow it with --where device_name=" in text
    with pytest.raises(results.ReportError, match="no rows"):
        compare.compare_history(db, ["torch=2.9"], ["torch=2.11"], [], 0.05)
    with pytest.raises(results.ReportError, match="COLUMN=VALUE"):
        compare.compare_history(db, ["gpu=H200"], ["torch=2.11"], [], 0.05)


def test_cli_compare_from_the_history(tmp_path, capsys):
    db = make_history(tmp_path)
    argv = ["compare", "--db", str(tmp_path), "--baseline", "torch=2.10,device_name=NVIDIA H200",
            "--current", "torch=2.11", "--current", "device_name=NVIDIA H200", "--threshold", "20%"]
    assert report.main(argv) == 0                               # 60/70 is within 20%
    out = capsys.readouterr().out
    assert "torch=2.11, device_name=NVIDIA H200 images/s" in out and "the latest counts" in out
    assert report.main(argv[:-2]) == 1
    capsys.readouterr()
    for bad in (["compare", "--db", str(db), "--baseline", "torch=2.10"],
                ["compare", str(tmp_path), str(tmp_path), "--db", str(db), "--baseline", "torch=2.10",
                 "--current", "torch=2.11"],
                ["compare", str(tmp_path), str(tmp_path), "--where", "torch=2.11"],
                ["compare", "--db", str(tmp_path / "none.sqlite"), "--baseline", "torch=2.10",
                 "--current", "torch=2.11"]):
        assert report.main(bad) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("segbench.report: error:"), err


def test_split_selection_keeps_commas_inside_a_value():
    assert compare.split_filters(["torch=2.10,device_name=NVIDIA H200, NVIDIA H200", "mmcv=2.1"]) == \
        ["torch=2.10", "device_name=NVIDIA H200, NVIDIA H200", "mmcv=2.1"]
