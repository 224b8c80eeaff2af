"""The results history: rows in, selections and plots out."""
import json
import sqlite3

import pytest

from segbench import history


def _stats(torch="2.11.0+cu130", ips=40.0, case="fastscnn_sp_bs2_fp32_1", fail=0, warnings=()):
    return {"case": case, "model": "fastscnn", "run_mode": "sp", "fp_item": "fp32",
            "batch_size": 2, "gpu_num": 1, "profile": "gpu", "device": "cuda",
            "FINAL_RESULT": 0.0 if fail else ips, "JOB_FAIL_FLAG": fail,
            "reason": "crash: x" if fail else None, "warnings": list(warnings),
            "per_iter": {"cv": 0.03}, "memory": {"peak_mb_per_rank": [1400.5, None, 1461.0]},
            "flops": {"tflops_achieved": 2.8}, "command": "bash run_benchmark.sh fastscnn sp fp32 2 500 5",
            "env": {"torch": torch, "gpu_names": ["NVIDIA H200"], "mmsegmentation": "1.2.2",
                    "mmcv-lite": "2.1.0", "segbench_commit": "abc123"}}


def test_round_trip_and_version_prefix_selection(tmp_path):
    history.append(tmp_path, _stats("2.10.0+cu128", 39.5), {"crop": [512, 1024]}, "2026-12-01T10:00:00")
    history.append(tmp_path, _stats(), {"crop": [512, 1024]}, "2026-12-01T11:00:00")
    history.append(tmp_path, _stats(case="fastscnn_sp_bs2_fp32_1_li5", ips=41.0,
                                    warnings=["noisy: cv 0.2"]), {"log_interval": 5},
                   "2026-12-01T12:00:00")
    rows = history.select(tmp_path)
    assert [r["images_per_s"] for r in rows] == [39.5, 40.0, 41.0]
    assert [r["variant"] for r in rows] == ["", "", "li5"]
    assert [r["flagged"] for r in rows] == [0, 0, 1]
    assert rows[0]["peak_mem_mb"] == 1461.0 and rows[0]["mmcv"] == "2.1.0"
    assert json.loads(rows[2]["settings"]) == {"log_interval": 5}
    assert json.loads(rows[0]["stats"])["FINAL_RESULT"] == 39.5     # the whole sidecar is kept
    newer = history.select(tmp_path, ["torch=2.11", "variant="])
    assert [r["finished"] for r in newer] == ["2026-12-01T11:00:00"]
    assert history.select(tmp_path, ["torch=2.1"]) == []             # a prefix ends at . or +
    with pytest.raises(ValueError, match="--where takes COLUMN=VALUE"):
        history.select(tmp_path, ["nonsense=1"])


def test_a_filter_value_is_literal_not_a_like_pattern(tmp_path):
    """``_`` and ``%`` in a value match only themselves (SQL LIKE would take them as wildcards)."""
    history.append(tmp_path, _stats(case="fastscnn_sp_bs2_fp32_1"), {}, "2026-12-01T10:00:00")
    history.append(tmp_path, _stats(case="fastscnnXsp_bs2_fp32_1.x"), {}, "2026-12-01T11:00:00")
    history.append(tmp_path, _stats(torch="2.11%"), {}, "2026-12-01T12:00:00")
    hits = history.select(tmp_path, ["case_name=fastscnn_sp_bs2_fp32_1"])
    assert [r["finished"] for r in hits] == ["2026-12-01T10:00:00", "2026-12-01T12:00:00"]
    assert [r["torch"] for r in history.select(tmp_path, ["torch=2.11%"])] == ["2.11%"]
    assert len(history.select(tmp_path, ["torch=2.11"])) == 2


def test_the_default_database_is_where_the_main_job_wrote_it(tmp_path, monkeypatch, capsys):
    """After `bash run_PyTorch.sh` (logs in ./logs), a plain `segbench history` finds them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRAIN_LOG_DIR", raising=False)
    (tmp_path / "logs").mkdir()
    history.append(tmp_path / "logs", _stats(), {}, "2026-12-01T10:00:00")
    assert history.main([]) == 0 and "fastscnn_sp_bs2_fp32_1" in capsys.readouterr().out
    history.append(tmp_path, _stats(ips=7.0), {}, "2026-12-01T11:00:00")    # ./ wins where it has one
    assert history.main(["--json"]) == 0 and '"images_per_s": 7.0' in capsys.readouterr().out
    monkeypatch.setenv("TRAIN_LOG_DIR", str(tmp_path / "logs"))
    assert history.main(["--json"]) == 0 and '"images_per_s": 40.0' in capsys.readouterr().out


def test_failed_case_is_a_row_too_and_cli_lists_and_plots(tmp_path, capsys):
    history.append(tmp_path, _stats(), {}, "2026-12-01T10:00:00")
    history.append(tmp_path, _stats(fail=1), {}, "2026-12-01T10:05:00")
    out = tmp_path / "h.png"
    assert history.main(["--db", str(tmp_path), "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "FAILED" in text and "fastscnn_sp_bs2_fp32_1" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert history.main(["--db", str(tmp_path / "none.sqlite")]) == 2


def test_database_is_plain_sqlite(tmp_path):
    path = history.append(tmp_path, _stats(), {}, "2026-12-01T10:00:00")
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*), max(images_per_s) FROM results").fetchone() == (1, 40.0)


def test_case_is_a_shorthand_filter(tmp_path, capsys):
    history.append(tmp_path, _stats(), {}, "2026-12-01T10:00:00")
    history.append(tmp_path, _stats(case="fastscnn_sp_bs2_fp32_1_li5"), {}, "2026-12-01T11:00:00")
    assert history.main(["--db", str(tmp_path), "--case", "fastscnn_sp_bs2_fp32_1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["case_name"] for r in rows] == ["fastscnn_sp_bs2_fp32_1"]
