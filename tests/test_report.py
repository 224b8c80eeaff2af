"""Tests for segbench.report (speed-file summaries, chart, compare, CLI)."""

import csv
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # plain `pytest` from anywhere, without an installed package
    sys.path.insert(0, str(REPO))

from segbench import report  # noqa: E402


# --------------------------------------------------------------------------- fixtures

def write_speed(d, case, images, *, fail=False, model=None, run_mode=None, gpu_num=None,
                file_name=None, log_file=None):
    """A contract speed file (exactly the 10 keys) named <case>_speed unless file_name."""
    parsed = report.parse_case_name(case)
    obj = {
        "log_file": log_file if log_file is not None else case,
        "model_name": model or parsed["model"],
        "mission_name": "图像分割",
        "direction_id": 0,
        "run_mode": run_mode or parsed["run_mode"],
        "index": 1,
        "gpu_num": gpu_num if gpu_num is not None else parsed["gpu_num"],
        "FINAL_RESULT": 0 if fail else images,
        "JOB_FAIL_FLAG": 1 if fail else 0,
        "UNIT": "images/s",
    }
    path = Path(d) / (file_name or f"{case}_speed")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False))
    return path


def write_stats(d, case, **stats):
    path = Path(d) / f"{case}_stats.json"
    path.write_text(json.dumps(stats))
    return path


def sidecar(fp="fp32", bs=2, gpus=1, cv=None, mem=None, tflops=None, runs=None, reason=None,
            device="cuda", profile="gpu"):
    s = {"fp_item": fp, "batch_size": bs, "gpu_num": gpus, "device": device,
         "profile": profile, "reason": reason, "per_iter": {"cv": cv},
         "memory": {"peak_mb_per_rank": mem}, "flops": {"tflops_achieved": tflops}}
    if runs:
        s["repeats"] = {"runs": runs, "median": sorted(runs)[len(runs) // 2],
                        "mean": sum(runs) / len(runs), "min": min(runs), "max": max(runs),
                        "cv": 0.03}
    return s


def make_results(d):
    """sp + mp of two models, a failed case, repeats, a CPU-profile row, garbage files."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    write_speed(d, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_stats(d, "fastscnn_sp_bs2_fp32_1",
                **sidecar(cv=0.0123, mem=[1500.4], tflops=1.234, runs=[9.5, 10.0, 10.6]))
    write_speed(d, "fastscnn_mp_bs2_fp32_2", 18.0)
    write_stats(d, "fastscnn_mp_bs2_fp32_2", **sidecar(gpus=2, cv=0.02, mem=[1600, 1700.6]))
    write_speed(d, "ocrnet_hrnetw48_sp_bs2_fp32_1", 5.0)
    write_stats(d, "ocrnet_hrnetw48_sp_bs2_fp32_1", **sidecar(mem=[9000.0], tflops=20.5))
    # no sidecar: bs / precision come from the name, parsed from the right
    write_speed(d, "ocrnet_hrnetw48_mp_bs2_fp32_4", 16.0)
    write_speed(d, "ocrnet_hrnetw48_mp_bs2_fp32_8", 0, fail=True)
    write_stats(d, "ocrnet_hrnetw48_mp_bs2_fp32_8", **sidecar(gpus=8, reason="oom"))
    write_speed(d, "pspnet_r50_sp_bs1_fp32_1", 0.4213)
    write_stats(d, "pspnet_r50_sp_bs1_fp32_1",
                **sidecar(bs=1, device="cpu", profile="cpu", cv=0.1))
    # garbage that must be skipped without crashing
    (d / "notes.txt").write_text("not json at all\n")
    (d / "broken_speed").write_text('{"log_file": "x", ')
    (d / "other.json").write_text(json.dumps({"log_file": "x", "FINAL_RESULT": 3}))
    (d / "list_speed").write_text("[1, 2, 3]")
    (d / "binary_speed").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    (d / "fastscnn_sp_bs2_fp32_1").write_text("[segbench] case: {}\nIter(train) ...\n")
    (d / "fastscnn_sp_bs2_fp32_1_iters.rank0.jsonl").write_text('{"kind": "meta"}\n{}\n')
    (d / "fastscnn_sp_bs2_fp32_1_work").mkdir()
    return d


DEMO_CASES = [  # ~8 cases: 3 models, sp/mp, one failed, repeats, a CPU-profile row
    ("fastscnn_sp_bs2_fp32_1", 42.913,
     dict(cv=0.021, mem=[1480.2], tflops=1.21, runs=[41.8, 42.9, 43.6])),
    ("fastscnn_mp_bs2_fp32_8", 318.442,
     dict(gpus=8, cv=0.034, mem=[1510, 1522.5], tflops=1.12, runs=[309.1, 318.4, 322.0])),
    ("ocrnet_hrnetw48_sp_bs2_fp32_1", 9.871,
     dict(cv=0.012, mem=[10240.0], tflops=48.3, runs=[9.7, 9.87, 9.95])),
    ("ocrnet_hrnetw48_mp_bs2_fp32_8", 71.204, dict(gpus=8, cv=0.02, mem=[10300, 10410.7],
                                                   tflops=43.5)),
    ("ocrnet_hrnetw48_mp_bs2_fp16_8", 0, dict(fp="fp16", gpus=8, reason="oom")),
    ("deeplabv3plus_r101_d8_sp_bs2_fp32_1", 6.402,
     dict(cv=0.015, mem=[14100.3], tflops=61.0, runs=[6.3, 6.4, 6.52])),
    ("deeplabv3plus_r101_d8_mp_bs2_fp32_4", 23.771,
     dict(gpus=4, cv=0.025, mem=[14200.1] * 4, tflops=56.1, runs=[23.1, 23.77, 24.3])),
    ("deeplabv3plus_r101_d8_sp_bs1_fp32_1", 0.3812,
     dict(bs=1, cv=0.08, device="cpu", profile="cpu")),
]


def make_demo(d):
    """The demo set; render it with report.write_report(make_demo(d), out)."""
    d = Path(d)
    for case, images, stats in DEMO_CASES:
        write_speed(d, case, images, fail=images == 0)
        write_stats(d, case, **sidecar(**stats))
    return d


def by_case(rows):
    return {r["case"]: r for r in rows}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "segbench.report", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------- loading

def test_load_cases_fields_and_garbage_skipped(tmp_path):
    d = make_results(tmp_path / "res")
    rows = report.load_cases(d)
    assert sorted(r["case"] for r in rows) == sorted([
        "fastscnn_sp_bs2_fp32_1", "fastscnn_mp_bs2_fp32_2", "ocrnet_hrnetw48_sp_bs2_fp32_1",
        "ocrnet_hrnetw48_mp_bs2_fp32_4", "ocrnet_hrnetw48_mp_bs2_fp32_8",
        "pspnet_r50_sp_bs1_fp32_1"])
    for r in rows:
        assert set(r) == set(report.CASE_KEYS)
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
    rows = report.load_cases(d)
    r = by_case(rows)["fastscnn_sp_bs2_fp32_1"]
    assert r["ok"] is False and "FINAL_RESULT" in r["reason"]
    assert report.scaling(rows) == [None, None]


def test_markdown_escapes_pipes_in_reason(tmp_path):
    d = tmp_path / "res"
    write_speed(d, "fastscnn_sp_bs2_fp32_1", 0, fail=True)
    write_stats(d, "fastscnn_sp_bs2_fp32_1", reason="bad input: a|b")
    md = Path(report.write_report(d)["md"]).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| sp"))
    assert "FAILED: bad input: a\\|b" in row
    assert len(re.findall(r"(?<!\\)\|", row)) == 13  # 12 columns -> 13 unescaped bars


def test_sidecar_overrides_name_and_subdirs_one_level(tmp_path):
    d = tmp_path / "res"
    write_speed(d, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_stats(d, "fastscnn_sp_bs2_fp32_1", fp_item="amp", batch_size=4)
    write_speed(d / "run2", "bisenetv2_sp_bs8_fp16_1", 30.0)
    write_speed(d / "run2" / "deeper", "unet_sp_bs1_fp32_1", 3.0)  # two levels: not searched
    # odd file name, not *_speed: still a speed file; *_stats.json never is one
    write_speed(d, "deeplabv3_mp_bs4_fp32_2", 7.0, file_name="result.json")
    write_speed(d, "knet_sp_bs2_fp32_1", 1.0, file_name="knet_sp_bs2_fp32_1_stats.json")
    c = by_case(report.load_cases(d))
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
])
def test_parse_case_name(name, expected, variant):
    p = report.parse_case_name(name)
    assert (p["model"], p["run_mode"], p["batch_size"], p["fp"], p["gpu_num"]) == expected
    assert p["variant"] == variant
    assert p["tuned"] is (True if variant.startswith("tuned") else None)


def write_case(d, case, images, **stats):
    """A speed file named by case (its fields from the name) and, with stats, its sidecar."""
    write_speed(d, case, images)
    if stats:
        write_stats(d, case, **stats)


def test_a_variant_is_never_scaled_matched_or_compared_against_another(tmp_path):
    """The CPU profile's crop128x256_li2 sp/mp scale with each other, never with the default
    case; a baseline of the default case does not match a current run of a variant."""
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_case(base, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_case(base, "fastscnn_mp_bs2_fp32_2", 18.0)
    write_case(cur, "fastscnn_sp_bs2_fp32_1_crop128x256_li2", 4.0)
    write_case(cur, "fastscnn_mp_bs2_fp32_2_crop128x256_li2", 6.0)
    write_case(cur, "fastscnn_mp_bs2_fp32_2", 18.5)  # the default mp, no default sp here
    rows = report.load_cases(cur)
    eff = dict(zip((r["case"] for r in rows), report.scaling(rows)))
    assert eff["fastscnn_mp_bs2_fp32_2_crop128x256_li2"] == pytest.approx(6.0 / (2 * 4.0))
    assert eff["fastscnn_mp_bs2_fp32_2"] is None  # not against the variant's sp
    variants = {r["case"]: (r["model"], r["variant"]) for r in rows}
    assert variants["fastscnn_sp_bs2_fp32_1_crop128x256_li2"] == ("fastscnn", "crop128x256_li2")
    assert variants["fastscnn_mp_bs2_fp32_2"] == ("fastscnn", "")
    cmp_rows, ok = report.compare(base, cur)
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
    c = by_case(report.load_cases(cur))
    assert c["fastscnn_sp_bs2_fp32_1"]["variant"] == "li2_nobench_cpus0-1.3"  # own crop: no token
    assert c["fastscnn_mp_bs2_fp32_2_tuned"]["variant"] == "tuned-channels_last+foreach"
    assert c["fastscnn_mp_bs2_fp32_2_li5"]["variant"] == "li5"
    rows, ok = report.compare(base, cur)
    assert sorted(r["status"] for r in rows if r["run_mode"] == "sp") == ["missing", "new"]
    md = report.compare_markdown(rows, ok)
    assert "fastscnn_sp_bs2_fp32_1 [li2_nobench_cpus0-1.3]" in md  # the name alone does not say


def test_recorded_tokens_follow_names_md():
    every = list(tuned_switches())
    tok = report.recorded_tokens
    assert tok({"tuned": []}, "fastscnn") == {"tuned": ""}
    assert tok({"tuned": every, "compile_mode": "reduce-overhead", "device": "cuda",
                "compile_scope": "modules"}, "fastscnn") == {"tuned": "tuned"}  # auto on a GPU
    assert tok({"tuned": every, "compile_mode": "reduce-overhead", "device": "cpu",
                "compile_scope": "train_step"}, "fastscnn")["tuned"] == \
        "tuned-cmreduce-overhead-cstrain_step"
    assert tok({"tuned": every + ["gpu_aug"]}, "x")["tuned"] == "tuned-" + "+".join(
        s for s in report.tuned.SWITCHES if s in every + ["gpu_aug"])
    assert tok({"crop": [64, 128], "log_interval": 10}, "fastscnn") == {"crop": "crop64x128",
                                                                        "li": ""}
    assert tok({"crop": [1024, 1024]}, "segformer_b0") == {"crop": ""}
    assert tok({"profile_window": [50, 60], "cpu_affinity": [0, 2, 4]}, "m") == \
        {"prof": "prof50-60", "cpus": "cpus0.2.4"}
    assert tok({"cudnn_benchmark": None, "tuned": None}, "m") == {}  # not recorded: the name says


def tuned_switches():
    from segbench import tuned
    return tuned.DEFAULT_SWITCHES


def test_tables_and_chart_tell_variants_apart(tmp_path):
    import matplotlib.pyplot as plt
    d = tmp_path / "res"
    write_case(d, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_case(d, "fastscnn_sp_bs2_fp32_1_crop128x256_li2", 4.0)
    rows = report.load_cases(d)
    md = report.summary_markdown(rows)
    assert "## fastscnn\n" in md and "## fastscnn [crop128x256_li2]\n" in md
    fig = report.build_chart(rows)
    try:
        ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert "fastscnn [crop128x256_li2] · sp · bs2 · fp32 · 1 GPU" in ticks
        assert "fastscnn · sp · bs2 · fp32 · 1 GPU" in ticks
    finally:
        plt.close(fig)
    with open(report.write_report(d)["csv"], newline="") as fh:
        variants = sorted(r["variant"] for r in csv.DictReader(fh))
    assert variants == ["", "crop128x256_li2"]


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
    assert report.parse_case_name(name)["variant"] == \
        "tuned-foreach+compile-cmmax-autotune_crop64x128_li2_nobench_cpus0_prof3-5"
    assert report.parse_case_name(launch.parse_case(ARGV, {
        "TUNED": "1", "CROP": "512x1024"}).name)["variant"] == "tuned"


# --------------------------------------------------------------------------- scaling

def test_scaling_efficiency(tmp_path):
    rows = report.load_cases(make_results(tmp_path / "res"))
    eff = dict(zip((r["case"] for r in rows), report.scaling(rows)))
    assert eff["fastscnn_mp_bs2_fp32_2"] == pytest.approx(18.0 / (2 * 10.0))  # 0.90
    assert eff["ocrnet_hrnetw48_mp_bs2_fp32_4"] == pytest.approx(16.0 / (4 * 5.0))  # 0.80
    assert eff["ocrnet_hrnetw48_mp_bs2_fp32_8"] is None  # failed
    assert eff["fastscnn_sp_bs2_fp32_1"] is None
    # mp without an sp of the same precision, and with only a failed sp
    extra = [dict(rows[0], case="x", model="m", run_mode="mp", gpu_num=2, fp="amp")]
    sp_failed = dict(rows[0], case="y", model="m", run_mode="sp", gpu_num=1, fp="amp",
                     ok=False, images_per_s=0.0)
    assert report.scaling(rows + extra) [-1] is None
    assert report.scaling(rows + [sp_failed] + extra)[-1] is None


def make_busy_cpu_suite(d):
    """A CPU-profile suite whose sp runs a busy host slowed: efficiencies 3.02 and 6.61."""
    d = Path(d)
    cpu = {"device": "cpu", "profile": "cpu"}
    for model, sp, mp in (("fastscnn", 1.0, 6.04), ("segformer_b0", 0.5, 6.61)):
        write_case(d, f"{model}_sp_bs2_fp32_1_crop128x256_li2", sp, **sidecar(**cpu))
        write_case(d, f"{model}_mp_bs2_fp32_2_crop128x256_li2", mp, **sidecar(gpus=2, **cpu))
    return d


def test_scaling_above_one_is_not_credible_and_cpu_processes_are_not_gpus(tmp_path):
    import matplotlib.pyplot as plt
    d = make_busy_cpu_suite(tmp_path / "res")
    rows = report.load_cases(d)
    eff = report.scaling(rows)
    notes = {r["case"]: report.scaling_note(r, e) for r, e in zip(rows, eff)}
    why = ("not credible (above 1.05): the 1-process run was slower than each process of the "
           "2-process run: a busy host or a different setting during the sp run")
    assert notes["fastscnn_mp_bs2_fp32_2_crop128x256_li2"] == why
    assert notes["fastscnn_sp_bs2_fp32_1_crop128x256_li2"] is None
    paths = report.write_report(d, tmp_path / "out")
    md = Path(paths["md"]).read_text()
    assert _md_row(md, ["mp", "2", "fp32", "2", "6.04", "3.02", "3.02 (not credible)"])
    assert _md_row(md, ["mp", "2", "fp32", "2", "6.61", "3.31", "6.61 (not credible)"])
    assert f"> - `fastscnn_mp_bs2_fp32_2_crop128x256_li2`: 3.02 is {why}." in md
    assert "| mode | bs | precision | processes | images/s | images/s/process |" in md
    assert "over all processes" in md and "all GPUs" not in md and "| GPUs |" not in md
    with open(paths["csv"], newline="") as fh:
        c = by_case(csv.DictReader(fh))
    assert c["segformer_b0_mp_bs2_fp32_2_crop128x256_li2"]["scaling_note"].startswith(
        "not credible")
    assert c["segformer_b0_sp_bs2_fp32_1_crop128x256_li2"]["scaling_note"] == ""
    fig = report.build_chart(rows)
    try:
        ax = fig.axes[0]
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        assert "fastscnn [crop128x256_li2] · mp · bs2 · fp32 · 2 processes (CPU profile)" in ticks
        assert "fastscnn [crop128x256_li2] · sp · bs2 · fp32 · 1 process (CPU profile)" in ticks
        assert "all processes" in ax.get_xlabel()
        assert any("(scaling 3.02, not credible)" in t.get_text() for t in ax.texts)
        assert not any("GPU" in t.get_text() for t in [*ax.texts, *ax.get_yticklabels()])
    finally:
        plt.close(fig)
    cmp_md = report.compare_markdown(*report.compare(d, d))
    assert "| case | mode | bs | precision | processes |" in cmp_md


def test_scaling_within_the_tolerance_stays_plain(tmp_path):
    d = tmp_path / "res"
    write_case(d, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_case(d, "fastscnn_mp_bs2_fp32_2", 20.8)  # 1.04: noise of two runs
    write_case(d, "segformer_b0_sp_bs2_fp32_1", 10.0)
    write_case(d, "segformer_b0_mp_bs2_fp32_2", 21.2)  # 1.06
    md = report.summary_markdown(report.load_cases(d))
    assert _md_row(md, ["mp", "2", "fp32", "2", "20.80", "10.40", "1.04", "-"])
    assert _md_row(md, ["mp", "2", "fp32", "2", "21.20", "10.60", "1.06 (not credible)"])
    assert "the 1-GPU run was slower than each GPU of the 2-GPU run" in md
    assert "| GPUs | images/s | images/s/GPU |" in md


# --------------------------------------------------------------------------- report files

def _md_row(md, cells):
    pat = r"^\|\s*" + r"\s*\|\s*".join(re.escape(c) for c in cells) + r"\s*\|"
    return re.search(pat, md, re.M)


def test_write_report_markdown(tmp_path):
    d = make_results(tmp_path / "res")
    paths = report.write_report(d, tmp_path / "out")
    assert set(paths) == {"md", "csv", "png"}
    assert all(Path(p).parent == tmp_path / "out" for p in paths.values())
    md = Path(paths["md"]).read_text()
    assert md.startswith("# ")
    assert re.search(r"Generated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", md)
    assert "## fastscnn" in md and "## ocrnet_hrnetw48" in md and "## pspnet_r50" in md
    assert "images/s/GPU" in md and "scaling eff." in md and "peak mem MB" in md
    # mode, bs, precision, GPUs, images/s, per GPU, scaling, CV %, peak MB, TFLOP/s, status
    assert _md_row(md, ["sp", "2", "fp32", "1", "10.00", "10.00", "-", "1.2", "1,500",
                        "1.23", "ok"])
    assert _md_row(md, ["mp", "2", "fp32", "2", "18.00", "9.00", "0.90", "2.0", "1,701",
                        "-", "ok"])
    assert _md_row(md, ["mp", "2", "fp32", "4", "16.00", "4.00", "0.80", "-", "-", "-", "ok"])
    assert _md_row(md, ["mp", "2", "fp32", "8", "-", "-", "-", "-", "-", "-",
                        "FAILED: oom"])
    assert _md_row(md, ["sp", "1", "fp32", "1", "0.421", "0.421", "-", "10.0", "-", "-",
                        "ok (CPU profile)"])
    assert "CPU profile:" in md
    # sp row listed before mp rows within a model
    assert md.index("| sp | 2 | fp32 | 1 | 10.00") < md.index("| mp | 2 | fp32 | 2 | 18.00")


HOST_WARNINGS = ["host load: load average 5.1 on 2 CPUs during the measured iterations",
                 "steal: 14% of the CPU time went to other virtual machines | hypervisor"]


def make_flagged(d):
    d = Path(d)
    write_case(d, "fastscnn_sp_bs2_fp32_1", 1.5, **sidecar(), warnings=HOST_WARNINGS, flagged=True)
    write_case(d, "fastscnn_mp_bs2_fp32_2", 2.9, **sidecar(gpus=2), warnings=[])
    # an older sidecar: warnings but no ``flagged`` key
    write_case(d, "ocrnet_hrnetw48_sp_bs2_fp32_1", 0.4, **sidecar(),
               warnings=["not steady: the last third ran 30% slower than the first"])
    # a sidecar that says not flagged: its warnings are kept but do not flag it
    write_case(d, "segformer_b0_sp_bs2_fp32_1", 3.0, **sidecar(), flagged=False,
               warnings=["gpu_num guessed from the log"])
    return d


def test_flagged_cases_are_marked_where_a_user_looks(tmp_path):
    import matplotlib.pyplot as plt
    d = make_flagged(tmp_path / "res")
    rows = by_case(report.load_cases(d))
    assert rows["fastscnn_sp_bs2_fp32_1"]["flagged"] is True
    assert rows["fastscnn_sp_bs2_fp32_1"]["warnings"] == HOST_WARNINGS
    assert rows["fastscnn_mp_bs2_fp32_2"]["flagged"] is False
    assert rows["ocrnet_hrnetw48_sp_bs2_fp32_1"]["flagged"] is True  # bool(warnings)
    assert rows["segformer_b0_sp_bs2_fp32_1"]["flagged"] is False
    assert rows["fastscnn_sp_bs2_fp32_1"]["ok"] is True  # passed stays passed
    paths = report.write_report(d, tmp_path / "out")
    md = Path(paths["md"]).read_text()
    assert "4 case(s), 0 failed, 2 flagged." in md
    assert _md_row(md, ["sp", "2", "fp32", "1", "1.50", "1.50", "-", "-", "-", "-", "ok",
                        "**FLAGGED**"])
    assert _md_row(md, ["mp", "2", "fp32", "2", "2.90", "1.45", "0.97", "-", "-", "-", "ok", "-"])
    fast = md[md.index("## fastscnn"):md.index("## ocrnet")]
    assert "> - `fastscnn_sp_bs2_fp32_1`: host load: load average 5.1 on 2 CPUs" in fast
    assert "`fastscnn_sp_bs2_fp32_1`: steal: 14% of the CPU time went to other virtual " \
        "machines \\| hypervisor" in fast
    assert "> - `ocrnet_hrnetw48_sp_bs2_fp32_1`: not steady:" in md
    assert "gpu_num guessed" not in md
    with open(paths["csv"], newline="") as fh:
        csv_rows = by_case(csv.DictReader(fh))
    assert json.loads(csv_rows["fastscnn_sp_bs2_fp32_1"]["warnings"]) == HOST_WARNINGS
    assert csv_rows["fastscnn_sp_bs2_fp32_1"]["flagged"] == "true"
    assert csv_rows["fastscnn_mp_bs2_fp32_2"]["flagged"] == "false"
    fig = report.build_chart(list(rows.values()))
    try:
        ticks = {t.get_text(): t.get_color() for t in fig.axes[0].get_yticklabels()}
        assert ticks["fastscnn · sp · bs2 · fp32 · 1 GPU [FLAGGED]"] == report.FLAG_COLOUR
        assert "fastscnn · mp · bs2 · fp32 · 2 GPUs" in ticks
        assert_chart_layout(fig)
    finally:
        plt.close(fig)


def test_no_cpu_note_without_cpu_rows(tmp_path):
    d = tmp_path / "res"
    write_speed(d, "fastscnn_sp_bs2_fp32_1", 10.0)
    md = Path(report.write_report(d)["md"]).read_text()
    assert "CPU profile" not in md
    assert (d / "summary.csv").exists()  # dir_out defaults to dir_in


def test_write_report_csv_parses_back(tmp_path):
    d = make_results(tmp_path / "res")
    paths = report.write_report(d, tmp_path / "out")
    with open(paths["csv"], newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == report.CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 6
    c = by_case(rows)
    assert float(c["fastscnn_mp_bs2_fp32_2"]["images_per_s"]) == 18.0
    assert float(c["fastscnn_mp_bs2_fp32_2"]["scaling_efficiency"]) == pytest.approx(0.9)
    assert c["fastscnn_sp_bs2_fp32_1"]["scaling_efficiency"] == ""
    assert json.loads(c["fastscnn_sp_bs2_fp32_1"]["repeats"]) == [9.5, 10.0, 10.6]
    assert float(c["fastscnn_sp_bs2_fp32_1"]["cv"]) == pytest.approx(0.0123)
    assert c["ocrnet_hrnetw48_mp_bs2_fp32_8"]["ok"] == "false"
    assert c["ocrnet_hrnetw48_mp_bs2_fp32_8"]["reason"] == "oom"
    assert c["fastscnn_sp_bs2_fp32_1"]["ok"] == "true"
    assert int(c["ocrnet_hrnetw48_mp_bs2_fp32_4"]["batch_size"]) == 2
    assert c["pspnet_r50_sp_bs1_fp32_1"]["profile"] == "cpu"


def test_png_valid_and_sized_by_cases(tmp_path):
    import numpy as np
    from matplotlib import image

    small = tmp_path / "small"
    write_speed(small, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_speed(small, "fastscnn_mp_bs2_fp32_2", 18.0)
    big = make_results(tmp_path / "big")
    for i in range(10):
        write_speed(big, f"model{i}_sp_bs2_fp32_1", 3.0 + i)
    w_s, h_s = png_size(report.write_report(small)["png"])
    png = report.write_report(big)["png"]
    w_b, h_b = png_size(png)
    assert 800 <= w_s <= 4000 and 300 <= h_s <= 4000
    assert 800 <= w_b <= 4000 and h_b > h_s + 500  # taller with 16 cases than with 2
    pixels = image.imread(png)
    assert pixels.ndim == 3 and float(np.std(pixels[..., :3])) > 0.05  # not blank


def test_chart_contents_and_layout(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    rows = report.load_cases(make_results(tmp_path / "res"))
    fig = report.build_chart(rows, "note")
    try:
        ax = fig.axes[0]
        fig.canvas.draw()
        assert "throughput" in ax.get_title(loc="left")
        assert "images/s" in ax.get_xlabel()
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        assert len(ticks) == 6
        assert "fastscnn · mp · bs2 · fp32 · 2 GPUs" in ticks
        assert any("CPU profile" in t for t in ticks)
        # error bars: only the case with repeats, spanning its min..max
        errs = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(errs) == 1
        seg = errs[0].lines[2][0].get_segments()[0]
        assert sorted(p[0] for p in seg) == pytest.approx([9.5, 10.6])
        texts = [t for t in ax.texts if t.get_text()]
        assert any(t.get_text() == "FAILED: oom" for t in texts)
        assert any(t.get_text().startswith("18.00") and "scaling 0.90" in t.get_text()
                   for t in texts)
        hatched = [p for p in ax.patches if p.get_hatch() == "xxx"]
        assert len(hatched) == 1  # the failed case's marker
        assert_chart_layout(fig)
    finally:
        plt.close(fig)


def assert_chart_layout(fig):
    """Value labels end inside the axes; tick labels neither overlap nor leave the figure."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    ax_box = ax.get_window_extent(renderer)
    for t in ax.texts:
        if t.get_text():
            assert t.get_window_extent(renderer).x1 <= ax_box.x1 + 1, t.get_text()
    boxes = sorted((t.get_window_extent(renderer) for t in ax.get_yticklabels()),
                   key=lambda b: b.y0)
    assert all(a.y1 <= b.y0 for a, b in zip(boxes, boxes[1:]))
    fig_w, fig_h = fig.canvas.get_width_height()
    titles = [c for c in ax.get_children() if isinstance(c, Text) and c.get_text()]
    for artist in [*titles, ax.xaxis.label, ax.yaxis.label, *ax.get_yticklabels()]:
        if artist.get_text():
            b = artist.get_window_extent(renderer)
            assert b.x0 >= 0 and b.y0 >= 0 and b.x1 <= fig_w and b.y1 <= fig_h, \
                artist.get_text()


@pytest.mark.parametrize("n_extra", [0, 24])
def test_demo_chart_layout(tmp_path, n_extra):
    import matplotlib.pyplot as plt

    d = make_demo(tmp_path / "demo")
    for i in range(n_extra):  # many cases with long names
        write_speed(d, f"knet_s3_upernet_swin_large_variant{i}_mp_bs2_amp_8", 50.0 + 20 * i)
    rows = report.load_cases(d)
    fig = report.build_chart(rows, "generated now from somewhere; a note")
    try:
        assert len(fig.axes[0].get_yticklabels()) == len(DEMO_CASES) + n_extra
        assert_chart_layout(fig)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- compare

def _pair_dirs(tmp_path, current_images=9.0):
    base, cur = tmp_path / "base", tmp_path / "cur"
    for d, v in ((base, 10.0), (cur, current_images)):
        write_speed(d, "fastscnn_sp_bs2_fp32_1", v)
        write_speed(d, "ocrnet_hrnetw48_mp_bs2_fp32_8", 40.0)
    return base, cur


def test_compare_statuses(tmp_path):
    base, cur = _pair_dirs(tmp_path, 9.0)  # 10% slower
    rows, ok = report.compare(base, cur, 0.05)
    r = by_case(rows)["fastscnn_sp_bs2_fp32_1"]
    assert (r["baseline"], r["current"], r["status"]) == (10.0, 9.0, "regressed")
    assert r["ratio"] == pytest.approx(0.9)
    assert by_case(rows)["ocrnet_hrnetw48_mp_bs2_fp32_8"]["status"] == "ok"
    assert ok is False
    rows, ok = report.compare(base, cur, 0.15)
    assert by_case(rows)["fastscnn_sp_bs2_fp32_1"]["status"] == "ok" and ok is True
    base2, cur2 = _pair_dirs(tmp_path / "faster", 11.0)
    rows, ok = report.compare(base2, cur2, 0.05)
    assert by_case(rows)["fastscnn_sp_bs2_fp32_1"]["status"] == "improved" and ok is True


def test_compare_missing_failed_and_new(tmp_path):
    base, cur = _pair_dirs(tmp_path, 10.0)
    write_speed(base, "pspnet_r50_sp_bs2_fp32_1", 4.0)  # absent from current
    write_speed(base, "knet_sp_bs2_fp32_1", 4.0)
    write_speed(cur, "knet_sp_bs2_fp32_1", 0, fail=True)  # failed in current
    write_stats(cur, "knet_sp_bs2_fp32_1", reason="timeout")
    write_speed(cur, "unet_sp_bs2_fp32_1", 2.0)  # new
    rows, ok = report.compare(base, cur)
    st = {r["case"]: r["status"] for r in rows}
    assert st["pspnet_r50_sp_bs2_fp32_1"] == "missing"
    assert st["knet_sp_bs2_fp32_1"] == "missing"
    assert "timeout" in by_case(rows)["knet_sp_bs2_fp32_1"]["note"]
    assert st["unet_sp_bs2_fp32_1"] == "new"
    assert st["fastscnn_sp_bs2_fp32_1"] == "ok"
    assert ok is False
    # only a new case: still ok
    base2, cur2 = _pair_dirs(tmp_path / "n", 10.0)
    write_speed(cur2, "unet_sp_bs2_fp32_1", 2.0)
    assert report.compare(base2, cur2)[1] is True


def test_compare_matches_by_identity_not_name(tmp_path):
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_speed(base, "fastscnn_sp_bs2_fp32_1", 10.0, file_name="a_speed")
    write_speed(cur, "fastscnn_sp_bs2_fp32_1", 10.0, file_name="b_speed")
    # same name, different precision in the sidecar: a different case
    write_speed(base, "bisenet_sp_bs2_fp32_1", 10.0)
    write_speed(cur, "bisenet_sp_bs2_fp32_1", 5.0)
    write_stats(cur, "bisenet_sp_bs2_fp32_1", fp_item="amp")
    rows, ok = report.compare(base, cur)
    st = sorted((r["fp"], r["status"]) for r in rows if r["model"] == "bisenet")
    assert st == [("amp", "new"), ("fp32", "missing")]
    assert [r["status"] for r in rows if r["model"] == "fastscnn"] == ["ok"]


def test_compare_duplicate_identity_noted(tmp_path):
    base, cur = _pair_dirs(tmp_path, 10.0)
    write_speed(cur / "again", "fastscnn_sp_bs2_fp32_1", 3.0)  # same case, in a subdir
    rows, ok = report.compare(base, cur)
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
    rows, ok = report.compare(base, cur, 0.05)
    r = by_case(rows)
    assert len(rows) == 2, rows
    assert r["fastscnn_sp_bs2_fp32_1"]["baseline"] == 8.0
    assert r["fastscnn_sp_bs2_fp32_1"]["ratio"] == pytest.approx(1.25)
    assert r["fastscnn_sp_bs2_fp32_1"]["baseline_case"] == \
        "seg_fastscnn_bs2_fp32_SingleP_DP_N1C1_log"
    assert r["ocrnet_hrnetw48_mp_bs2_fp32_8"]["baseline"] == 36.0
    assert all(x["status"] == "improved" for x in rows) and ok
    md = report.compare_markdown(rows, ok, 0.05, "Paddle", "PyTorch")
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
    rows, ok = report.compare(base, cur)
    assert sorted(r["status"] for r in rows) == ["missing", "new", "new"] and not ok


# --------------------------------------------------------------------------- CLI

def test_cli_report(tmp_path):
    d = make_results(tmp_path / "res")
    p = run_cli("report", d, "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    for name in ("summary.md", "summary.csv", "summary.png"):
        assert str(tmp_path / "o" / name) in p.stdout
        assert (tmp_path / "o" / name).exists()
    assert "| mp | 2 | fp32 | 2 | 18.00 | 9.00 | 0.90 |" in p.stdout


def test_cli_compare_exit_codes(tmp_path):
    base, cur = _pair_dirs(tmp_path, 9.0)
    p = run_cli("compare", base, cur)  # default 5%
    assert p.returncode == 1 and "regressed" in p.stdout
    assert run_cli("compare", base, cur, "--threshold", "5%").returncode == 1
    assert run_cli("compare", base, cur, "--threshold", "0.05").returncode == 1
    assert run_cli("compare", base, cur, "--threshold", "15%").returncode == 0
    out = tmp_path / "cmp.md"
    p = run_cli("compare", base, cur, "--threshold", "0.15", "--baseline-label", "Paddle",
                "--current-label", "PyTorch", "--markdown", out)
    assert p.returncode == 0, p.stderr
    assert "Paddle images/s" in out.read_text() and "PyTorch/Paddle" in p.stdout
    write_speed(base, "pspnet_r50_sp_bs2_fp32_1", 4.0)
    p = run_cli("compare", base, cur, "--threshold", "15%")
    assert p.returncode == 1 and "missing" in p.stdout


@pytest.mark.parametrize("args", [
    ["compare", "{base}", "{missing}"],
    ["compare", "{base}", "{empty}"],
    ["report", "{missing}"],
    ["report", "{empty}"],
    ["compare", "{base}", "{cur}", "--threshold", "abc"],
    ["compare", "{base}", "{cur}", "--threshold", "5"],
    ["compare", "{base}", "{cur}", "--threshold", "-1%"],
    ["compare", "{base}"],
    ["frobnicate"],
    [],
    ["report", "{base}", "--bogus"],
])
def test_cli_errors_one_line_exit_2(tmp_path, args):
    base, cur = _pair_dirs(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "junk.txt").write_text("x")
    subst = {"base": base, "cur": cur, "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    p = run_cli(*[a.format(**subst) for a in args])
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segbench.report: error:"), p.stderr


def test_parse_threshold():
    assert report.parse_threshold("5%") == pytest.approx(0.05)
    assert report.parse_threshold("0.05") == pytest.approx(0.05)
    assert report.parse_threshold("12.5%") == pytest.approx(0.125)
    for bad in ("5", "x", "", "nan", "100%"):
        with pytest.raises(report.ReportError):
            report.parse_threshold(bad)


def test_main_in_process_returns_codes(tmp_path, capsys):
    base, cur = _pair_dirs(tmp_path, 9.0)
    assert report.main(["compare", str(base), str(cur), "--threshold", "5%"]) == 1
    assert report.main(["compare", str(base), str(cur), "--threshold", "15%"]) == 0
    assert report.main(["compare", str(base), str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_tuned_cases_are_their_own_variant(tmp_path):
    """A tuned case (segbench.tuned) never matches, or is scaled against, the stock case."""
    assert report.parse_case_name("fastscnn_sp_bs2_fp32_1_tuned")["model"] == "fastscnn"
    assert report.parse_case_name("fastscnn_sp_bs2_fp32_1_tuned")["tuned"] is True
    assert report.parse_case_name("fastscnn_sp_bs2_fp32_1")["tuned"] is None
    for name, value, switches in (("fastscnn_sp_bs2_fp32_1", 10.0, []),
                                  ("fastscnn_sp_bs2_fp32_1_tuned", 20.0, ["foreach"])):
        write_case(tmp_path, name, value, tuned=switches, fp_item="fp32", batch_size=2)
    rows = by_case(report.load_cases(tmp_path))
    assert (rows["fastscnn_sp_bs2_fp32_1"]["model"], rows["fastscnn_sp_bs2_fp32_1"]["variant"]) \
        == ("fastscnn", "")
    assert rows["fastscnn_sp_bs2_fp32_1_tuned"]["model"] == "fastscnn"
    assert rows["fastscnn_sp_bs2_fp32_1_tuned"]["variant"] == "tuned-foreach"  # the sidecar says
    assert (report.identity(rows["fastscnn_sp_bs2_fp32_1"])
            != report.identity(rows["fastscnn_sp_bs2_fp32_1_tuned"]))


def test_tuned_runs_with_other_switches_are_other_variants(tmp_path):
    every = list(tuned_switches())
    runs = {"a": (every, "reduce-overhead", 62.0), "b": (every, "default", 36.0),
            "c": ([s for s in every if s != "compile"], None, 48.0)}
    for sub, (switches, mode, value) in runs.items():
        write_case(tmp_path / sub, "fastscnn_sp_bs2_fp32_1_tuned", value, tuned=switches,
                   compile_mode=mode, fp_item="fp32", batch_size=2)
    rows = report.load_cases(tmp_path)
    assert len({report.identity(r) for r in rows}) == 3
    md = report.summary_markdown(rows)
    assert "## fastscnn [tuned-cmreduce-overhead]" in md  # no device: auto is default's
    assert "## fastscnn [tuned]\n" in md
    assert "## fastscnn [tuned-channels_last+foreach+loader+workers+non_blocking+tf32]" in md
