"""Fidelity and stability: does the harness measure what plain mmseg measures?

For each model, in one session on one device, alternately:
  * plain mmseg:  python mmseg/.mim/tools/train.py configs/<model>.py --cfg-options <the harness's>
  * the harness:  bash run_benchmark.sh <model> sp <fp> <bs> <iters> <workers>
and compute both FINAL_RESULTs with the same analysis (the seed's formula). Prints one row per model
(median plain, median harness, ratio, CVs over the runs) and writes results.csv / results.json
into --out.

    python benchmarks/fidelity.py --models fastscnn,segformer_b0 --iters 500 --pairs 2 --out DIR
    python benchmarks/fidelity.py --models ocrnet_hrnetw48 --order PHHP --out DIR

``--order`` spells the run sequence per model (P = plain, H = harness; default PH repeated --pairs
times). PHHP puts each side first once, so a first-position effect (a warmer GPU or page cache for
the second run) cancels instead of favouring one side; PP or H alone split a sequence over several
calls of a short device lease. Two more letters take the difference apart when the two disagree:
T = plain mmseg with the harness's timing hook added (a config inheriting the model's, with the
hook as a custom hook: its device syncs and FLOP probe, none of the launcher), N = the harness
with ``FLOPS=false`` (no FLOP probe). Each letter's runs get their median and ratio to plain.

With two or more runs a side, the row also carries the ratio of the harness's mean to plain's with
its 95% confidence interval (segbench.analysis.ratio_ci95: run-to-run spread decides it) and a
verdict against ``--tolerance`` (default 3%): ``within`` when the whole interval is, ``outside``
when none of it is, else ``not resolved`` -- more runs needed, on this host's spread. ``--pool``
makes that row from the results.json of several earlier invocations (steps of a short device lease)
without running anything:

    python benchmarks/fidelity.py --pool step1/results.json step2/results.json

``--concurrent A,B`` (a host with two GPUs) runs each pair's plain and harness runs at the same
time, one on device A and one on device B, swapping devices from pair to pair:

    python benchmarks/fidelity.py --models ocrnet_hrnetw48 --iters 300 --pairs 4 --concurrent 0,1

The two runs of a pair share the host's state (its CPU speed of the moment, its neighbours), so a
host whose speed moves from run to run moves both, and the pair's ratio keeps only what differs:
the harness. The row's interval is then the matched pairs' (segbench.analysis.paired_ratio_ci95);
the sides also compete for the host's CPUs, symmetrically. Its figures are of two runs at once, not
of a quiet host: read the ratio, not the images/s. ``--sides XY`` (default PH) pairs any two of the
letters, side Y's figure over side X's: PN (is it the FLOP probe?), PT (the hook?), and the A/A
pairs PP and HH, whose true ratio is 1 -- their interval is the method's own noise on
this host, and HH's against PP's says whether the harness's runs spread more than plain mmseg's.

The two runs of a pair do not start or end training at the same second (the harness's launcher and
FLOP probe come first; a run slowed by the host ends later, alone in the slow spell). So each
concurrent row also carries ``matched``: both sides' images/s over only the seconds in which both
were in their measured phase (their log windows after the skipped ones, placed by the log lines'
own time stamps, whole windows only, to the second), with the pairs' interval and verdict from
those. ``--pool`` computes it for rows written before it existed, from the logs beside their
results.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from segbench import analysis, configs  # noqa: E402


LETTERS = {"P": "plain", "H": "harness", "T": "plain_with_hook", "N": "harness_no_flops"}


def _cv(xs: list[float]) -> float | None:
    return statistics.stdev(xs) / statistics.mean(xs) if len(xs) > 1 and statistics.mean(xs) > 0 else None


def verdict(ci: dict | None, tolerance: float) -> str:
    """``within`` / ``outside`` / ``not resolved`` at +-tolerance, from a ratio_ci95 result."""
    band = f"+-{100 * tolerance:g}%"
    if ci is None:
        return f"not resolved at {band} (fewer than 2 runs a side)"
    if ci["low"] >= 1 - tolerance and ci["high"] <= 1 + tolerance:
        return f"within {band}"
    if ci["high"] < 1 - tolerance or ci["low"] > 1 + tolerance:
        return f"outside {band}"
    return f"not resolved at {band}"


def summarise(row: dict, by_letter: dict[str, list[float]], tolerance: float) -> dict:
    """Fill ``row`` with each letter's runs, median, CV and ratio to plain, and the harness's
    mean ratio with its 95% CI and verdict, the runs taken as independent (sequential runs;
    :func:`summarise_sides` then replaces the ratio's fields for concurrent pairs)."""
    plain = by_letter.get("P") or []
    for letter, key in LETTERS.items():
        runs = by_letter.get(letter) or []
        if not runs:
            continue
        row[f"{key}_runs"], row[key], row[f"{key}_cv"] = runs, round(statistics.median(runs), 4), _cv(runs)
        if letter != "P" and plain:
            row[f"{key}_ratio"] = round(row[key] / statistics.median(plain), 4)
    if row.get("plain") and row.get("harness"):
        row["ratio"] = row["harness_ratio"]
        ci = analysis.ratio_ci95(by_letter["H"], plain)
        row["pairing"] = "sequential"
        row["ratio_mean"] = round(ci["ratio"], 4) if ci else None
        row["ratio_ci95"] = [round(ci["low"], 4), round(ci["high"], 4)] if ci else None
        row["verdict"] = verdict(ci, tolerance)
        row["runs_needed"] = runs_needed(ci, tolerance)
    return row


def summarise_sides(row: dict, sides: str, a_runs: list[float], b_runs: list[float],
                    tolerance: float) -> dict:
    """A concurrent row's ratio: side ``sides[1]``'s runs over side ``sides[0]``'s, matched pairs
    (index by index), with the pairs' 95% interval, verdict and runs needed (after
    :func:`summarise`, whose independent-runs fields for the ratio it replaces)."""
    ci = analysis.paired_ratio_ci95(b_runs, a_runs)
    row.update({
        "pairing": "concurrent", "sides": sides, "side_a_runs": a_runs, "side_b_runs": b_runs,
        "ratio": (round(statistics.median(b_runs) / statistics.median(a_runs), 4)
                  if a_runs and b_runs and min(a_runs) > 0 else None),
        "ratio_mean": round(ci["ratio"], 4) if ci else None,
        "ratio_ci95": [round(ci["low"], 4), round(ci["high"], 4)] if ci else None,
        "verdict": verdict(ci, tolerance), "runs_needed": runs_needed(ci, tolerance)})
    return row


def runs_needed(ci: dict | None, tolerance: float) -> int | None:
    """About how many runs a side (the same spread and ratio; t for 2n - 2 degrees of freedom, or
    n - 1 for matched pairs) would put the whole 95% interval inside +-tolerance; None when the
    mean ratio itself is not inside."""
    if ci is None:
        return None
    room = math.log(1 + tolerance) if ci["ratio"] >= 1 else -math.log(1 - tolerance)
    room -= abs(math.log(ci["ratio"]))
    if room <= 0:
        return None
    paired = ci.get("paired", False)
    var = ci["cv"] ** 2 if paired else ci["cv"][0] ** 2 + ci["cv"][1] ** 2
    n = 2
    while analysis.t95(n - 1 if paired else 2 * n - 2) * math.sqrt(var / n) > room:
        n += 1
    return n


def pool(paths: list[Path], tolerance: float) -> list[dict]:
    """One row per (model, fp, bs, workers, cuDNN benchmark, pairing, sides) from the rows of
    several results.json files (rows without ``cudnn_benchmark`` had it on; without ``pairing``,
    ran one after another; concurrent ones without ``sides`` paired plain and harness).
    Concurrent rows stay matched: their pairs are joined in order."""
    groups: dict[tuple, dict] = {}
    for path in paths:
        for r in json.loads(Path(path).read_text()):
            pairing = r.get("pairing", "sequential")
            sides = r.get("sides", "PH") if pairing == "concurrent" else None
            key = (r["model"], r.get("fp"), r.get("bs"), r.get("workers"),
                   r.get("cudnn_benchmark", True), pairing, sides)
            g = groups.setdefault(key, {"iters": [], "orders": [], "by_letter": {k: [] for k in LETTERS},
                                        "a": [], "b": [],
                                        "matched": {"a": [], "b": [], "unmatched": 0, "missing": 0}})
            g["iters"].append(r.get("iters"))
            g["orders"].append(r.get("order"))
            for letter, name in LETTERS.items():
                g["by_letter"][letter] += r.get(f"{name}_runs") or []
            if sides:
                g["a"] += r.get("side_a_runs", r.get("plain_runs")) or []
                g["b"] += r.get("side_b_runs", r.get("harness_runs")) or []
                _pool_matched(g["matched"], Path(path), r)
    rows = []
    for (model, fp, bs, workers, bench, pairing, sides), g in groups.items():
        iters = sorted(set(g["iters"]), key=str)
        row = {"model": model, "fp": fp, "bs": bs, "workers": workers, "cudnn_benchmark": bench,
               "iters": iters[0] if len(iters) == 1 else iters, "order": "+".join(map(str, g["orders"])),
               "pooled_from": len(g["orders"])}
        rows.append(summarise(row, g["by_letter"], tolerance))
        if sides:
            summarise_sides(row, sides, g["a"], g["b"], tolerance)
            m = g["matched"]
            if not m["missing"]:
                summarise_matched(row, m["a"], m["b"], tolerance, unmatched=m["unmatched"])
    return rows


def _pool_matched(acc: dict, results_json: Path, r: dict) -> None:
    """Add a concurrent row's time-matched pairs to ``acc``: its own ``matched`` block, else the
    figures from the logs beside its results.json; ``missing`` counts rows with neither (a pooled
    row then carries no ``matched``: it would not be the same pairs as its other figures)."""
    if r.get("matched"):
        acc["a"] += r["matched"]["side_a_runs"]
        acc["b"] += r["matched"]["side_b_runs"]
        acc["unmatched"] += r["matched"].get("unmatched_pairs", 0)
        return
    pairs = matched_from_logs(results_json, r)
    if pairs is None:
        acc["missing"] += 1
        return
    acc["a"] += [m["a"] for m in pairs if m]
    acc["b"] += [m["b"] for m in pairs if m]
    acc["unmatched"] += sum(1 for m in pairs if not m)


def time_matched(log_a: Path, log_b: Path, bs: int,
                 skip: int = analysis.SKIP_WINDOWS) -> dict | None:
    """Both sides' images/s (``a``, ``b``) over the same seconds: the span in which both had
    passed their ``skip`` first windows and neither had ended, each side's windows lying wholly
    inside it (a window runs from the previous line's stamp to its own). None when either log has
    no such window (too short a run, or an overlap shorter than a window), and when a window has
    no time stamp (segbench.analysis.stamped_windows: the same windows the seed formula reads)."""
    p, h = analysis.stamped_windows(log_a), analysis.stamped_windows(log_b)
    if min(len(p), len(h)) <= skip or skip < 1 or any(s is None for s, _ in p + h):
        return None
    lo, hi = max(p[skip - 1][0], h[skip - 1][0]), min(p[-1][0], h[-1][0])

    def inside(ws: list[tuple[int, float]]) -> list[float]:
        return [t for (start, _), (end, t) in zip(ws[skip - 1:], ws[skip:]) if start >= lo and end <= hi]

    pw, hw = inside(p), inside(h)
    if not pw or not hw or min(sum(pw), sum(hw)) <= 0:
        return None
    return {"overlap_s": hi - lo, "windows": [len(pw), len(hw)],
            "a": round(bs * len(pw) / sum(pw), 4), "b": round(bs * len(hw) / sum(hw), 4)}


def summarise_matched(row: dict, a_runs: list[float], b_runs: list[float], tolerance: float,
                      unmatched: int = 0) -> dict:
    """``row["matched"]``: the time-matched figures of a concurrent row's pairs (side b over side
    a) with their matched-pairs interval and verdict (``unmatched``: pairs left out, no overlap
    to compare)."""
    ci = analysis.paired_ratio_ci95(b_runs, a_runs)
    row["matched"] = {
        "side_a_runs": a_runs, "side_b_runs": b_runs, "unmatched_pairs": unmatched,
        "ratio_mean": round(ci["ratio"], 4) if ci else None,
        "ratio_ci95": [round(ci["low"], 4), round(ci["high"], 4)] if ci else None,
        "verdict": verdict(ci, tolerance), "runs_needed": runs_needed(ci, tolerance)}
    return row


def logs_of_pair(out: Path, model: str, fp: str, bs: int, n: int) -> tuple[Path, Path]:
    """Where pair ``n``'s plain and harness logs lie in a concurrent plain/harness invocation's
    --out (rows written before ``matched`` existed were all of those)."""
    case = f"{model}_sp_bs{bs}_{fp}_1"
    return out / f"plain_p{n}_{case}", out / f"harness_{model}_r{n}" / case


def matched_from_logs(results_json: Path, row: dict) -> list[dict | None] | None:
    """A concurrent row's per-pair :func:`time_matched` figures from the logs beside its
    results.json (rows written before ``matched`` existed); None when the logs are not there."""
    if row_sides(row) != "PH":
        return None
    out = Path(results_json).parent
    pairs = []
    for n in range(1, len(row.get("plain_runs") or []) + 1):
        plain_log, harness_log = logs_of_pair(out, row["model"], row.get("fp"), row.get("bs"), n)
        if not (plain_log.is_file() and harness_log.is_file()):
            return None
        pairs.append(time_matched(plain_log, harness_log, row.get("bs")))
    return pairs


def row_sides(row: dict) -> str | None:
    """A row's concurrent sides (PH for concurrent rows older than ``sides``); None if sequential."""
    return row.get("sides", "PH") if row.get("pairing") == "concurrent" else None


def print_table(rows: list[dict]) -> None:
    print(f"{'model':<16} {'plain/a':>9} {'harness/b':>9} {'ratio':>7} {'CV':>7}  "
          f"{'mean ratio [95% CI]':<26} verdict")
    for r in rows:
        cv = f"{100 * r['harness_cv']:.2f}%" if r.get("harness_cv") is not None else "-"
        ci = (f"{r['ratio_mean']} [{r['ratio_ci95'][0]}, {r['ratio_ci95'][1]}]"
              if r.get("ratio_ci95") else "-")
        sides = row_sides(r)
        if sides and sides != "PH":   # side b over side a, whatever they are
            a_runs, b_runs = r["side_a_runs"], r["side_b_runs"]
            a_fig = round(statistics.median(a_runs), 4) if a_runs else "-"
            b_fig = round(statistics.median(b_runs), 4) if b_runs else "-"
            cv = f"{100 * _cv(b_runs):.2f}%" if _cv(b_runs) is not None else "-"
        else:
            a_fig, b_fig = r.get("plain", "-"), r.get("harness", "-")
        name = r["model"] + (f" {sides}" if sides and sides != "PH" else "")
        print(f"{name:<16} {a_fig:>9} {b_fig:>9} "
              f"{r.get('ratio', '-'):>7} {cv:>7}  {ci:<26} {r.get('verdict', '-')}"
              + (f" (~{r['runs_needed']} {'pairs' if sides else 'runs a side'} would resolve it)"
                 if r.get("runs_needed") and "not resolved" in r.get("verdict", "") else ""))
        m = r.get("matched")
        if m:
            ci = (f"{m['ratio_mean']} [{m['ratio_ci95'][0]}, {m['ratio_ci95'][1]}]"
                  if m.get("ratio_ci95") else "-")
            print(f"{'  time-matched':<16} {'':>9} {'':>9} {'':>7} {'':>7}  {ci:<26} {m['verdict']}"
                  f" ({len(m['side_a_runs'])} pairs" + (f", {m['unmatched_pairs']} without overlap"
                                                       if m.get("unmatched_pairs") else "")
                  + (f"; ~{m['runs_needed']} would resolve it"
                     if m.get("runs_needed") and "not resolved" in m["verdict"] else "") + ")")


def write_rows(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    with open(out / "results.csv", "w", newline="") as fh:
        keys = sorted({k for r in rows for k in r})
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def hooked_config(model: str, fp: str, out: Path, tag: str) -> Path:
    """A config inheriting configs/<model>.py that adds the harness's timing hook (FLOP probe on),
    for plain tools/train.py: the hook's own effect, without the harness's launcher."""
    path = out / f"plain_{tag}_{model}_hooked.py"
    prefix = out / f"plain_{tag}_{model}_iters"
    path.write_text(
        f"_base_ = [{str(configs.config_path(model))!r}]\n"
        "custom_imports = dict(imports=['segbench.timing'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='SegbenchPeakHook'), "
        f"dict(type='SegbenchTimerHook', out_prefix={str(prefix)!r}, "
        f"precision={fp!r}, count_flops=True)]\n")
    return path


def plain_mmseg(model: str, fp: str, bs: int, iters: int, workers: int, data_root: str,
                out: Path, tag: str, crop: tuple[int, int] | None = None,
                log_interval: int = 10, with_hook: bool = False, cudnn_benchmark: bool = True,
                extra_env: dict | None = None) -> dict:
    """Plain mmseg tools/train.py with exactly the harness's cfg-options (no segbench hook unless
    ``with_hook``: then the timing hook, through a config that inherits the model's)."""
    import mmseg
    train_py = Path(mmseg.__file__).parent / ".mim" / "tools" / "train.py"
    import torch
    s = configs.TrainSettings(model=model, batch_size=bs, max_iters=iters, num_workers=workers,
                              precision=fp, data_root=data_root, crop=crop,
                              log_interval=log_interval, cudnn_benchmark=cudnn_benchmark,
                              device="cuda" if torch.cuda.is_available() else "cpu")
    opts = configs.options(configs.load(model), s)
    log = out / f"plain_{tag}_{model}_sp_bs{bs}_{fp}_1"
    config = hooked_config(model, fp, out, tag) if with_hook else configs.config_path(model)
    cmd = [sys.executable, str(train_py), str(config),
           "--work-dir", str(out / f"plain_{tag}_{model}_work"), "--cfg-options", *configs.as_cli(opts)]
    t0, start = time.monotonic(), time.time()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO), **(extra_env or {}))).returncode
    res = analysis.analyze(log, model, batch_size=bs, gpu_num=1, run_mode="sp")
    return {"images_per_s": res.speed["FINAL_RESULT"] if rc == 0 else 0.0, "rc": rc,
            "reason": res.reason, "wall_s": round(time.monotonic() - t0, 1), "log": str(log),
            "start": start}


def harness(model: str, fp: str, bs: int, iters: int, workers: int, out: Path, tag: str,
            extra_env: dict) -> dict:
    log_dir = out / f"harness_{tag}"
    log_dir.mkdir(parents=True, exist_ok=True)
    t0, start = time.monotonic(), time.time()
    rc = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), model, "sp", fp, str(bs),
                         str(iters), str(workers)],
                        env=dict(os.environ, TRAIN_LOG_DIR=str(log_dir), **extra_env)).returncode
    # the case name ends in the gpu count, "NA" when the run failed before it was known
    speed_file = next(iter(sorted(log_dir.glob(f"{model}_sp_bs{bs}_{fp}_*_speed"))), None)
    if speed_file is None:
        raise SystemExit(f"fidelity: the harness wrote no speed file in {log_dir} (exit {rc})")
    speed = json.loads(speed_file.read_text())
    stats_file = speed_file.with_name(speed_file.name[:-len("_speed")] + "_stats.json")
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    return {"images_per_s": speed["FINAL_RESULT"], "rc": rc, "wall_s": round(time.monotonic() - t0, 1),
            "stats": stats, "start": start, "log": str(speed_file)[:-len("_speed")]}


def run_letter(letter: str, model: str, a: argparse.Namespace, crop, extra_env: dict, tag: str,
               device: str | None = None) -> dict:
    """One run of ``letter`` (P plain, T plain with the hook, H harness, N harness without the
    FLOP probe), named by ``tag``, on ``device`` (a CUDA_VISIBLE_DEVICES value) if given."""
    if letter in "PT":
        return plain_mmseg(model, a.fp, a.bs, a.iters, a.workers, a.data_root, a.out,
                           f"{letter.lower()}{tag}", crop, a.log_interval, with_hook=letter == "T",
                           cudnn_benchmark=not a.no_cudnn_benchmark,
                           extra_env=None if device is None else {"CUDA_VISIBLE_DEVICES": device})
    env = dict(extra_env, FLOPS="false") if letter == "N" else dict(extra_env)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    return harness(model, a.fp, a.bs, a.iters, a.workers, a.out,
                   f"{model}_r{tag}" if letter == "H" else f"{model}_noflops{tag}", env)


def concurrent_pairs(model: str, a: argparse.Namespace, devices: list[str], crop, extra_env: dict,
                     by_letter: dict[str, list[float]], sides_runs: tuple[list, list],
                     runs: list[dict]) -> list[dict]:
    """``a.pairs`` pairs, each side ``a.sides[0]`` and side ``a.sides[1]`` started together, one
    per device, the devices swapping from pair to pair; figures into ``by_letter`` and
    ``sides_runs`` (a, b), harness runs into ``runs``. Returns each pair's devices, the gap
    between its two starts, its two wall times and its :func:`time_matched` figures."""
    pairs = []
    x, y = a.sides
    for k in range(a.pairs):
        n, dev_a, dev_b = k + 1, devices[k % 2], devices[(k + 1) % 2]
        with ThreadPoolExecutor(max_workers=2) as both:
            run_a = both.submit(run_letter, x, model, a, crop, extra_env, f"{n}", dev_a)
            run_b = both.submit(run_letter, y, model, a, crop, extra_env,
                                f"{n}b" if x == y else f"{n}", dev_b)   # A/A: the two runs apart
            res = (run_a.result(), run_b.result())
        for letter, r, side in zip(a.sides, res, sides_runs):
            by_letter[letter].append(r["images_per_s"])
            side.append(r["images_per_s"])
            if letter == "H":
                runs.append(r)
        pairs.append({"a": dev_a, "b": dev_b,
                      "start_gap_s": round(abs(res[1]["start"] - res[0]["start"]), 2),
                      "wall_s": {"a": res[0]["wall_s"], "b": res[1]["wall_s"]},
                      "matched": time_matched(Path(res[0]["log"]), Path(res[1]["log"]), a.bs)})
        print(f"fidelity: {model} pair {n} at once: {LETTERS[x]} {res[0]['images_per_s']} images/s "
              f"(device {dev_a}), {LETTERS[y]} {res[1]['images_per_s']} images/s (device {dev_b})",
              flush=True)
    return pairs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(configs.MODELS))
    p.add_argument("--fp", default="fp32")
    p.add_argument("--bs", type=int, default=2)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--workers", type=int, default=5)
    p.add_argument("--pairs", type=int, default=1,
                   help="alternating (plain, harness) runs per model; medians and CVs over them")
    p.add_argument("--order", help="run sequence per model, letters P (plain) and H (harness), "
                                   "e.g. PHHP; default PH repeated --pairs times")
    p.add_argument("--no-plain", action="store_true", help="only the harness (stability)")
    p.add_argument("--crop", help="HxW (default: the model's own); for a quick CPU check")
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--data-root", default=str(REPO / "data" / "cityscapes"))
    p.add_argument("--out", type=Path, default=Path("fidelity_out"))
    p.add_argument("--no-cudnn-benchmark", action="store_true",
                   help="both sides with cuDNN's benchmark off (CUDNN_BENCHMARK=false for the "
                        "harness): a diagnosis of run-to-run spread, not the seed's setting")
    p.add_argument("--tolerance", type=float, default=0.03,
                   help="the verdict's band around 1 for harness / plain (default 0.03)")
    p.add_argument("--concurrent", metavar="A,B",
                   help="two devices (CUDA_VISIBLE_DEVICES values): each pair's plain and harness "
                        "runs at the same time, one on each, swapping from pair to pair; the "
                        "interval is the matched pairs'")
    p.add_argument("--sides", default="PH", metavar="XY",
                   help="with --concurrent: the two letters run at once in each pair, Y's figure "
                        "over X's (default PH; PN, PT; PP and HH for the method's own noise)")
    p.add_argument("--pool", nargs="+", type=Path, metavar="RESULTS_JSON",
                   help="no runs: pool the runs of earlier results.json files (written to --out)")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, checked (a bad one exits 2, as argparse does), with the run sequence as
    ``runs`` and the --concurrent devices as ``devices`` (None for sequential runs)."""
    p = _parser()
    a = p.parse_args(argv)
    if not 0 < a.tolerance < 1:
        p.error(f"--tolerance must be between 0 and 1, not {a.tolerance}")
    if a.pool:
        missing = [str(x) for x in a.pool if not x.is_file()]
        if missing:
            p.error(f"--pool: no such file: {', '.join(missing)}")
        return a
    order = (a.order or ("H" if a.no_plain else "PH") * a.pairs).upper()
    if not order or set(order) - set(LETTERS):
        p.error(f"--order must be letters of {''.join(LETTERS)}, e.g. PHHP, not {a.order!r}")
    devices = None
    if a.concurrent is not None:
        devices = [d.strip() for d in a.concurrent.split(",")]
        if len(devices) != 2 or not all(devices) or devices[0] == devices[1]:
            p.error(f"--concurrent takes two different devices, e.g. 0,1, not {a.concurrent!r}")
        if a.order or a.no_plain:
            p.error("--concurrent runs pairs of plain and harness (--pairs N), "
                    "not with --order or --no-plain")
    a.sides = a.sides.upper()
    if len(a.sides) != 2 or set(a.sides) - set(LETTERS):
        p.error(f"--sides takes two letters of {''.join(LETTERS)}, e.g. PH or PP, not {a.sides!r}")
    if a.sides != "PH" and devices is None:
        p.error("--sides is for --concurrent pairs; sequential runs take --order")
    a.runs, a.devices = order, devices
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if a.pool:
        try:
            rows = pool(a.pool, a.tolerance)
        except (ValueError, KeyError, TypeError) as exc:
            _parser().error(f"--pool: not a fidelity results.json ({type(exc).__name__}: {exc})")
        write_rows(rows, a.out)
        for row in rows:
            print("fidelity: " + json.dumps(row), flush=True)
        print_table(rows)
        return 0
    order, devices = a.runs, a.devices
    a.out.mkdir(parents=True, exist_ok=True)
    crop = tuple(int(x) for x in a.crop.split("x")) if a.crop else None
    extra_env = {"DATA_ROOT": a.data_root, "LOG_INTERVAL": str(a.log_interval)}
    if a.crop:
        extra_env["CROP"] = a.crop
    if a.no_cudnn_benchmark:
        extra_env["CUDNN_BENCHMARK"] = "false"
    rows = []
    for model in [m for m in a.models.split(",") if m]:
        row: dict = {"model": model, "fp": a.fp, "bs": a.bs, "iters": a.iters, "workers": a.workers,
                     "cudnn_benchmark": not a.no_cudnn_benchmark}
        by_letter: dict[str, list[float]] = {k: [] for k in LETTERS}
        runs: list[dict] = []
        if devices:
            sides_runs: tuple[list, list] = ([], [])
            row["concurrent_devices"] = concurrent_pairs(model, a, devices, crop, extra_env,
                                                         by_letter, sides_runs, runs)
            row["order"] = a.sides * a.pairs
            summarise(row, by_letter, a.tolerance)
            summarise_sides(row, a.sides, *sides_runs, a.tolerance)
            got = [pair["matched"] for pair in row["concurrent_devices"] if pair["matched"]]
            summarise_matched(row, [m["a"] for m in got], [m["b"] for m in got], a.tolerance,
                              unmatched=a.pairs - len(got))
        else:
            for letter in order:  # alternate, so drift on the host hits both sides alike
                n = len(by_letter[letter]) + 1
                run = run_letter(letter, model, a, crop, extra_env, f"{n}")
                if letter == "H":
                    runs.append(run)
                by_letter[letter].append(run["images_per_s"])
                print(f"fidelity: {model} {LETTERS[letter]} run {n}: {run['images_per_s']} images/s",
                      flush=True)
            row["order"] = order
            summarise(row, by_letter, a.tolerance)
        st = runs[-1]["stats"] if runs else {}
        pi = st.get("per_iter") or {}
        row["per_iter_images_per_s"] = pi.get("images_per_s")
        row["per_iter_cv"] = pi.get("cv")
        row["data_wait_share"] = pi.get("data_wait_share")
        row["peak_mb"] = (st.get("memory") or {}).get("peak_mb_per_rank")
        row["tflops"] = (st.get("flops") or {}).get("tflops_achieved")
        rows.append(row)
        print("fidelity: " + json.dumps(row), flush=True)
        write_rows(rows, a.out)   # after every model: a run cut off keeps what it finished
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
