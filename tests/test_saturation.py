"""Tests for segbench.saturation and the report's batch-size section, saturation.csv/.png and the
energy columns."""

import csv
import math
from pathlib import Path

import pytest

from resultfiles import (HOST_WARNINGS, md_row, png_size, run_cli, sidecar, write_case, write_speed,
                         write_stats)
from segbench import chart, energy, report, results, saturation

H200 = {"gpu_names": ["NVIDIA H200"], "torch": "2.11.0"}
# fastscnn sp fp32 on one GPU: 16..200 passed (a bisected max of 200 after 128), 256 out of memory
SWEEP = [(16, 100.0, 2100.0), (32, 180.0, 3900.0), (64, 250.0, 7600.0), (128, 260.0, 15000.0),
         (200, 266.0, 23500.0)]
BUSY = {16: 55, 32: 80, 64: 95, 128: 100, 200: 100}   # NVML's utilization, percent, per size


def energy_block(images_per_s, bs, gpus=1, watts=400.0):
    """The sidecar's energy block as segbench.energy.summarize builds it from counter readings: each
    GPU draws `watts` over 100 measured iterations of bs * gpus / images_per_s seconds."""
    dt = bs * gpus / images_per_s
    stamps = [i * dt for i in range(105)]
    ranks = [(stamps, [t * watts * 1000 for t in stamps])] * gpus
    return energy.summarize(ranks, 5, bs * gpus, None)


def case_stats(bs, mem, images=None, gpus=1, busy=None, **extra):
    s = sidecar(bs=bs, gpus=gpus, mem=[mem] * gpus, cv=0.02)
    s["env"] = H200
    s["energy"] = energy_block(images, bs, gpus) if images else energy.summarize([], 5, None, None)
    if busy is not None:   # the gpu_busy block as segbench.energy.summarize_busy builds it
        s["gpu_busy"] = energy.summarize_busy([[busy] * 105] * gpus, 5)
    return {**s, **extra}


OOM_REASON = "crashed: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."


def make_sweep(d, oom_kind="gpu_oom", oom_reason=OOM_REASON):
    """The SWEEP cases, 32 flagged, 256 out of memory (failure_kind, or only the reason text); plus
    an unrelated case that is no sweep."""
    d = Path(d)
    for bs, images, mem in SWEEP:
        extra = dict(warnings=HOST_WARNINGS, flagged=True) if bs == 32 else {}
        write_case(d, f"fastscnn_sp_bs{bs}_fp32_1", images,
                   **case_stats(bs, mem, images, busy=BUSY[bs], **extra))
    kind = {"failure_kind": oom_kind} if oom_kind else {}
    write_speed(d, "fastscnn_sp_bs256_fp32_1", 0, fail=True)
    write_stats(d, "fastscnn_sp_bs256_fp32_1", **case_stats(256, 80000.0, reason=oom_reason, **kind))
    write_case(d, "ocrnet_hrnetw48_sp_bs2_fp32_1", 5.0, **case_stats(2, 9000.0, 5.0))
    return d


def gain(b1, r1, b2, r2):
    return (r2 / r1) ** (1 / math.log2(b2 / b1)) - 1


def test_gain_per_doubling_reads_uneven_steps_on_one_scale():
    assert saturation.gain_per_doubling(32, 100, 64, 150) == pytest.approx(0.5)
    assert saturation.gain_per_doubling(32, 100, 128, 225) == pytest.approx(0.5)  # two doublings
    assert saturation.gain_per_doubling(128, 260, 200, 266) == pytest.approx(
        (266 / 260) ** (1 / math.log2(200 / 128)) - 1)


@pytest.mark.parametrize("oom_kind, oom_reason", [
    ("gpu_oom", "crashed: RuntimeError: CUDA error: an illegal memory access"),  # the kind decides
    (None, OOM_REASON),                                                   # else the reason's text
    (None, "oom: out of memory at batch size 256 per process"),
    (None, "oom"),
])
def test_sweep_gain_saturation_and_out_of_memory(tmp_path, oom_kind, oom_reason):
    rows = results.load_cases(make_sweep(tmp_path / "res", oom_kind, oom_reason))
    [sw] = saturation.sweeps(rows)
    assert sw["title"] == "fastscnn · sp · fp32 · 1 GPU · NVIDIA H200"
    pts = {p["bs"]: p for p in sw["points"]}
    assert list(pts) == [16, 32, 64, 128, 200, 256]
    assert pts[16]["gain"] is None
    assert pts[32]["gain"] == pytest.approx(0.8)
    assert pts[128]["gain"] == pytest.approx(0.04)
    assert pts[200]["gain"] == pytest.approx(gain(128, 260, 200, 266))     # 3.6% per doubling
    # 64 -> 128 is the first doubling that adds < 5%: 64 is the saturation batch
    assert sw["saturation"] == 64 and [b for b, p in pts.items() if p["saturation"]] == [64]
    assert sw["oom"] == 256 and pts[256]["status"] == "out of memory" and pts[256]["gain"] is None
    assert sw["max"] == 200 and [b for b, p in pts.items() if p["max"]] == [200]
    # the threshold is a parameter: at 3% no doubling falls below it
    assert saturation.sweeps(rows, 0.03)[0]["saturation"] is None
    assert saturation.sweeps(rows, 0.05)[0]["saturation"] == 64
    assert saturation.sweeps(rows, 0.5)[0]["saturation"] == 32


def test_a_saturation_that_rests_on_a_flagged_figure_says_so(tmp_path):
    rows = results.load_cases(make_sweep(tmp_path / "res"))
    [sw] = saturation.sweeps(rows)
    assert "FLAGGED" not in saturation.markdown([sw])[-1]    # 32 is flagged; the step 64 -> 128 is not
    for r in rows:
        if r["batch_size"] == 128:
            r["flagged"] = True
    assert "rests on a FLAGGED figure" in saturation.markdown(saturation.sweeps(rows))[-1]


def test_an_old_oom_reason_and_a_re_analysed_one_end_the_curve(tmp_path):
    """A sidecar from before the failure kinds (``oom: ... (cuda)``, no kind) is still an OOM."""
    rows = results.load_cases(make_sweep(tmp_path / "res", None,
                                         "oom: out of memory at batch size 256 per process (cuda)"))
    [sw] = saturation.sweeps(rows)
    assert sw["oom"] == 256 and sw["max"] == 200 and sw["unfinished"] == []
    d = tmp_path / "res"   # a size above the first OOM that passed: said, not hidden
    write_case(d, "fastscnn_sp_bs300_fp32_1", 270.0, **case_stats(300, 30000.0, 270.0))
    verdict = saturation.markdown(saturation.sweeps(results.load_cases(d)))[-1]
    assert verdict.endswith("the max is 200 to 255 (300, above it, passed: memory does not grow with "
                            "the batch alone here).")


def test_a_failure_that_is_not_out_of_memory_does_not_end_the_curve(tmp_path):
    d = tmp_path / "res"
    for bs, images in ((8, 50.0), (32, 100.0)):
        write_case(d, f"fastscnn_sp_bs{bs}_fp32_1", images, **case_stats(bs, 1000.0, images))
    write_speed(d, "fastscnn_sp_bs16_fp32_1", 0, fail=True)
    write_stats(d, "fastscnn_sp_bs16_fp32_1", **case_stats(16, 1000.0, reason="timeout",
                                                             failure_kind="timeout"))
    [sw] = saturation.sweeps(results.load_cases(d))
    pts = {p["bs"]: p for p in sw["points"]}
    assert pts[16]["status"] == "FAILED: timeout" and sw["oom"] is None and sw["max"] is None
    assert pts[32]["gain"] == pytest.approx(gain(8, 50, 32, 100))   # against the last passed size
    fig = chart.build_saturation_chart([sw], 0.05)
    try:
        [mark] = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "failed (not out of memory)"]
        assert list(mark.get_xdata()) == [16]
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)


def test_cases_differing_in_more_than_batch_size_are_no_sweep(tmp_path):
    d = tmp_path / "res"
    write_case(d, "fastscnn_sp_bs2_fp32_1", 10.0, **case_stats(2, 1000.0, 10.0))
    write_case(d, "fastscnn_sp_bs4_fp16_1", 30.0, **case_stats(4, 1000.0, 30.0, fp_item="fp16"))
    write_case(d, "fastscnn_mp_bs4_fp32_2", 35.0, **case_stats(4, 1000.0, 35.0, gpus=2))
    write_case(d, "fastscnn_sp_bs8_fp32_1_li5", 40.0, **case_stats(8, 1000.0, 40.0))
    assert saturation.sweeps(results.load_cases(d)) == []
    paths = report.write_report(d)
    assert set(paths) == {"md", "csv", "png"} and "## Batch size" not in Path(paths["md"]).read_text()


def test_report_batch_size_section_and_saturation_csv(tmp_path):
    paths = report.write_report(make_sweep(tmp_path / "res"), tmp_path / "out")
    md = Path(paths["md"]).read_text()
    sec = md[md.index("## Batch size"):]
    assert "### fastscnn · sp · fp32 · 1 GPU · NVIDIA H200" in sec
    assert "adds less than 5%" in sec   # the rule, under the table
    # batch per GPU | images/s | images/s per GPU | peak MB per GPU | GPU busy | gain per doubling | mark
    assert md_row(sec, ["16", "100.00", "100.00", "2,100", "55%", "-", "-"])
    assert md_row(sec, ["32", "180.00", "180.00", "3,900", "80%", "+80.0%", "**FLAGGED**"])
    assert md_row(sec, ["64", "250.00", "250.00", "7,600", "95%", "+38.9%", "saturation"])
    assert md_row(sec, ["128", "260.00", "260.00", "15,000", "100%", "+4.0%", "-"])
    assert md_row(sec, ["200", "266.00", "266.00", "23,500", "100%", "+3.6%", "max"])
    assert md_row(sec, ["256", "-", "-", "80,000", "-", "-", "out of memory"])
    assert ("Saturation at batch 64: going to 128 adds 4.0% per doubling (< 5%). The GPU was busy "
            "95% of the time at batch 64 and 100% at 128: the GPU bounds the step.") in sec
    # 200 fitted and 256 did not: what was measured is a range, not one size
    assert "Batch 256 ran out of memory and 200 fitted: the max is 200 to 255." in sec
    assert "ocrnet" not in sec
    with open(paths["saturation_csv"], newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == saturation.CSV_COLUMNS
        rows = {int(r["batch_size"]): r for r in reader}
    assert list(rows) == [16, 32, 64, 128, 200, 256]
    assert float(rows[200]["gain_per_doubling"]) == pytest.approx(gain(128, 260, 200, 266))
    assert rows[16]["gain_per_doubling"] == "" and rows[256]["images_per_s"] == ""
    assert [b for b, r in rows.items() if r["saturation"] == "true"] == [64]
    assert [b for b, r in rows.items() if r["max"] == "true"] == [200]
    assert rows[256]["status"] == "out of memory" and rows[32]["flagged"] == "true"
    assert {r["device_name"] for r in rows.values()} == {"NVIDIA H200"}
    assert {r["threshold"] for r in rows.values()} == {"0.05"}
    assert float(rows[64]["images_per_j"]) == pytest.approx(250 / 400, rel=1e-3)
    assert (float(rows[16]["gpu_busy"]), rows[16]["gpu_bound"]) == (0.55, "host")
    assert rows[256]["gpu_busy"] == ""


def test_a_host_bound_saturation_and_an_unfinished_size_below_the_oom_are_said(tmp_path):
    """A curve that flattens while the GPU idles is the host's; a size between the largest fit and
    the first OOM that did not finish (a suite cut off at its time limit) leaves the max a range."""
    d = tmp_path / "res"
    for bs, images, busy in ((2, 38.0, 41), (16, 69.0, 50), (128, 70.0, 60)):
        write_case(d, f"fastscnn_sp_bs{bs}_fp32_1", images, **case_stats(bs, 1000.0 * bs, images, busy=busy))
    write_speed(d, "fastscnn_sp_bs192_fp32_1", 0, fail=True)
    write_stats(d, "fastscnn_sp_bs192_fp32_1", **case_stats(192, 0.0, reason="interrupted by SIGTERM"))
    write_speed(d, "fastscnn_sp_bs256_fp32_1", 0, fail=True)
    write_stats(d, "fastscnn_sp_bs256_fp32_1",
                **case_stats(256, 0.0, reason=OOM_REASON, failure_kind="gpu_oom"))
    [sw] = saturation.sweeps(results.load_cases(d))
    assert sw["saturation"] == 16 and sw["max"] == 128 and sw["unfinished"] == [192]
    verdict = saturation.markdown([sw])[-1]
    assert ("The GPU was busy 50% of the time at batch 16 and 60% at 128: the host (data loading, "
            "Python, launches), not the GPU, bounds the step: this saturation is the host's.") in verdict
    assert verdict.endswith("Batch 256 ran out of memory and 128 fitted: the max is 128 to 255; 192, in "
                            "between, did not finish.")
    rows = results.load_cases(d)
    for r in rows:          # the flattening step ends where the GPU is busy: the GPU's, not the host's
        if r["batch_size"] == 128:
            r["gpu_busy"] = 0.95
    assert "at 128: the GPU bounds the step." in saturation.markdown(saturation.sweeps(rows))[-1]
    for r in rows:          # no busy readings (the CPU, an older sidecar): no claim
        r["gpu_busy"] = r["gpu_bound"] = None
    assert "busy" not in saturation.markdown(saturation.sweeps(rows))[-1]


def test_saturation_chart_marks_saturation_and_out_of_memory(tmp_path):
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import image

    d = make_sweep(tmp_path / "res")
    for bs, images, mem in SWEEP[:3]:   # a 2-GPU sweep: a per-GPU line too
        write_case(d, f"fastscnn_mp_bs{bs}_fp32_2", 1.9 * images, **case_stats(bs, mem, 1.9 * images, gpus=2))
    sws = saturation.sweeps(results.load_cases(d))
    assert [sw["title"] for sw in sws] == ["fastscnn · sp · fp32 · 1 GPU · NVIDIA H200",
                                           "fastscnn · mp · fp32 · 2 GPUs · NVIDIA H200"]
    fig = chart.build_saturation_chart(sws, 0.05)
    try:
        sp, mp = [ax for ax in fig.axes if ax.get_title(loc="left")]
        assert sp.get_xscale() == "log" and sp.xaxis.get_transform().base == 2
        texts = [t.get_text().strip() for t in sp.texts]
        assert "doubling adds <5%" in texts and "out of memory" in texts
        vlines = sorted(ln.get_xdata()[0] for ln in sp.get_lines() if len(set(ln.get_xdata())) == 1
                        and len(ln.get_xdata()) == 2)
        assert vlines == [64, 256]
        assert [ln.get_label() for ln in sp.get_lines()] == [
            "images/s", "FLAGGED (busy or noisy host)", "largest fit: batch 200 (the max is 200–255)",
            "saturation: batch 64", "out of memory: batch 256"]
        assert [ln.get_label() for ln in mp.get_lines()] == ["images/s (all GPUs)", "images/s per GPU"]
        peak = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "peak MB per GPU"]
        assert len(peak) == 2 and peak[0].get_linestyle() == "--"
        assert list(peak[0].get_ydata()) == [m for _, _, m in SWEEP]   # the sizes that fitted
    finally:
        plt.close(fig)
    png = report.write_report(d, tmp_path / "out")["saturation_png"]
    w, h = png_size(png)
    assert w >= 800 and h >= 700
    pixels = image.imread(png)
    assert float(np.std(pixels[..., :3])) > 0.05   # not blank


def test_energy_columns_and_their_null_reason(tmp_path):
    d = tmp_path / "res"
    write_case(d, "fastscnn_sp_bs2_fp32_1", 100.0, **case_stats(2, 1500.0, 100.0))
    write_case(d, "fastscnn_mp_bs2_fp32_2", 190.0, **case_stats(2, 1500.0, 190.0, gpus=2))
    cpu = dict(sidecar(device="cpu", profile="cpu"), energy=energy.summarize(
        [], 20, None, "no GPU: the CPU profile has no energy counter"))
    write_case(d, "pspnet_r50_sp_bs2_fp32_1", 0.4, **cpu)
    write_case(d, "segformer_b0_sp_bs2_fp32_1", 3.0, **sidecar())   # an older sidecar: no block
    paths = report.write_report(d)
    md = Path(paths["md"]).read_text()
    assert "| images/J | W/GPU |" in md
    # ... TFLOP/s, images/J, W/GPU, status
    assert md_row(md, ["sp", "2", "fp32", "1", "100.00", "100.00", "-", "2.0", "1,500", "-", "0.25",
                       "400", "ok"])
    assert md_row(md, ["mp", "2", "fp32", "2", "190.00", "95.00", "0.95", "2.0", "1,500", "-",
                       "0.237", "400", "ok"])
    assert md_row(md, ["sp", "2", "fp32", "1", "0.4", "0.4", "-", "-", "-", "-", "-", "-",
                       "ok (CPU profile)"])
    notes = [ln for ln in md.splitlines() if "No energy figure" in ln]
    assert len(notes) == 1   # once, each reason once
    assert notes[0].startswith("> **No energy figure** (images/J, W/GPU/process `-`): ")
    assert "no GPU: the CPU profile has no energy counter (1 case)" in notes[0]
    assert "no energy block (no sidecar, or one written before the block) (1 case)" in notes[0]
    with open(paths["csv"], newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    assert {"images_per_j", "mean_w_per_gpu", "j_per_iter", "energy_reason"} <= set(report.CSV_COLUMNS)
    fast = rows["fastscnn_mp_bs2_fp32_2"]
    assert float(fast["j_per_iter"]) == pytest.approx(2 * 400 * 4 / 190, rel=1e-3)
    assert float(fast["mean_w_per_gpu"]) == 400.0 and fast["energy_reason"] == ""
    cpu_row = rows["pspnet_r50_sp_bs2_fp32_1"]
    assert cpu_row["images_per_j"] == ""
    assert cpu_row["energy_reason"] == "no GPU: the CPU profile has no energy counter"


def test_cli_threshold_and_the_files_it_wrote(tmp_path):
    d = make_sweep(tmp_path / "res")
    p = run_cli("report", d, "--out", tmp_path / "o", "--saturation-threshold", "3%")
    assert p.returncode == 0, p.stderr
    for name in ("summary.md", "summary.csv", "summary.png", "saturation.csv", "saturation.png"):
        assert f"wrote {tmp_path / 'o' / name}" in p.stdout
    assert "adds less than 3%" in p.stdout and "No saturation: every step adds 3% or more" in p.stdout
    bad = run_cli("report", d, "--saturation-threshold", "5")
    assert bad.returncode == 2 and "segbench.report: error:" in bad.stderr


def test_title_names_the_device(tmp_path):
    d = tmp_path / "res"
    for bs, images in ((2, 1.0), (4, 1.5)):
        write_case(d, f"fastscnn_sp_bs{bs}_fp32_1_crop64x128_li2", images,
                   **sidecar(bs=bs, device="cpu", profile="cpu"))
        write_case(d, f"fastscnn_sp_bs{bs}_fp32_1", 10.0 * images, **sidecar(bs=bs))   # no env
    titles = [sw["title"] for sw in saturation.sweeps(results.load_cases(d))]
    assert titles == ["fastscnn · sp · fp32 · 1 GPU · GPU (name not recorded)",
                      "fastscnn [crop64x128_li2] (CPU profile) · sp · fp32 · 1 process · CPU"]


def test_stock_and_tuned_sweeps_of_a_model_share_one_panel(tmp_path):
    import matplotlib.pyplot as plt

    d = tmp_path / "res"
    for bs, images, mem in SWEEP[:4]:
        write_case(d, f"fastscnn_sp_bs{bs}_fp32_1_tuned_li2", 2 * images,
                   **case_stats(bs, mem, 2 * images))
        write_case(d, f"fastscnn_sp_bs{bs}_fp32_1_li2", images, **case_stats(bs, mem, images))
    for bs in (2, 8):
        write_case(d, f"ocrnet_hrnetw48_sp_bs{bs}_fp32_1", 5.0 * bs, **case_stats(bs, 9000.0, 5.0 * bs))
    sws = saturation.sweeps(results.load_cases(d))
    assert len(sws) == 3   # the tables keep a sweep per variant
    fig = chart.build_saturation_chart(sws, 0.05)
    try:
        fast, ocr = [ax for ax in fig.axes if ax.get_title(loc="left")]
        assert fast.get_title(loc="left") == "fastscnn · sp · fp32 · 1 GPU · NVIDIA H200"
        rates = {ln.get_label(): ln for ln in fast.get_lines() if ln.get_label().endswith("images/s")}
        assert sorted(rates) == ["stock: images/s", "tuned: images/s"]   # short: li2 is shared
        assert list(rates["tuned: images/s"].get_ydata()) == [2 * i for _, i, _ in SWEEP[:4]]
        assert rates["stock: images/s"].get_color() != rates["tuned: images/s"].get_color()
        # both saturate at 64: a line each in the legend, one label along it; the variants in full
        assert sorted(t.get_text().strip() for t in fast.texts) == ["doubling adds <5%",
                                                                    "stock = li2\ntuned = tuned_li2"]
        assert [ln.get_label() for ln in fast.get_lines() if "saturation" in ln.get_label()] == [
            "stock: saturation: batch 64", "tuned: saturation: batch 64"]
        assert [ln.get_label() for ln in ocr.get_lines()] == ["images/s"]   # alone: labels as before
    finally:
        plt.close(fig)


def test_short_names_keep_tuned_sets_apart():
    def sw(variant):
        return {"row": {"variant": variant}}
    assert chart._names([sw("li2"), sw("tuned-foreach+graph_li2")]) == ["stock", "tuned"]
    assert chart._names([sw(""), sw("tuned-foreach_li2"), sw("tuned-graph_li2")]) == [
        "stock", "tuned-foreach_li2", "tuned-graph_li2"]   # "tuned" twice: the switches say which
    assert chart._names([sw("tuned_li2")]) == ["tuned_li2"]   # alone: nothing is shared
    # a tuned token both share is still named: neither is "stock"
    assert chart._names([sw("tuned-foreach_li2"), sw("tuned-foreach_crop64x128_li2")]) == [
        "tuned", "tuned_crop64x128"]


def test_a_sweeps_colour_and_place_say_stock_or_tuned():
    def sw(variant):
        return {"row": {"variant": variant, "model": "fastscnn"}, "points": []}
    [panel] = chart._panels([sw("tuned-foreach+non_blocking_li2"), sw("crop64x128_li2"), sw("li2")])
    assert [s["row"]["variant"] for s in panel] == ["crop64x128_li2", "li2", "tuned-foreach+non_blocking_li2"]
    assert chart._colours(panel) == [*chart.STOCK_COLOURS[:2], chart.TUNED_COLOURS[0]]
    assert chart._colours([sw("tuned-graph_li2")]) == [chart.TUNED_COLOURS[0]]   # alone: still tuned's


def test_the_summary_counts_a_sweeps_out_of_memory_sizes_among_the_failed(tmp_path):
    md = report.summary_markdown(results.load_cases(make_sweep(tmp_path / "res")))
    assert "7 case(s), 1 failed (1 of them out of memory, as a batch sweep's search expects)" in md


def test_a_runtime_variable_makes_its_own_sweep(tmp_path):
    """PYTORCH_CUDA_ALLOC_CONF is not in the name but changes what fits: a size run with it is no
    point of the sweep without it (which ran out of memory at that size), and says so."""
    import matplotlib.pyplot as plt

    d = tmp_path / "res"
    alloc = {"runtime_env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}}
    for bs, images, mem in SWEEP[:3]:
        write_case(d, f"fastscnn_sp_bs{bs}_fp32_1", images, **case_stats(bs, mem, images))
    write_speed(d, "fastscnn_sp_bs128_fp32_1", 0, fail=True)
    write_stats(d, "fastscnn_sp_bs128_fp32_1", **case_stats(128, 80000.0, reason=OOM_REASON,
                                                            failure_kind="gpu_oom"))
    for bs in (64, 128):
        d2 = d / f"alloc{bs}"   # the same names, another folder: runs with the variable set
        write_case(d2, f"fastscnn_sp_bs{bs}_fp32_1", 250.0, **case_stats(bs, 7600.0, 250.0,
                                                                         env={**H200, **alloc}))
    sws = saturation.sweeps(results.load_cases(d))
    by_title = {sw["title"]: sw for sw in sws}
    plain = "fastscnn · sp · fp32 · 1 GPU · NVIDIA H200"
    assert sorted(by_title) == [plain, plain + " · PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"]
    assert [p["bs"] for p in by_title[plain]["points"]] == [16, 32, 64, 128]
    assert by_title[plain]["points"][-1]["status"] == saturation.OOM_TEXT   # not the other's fit
    for order in (sws, sws[::-1]):   # the panel's title names no sweep's variables, whichever is first
        fig = chart.build_saturation_chart(order, 0.05)
        try:
            (ax,) = [a for a in fig.axes if a.get_title(loc="left")]
            assert ax.get_title(loc="left") == plain
            assert sorted(ln.get_label() for ln in ax.get_lines() if ln.get_label().endswith("images/s")) \
                == ["stock PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: images/s", "stock: images/s"]
        finally:
            plt.close(fig)
