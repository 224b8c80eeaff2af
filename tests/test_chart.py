"""Tests for segbench.chart: summary.png's contents and layout."""

import pytest

from resultfiles import (DEMO_CASES, assert_chart_layout, make_demo, make_results, png_size,
                         write_speed)
from segbench import chart, report, results


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

    rows = results.load_cases(make_results(tmp_path / "res"))
    fig = chart.build_chart(rows, "note")
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


@pytest.mark.parametrize("n_extra", [0, 24])
def test_demo_chart_layout(tmp_path, n_extra):
    import matplotlib.pyplot as plt

    d = make_demo(tmp_path / "demo")
    for i in range(n_extra):  # many cases with long names
        write_speed(d, f"knet_s3_upernet_swin_large_variant{i}_mp_bs2_amp_8", 50.0 + 20 * i)
    rows = results.load_cases(d)
    fig = chart.build_chart(rows, "generated now from somewhere; a note")
    try:
        assert len(fig.axes[0].get_yticklabels()) == len(DEMO_CASES) + n_extra
        assert_chart_layout(fig)
    finally:
        plt.close(fig)


def test_long_tuned_names_and_failure_reasons_keep_the_chart_readable(tmp_path):
    """A tuned case's switch list and torch's OOM text in full made the tick and value labels so
    wide that the bars' axes collapsed (summary.png of a tuned batch sweep on an H200)."""
    import matplotlib.pyplot as plt

    from resultfiles import write_stats

    d = tmp_path / "res"
    tuned = "tuned-foreach+loader+workers+non_blocking+tf32+graph+window_sync_li2"
    for bs, v in ((2, 64.5), (16, 85.5), (128, 78.9)):
        write_speed(d, f"fastscnn_sp_bs{bs}_fp32_1_{tuned}", v)
    write_speed(d, f"fastscnn_sp_bs256_fp32_1_{tuned}", 0, fail=True)
    write_stats(d, f"fastscnn_sp_bs256_fp32_1_{tuned}", reason=(
        "out of GPU memory at batch 256 per GPU (torch.OutOfMemoryError: CUDA out of memory. Tried "
        "to allocate 9.50 GiB. GPU 0 has a total capacity of 139.80 GiB of which 4.69 GiB is free)"))
    fig = chart.build_chart(results.load_cases(d))
    try:
        fig.canvas.draw()
        ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert "fastscnn [tuned (7 switches)_li2] · sp · bs2 · fp32 · 1 GPU" in ticks
        texts = [t.get_text() for t in fig.axes[0].texts if t.get_text()]
        assert "FAILED: out of GPU memory at batch 256 per GPU" in texts
        assert fig.axes[0].get_window_extent().width > 0.3 * fig.bbox.width   # the bars have room
        assert_chart_layout(fig)
    finally:
        plt.close(fig)


def test_short_labels_count_switches_and_stay_apart():
    assert chart.short("fastscnn [tuned-graph_li2]") == "fastscnn [tuned (1 switch)_li2]"
    assert chart.short("fastscnn [li2]") == "fastscnn [li2]"
    a, b, c = "m [tuned-foreach+graph]", "m [tuned-loader+graph]", "m [tuned-foreach+loader+graph]"
    assert chart._short_map([a, b, c]) == {a: a, b: b, c: "m [tuned (3 switches)]"}   # 2 and 2: whole
