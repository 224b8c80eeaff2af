"""Tests for segbench.tables: scaling efficiency, and its note in every output."""

import csv
from pathlib import Path

import pytest

from resultfiles import by_case, make_busy_cpu_suite, make_results, md_row, sidecar, write_case
from segbench import chart, compare, report, results, tables


def test_scaling_efficiency(tmp_path):
    rows = results.load_cases(make_results(tmp_path / "res"))
    eff = dict(zip((r["case"] for r in rows), tables.scaling(rows)))
    assert eff["fastscnn_mp_bs2_fp32_2"] == pytest.approx(18.0 / (2 * 10.0))  # 0.90
    assert eff["ocrnet_hrnetw48_mp_bs2_fp32_4"] == pytest.approx(16.0 / (4 * 5.0))  # 0.80
    assert eff["ocrnet_hrnetw48_mp_bs2_fp32_8"] is None  # failed
    assert eff["fastscnn_sp_bs2_fp32_1"] is None
    # mp without an sp of the same precision, and with only a failed sp
    extra = [dict(rows[0], case="x", model="m", run_mode="mp", gpu_num=2, fp="amp")]
    sp_failed = dict(rows[0], case="y", model="m", run_mode="sp", gpu_num=1, fp="amp",
                     ok=False, images_per_s=0.0)
    assert tables.scaling(rows + extra) [-1] is None
    assert tables.scaling(rows + [sp_failed] + extra)[-1] is None


def test_scaling_above_one_is_not_credible_and_cpu_processes_are_not_gpus(tmp_path):
    import matplotlib.pyplot as plt
    d = make_busy_cpu_suite(tmp_path / "res")
    rows = results.load_cases(d)
    eff = tables.scaling(rows)
    notes = {r["case"]: tables.scaling_note(r, e) for r, e in zip(rows, eff)}
    why = ("not credible (above 1.05): the 1-process run was slower than each process of the "
           "2-process run: a busy host or a different setting during the sp run")
    assert notes["fastscnn_mp_bs2_fp32_2_crop128x256_li2"] == why
    assert notes["fastscnn_sp_bs2_fp32_1_crop128x256_li2"] is None
    paths = report.write_report(d, tmp_path / "out")
    md = Path(paths["md"]).read_text()
    assert md_row(md, ["mp", "2", "fp32", "2", "6.04", "3.02", "3.02 (not credible)"])
    assert md_row(md, ["mp", "2", "fp32", "2", "6.61", "3.31", "6.61 (not credible)"])
    assert f"> - `fastscnn_mp_bs2_fp32_2_crop128x256_li2`: 3.02 is {why}." in md
    assert "| mode | bs | precision | processes | images/s | images/s/process |" in md
    assert "over all processes" in md and "all GPUs" not in md and "| GPUs |" not in md
    with open(paths["csv"], newline="") as fh:
        c = by_case(csv.DictReader(fh))
    assert c["segformer_b0_mp_bs2_fp32_2_crop128x256_li2"]["scaling_note"].startswith(
        "not credible")
    assert c["segformer_b0_sp_bs2_fp32_1_crop128x256_li2"]["scaling_note"] == ""
    fig = chart.build_chart(rows)
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
    cmp_md = compare.compare_markdown(*compare.compare(d, d))
    assert "| case | mode | bs | precision | processes |" in cmp_md


def test_scaling_within_the_tolerance_stays_plain(tmp_path):
    d = tmp_path / "res"
    write_case(d, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_case(d, "fastscnn_mp_bs2_fp32_2", 20.8)  # 1.04: noise of two runs
    write_case(d, "segformer_b0_sp_bs2_fp32_1", 10.0)
    write_case(d, "segformer_b0_mp_bs2_fp32_2", 21.2)  # 1.06
    md = report.summary_markdown(results.load_cases(d))
    assert md_row(md, ["mp", "2", "fp32", "2", "20.80", "10.40", "1.04", "-"])
    assert md_row(md, ["mp", "2", "fp32", "2", "21.20", "10.60", "1.06 (not credible)"])
    assert "the 1-GPU run was slower than each GPU of the 2-GPU run" in md
    assert "| GPUs | images/s | images/s/GPU |" in md


def test_a_thread_difference_between_sp_and_mp_is_named_in_the_scaling_note(tmp_path):
    """torchrun gives each mp process OMP_NUM_THREADS=1 and sp keeps torch's default: on a busy
    CPU host that, not the host alone, can make the sp run slow. The note says so, from the
    sidecars' per-rank thread counts (the meta lines' torch_threads)."""
    d = tmp_path / "res"
    cpu = {"device": "cpu", "profile": "cpu"}
    write_case(d, "fastscnn_sp_bs2_fp32_1", 0.24, **sidecar(**cpu), torch_threads_per_rank=[2])
    write_case(d, "fastscnn_mp_bs2_fp32_2", 7.7, **sidecar(gpus=2, **cpu),
               torch_threads_per_rank=[1, 1])
    write_case(d, "segformer_b0_sp_bs2_fp32_1", 1.0, **sidecar(**cpu), torch_threads_per_rank=[2])
    write_case(d, "segformer_b0_mp_bs2_fp32_2", 6.0, **sidecar(gpus=2, **cpu),
               torch_threads_per_rank=[1, 2])   # a row's count: the most of any rank
    rows = by_case(results.load_cases(d))
    assert rows["fastscnn_sp_bs2_fp32_1"]["torch_threads"] == 2
    assert rows["fastscnn_mp_bs2_fp32_2"]["torch_threads"] == 1
    assert rows["segformer_b0_mp_bs2_fp32_2"]["torch_threads"] == 2
    paths = report.write_report(d, tmp_path / "out")
    md = Path(paths["md"]).read_text()
    threads = "the sp process ran 2 torch threads, each mp process 1"
    fast = [line for line in md.splitlines() if line.startswith("> - `fastscnn_mp")]
    seg = [line for line in md.splitlines() if line.startswith("> - `segformer_b0_mp")]
    assert len(fast) == 1 and threads in fast[0]
    assert len(seg) == 1 and "torch threads" not in seg[0]   # the same threads: nothing to name
    with open(paths["csv"], newline="") as fh:
        c = by_case(csv.DictReader(fh))
    assert threads in c["fastscnn_mp_bs2_fp32_2"]["scaling_note"]
    assert c["fastscnn_sp_bs2_fp32_1"]["torch_threads"] == "2"


def test_an_sp_run_with_other_runtime_variables_is_no_scaling_base(tmp_path):
    d = tmp_path / "res"
    alloc = {"env": {"runtime_env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}}}
    write_case(d, "fastscnn_sp_bs2_fp32_1", 10.0, **sidecar(), **alloc)
    write_case(d, "fastscnn_mp_bs2_fp32_2", 18.0, **sidecar(gpus=2))
    write_case(d, "segformer_b0_sp_bs2_fp32_1", 10.0, **sidecar(), **alloc)
    write_case(d, "segformer_b0_mp_bs2_fp32_2", 18.0, **sidecar(gpus=2), **alloc)
    rows = results.load_cases(d)
    eff = dict(zip((r["case"] for r in rows), tables.scaling(rows)))
    assert eff["fastscnn_mp_bs2_fp32_2"] is None
    assert eff["segformer_b0_mp_bs2_fp32_2"] == pytest.approx(0.9)
