"""Tests for the two stacks side by side (segbench.compare: compare --stacks, --across-stacks).

tests/logs/stacks_cpu/ holds the speed files and sidecars of four real CPU runs made back to back
by run_benchmark.sh (fastscnn sp and mp, CROP=64x128, LOG_INTERVAL=2, 12 iterations, 16 synthetic
images): mmseg1/ on the default stack, mmseg0/ on STACK=mmseg0.
"""

import json
import shutil
from pathlib import Path

from resultfiles import write_speed, write_stats
from segbench import compare, report, results

REAL = Path(__file__).resolve().parent / "logs" / "stacks_cpu"
ENV1 = {"mmcv_flavour": "lite+standin", "mmcv-lite": "2.1.0", "mmsegmentation": "1.2.2",
        "mmengine": "0.10.7", "torch": "2.13.0+cpu"}
ENV0 = {"mmcv_flavour": "lite+standin", "mmcv": "1.7.2", "mmsegmentation": "0.30.0", "mmcv_full": None,
        "torch": "2.14.1+cu130", "torchvision": "0.29.1+cu130", "stack": "mmseg0"}


def case(d, name, images, env, *, fail=False, flagged=False, mem=None, peak_from="iteration 1", **stats):
    """A speed file and a sidecar shaped as segbench.analysis writes them."""
    parsed = results.parse_case_name(name)
    write_speed(d, name, images, fail=fail)
    write_stats(d, name, fp_item=parsed["fp"], batch_size=parsed["batch_size"], gpu_num=parsed["gpu_num"],
                device="cuda", profile="gpu", reason="timeout" if fail else None, flagged=flagged,
                warnings=["not steady"] if flagged else [], tuned=[], cudnn_benchmark=True,
                cpu_affinity=None, profile_window=None,
                memory={"peak_mb_per_rank": mem, "peak_from": peak_from},
                env=env, **stats)


def two_stacks(tmp_path):
    one, zero = tmp_path / "one", tmp_path / "zero"
    case(one, "fastscnn_sp_bs2_fp32_1", 40.0, ENV1, mem=[2100.0])
    case(one, "fastscnn_mp_bs2_fp32_8", 300.0, ENV1, mem=[2200.0, 2250.0] * 4)
    case(one, "fastscnn_sp_bs2_fp32_1_crop256x512_li5", 90.0, ENV1, crop=[256, 512], log_interval=5)
    case(one, "ocrnet_hrnetw48_sp_bs2_fp32_1", 8.0, ENV1)
    case(zero, "fastscnn_sp_bs2_fp32_1_mmseg0", 30.0, ENV0, flagged=True, mem=[2500.0])
    case(zero, "fastscnn_mp_bs2_fp32_8_mmseg0", 0, ENV0, fail=True)
    case(zero, "fastscnn_sp_bs2_fp32_1_crop256x512_li5_mmseg0", 45.0, ENV0, crop=[256, 512], log_interval=5)
    case(zero, "segformer_b0_sp_bs2_fp32_1_mmseg0", 12.0, ENV0)
    return one, zero


def test_the_stack_token_is_one_token_of_the_variant(tmp_path):
    """mmseg0 after the other tokens: once, beside the sidecar's recorded crop and log interval."""
    one, zero = two_stacks(tmp_path)
    rows = {r["case"]: r for r in results.load_cases(zero)}
    r = rows["fastscnn_sp_bs2_fp32_1_crop256x512_li5_mmseg0"]
    assert r["variant"] == "crop256x512_li5_mmseg0"
    assert compare.stack_of(r) == "mmseg0" and compare.stackless([r])[0]["variant"] == "crop256x512_li5"
    assert rows["fastscnn_sp_bs2_fp32_1_mmseg0"]["variant"] == "mmseg0"
    assert {compare.stack_of(r) for r in results.load_cases(one)} == {"mmseg1"}
    # a sidecar that says its stack decides it, as it decides the crop
    case(tmp_path / "renamed", "fastscnn_sp_bs2_fp32_1", 30.0, ENV0)
    assert results.load_cases(tmp_path / "renamed")[0]["variant"] == "mmseg0"


def test_each_0x_case_beside_its_1x_twin(tmp_path):
    one, zero = two_stacks(tmp_path)
    rows, note = compare.compare_stacks([one, zero])
    by = {r["case"]: r for r in rows}
    sp = by["fastscnn_sp_bs2_fp32_1"]
    assert sp["zero"]["case"] == "fastscnn_sp_bs2_fp32_1_mmseg0"
    assert (sp["images_per_s"], sp["ratio"], sp["peak_mem_mb"]) == ([40.0, 30.0], 0.75, [2100.0, 2500.0])
    assert sp["mmcv"] == ["lite 2.1.0", "lite 1.7.2"] and sp["flags"] == ["FLAGGED 0.x"]
    crop = by["fastscnn_sp_bs2_fp32_1_crop256x512_li5"]   # the same other tokens, not the seed's case
    assert crop["images_per_s"] == [90.0, 45.0] and crop["ratio"] == 0.5
    mp = by["fastscnn_mp_bs2_fp32_8"]
    assert mp["images_per_s"] == [300.0, None] and mp["ratio"] is None
    assert mp["flags"] == ["0.x failed: timeout"] and mp["peak_mem_mb"][0] == 2250.0
    assert by["ocrnet_hrnetw48_sp_bs2_fp32_1"]["flags"] == ["unpaired: no 0.x run"]
    assert by["segformer_b0_sp_bs2_fp32_1_mmseg0"]["flags"] == ["unpaired: no 1.x run"]
    assert len(rows) == 5
    assert note.splitlines() == [
        "- 1.x = `mmseg1`: mmseg 1.2.2 + mmcv 2.1.0 (lite), torch 2.13.0+cpu (4 case(s))",
        "- 0.x = `mmseg0`: mmseg 0.30.0 + mmcv 1.7.2 (lite), torch 2.14.1+cu130 (4 case(s))"]
    text = compare.stacks_markdown(rows, note)
    assert ("| fastscnn_sp_bs2_fp32_1 | 40.00 | 30.00 | 0.750 | 2,100 | 2,500 | lite 2.1.0 | lite 1.7.2 "
            "| **FLAGGED 0.x** |") in text
    assert "3 case(s) on both stacks, 2 unpaired" in text


def test_a_0x_peak_from_before_the_hooks_reset_is_marked_not_comparable(tmp_path):
    """Records whose memory block does not say where the peak counts from (the mmcv 1.x hook
    before it reset the counter after its FLOP probe, e.g. 137,876 MB for segformer_b0 on the
    H200) keep their figure and are marked."""
    one, zero = tmp_path / "one", tmp_path / "zero"
    case(one, "segformer_b0_sp_bs2_fp32_1", 24.8, ENV1, mem=[5198.0])
    case(zero, "segformer_b0_sp_bs2_fp32_1_mmseg0", 19.3, ENV0, mem=[137876.0], peak_from=None)
    (row,), _ = compare.compare_stacks([one, zero])
    assert row["peak_mem_mb"] == [5198.0, 137876.0]
    assert any("not comparable" in f for f in row["flags"])


def test_one_directory_and_duplicates(tmp_path):
    """Both stacks in one directory pair the same way; a second copy of a case is noted."""
    one, zero = two_stacks(tmp_path)
    both = tmp_path / "both"
    shutil.copytree(one, both)
    shutil.copytree(zero, both, dirs_exist_ok=True)
    rows, _ = compare.compare_stacks([both, zero])
    sp = {r["case"]: r for r in rows}["fastscnn_sp_bs2_fp32_1"]
    assert sp["ratio"] == 0.75 and sp["flags"] == ["FLAGGED 0.x", "1 duplicate 0.x file(s) ignored"]
    assert len(rows) == 5


def test_real_cpu_records_side_by_side(tmp_path, capsys):
    """The real runs: each mmseg0 case beside its 1.x twin, the stacks and mmcv builds named from
    the records (exit 0: a side-by-side table is no regression check)."""
    out = tmp_path / "stacks.md"
    assert report.main(["compare", "--stacks", str(REAL / "mmseg1"), str(REAL / "mmseg0"),
                        "--markdown", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert capsys.readouterr().out == text
    rows, note = compare.compare_stacks([REAL / "mmseg1", REAL / "mmseg0"])
    assert [r["case"] for r in rows] == ["fastscnn_sp_bs2_fp32_1_crop64x128_li2",
                                         "fastscnn_mp_bs2_fp32_2_crop64x128_li2"]
    for r in rows:
        assert r["zero"]["case"] == r["case"] + "_mmseg0"
        speed = [json.loads((REAL / s / f"{c}_speed").read_text())["FINAL_RESULT"]
                 for s, c in (("mmseg1", r["case"]), ("mmseg0", r["zero"]["case"]))]
        assert r["images_per_s"] == speed and r["ratio"] == speed[1] / speed[0]
        assert r["mmcv"] == ["lite 2.1.0", "lite 1.7.2"] and r["peak_mem_mb"] == [None, None]  # the CPU
        assert r["flags"][-1] == "CPU profile"
    assert "1.x = `mmseg1`: mmseg 1.2.2 + mmcv 2.1.0 (lite), torch 2.13.0" in note
    assert "0.x = `mmseg0`: mmseg 0.30.0 + mmcv 1.7.2 (lite), torch 2.14.1" in note
    assert note in text and "2 case(s) on both stacks, 0 unpaired" in text


def test_compare_across_stacks(tmp_path, capsys):
    """compare BASE CUR: a 0.x baseline never matches a 1.x current, unless --across-stacks."""
    one, zero = two_stacks(tmp_path)
    assert report.main(["compare", str(zero), str(one)]) == 1
    plain = capsys.readouterr().out
    assert "0 ok" not in plain and "4 missing, 4 new" in plain
    assert report.main(["compare", str(zero), str(one), "--across-stacks"]) == 1
    text = capsys.readouterr().out
    rows, ok, note = compare.compare_across_stacks(zero, one)
    by = {r["case"]: r for r in rows}
    assert by["fastscnn_sp_bs2_fp32_1"]["baseline_case"] == "fastscnn_sp_bs2_fp32_1_mmseg0"
    assert by["fastscnn_sp_bs2_fp32_1"]["status"] == "improved"     # 30 -> 40 images/s
    assert by["fastscnn_mp_bs2_fp32_8"]["status"] == "improved"     # baseline failed
    assert [r["status"] for r in rows].count("missing") == 1 and not ok   # segformer: no 1.x run
    assert "- baseline: `mmseg0` = mmseg 0.30.0 + mmcv 1.7.2 (lite)" in note
    assert "- current: `mmseg1` = mmseg 1.2.2 + mmcv 2.1.0 (lite)" in note and note in text
    assert "| fastscnn_sp_bs2_fp32_1_crop256x512_li5 (= fastscnn_sp_bs2_fp32_1_crop256x512_li5_mmseg0) |" \
        in text


def test_stacks_bad_arguments(tmp_path, capsys):
    one, zero = two_stacks(tmp_path)
    assert report.main(["compare", "--stacks", str(one), str(zero)]) == 0   # unpaired cases: still 0
    assert "## mmseg 0.x vs mmseg 1.x" in capsys.readouterr().out
    for argv in (["--stacks", str(one), "--db", str(tmp_path)], [str(one), str(zero), "--stacks", str(one)],
                 ["--stacks", str(tmp_path / "nowhere")], ["--db", str(tmp_path), "--baseline", "torch=1",
                                                           "--current", "torch=2", "--across-stacks"]):
        assert report.main(["compare", *argv]) == 2
        assert capsys.readouterr().err.startswith("segbench.report: error: ")
