"""The benchmark scripts without a GPU-only part still run against the current package (one of
them once broke silently when the hook it drives changed): each on the CPU, tiny, its output read.
Each runs as its own process, as it is used: loader_cost.py sets the process's thread counts
(torch and OpenCV to one, as in a loader worker), which would leak into later tests here."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_loader_cost_per_transform(small_data):
    out = run("loader_cost.py", "fastscnn", "--data-root", str(small_data), "--passes", "1")
    assert "stock: 4 images" in out
    assert "LoadImageFromFile" in out and "PackSegInputs" in out


def test_train_walk_counts_modules_and_the_switch_makes_the_call_cheap():
    lines = run("train_walk.py", "--models", "fastscnn", "--n", "5").strip().splitlines()
    assert lines[0] == "model,modules,train_ms,train_once_ms"
    name, modules, stock, once = lines[-1].split(",")
    assert name == "fastscnn" and int(modules) > 100 and float(stock) > float(once) >= 0


def test_host_cpu_maps_every_allowed_cpu_over_the_rounds():
    import json
    import os
    out = json.loads(run("host_cpu.py", "--rounds", "2", "--loop", "20000", "--best-of", "1"))
    allowed = sorted(os.sched_getaffinity(0))
    assert sorted(int(c) for c in out["per_cpu"]) == allowed
    assert len(out["round_medians"]) == 2 and out["rounds"] == 2
    assert len(out["round_ends"]) == 2 and out["round_ends"][0] <= out["round_ends"][1]
    assert all(0 < v["min"] <= v["median"] <= v["max"] for v in out["per_cpu"].values())
    assert out["mloops_per_s"]["min"] <= out["mloops_per_s"]["median"] <= out["mloops_per_s"]["max"]
    one = json.loads(run("host_cpu.py", "--rounds", "1", "--loop", "20000", "--cpus", str(allowed[0])))
    assert list(one["per_cpu"]) == [str(allowed[0])] and one["per_cpu"][str(allowed[0])]["cv"] is None


def test_host_cpu_align_lines_the_hosts_speed_up_with_the_windows(tmp_path):
    """A run exactly as slow as the host (iteration time = 1 / host speed) correlates 1; the
    windows the host's rounds do not cover are left out."""
    import json
    import sys
    sys.path.insert(0, str(REPO / "benchmarks"))
    import host_cpu
    speeds = [10.0, 20.0, 10.0, 5.0, 10.0, 20.0]          # one round per 1 s, t = 100..106
    host = {"round_ends": [101.0 + i for i in range(6)], "round_medians": speeds}
    rows, t = [{"kind": "meta"}], 93.0      # warm-up ends at t = 97: 3 windows before the host rounds
    for i in range(1, 41 + 60):                            # 40 warm-up, then 60 measured
        if t >= 100.0:
            step = 0.1 * 10.0 / speeds[min(int(t - 100.0), 5)]   # 10 iterations per round at speed 10
        else:
            step = 0.1
        t += step
        rows.append({"kind": "iter", "iter": i, "time": step, "t": t, "cpu_time": step / 2})
    out = host_cpu.align(host, rows)
    assert out["windows"] >= 3 and out["r_time_vs_host_slowness"] > 0.95
    assert all(r["start"] >= 99.5 for r in out["rows"])
    (tmp_path / "host.json").write_text(json.dumps(host))
    (tmp_path / "it.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    text = run("host_cpu.py", "--align", str(tmp_path / "host.json"), str(tmp_path / "it.jsonl"))
    assert json.loads(text.strip().splitlines()[-1])["windows"] == out["windows"]


def test_pack_runs_keeps_summaries_and_lists_the_raw_files(tmp_path):
    """A run set's archive: the figures' files, a console tail without Python's warnings, the
    report's tables; the full log, the per-iteration file and the work dir only named, with sizes."""
    import json
    import tarfile
    src, case = tmp_path / "src", "fastscnn_sp_bs2_fp32_1"
    step = src / "fast_stock"
    (step / f"{case}_work" / "vis").mkdir(parents=True)
    speed = {"log_file": case, "model_name": "fastscnn", "mission_name": "图像分割", "direction_id": 0,
             "run_mode": "sp", "index": 1, "gpu_num": 1, "FINAL_RESULT": 37.951, "JOB_FAIL_FLAG": 0,
             "UNIT": "images/s"}
    (step / f"{case}_speed").write_text(json.dumps(speed), encoding="utf-8")
    (step / case).write_text("the full log\n" * 100)
    (step / f"{case}_iters.rank0.jsonl").write_text("{}\n" * 50)
    (step / f"{case}_work" / "vis" / "scalars.json").write_text("{}")
    console = [f"line {i}" for i in range(60)]
    console[55:55] = ["/x/y.py:3: UserWarning: a warning", "  warnings.warn(msg)"]
    (step / "console.log").write_text("\n".join(console) + "\n")
    (src / "session.json").write_text("{}")
    (src / "results.tgz").write_bytes(b"not kept")
    plan = tmp_path / "plan.txt"
    plan.write_text("fast_stock | 90 | bash run_benchmark.sh fastscnn sp fp32 2 300 5\n")
    run("pack_runs.py", str(src), "h200_test", "--plan", str(plan), "--out", str(tmp_path / "runs"))
    with tarfile.open(tmp_path / "runs" / "h200_test.tar.gz") as tar:
        names = set(tar.getnames())
        read = {n: tar.extractfile(n).read().decode() for n in names if tar.getmember(n).isfile()}
    base = "h200_test/"
    assert {base + f"fast_stock/{case}_speed", base + "session.json", base + "plans/plan.txt",
            base + "summary.md", base + "summary.csv", base + "LEFT_OUT.txt"} <= names
    assert not [n for n in names if n.endswith((".png", ".jsonl", "results.tgz", case)) or "_work" in n]
    tail = read[base + "fast_stock/console.log"].splitlines()
    assert len(tail) == 40 and tail[-1] == "line 59" and not [t for t in tail if "arning" in t]
    left = read[base + "LEFT_OUT.txt"]
    assert f"fast_stock/{case} (1300 bytes)" in left and f"{case}_iters.rank0.jsonl (150 bytes)" in left
    assert "vis/scalars.json (2 bytes)" in left
    assert "| 37.95 |" in read[base + "summary.md"] and "from `h200_test`" in read[base + "summary.md"]
