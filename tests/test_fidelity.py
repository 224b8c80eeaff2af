"""benchmarks/fidelity.py without running anything: the verdict from the ratio's interval, the
per-letter summary, and --pool, which makes one row from several invocations' results.json."""
import json
import statistics
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import fidelity  # noqa: E402
from segbench import analysis  # noqa: E402


def test_verdict_bands():
    assert fidelity.verdict({"low": 0.98, "high": 1.02}, 0.03) == "within +-3%"
    assert fidelity.verdict({"low": 1.05, "high": 1.2}, 0.03) == "outside +-3%"
    assert fidelity.verdict({"low": 0.8, "high": 0.96}, 0.03) == "outside +-3%"
    assert fidelity.verdict({"low": 0.9, "high": 1.09}, 0.03) == "not resolved at +-3%"
    assert fidelity.verdict(None, 0.05).startswith("not resolved at +-5%")


def test_summarise_letters_and_interval():
    row = fidelity.summarise({}, {"P": [10.0, 10.05, 9.95], "H": [10.02, 10.0, 9.98], "N": [12.0],
                                  "T": []}, 0.03)
    assert row["plain"] == 10.0 and row["harness"] == 10.0 and row["ratio"] == 1.0
    assert row["harness_no_flops_ratio"] == 1.2 and "plain_with_hook" not in row
    assert row["ratio_ci95"][0] < 1.0 < row["ratio_ci95"][1]
    assert row["verdict"] == "within +-3%"
    wide = fidelity.summarise({}, {"P": [10.0, 10.2, 9.8], "H": [10.1, 10.0, 9.9]}, 0.03)
    assert wide["verdict"] == "not resolved at +-3%" and wide["runs_needed"] > 3
    one_side = fidelity.summarise({}, {"P": [10.0], "H": [11.0]}, 0.03)
    assert one_side["ratio"] == 1.1 and one_side["ratio_ci95"] is None
    assert one_side["verdict"].startswith("not resolved")


def test_runs_needed_shrinks_the_interval_into_the_band():
    """The estimate is what it says: that many runs a side, same spread, resolve the ratio."""
    from segbench.stats import ratio_ci95
    a, b = [11.9, 12.7, 11.5, 11.0], [12.6, 11.3, 11.7, 11.9]
    ci = ratio_ci95(a, b)
    n = fidelity.runs_needed(ci, 0.03)
    assert n > 4
    big = ratio_ci95(a * (n // 4 + 1), b * (n // 4 + 1))   # same means and about the same spread
    assert fidelity.verdict(big, 0.03) == "within +-3%"
    assert fidelity.runs_needed(ratio_ci95([11.0, 11.2], [10.0, 10.1]), 0.03) is None   # 1.1 itself


def test_pool_joins_the_runs_of_several_invocations(tmp_path, capsys):
    def results(name, rows):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps(rows))
        return d / "results.json"

    base = {"model": "m", "fp": "fp32", "bs": 2, "workers": 5}
    first = results("s1", [dict(base, iters=300, order="PNH", plain_runs=[10.0], harness_runs=[10.4],
                                harness_no_flops_runs=[10.2])])
    second = results("s2", [dict(base, iters=500, order="HP", plain_runs=[10.2], harness_runs=[10.0]),
                            dict(base, model="other", iters=500, order="PH", plain_runs=[5.0],
                                 harness_runs=[5.1])])
    out = tmp_path / "pooled"
    assert fidelity.main(["--pool", str(first), str(second), "--out", str(out)]) == 0
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    m = rows["m"]
    assert m["plain_runs"] == [10.0, 10.2] and m["harness_runs"] == [10.4, 10.0]
    assert m["harness_no_flops_runs"] == [10.2] and m["iters"] == [300, 500]
    assert m["order"] == "PNH+HP" and m["pooled_from"] == 2 and m["ratio_ci95"] is not None
    assert rows["other"]["ratio_ci95"] is None          # one run a side: no interval
    # runs with cuDNN's benchmark off are never pooled with runs that had it on
    third = results("s3", [dict(base, iters=300, order="PH", cudnn_benchmark=False,
                                plain_runs=[9.0], harness_runs=[9.1])])
    assert fidelity.main(["--pool", str(first), str(third), "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert sorted((r["cudnn_benchmark"], r["plain_runs"]) for r in rows) == \
        [(False, [9.0]), (True, [10.0])]
    assert "mean ratio [95% CI]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        fidelity.main(["--pool", str(tmp_path / "nope.json"), "--out", str(out)])
    (tmp_path / "bad.json").write_text("[{}]")
    with pytest.raises(SystemExit):
        fidelity.main(["--pool", str(tmp_path / "bad.json"), "--out", str(out)])


def test_matched_pairs_cancel_a_host_that_moves():
    """Concurrent pairs: the host's speed moves both runs of a pair, so the pairs' interval
    resolves what the same figures read as independent sets cannot."""
    plain = [12.0, 9.6, 14.4, 10.8]
    harness = [p * r for p, r in zip(plain, [0.995, 1.0, 0.99, 1.004])]
    paired = fidelity.summarise_sides({}, "PH", plain, harness, 0.03)
    assert paired["pairing"] == "concurrent" and paired["verdict"] == "within +-3%"
    assert paired["ratio"] == round(statistics.median(harness) / statistics.median(plain), 4)
    unpaired = fidelity.summarise({}, {"P": plain, "H": harness}, 0.03)
    assert unpaired["pairing"] == "sequential" and unpaired["verdict"] == "not resolved at +-3%"
    from segbench.stats import paired_ratio_ci95
    wide = paired_ratio_ci95([10.0, 10.6, 9.8], [10.2, 10.0, 10.1])
    n = fidelity.runs_needed(wide, 0.03)
    assert n > 3 and fidelity.verdict(paired_ratio_ci95([10.0, 10.6, 9.8] * (n // 3 + 1),
                                                        [10.2, 10.0, 10.1] * (n // 3 + 1)),
                                      0.03) == "within +-3%"


def test_pool_keeps_concurrent_pairs_matched_and_apart(tmp_path):
    base = {"model": "m", "fp": "fp32", "bs": 2, "workers": 5, "iters": 300}
    paths = []
    for name, rows in (("c1", [dict(base, order="PH", pairing="concurrent", plain_runs=[10.0, 12.0],
                                    harness_runs=[9.9, 11.9])]),
                       ("c2", [dict(base, order="PH", pairing="concurrent", plain_runs=[8.0],
                                    harness_runs=[8.0])]),
                       ("s1", [dict(base, order="PH", plain_runs=[11.0], harness_runs=[11.5])])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(rows))
        paths.append(str(tmp_path / name / "results.json"))
    out = tmp_path / "pooled"
    assert fidelity.main(["--pool", *paths, "--out", str(out)]) == 0
    rows = {r["pairing"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["concurrent"]["plain_runs"] == [10.0, 12.0, 8.0]
    assert rows["concurrent"]["harness_runs"] == [9.9, 11.9, 8.0]
    assert rows["sequential"]["plain_runs"] == [11.0]


def _stamped_log(path, start_s, slow_from_s, windows, total=300):
    """An mmengine text log of ``windows`` 10-iteration windows starting at second ``start_s``
    of 11/29 18:00: 0.1 s an iteration (1 s a window) until second ``slow_from_s``, 0.2 after --
    a host's slow spell that hits whatever runs then -- with a val line and a data_time field."""
    t, lines = start_s, []
    for k in range(1, windows + 1):
        it_time = 0.1 if t < slow_from_s else 0.2
        t += round(10 * it_time)
        stamp = f"11/29 18:{t // 60:02d}:{t % 60:02d}"
        lines.append(f"{stamp} - mmengine - INFO - Iter(train) [{10 * k:>3}/{total}]  lr: 1.0e-02  "
                     f"time: {it_time:.4f}  data_time: 0.0100  memory: 7854  loss: 1.0")
        if k == 5:
            lines.append(f"{stamp} - mmengine - INFO - Iter(val) [10/50]  time: 9.0000  data_time: 0.5")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_time_matched_compares_the_same_seconds(tmp_path):
    """The harness starting 2 s later runs 4 s longer into a slow spell that slows both: the
    seed formula says 0.94, the shared seconds say 1."""
    plain = _stamped_log(tmp_path / "plain", 0, 25, 30)
    harness = _stamped_log(tmp_path / "harness", 2, 25, 30)
    seed = lambda log: 2 / statistics.mean(t for _, t in analysis.stamped_windows(log)[4:])  # noqa: E731
    assert seed(harness) / seed(plain) < 0.95
    m = fidelity.time_matched(plain, harness, bs=2)
    assert m["b"] == m["a"] and m["overlap_s"] == 35 - 6
    assert m["windows"] == [24, 24]              # the whole windows of seconds 6..35, on each side
    assert analysis.stamped_windows(plain)[0] == (analysis.stamped_windows(harness)[0][0] - 2, 0.1)
    # a second run in the same file: only the last counts
    text = plain.read_text()
    (tmp_path / "twice").write_text(text.replace("time: 0.1000", "time: 0.5000") + text)
    assert analysis.stamped_windows(tmp_path / "twice") == analysis.stamped_windows(plain)
    # no shared seconds after the skipped windows, or too short a log: no figure
    assert fidelity.time_matched(plain, _stamped_log(tmp_path / "late", 40, 99, 30), bs=2) is None
    assert fidelity.time_matched(plain, _stamped_log(tmp_path / "short", 0, 99, 4), bs=2) is None


def test_pool_matches_old_concurrent_rows_from_their_logs(tmp_path, capsys):
    base = {"model": "m", "fp": "fp32", "bs": 2, "workers": 5, "iters": 300, "order": "PH",
            "pairing": "concurrent"}
    out = tmp_path / "c1"
    out.mkdir()
    for n, (gap, slow) in enumerate(((2, 25), (0, 99)), 1):
        plain_log, harness_log = fidelity.logs_of_pair(out, "m", "fp32", 2, n)
        harness_log.parent.mkdir()
        _stamped_log(plain_log, 0, slow, 30)
        _stamped_log(harness_log, gap, slow, 30)
    (out / "results.json").write_text(json.dumps([dict(base, plain_runs=[10.0, 10.0],
                                                       harness_runs=[9.4, 10.0])]))
    assert fidelity.main(["--pool", str(out / "results.json"), "--out", str(tmp_path / "p")]) == 0
    row = json.loads((tmp_path / "p" / "results.json").read_text())[0]
    assert row["matched"]["side_b_runs"] == row["matched"]["side_a_runs"]
    # pair 2 never slows (2 images / 0.1 s); pair 1's shared seconds include its slow spell
    assert row["matched"]["side_a_runs"][1] == 20.0 > row["matched"]["side_a_runs"][0]
    assert row["matched"]["ratio_mean"] == 1.0 and row["matched"]["verdict"] == "within +-3%"
    assert row["ratio_mean"] < 0.98                      # the seed formula's pairs, as they were
    assert "time-matched" in capsys.readouterr().out
    # a row whose logs are gone pools without a matched block rather than with other pairs'
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / "results.json").write_text(json.dumps([dict(base, plain_runs=[10.0],
                                                                   harness_runs=[10.0])]))
    assert fidelity.main(["--pool", str(out / "results.json"), str(tmp_path / "c2" / "results.json"),
                          "--out", str(tmp_path / "p2")]) == 0
    row = json.loads((tmp_path / "p2" / "results.json").read_text())[0]
    assert row["plain_runs"] == [10.0, 10.0, 10.0] and "matched" not in row
    # a row carrying its own matched block is taken as it is
    (out / "results.json").write_text(json.dumps([dict(base, plain_runs=[10.0], harness_runs=[9.0],
                                                       matched={"side_a_runs": [10.0], "side_b_runs": [9.9],
                                                                "unmatched_pairs": 1})]))
    assert fidelity.main(["--pool", str(out / "results.json"), "--out", str(tmp_path / "p3")]) == 0
    m = json.loads((tmp_path / "p3" / "results.json").read_text())[0]["matched"]
    assert m["side_b_runs"] == [9.9] and m["unmatched_pairs"] == 1 and m["ratio_ci95"] is None


def test_sides_pair_any_two_letters(tmp_path, monkeypatch):
    """--sides PP (A/A) and PN: the letters' runs at once, devices swapping, the two runs of an
    A/A pair kept apart, side b over side a; without running anything (the runners are fakes that
    write stamped logs: side b's second pair runs 4 s later into a slow spell)."""
    calls = []

    def fake(kind):
        def run(model, fp, bs, iters, workers, *rest, **kw):
            out, tag = (rest[1], rest[2]) if kind == "plain" else (rest[0], rest[1])
            env = kw.get("extra_env") if kind == "plain" else rest[2]
            device = (env or {}).get("CUDA_VISIBLE_DEVICES")
            calls.append((kind, tag, device, (env or {}).get("FLOPS")))
            late = 4 if tag.endswith("2b") or (kind == "harness" and tag.endswith("2")) else 0
            log = _stamped_log(out / f"{kind}_{tag}.log", late, 25, 30)
            fig = 2 / statistics.mean(t for _, t in analysis.stamped_windows(log)[4:])
            return {"images_per_s": round(fig, 3), "log": str(log), "start": 100.0 + late,
                    "wall_s": 30.0, "stats": {}}
        return run

    monkeypatch.setattr(fidelity, "plain_mmseg", fake("plain"))
    monkeypatch.setattr(fidelity, "harness", fake("harness"))
    out = tmp_path / "aa"
    assert fidelity.main(["--models", "m", "--pairs", "2", "--concurrent", "0,1", "--sides", "pp",
                          "--out", str(out)]) == 0
    row = json.loads((out / "results.json").read_text())[0]
    assert [c[:3] for c in calls] == [("plain", "p1", "0"), ("plain", "p1b", "1"),
                                      ("plain", "p2", "1"), ("plain", "p2b", "0")]
    assert row["sides"] == "PP" and row["order"] == "PPPP" and len(row["plain_runs"]) == 4
    assert row["side_a_runs"][0] == row["side_b_runs"][0] and row["side_b_runs"][1] < row["side_a_runs"][1]
    assert row["ratio_ci95"][0] < 1 and row["verdict"].startswith("not resolved")
    assert row["matched"]["side_a_runs"] == row["matched"]["side_b_runs"]     # same seconds, same speed
    assert [(d["a"], d["b"]) for d in row["concurrent_devices"]] == [("0", "1"), ("1", "0")]
    calls.clear()
    assert fidelity.main(["--models", "m", "--pairs", "1", "--concurrent", "0,1", "--sides", "PN",
                          "--out", str(tmp_path / "pn")]) == 0
    assert [c for c in calls if c[0] == "harness"] == [("harness", "m_noflops1", "1", "false")]
    row = json.loads((tmp_path / "pn" / "results.json").read_text())[0]
    assert row["sides"] == "PN" and row["harness_no_flops_runs"] == row["side_b_runs"]
    # pooled, PP and PN rows stay apart from each other and from PH rows
    ph = tmp_path / "ph.json"
    ph.write_text(json.dumps([{"model": "m", "fp": "fp32", "bs": 2, "workers": 5, "iters": 500,
                               "order": "PH", "pairing": "concurrent", "plain_runs": [10.0],
                               "harness_runs": [10.0]}]))
    assert fidelity.main(["--pool", str(out / "results.json"), str(tmp_path / "pn" / "results.json"),
                          str(ph), str(out / "results.json"), "--out", str(tmp_path / "pooled")]) == 0
    pooled = {r["sides"]: r for r in json.loads((tmp_path / "pooled" / "results.json").read_text())}
    assert sorted(pooled) == ["PH", "PN", "PP"] and len(pooled["PP"]["side_a_runs"]) == 4
    assert pooled["PH"]["side_b_runs"] == [10.0] and "matched" not in pooled["PH"]   # no logs beside it
    for bad in (["--sides", "PX", "--concurrent", "0,1"], ["--sides", "PHH", "--concurrent", "0,1"],
                ["--sides", "PP"]):
        with pytest.raises(SystemExit):
            fidelity.main(["--models", "m", *bad, "--out", str(tmp_path / "bad")])


def test_concurrent_pair_on_the_cpu(small_data, tmp_path, monkeypatch):
    """One pair for real: plain tools/train.py and run_benchmark.sh started together (the CPU
    profile; the devices are only passed on), each with a figure, the pair's devices recorded."""
    for k in ("CUDA_VISIBLE_DEVICES", "REPEAT", "PROFILING", "CROP", "TUNED"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("SEGBENCH_PYTHON", sys.executable)
    out = tmp_path / "fid"
    assert fidelity.main(["--models", "fastscnn", "--iters", "12", "--workers", "1", "--pairs", "1",
                          "--concurrent", "0,1", "--crop", "64x128", "--log-interval", "2",
                          "--data-root", str(small_data), "--out", str(out)]) == 0
    row = json.loads((out / "results.json").read_text())[0]
    assert row["pairing"] == "concurrent" and len(row["plain_runs"]) == len(row["harness_runs"]) == 1
    assert row["plain_runs"][0] > 0 and row["harness_runs"][0] > 0
    pair = row["concurrent_devices"][0]
    assert (row["sides"], pair["a"], pair["b"]) == ("PH", "0", "1")
    assert pair["start_gap_s"] < min(pair["wall_s"].values()) / 2      # they overlapped
    # the time-matched figures: this pair's, or counted as without overlap (CPU windows are short)
    assert "matched" in pair and row["matched"]["unmatched_pairs"] + len(row["matched"]["side_a_runs"]) == 1
    if pair["matched"]:
        assert row["matched"]["side_a_runs"] == [pair["matched"]["a"]] and pair["matched"]["a"] > 0
    for bad in ("0", "0,0", "0,1,2"):
        with pytest.raises(SystemExit):
            fidelity.main(["--models", "fastscnn", "--concurrent", bad, "--out", str(out)])
    with pytest.raises(SystemExit):
        fidelity.main(["--models", "fastscnn", "--concurrent", "0,1", "--order", "PH", "--out", str(out)])


def test_plain_mmseg_gets_the_harness_cfg_options(tmp_path, monkeypatch):
    """Plain tools/train.py's --cfg-options are the settings the harness's trainer applies for the
    same case (the log window of the interval among them), so the two sides cannot diverge."""
    import argparse
    from types import SimpleNamespace

    from mmengine.config import DictAction

    from segbench import configs, launch, train
    environ = {"TRAIN_LOG_DIR": str(tmp_path), "DEVICE": "cpu", "LOG_INTERVAL": "2",
               "CROP": "64x128", "DATA_ROOT": str(tmp_path / "data")}
    case = launch.parse_case(["fastscnn", "sp", "fp32", "2", "12", "1"], environ)
    launch.resolve_devices(case, environ)
    built = []

    def captured(settings):                   # the trainer's settings, taken before it trains
        built.append(settings)
        raise StopIteration

    monkeypatch.setattr(configs, "build", captured)
    cmd = launch.train_command(case, tmp_path / case.name)
    assert cmd[1:3] == ["-m", "segbench.train"]
    with pytest.raises(StopIteration):
        train.run(train.parse_args(cmd[3:]))
    harness_opts = configs.options(configs.load("fastscnn"), built[0])
    cmds = []
    monkeypatch.setattr(fidelity.subprocess, "run", lambda cmd, **kw: cmds.append(cmd) or
                        SimpleNamespace(returncode=1))
    fidelity.plain_mmseg("fastscnn", "fp32", 2, 12, 1, str(case.data_root), tmp_path, "p1",
                         crop=(64, 128), log_interval=2)
    p = argparse.ArgumentParser()
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    plain_opts = p.parse_known_args(cmds[0][cmds[0].index("--cfg-options"):])[0].cfg_options
    assert plain_opts["log_processor.window_size"] == 2
    assert plain_opts == {k: v for k, v in harness_opts.items() if k != "work_dir"}
