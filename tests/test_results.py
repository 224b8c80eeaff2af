"""Tests for segbench.results: which files are results, case names, a case's identity."""

import pytest

from resultfiles import (by_case, make_records, make_results, tuned_switches, write_case, write_speed,
                         write_stats)
from segbench import compare, report, results, tables, tuned


def test_load_cases_fields_and_garbage_skipped(tmp_path):
    d = make_results(tmp_path / "res")
    rows = results.load_cases(d)
    assert sorted(r["case"] for r in rows) == sorted([
        "fastscnn_sp_bs2_fp32_1", "fastscnn_mp_bs2_fp32_2", "ocrnet_hrnetw48_sp_bs2_fp32_1",
        "ocrnet_hrnetw48_mp_bs2_fp32_4", "ocrnet_hrnetw48_mp_bs2_fp32_8",
        "pspnet_r50_sp_bs1_fp32_1"])
    for r in rows:
        assert set(r) == set(results.CASE_KEYS)
    c = by_case(rows)
    sp = c["fastscnn_sp_bs2_fp32_1"]
    assert (sp["model"], sp["run_mode"], sp["batch_size"], sp["fp"], sp["gpu_num"]) == \
        ("fastscnn", "sp", 2, "fp32", 1)
    assert sp["ok"] is True and sp["images_per_s"] == 10.0
    assert sp["cv"] == pytest.approx(0.0123)
    assert sp["peak_mem_mb"] == pytest.approx(1500.4)
    assert sp["tflops"] == pytest.approx(1.234)
    assert sp["repeats"] == [9.5, 10.0, 10.6]
    assert sp["device"] == "cuda" and sp["profile"] == "gpu"
    assert sp["source"] == str(d / "fastscnn_sp_bs2_fp32_1_speed")
    mp = c["fastscnn_mp_bs2_fp32_2"]
    assert mp["images_per_s_per_gpu"] == pytest.approx(9.0)
    assert mp["peak_mem_mb"] == pytest.approx(1700.6)  # max over ranks
    assert mp["repeats"] is None
    failed = c["ocrnet_hrnetw48_mp_bs2_fp32_8"]
    assert failed["ok"] is False and failed["reason"] == "oom" and failed["gpu_num"] == 8
    # no sidecar: model with underscores, bs and fp from the name
    nosc = c["ocrnet_hrnetw48_mp_bs2_fp32_4"]
    assert (nosc["model"], nosc["batch_size"], nosc["fp"], nosc["gpu_num"]) == \
        ("ocrnet_hrnetw48", 2, "fp32", 4)
    assert nosc["cv"] is None and nosc["peak_mem_mb"] is None and nosc["profile"] is None


def test_zero_result_without_fail_flag_is_not_ok(tmp_path):
    d = tmp_path / "res"
    write_speed(d, "fastscnn_sp_bs2_fp32_1", 0.0)  # JOB_FAIL_FLAG 0 but no throughput
    write_speed(d, "fastscnn_mp_bs2_fp32_2", 18.0)
    rows = results.load_cases(d)
    r = by_case(rows)["fastscnn_sp_bs2_fp32_1"]
    assert r["ok"] is False and "FINAL_RESULT" in r["reason"]
    assert tables.scaling(rows) == [None, None]


def test_sidecar_overrides_name_and_subdirs_one_level(tmp_path):
    d = tmp_path / "res"
    write_speed(d, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_stats(d, "fastscnn_sp_bs2_fp32_1", fp_item="amp", batch_size=4)
    write_speed(d / "run2", "bisenetv2_sp_bs8_fp16_1", 30.0)
    write_speed(d / "run2" / "deeper", "unet_sp_bs1_fp32_1", 3.0)  # two levels: not searched
    # odd file name, not *_speed: still a speed file; *_stats.json never is one
    write_speed(d, "deeplabv3_mp_bs4_fp32_2", 7.0, file_name="result.json")
    write_speed(d, "knet_sp_bs2_fp32_1", 1.0, file_name="knet_sp_bs2_fp32_1_stats.json")
    c = by_case(results.load_cases(d))
    assert set(c) == {"fastscnn_sp_bs2_fp32_1", "bisenetv2_sp_bs8_fp16_1",
                      "deeplabv3_mp_bs4_fp32_2"}
    assert c["fastscnn_sp_bs2_fp32_1"]["fp"] == "amp"
    assert c["fastscnn_sp_bs2_fp32_1"]["batch_size"] == 4
    assert c["bisenetv2_sp_bs8_fp16_1"]["fp"] == "fp16"
    assert c["deeplabv3_mp_bs4_fp32_2"]["gpu_num"] == 2


@pytest.mark.parametrize("name, expected, variant", [
    ("ocrnet_hrnetw48_mp_bs2_fp32_8", ("ocrnet_hrnetw48", "mp", 2, "fp32", 8), ""),
    ("fastscnn_sp_bs2_fp32_1", ("fastscnn", "sp", 2, "fp32", 1), ""),
    ("a_b_c_sp_bs16_amp_1_speed", ("a_b_c", "sp", 16, "amp", 1), ""),
    ("seg_fastscnn_bs2_fp32_SingleP_DP_N1C1_log", ("seg_fastscnn", None, 2, "fp32", 1), ""),
    ("PaddleSeg_ocrnet_bs4_fp16_MultiP_DP_N1C8_log", ("PaddleSeg_ocrnet", None, 4, "fp16", 8), ""),
    ("whatever", (None, None, None, None, None), ""),
    # names.md's variant tokens, in its order
    ("fastscnn_sp_bs2_fp32_1_crop128x256_li2", ("fastscnn", "sp", 2, "fp32", 1),
     "crop128x256_li2"),
    ("ocrnet_hrnetw48_mp_bs2_fp32_2_li5_nobench_speed", ("ocrnet_hrnetw48", "mp", 2, "fp32", 2),
     "li5_nobench"),
    (("fastscnn_sp_bs2_fp32_1_tuned-channels_last+foreach-cmmax-autotune-cstrain_step_crop64x128"
      "_cpus0.2-4_prof50-60"), ("fastscnn", "sp", 2, "fp32", 1),
     "tuned-channels_last+foreach-cmmax-autotune-cstrain_step_crop64x128_cpus0.2-4_prof50-60"),
    ("segformer_b0_mp_bs2_bf16_8_tuned_nobench", ("segformer_b0", "mp", 2, "bf16", 8),
     "tuned_nobench"),
    # a token this version does not know: still its own variant, the head still parsed
    ("fastscnn_sp_bs2_fp32_1_zz9_li2", ("fastscnn", "sp", 2, "fp32", 1), "zz9_li2"),
    # bad input's names (launch's bad_input_name): NA GPUs, its variant tokens, then bad<hash>
    ("segformer_b0_sp_bs2_fp32_NA_mmseg0_bad00c553a8", ("segformer_b0", "sp", 2, "fp32", None), "mmseg0"),
    ("fastscnn_sp_bs2_fp32_NA_tuned_li2_bad0123abcd_speed", ("fastscnn", "sp", 2, "fp32", None),
     "tuned_li2"),
    ("fastscnn_xp_bs2_fp32_NA_bada765317c", ("fastscnn", "xp", 2, "fp32", None), ""),
])
def test_parse_case_name(name, expected, variant):
    p = results.parse_case_name(name)
    assert (p["model"], p["run_mode"], p["batch_size"], p["fp"], p["gpu_num"]) == expected
    assert p["variant"] == variant
    assert p["tuned"] is (True if variant.startswith("tuned") else None)


def test_a_variant_is_never_scaled_matched_or_compared_against_another(tmp_path):
    """The CPU profile's crop128x256_li2 sp/mp scale with each other, never with the default
    case; a baseline of the default case does not match a current run of a variant."""
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_case(base, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_case(base, "fastscnn_mp_bs2_fp32_2", 18.0)
    write_case(cur, "fastscnn_sp_bs2_fp32_1_crop128x256_li2", 4.0)
    write_case(cur, "fastscnn_mp_bs2_fp32_2_crop128x256_li2", 6.0)
    write_case(cur, "fastscnn_mp_bs2_fp32_2", 18.5)  # the default mp, no default sp here
    rows = results.load_cases(cur)
    eff = dict(zip((r["case"] for r in rows), tables.scaling(rows)))
    assert eff["fastscnn_mp_bs2_fp32_2_crop128x256_li2"] == pytest.approx(6.0 / (2 * 4.0))
    assert eff["fastscnn_mp_bs2_fp32_2"] is None  # not against the variant's sp
    variants = {r["case"]: (r["model"], r["variant"]) for r in rows}
    assert variants["fastscnn_sp_bs2_fp32_1_crop128x256_li2"] == ("fastscnn", "crop128x256_li2")
    assert variants["fastscnn_mp_bs2_fp32_2"] == ("fastscnn", "")
    cmp_rows, ok = compare.compare(base, cur)
    st = {(r["case"], r["status"]) for r in cmp_rows}
    assert st == {("fastscnn_sp_bs2_fp32_1", "missing"), ("fastscnn_mp_bs2_fp32_2", "ok"),
                  ("fastscnn_sp_bs2_fp32_1_crop128x256_li2", "new"),
                  ("fastscnn_mp_bs2_fp32_2_crop128x256_li2", "new")} and not ok


def test_the_sidecar_s_settings_decide_the_variant_over_the_name(tmp_path):
    """Files named before the names carried tokens: the sidecar's record says what ran."""
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_case(base, "fastscnn_sp_bs2_fp32_1", 10.0, cudnn_benchmark=True, cpu_affinity=None)
    write_case(cur, "fastscnn_sp_bs2_fp32_1", 12.0, cudnn_benchmark=False, cpu_affinity=[0, 1, 3],
               log_interval=2, crop=[512, 1024], profile_window=None)
    write_case(cur, "fastscnn_mp_bs2_fp32_2_tuned", 30.0, tuned=["foreach", "channels_last"])
    write_case(cur, "fastscnn_mp_bs2_fp32_2_li5", 30.0)  # no sidecar: the name decides
    c = by_case(results.load_cases(cur))
    assert c["fastscnn_sp_bs2_fp32_1"]["variant"] == "li2_nobench_cpus0-1.3"  # own crop: no token
    assert c["fastscnn_mp_bs2_fp32_2_tuned"]["variant"] == "tuned-channels_last+foreach"
    assert c["fastscnn_mp_bs2_fp32_2_li5"]["variant"] == "li5"
    rows, ok = compare.compare(base, cur)
    assert sorted(r["status"] for r in rows if r["run_mode"] == "sp") == ["missing", "new"]
    md = compare.compare_markdown(rows, ok)
    assert "fastscnn_sp_bs2_fp32_1 [li2_nobench_cpus0-1.3]" in md  # the name alone does not say


def test_recorded_tokens_follow_names_md():
    every = list(tuned_switches())
    tok = results.recorded_tokens
    assert tok({"tuned": []}, "fastscnn") == {"tuned": ""}
    assert tok({"tuned": every, "compile_mode": "reduce-overhead", "device": "cuda",
                "compile_scope": "modules"}, "fastscnn") == {"tuned": "tuned"}  # auto on a GPU
    assert tok({"tuned": every, "compile_mode": "reduce-overhead", "device": "cpu",
                "compile_scope": "train_step"}, "fastscnn")["tuned"] == \
        "tuned-cmreduce-overhead-cstrain_step"
    assert tok({"tuned": every + ["train_once"]}, "x")["tuned"] == "tuned-" + "+".join(
        s for s in tuned.SWITCHES if s in every + ["train_once"])
    assert tok({"crop": [64, 128], "log_interval": 10}, "fastscnn") == {"crop": "crop64x128",
                                                                        "li": ""}
    assert tok({"crop": [1024, 1024]}, "segformer_b0") == {"crop": ""}
    assert tok({"profile_window": [50, 60], "cpu_affinity": [0, 2, 4]}, "m") == \
        {"prof": "prof50-60", "cpus": "cpus0.2.4"}
    assert tok({"cudnn_benchmark": None, "tuned": None}, "m") == {}  # not recorded: the name says


ARGV = ["fastscnn", "sp", "fp32", "2", "60", "1"]


def _launch_names_carry_tokens():
    from segbench import launch
    return launch.parse_case(ARGV, {"LOG_INTERVAL": "2"}).name != \
        "fastscnn_sp_bs2_fp32_1"


@pytest.mark.xfail(not _launch_names_carry_tokens(), strict=True,
                   reason="launch.py's names.md tokens are not merged into this branch yet")
def test_launch_s_names_parse_back_to_their_settings(tmp_path):
    """The grammar has two implementations: launch writes the names, report parses them."""
    from segbench import launch
    environ = {"TRAIN_LOG_DIR": str(tmp_path), "TUNED": "foreach,compile",
               "TUNED_COMPILE_MODE": "max-autotune", "CROP": "64x128", "LOG_INTERVAL": "2",
               "CUDNN_BENCHMARK": "false", "CPU_AFFINITY": "0", "PROFILING": "true",
               "PROFILE_ITERS": "3-5"}
    name = launch.parse_case(ARGV, environ).name
    assert results.parse_case_name(name)["variant"] == \
        "tuned-foreach+compile-cmmax-autotune_crop64x128_li2_nobench_cpus0_prof3-5"
    assert results.parse_case_name(launch.parse_case(ARGV, {
        "TUNED": "1", "CROP": "512x1024"}).name)["variant"] == "tuned"


def test_tuned_cases_are_their_own_variant(tmp_path):
    """A tuned case (segbench.tuned) never matches, or is scaled against, the stock case."""
    assert results.parse_case_name("fastscnn_sp_bs2_fp32_1_tuned")["model"] == "fastscnn"
    assert results.parse_case_name("fastscnn_sp_bs2_fp32_1_tuned")["tuned"] is True
    assert results.parse_case_name("fastscnn_sp_bs2_fp32_1")["tuned"] is None
    for name, value, switches in (("fastscnn_sp_bs2_fp32_1", 10.0, []),
                                  ("fastscnn_sp_bs2_fp32_1_tuned", 20.0, ["foreach"])):
        write_case(tmp_path, name, value, tuned=switches, fp_item="fp32", batch_size=2)
    rows = by_case(results.load_cases(tmp_path))
    assert (rows["fastscnn_sp_bs2_fp32_1"]["model"], rows["fastscnn_sp_bs2_fp32_1"]["variant"]) \
        == ("fastscnn", "")
    assert rows["fastscnn_sp_bs2_fp32_1_tuned"]["model"] == "fastscnn"
    assert rows["fastscnn_sp_bs2_fp32_1_tuned"]["variant"] == "tuned-foreach"  # the sidecar says
    assert (results.identity(rows["fastscnn_sp_bs2_fp32_1"])
            != results.identity(rows["fastscnn_sp_bs2_fp32_1_tuned"]))


def test_tuned_runs_with_other_switches_are_other_variants(tmp_path):
    every = list(tuned_switches())
    runs = {"a": (every, "reduce-overhead", 62.0), "b": (every, "default", 36.0),
            "c": ([s for s in every if s != "compile"], None, 48.0)}
    for sub, (switches, mode, value) in runs.items():
        write_case(tmp_path / sub, "fastscnn_sp_bs2_fp32_1_tuned", value, tuned=switches,
                   compile_mode=mode, fp_item="fp32", batch_size=2)
    rows = results.load_cases(tmp_path)
    assert len({results.identity(r) for r in rows}) == 3
    md = report.summary_markdown(rows)
    assert "## fastscnn [tuned-cmreduce-overhead]" in md  # no device: auto is default's
    assert "## fastscnn [tuned]\n" in md
    assert "## fastscnn [tuned-channels_last+foreach+loader+workers+non_blocking+tf32]" in md


# --------------------------------------------------------------------------- 14-key records

def test_fourteen_key_records_are_rows(tmp_path):
    c = by_case(results.load_cases(make_records(tmp_path / "res")))
    assert set(c) == {"fastscnn_sp_bs2_fp32_1", "fastscnn_mp_bs2_fp32_2_li5", "PaddleSeg_ocrnet_N1C8",
                      "result", "segformer_b0_bs2_fp32"}
    fields = ("model", "variant", "run_mode", "batch_size", "fp", "gpu_num", "images_per_s", "ok")
    got = {k: tuple(r[f] for f in fields) for k, r in c.items()}
    assert got["fastscnn_sp_bs2_fp32_1"] == ("fastscnn", "", "sp", 2, "fp32", 1, 8.0, True)
    assert got["fastscnn_mp_bs2_fp32_2_li5"] == ("fastscnn", "li5", "mp", 2, "fp32", 2, 15.0, True)
    assert got["PaddleSeg_ocrnet_N1C8"] == ("ocrnet_hrnetw48", "", "mp", 2, "fp32", 8, 36.0, True)
    assert got["result"] == ("deeplabv3plus_r101_d8", "", "mp", 4, "fp16", 8, 6.5, True)
    assert got["segformer_b0_bs2_fp32"][:6] == ("segformer_b0", "", "sp", 2, "fp32", 1)
    assert c["segformer_b0_bs2_fp32"]["ok"] is False                    # ips 0: a failed case
    assert c["result"]["source"] == str(tmp_path / "res" / "run2" / "result.json")


def test_a_case_with_its_speed_file_and_its_record_counts_once(tmp_path):
    """What analysis writes: <case>_speed, <case>_stats.json and <case>_paddle.json; the speed
    file and its sidecar win (the record says less: no cv, no memory)."""
    d = tmp_path / "res"
    make_records(d)
    write_speed(d, "fastscnn_sp_bs2_fp32_1", 8.5)
    write_stats(d, "fastscnn_sp_bs2_fp32_1", per_iter={"cv": 0.02})
    write_speed(d / "run2", "result", 6.0, model="deeplabv3plus_r101_d8", run_mode="mp", gpu_num=8,
                file_name="other_speed")                        # found by its log_file's name
    rows = results.load_cases(d)
    c = by_case(rows)
    assert len(rows) == len(c) == 5
    assert c["fastscnn_sp_bs2_fp32_1"]["images_per_s"] == 8.5 and c["fastscnn_sp_bs2_fp32_1"]["cv"] == 0.02
    assert c["fastscnn_sp_bs2_fp32_1"]["source"].endswith("_speed")
    assert c["result"]["source"].endswith("other_speed")
