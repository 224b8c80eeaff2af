"""A matrix of cases, run one after another through run_benchmark.sh (what run_PyTorch.sh runs).

    python -m segbench.suite [--cases FILE | --models A,B --modes sp,mp --bs 2 --fp fp32]
                             [--iters N] [--workers N] [--profile auto|gpu|cpu] [--dry-run] [--resume]

Default: the seed's six cases (3 models x sp/mp, fp32, bs 2, 500 iterations, 5 workers). With no GPU
the CPU profile applies (small crops, few iterations, mp = 2 CPU processes), labelled as such.
A case file has one case per line in run_benchmark.sh's argument order; `#` starts a comment.
One failed case never stops the rest; the exit status is 0 only if every case passed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from segbench import configs, launch

REPO = Path(__file__).resolve().parent.parent
SEED_MODELS = list(configs.MODELS)
# The CPU profile: a smoke run that shows the harness end to end on a 2-core machine in minutes.
# Its figures describe that CPU, nothing else.
CPU_PROFILE = {
    "iters": 12, "workers": 1, "log_interval": 2, "mp_procs": 2,
    "crop": {"fastscnn": "128x256", "ocrnet_hrnetw48": "64x128", "segformer_b0": "128x256"},
}


@dataclass
class SuiteCase:
    model: str
    run_mode: str
    fp_item: str
    bs: int
    max_iter: int
    workers: int
    line: int = 0

    @property
    def argv(self) -> list[str]:
        return [self.model, self.run_mode, self.fp_item, str(self.bs), str(self.max_iter),
                str(self.workers)]


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_case_file(path: Path, environ: dict) -> list[SuiteCase]:
    """Every invalid line is reported (by number) before anything runs."""
    cases, errors = [], []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            c = launch.parse_case(line.split(), environ)
        except launch.BadInput as exc:
            errors.append(f"{path}:{n}: {exc}")
            continue
        cases.append(SuiteCase(c.model, c.run_mode, c.fp_item, c.batch_size, c.max_iter,
                               c.num_workers, n))
    if errors:
        raise launch.BadInput("invalid case file:\n  " + "\n  ".join(errors))
    return cases


def matrix(models, modes, bss, fps, iters, workers, environ: dict) -> list[SuiteCase]:
    cases = [SuiteCase(m, mode, fp, int(bs), iters, workers)
             for m in models for mode in modes for fp in fps for bs in bss]
    for c in cases:  # same validation as run_benchmark.sh, before anything runs
        launch.parse_case(c.argv, environ)
    return cases


def _has_gpu() -> bool:
    import torch
    return torch.cuda.is_available()


def _speed_ok(path: Path) -> bool:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and d.get("JOB_FAIL_FLAG") == 0 and float(d.get("FINAL_RESULT", 0)) > 0


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def run(cases: list[SuiteCase], profile: str, log_dir: Path, resume: bool) -> list[dict]:
    env = dict(os.environ, TRAIN_LOG_DIR=str(log_dir))
    if profile == "cpu":
        env.update(DEVICE="cpu", LOG_INTERVAL=str(CPU_PROFILE["log_interval"]),
                   MP_PROCS=str(CPU_PROFILE["mp_procs"]))
        ngpu_mp = CPU_PROFILE["mp_procs"]
    else:
        import torch
        ngpu_mp = torch.cuda.device_count()
    rows, done_times, t_suite = [], [], time.monotonic()
    for i, c in enumerate(cases, 1):
        # The name launch will give the case (its files are found by it): launch's own Case.name.
        planned = launch.parse_case(c.argv, env)
        planned.nproc = 1 if c.run_mode == "sp" else ngpu_mp
        name = planned.name
        speed = log_dir / f"{name}_speed"
        head = f"[{i}/{len(cases)}] {name}"
        if resume and _speed_ok(speed):
            d = json.loads(speed.read_text(encoding="utf-8"))
            rows.append({"case": name, "status": "skipped (resume)", "images_per_s": d["FINAL_RESULT"]})
            print(f"{head}: kept from an earlier run: {d['FINAL_RESULT']} images/s", flush=True)
            continue
        case_env = dict(env)
        if profile == "cpu" and not env.get("CROP"):
            case_env["CROP"] = CPU_PROFILE["crop"][c.model]
        t0 = time.monotonic()
        proc = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), *c.argv], env=case_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        took = time.monotonic() - t0
        done_times.append(took)
        result, reason = 0.0, None
        try:
            d = json.loads(speed.read_text(encoding="utf-8"))
            result = d["FINAL_RESULT"]
        except (OSError, ValueError, KeyError):
            pass
        if proc.returncode != 0:
            err = [ln for ln in proc.stderr.splitlines() if "error" in ln or "failed" in ln]
            reason = (err[0] if err else f"exit {proc.returncode}").split(": ", 1)[-1]
        left = len(cases) - i
        eta = f", ETA {_fmt_s(left * sum(done_times) / len(done_times))}" if left else ""
        status = f"{result} images/s" if reason is None else f"FAILED: {reason}"
        print(f"{head}: {status} ({_fmt_s(took)}, elapsed {_fmt_s(time.monotonic() - t_suite)}{eta})",
              flush=True)
        rows.append({"case": name, "status": "passed" if reason is None else "failed",
                     "images_per_s": result, "reason": reason, "seconds": round(took, 1)})
    return rows


def table(rows: list[dict], profile: str) -> str:
    title = ("segbench results: CPU PROFILE (no GPU; small crops, few iterations; the figures "
             "describe this CPU, not a GPU)" if profile == "cpu" else "segbench results (GPU)")
    w = max([len(r["case"]) for r in rows] + [4])
    lines = [title, f"{'case':<{w}}  {'images/s':>10}  status", f"{'-' * w}  {'-' * 10}  ------"]
    for r in rows:
        status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
        lines.append(f"{r['case']:<{w}}  {r['images_per_s']:>10}  {status}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="run_PyTorch.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=Path, help="case file (one case per line)")
    p.add_argument("--models", default=",".join(SEED_MODELS))
    p.add_argument("--modes", default="sp,mp")
    p.add_argument("--bs", default="2")
    p.add_argument("--fp", default="fp32")
    p.add_argument("--iters", type=int, help="MAX_ITER (default 500; CPU profile 12)")
    p.add_argument("--workers", type=int, help="NUM_WORKERS (default 5; CPU profile 1)")
    p.add_argument("--profile", choices=("auto", "gpu", "cpu"), default="auto")
    p.add_argument("--log-dir", type=Path, default=Path(os.environ.get("TRAIN_LOG_DIR") or "logs"))
    p.add_argument("--dry-run", action="store_true", help="print the cases and stop")
    p.add_argument("--resume", action="store_true", help="skip cases whose speed file passed")
    a = p.parse_args(argv)
    profile = a.profile
    if profile == "auto":
        profile = "gpu" if _has_gpu() else "cpu"
    cpu = profile == "cpu"
    iters = a.iters or (CPU_PROFILE["iters"] if cpu else 500)
    workers = a.workers or (CPU_PROFILE["workers"] if cpu else 5)
    venv = dict(os.environ, LOG_INTERVAL=str(CPU_PROFILE["log_interval"])) if cpu else dict(os.environ)
    try:
        if a.cases:
            if not a.cases.is_file():
                raise launch.BadInput(f"case file {a.cases} does not exist")
            cases = parse_case_file(a.cases, venv)
        else:
            cases = matrix(_csv(a.models), _csv(a.modes), _csv(a.bs), _csv(a.fp), iters, workers,
                           venv)
    except launch.BadInput as exc:
        print(f"run_PyTorch.sh: error: {exc}", file=sys.stderr)
        return 2
    if not cases:
        print("run_PyTorch.sh: error: no cases to run", file=sys.stderr)
        return 2
    label = ("CPU PROFILE: no GPU here; small crops, few iterations, mp = "
             f"{CPU_PROFILE['mp_procs']} CPU processes (gloo, BN)" if cpu else "GPU")
    print(f"run_PyTorch.sh: {len(cases)} cases, {label}; logs in {a.log_dir.resolve()}", flush=True)
    if a.dry_run:
        for i, c in enumerate(cases, 1):
            crop = (f"  CROP={os.environ.get('CROP') or CPU_PROFILE['crop'][c.model]}"
                    f"  LOG_INTERVAL={CPU_PROFILE['log_interval']}" if cpu else "")
            print(f"  [{i}/{len(cases)}] bash run_benchmark.sh {' '.join(c.argv)}{crop}")
        return 0
    a.log_dir.mkdir(parents=True, exist_ok=True)
    rows = run(cases, profile, a.log_dir.resolve(), a.resume)
    print()
    print(table(rows, profile))
    return 0 if all(r["status"] != "failed" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
