"""benchmarks/trace_summary.py: GPU busy time as the union of device intervals, iterations from
the optimizer's steps, the kernel set's digest; on a real (CPU) torch.profiler trace too."""
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import trace_summary  # noqa: E402


def ev(name, ts, dur, cat="kernel"):
    return {"ph": "X", "name": name, "ts": ts, "dur": dur, "cat": cat}


def test_busy_time_is_the_union_of_device_intervals_and_the_digest_tracks_the_kernel_set():
    trace = {"traceEvents": [
        ev("Optimizer.step#SGD.step", 0, 10, "cpu_op"), ev("Optimizer.step#SGD.step", 500, 10, "cpu_op"),
        ev("conv_a", 100, 100), ev("conv_b", 150, 100),          # overlap: 100..250 = 150 us
        ev("Memcpy HtoD", 300, 50, "gpu_memcpy"), ev("conv_a", 900, 100),
        ev("Optimizer.step#SGD.step", 600, 5, "gpu_user_annotation"),  # the device's mirror: not a step
        {"ph": "i", "name": "marker", "ts": 5000},                # not a complete event: ignored
    ]}
    s = trace_summary.summarize(trace)
    assert s["iterations"] == 2 and s["iterations_from"] == "optimizer steps"
    assert s["span_ms"] == 1.0 and s["gpu_busy_ms"] == 0.3 and s["gpu_busy_share"] == 0.3
    assert s["gpu_busy_ms_per_iter"] == 0.15 and s["kernels"] == 3 and s["kernels_per_iter"] == 1.5
    assert s["distinct_kernels"] == 2 and s["top_kernels"][0] == {"name": "conv_a", "ms": 0.2}
    assert s["kernel_table"] == [{"name": "conv_a", "count": 2, "ms": 0.2},
                                 {"name": "conv_b", "count": 1, "ms": 0.1}]
    other = dict(trace, traceEvents=trace["traceEvents"][:-2] + [ev("conv_c", 900, 100)])
    assert trace_summary.summarize(other)["kernel_set_digest"] != s["kernel_set_digest"]
    assert trace_summary.summarize(trace, iters=4)["iterations"] == 4


def test_a_real_cpu_trace(tmp_path, capsys):
    from torch.profiler import ProfilerActivity, profile
    m = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            m(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
    path = tmp_path / "t.json"
    prof.export_chrome_trace(str(path))
    out = tmp_path / "s.json"
    assert trace_summary.main([str(path), "--json", str(out)]) == 0
    s = json.loads(out.read_text())[str(path)]
    assert s["iterations"] == 3 and s["span_ms"] > 0 and s["gpu_busy_ms"] == 0
    assert s["note"] == "no GPU events: a CPU-only trace"
    assert "3 iterations" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert trace_summary.main([str(tmp_path / "bad.json")]) == 1
