"""Tests for segbench.report: summary.md/.csv and the CLI."""

import csv
import json
import re
from pathlib import Path

import pytest

from resultfiles import (HOST_WARNINGS, assert_chart_layout, by_case, make_flagged, make_records,
                         make_results, md_row, pair_dirs, run_cli, write_case, write_speed, write_stats)
from segbench import chart, report, results


def test_markdown_escapes_pipes_in_reason(tmp_path):
    d = tmp_path / "res"
    write_speed(d, "fastscnn_sp_bs2_fp32_1", 0, fail=True)
    write_stats(d, "fastscnn_sp_bs2_fp32_1", reason="bad input: a|b")
    md = Path(report.write_report(d)["md"]).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| sp"))
    assert "FAILED: bad input: a\\|b" in row
    assert len(re.findall(r"(?<!\\)\|", row)) == 15  # 14 columns -> 15 unescaped bars


def test_tables_and_chart_tell_variants_apart(tmp_path):
    import matplotlib.pyplot as plt
    d = tmp_path / "res"
    write_case(d, "fastscnn_sp_bs2_fp32_1", 10.0)
    write_case(d, "fastscnn_sp_bs2_fp32_1_crop128x256_li2", 4.0)
    rows = results.load_cases(d)
    md = report.summary_markdown(rows)
    assert "## fastscnn\n" in md and "## fastscnn [crop128x256_li2]\n" in md
    assert "a case without it is stock" in md and "`li<N>` a log interval of N" in md
    assert "a case without it is stock" not in report.summary_markdown(rows[:1] if not rows[0]["variant"]
                                                                       else rows[1:])
    fig = chart.build_chart(rows)
    try:
        ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert "fastscnn [crop128x256_li2] · sp · bs2 · fp32 · 1 GPU" in ticks
        assert "fastscnn · sp · bs2 · fp32 · 1 GPU" in ticks
    finally:
        plt.close(fig)
    with open(report.write_report(d)["csv"], newline="") as fh:
        variants = sorted(r["variant"] for r in csv.DictReader(fh))
    assert variants == ["", "crop128x256_li2"]


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
    # mode, bs, precision, GPUs, images/s, per GPU, scaling, CV %, peak MB, TFLOP/s, images/J, W,
    # status
    assert md_row(md, ["sp", "2", "fp32", "1", "10.00", "10.00", "-", "1.2", "1,500",
                        "1.23", "-", "-", "ok"])
    assert md_row(md, ["mp", "2", "fp32", "2", "18.00", "9.00", "0.90", "2.0", "1,701",
                        "-", "-", "-", "ok"])
    assert md_row(md, ["mp", "2", "fp32", "4", "16.00", "4.00", "0.80", "-", "-", "-", "-", "-", "ok"])
    assert md_row(md, ["mp", "2", "fp32", "8", "-", "-", "-", "-", "-", "-", "-", "-",
                        "FAILED: oom"])
    assert md_row(md, ["sp", "1", "fp32", "1", "0.421", "0.421", "-", "10.0", "-", "-", "-", "-",
                        "ok (CPU profile)"])
    assert "CPU profile:" in md
    # sp row listed before mp rows within a model
    assert md.index("| sp | 2 | fp32 | 1 | 10.00") < md.index("| mp | 2 | fp32 | 2 | 18.00")


def test_flagged_cases_are_marked_where_a_user_looks(tmp_path):
    import matplotlib.pyplot as plt
    d = make_flagged(tmp_path / "res")
    rows = by_case(results.load_cases(d))
    assert rows["fastscnn_sp_bs2_fp32_1"]["flagged"] is True
    assert rows["fastscnn_sp_bs2_fp32_1"]["warnings"] == HOST_WARNINGS
    assert rows["fastscnn_mp_bs2_fp32_2"]["flagged"] is False
    assert rows["ocrnet_hrnetw48_sp_bs2_fp32_1"]["flagged"] is True  # bool(warnings)
    assert rows["segformer_b0_sp_bs2_fp32_1"]["flagged"] is False
    assert rows["fastscnn_sp_bs2_fp32_1"]["ok"] is True  # passed stays passed
    paths = report.write_report(d, tmp_path / "out")
    md = Path(paths["md"]).read_text()
    assert "4 case(s), 0 failed, 2 flagged." in md
    assert md_row(md, ["sp", "2", "fp32", "1", "1.50", "1.50", "-", "-", "-", "-", "-", "-", "ok",
                        "**FLAGGED**"])
    assert md_row(md, ["mp", "2", "fp32", "2", "2.90", "1.45", "0.97", "-", "-", "-", "-", "-", "ok",
                       "-"])
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
    fig = chart.build_chart(list(rows.values()))
    try:
        ticks = {t.get_text(): t.get_color() for t in fig.axes[0].get_yticklabels()}
        assert ticks["fastscnn · sp · bs2 · fp32 · 1 GPU [FLAGGED]"] == chart.FLAG_COLOUR
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


def test_cli_report(tmp_path):
    d = make_results(tmp_path / "res")
    p = run_cli("report", d, "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    for name in ("summary.md", "summary.csv", "summary.png"):
        assert str(tmp_path / "o" / name) in p.stdout
        assert (tmp_path / "o" / name).exists()
    assert "| mp | 2 | fp32 | 2 | 18.00 | 9.00 | 0.90 |" in p.stdout


def test_cli_reads_fourteen_key_records(tmp_path):
    d = make_records(tmp_path / "paddle")
    p = run_cli("report", d, "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    assert "5 case(s), 1 failed" in p.stdout and "## ocrnet_hrnetw48" in p.stdout
    assert md_row(p.stdout, ["mp", "2", "fp32", "8", "36.00", "4.50"])
    assert md_row(p.stdout, ["mp", "2", "fp32", "2", "15.00", "7.50", "-"])  # li5: no sp of its own
    cur = tmp_path / "torch"
    write_speed(cur, "ocrnet_hrnetw48_mp_bs2_fp32_8", 36.5)
    p = run_cli("compare", d, cur, "--baseline-label", "Paddle")
    assert p.returncode == 1 and "4 missing" in p.stdout, p.stdout
    assert "ocrnet_hrnetw48_mp_bs2_fp32_8 (= PaddleSeg_ocrnet_N1C8)" in p.stdout


def test_cli_compare_exit_codes(tmp_path):
    base, cur = pair_dirs(tmp_path, 9.0)
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
    base, cur = pair_dirs(tmp_path)
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
    base, cur = pair_dirs(tmp_path, 9.0)
    assert report.main(["compare", str(base), str(cur), "--threshold", "5%"]) == 1
    assert report.main(["compare", str(base), str(cur), "--threshold", "15%"]) == 0
    assert report.main(["compare", str(base), str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_runtime_variables_are_noted_under_their_model(tmp_path):
    """A case that ran with a runtime variable set (not in its name) is listed under its table,
    with the variables; a model whose cases ran without any gets no note."""
    d = tmp_path / "res"
    write_case(d, "fastscnn_sp_bs2_fp32_1", 40.0,
               env={"runtime_env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
                                    "CUDA_LAUNCH_BLOCKING": "1"}})
    write_case(d, "segformer_b0_sp_bs2_fp32_1", 20.0, env={"runtime_env": {}})
    md = report.summary_markdown(results.load_cases(d))
    fast, seg = md.split("## segformer_b0")
    assert ("> - `fastscnn_sp_bs2_fp32_1`: "
            "`CUDA_LAUNCH_BLOCKING=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`") in fast
    assert "Runtime environment" not in seg
