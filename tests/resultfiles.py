"""Result files for the report, compare and chart tests: speed files, sidecars, whole directories."""

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # plain `pytest` from anywhere, without an installed package
    sys.path.insert(0, str(REPO))

from segbench import paddle, results  # noqa: E402


def write_speed(d, case, images, *, fail=False, model=None, run_mode=None, gpu_num=None,
                file_name=None, log_file=None):
    """A contract speed file (exactly the 10 keys) named <case>_speed unless file_name."""
    parsed = results.parse_case_name(case)
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


def write_case(d, case, images, **stats):
    """A speed file named by case (its fields from the name) and, with stats, its sidecar."""
    write_speed(d, case, images)
    if stats:
        write_stats(d, case, **stats)


def tuned_switches():
    from segbench import tuned
    return tuned.DEFAULT_SWITCHES


def make_busy_cpu_suite(d):
    """A CPU-profile suite whose sp runs a busy host slowed: efficiencies 3.02 and 6.61."""
    d = Path(d)
    cpu = {"device": "cpu", "profile": "cpu"}
    for model, sp, mp in (("fastscnn", 1.0, 6.04), ("segformer_b0", 0.5, 6.61)):
        write_case(d, f"{model}_sp_bs2_fp32_1_crop128x256_li2", sp, **sidecar(**cpu))
        write_case(d, f"{model}_mp_bs2_fp32_2_crop128x256_li2", mp, **sidecar(gpus=2, **cpu))
    return d


def md_row(md, cells):
    pat = r"^\|\s*" + r"\s*\|\s*".join(re.escape(c) for c in cells) + r"\s*\|"
    return re.search(pat, md, re.M)


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


def pair_dirs(tmp_path, current_images=9.0):
    base, cur = tmp_path / "base", tmp_path / "cur"
    for d, v in ((base, 10.0), (cur, current_images)):
        write_speed(d, "fastscnn_sp_bs2_fp32_1", v)
        write_speed(d, "ocrnet_hrnetw48_mp_bs2_fp32_8", 40.0)
    return base, cur


def write_record(d, file_name, model_name, ips, device_num="N1C1", bs=2, fp="fp32", **extra):
    """A 14-key record as the later PaddlePaddle benchmark writes it (segbench.paddle.KEYS), plus
    any extra keys a platform adds."""
    rec = {"model_branch": "develop", "model_commit": "0a1b2c", "model_name": model_name,
           "batch_size": bs, "fp_item": fp, "run_mode": "DP", "convergence_value": 1.5,
           "convergence_key": "loss:", "ips": ips, "speed_unit": "images/s",
           "device_num": device_num, "model_run_time": 120, "frame_commit": "d3e4f5",
           "frame_version": "2.6.0", **extra}
    path = Path(d) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def make_records(d):
    """Only 14-key records: two as segbench writes them beside a speed file (here without one),
    and three as a framework team's platform writes them, under names of its own."""
    d = Path(d)
    for case, ips, gpus in (("fastscnn_sp_bs2_fp32_1", 8.0, 1), ("fastscnn_mp_bs2_fp32_2_li5", 15.0, 2)):
        stats = {"model": "fastscnn", "batch_size": 2, "fp_item": "fp32", "gpu_num": gpus,
                 "FINAL_RESULT": ips, "env": {"mmsegmentation": "1.2.2", "torch": "2.11.0"}}
        (d / f"{case}{paddle.SUFFIX}").parent.mkdir(parents=True, exist_ok=True)
        (d / f"{case}{paddle.SUFFIX}").write_text(json.dumps(paddle.result(stats)))
    write_record(d, "PaddleSeg_ocrnet_N1C8.json", "ocrnet_hrnetw48_bs2_fp32_DP", 36.0, "N1C8",
                 job_id="4711")                                  # at least the 14 keys
    write_record(d / "run2", "result.json", "deeplabv3plus_r101_d8", 6.5, "N2C4", bs=4, fp="fp16")
    write_record(d, "segformer_b0_bs2_fp32.json", "segformer_b0_bs2_fp32_DP", 0, "N1C1")
    return d
