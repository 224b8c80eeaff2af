"""A matrix of cases, run one after another through run_benchmark.sh (what run_PyTorch.sh runs).

    python -m segbench.suite [--cases FILE | --models A,B --modes sp,mp --bs 2 --fp fp32]
                             [--iters N] [--workers N] [--profile auto|gpu|cpu] [--dry-run] [--resume]

Default: the seed's six cases (3 models x sp/mp, fp32, bs 2, 500 iterations, 5 workers). With no GPU
the CPU profile applies (small crops, few iterations, mp = 2 CPU processes), labelled as such.
A case file has one case per line in run_benchmark.sh's argument order; `#` starts a comment.
One failed case never stops the rest; the exit status is 0 only if every case passed. An interrupted
case (run_benchmark.sh's exit 130), or SIGINT/SIGTERM/SIGHUP to the suite, stops it: the table shows
what ran, and it exits 130. A case the analysis flagged (signs of a busy or noisy host in its
<case>_stats.json) is marked FLAGGED on its line and in the table; passed/failed are unchanged.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from segbench import configs, launch

REPO = Path(__file__).resolve().parent.parent
RUN_BENCHMARK = REPO / "run_benchmark.sh"  # what each case runs (a test points it at a stand-in)
INTERRUPTED = 130  # run_benchmark.sh's exit status for a case ended by SIGINT/SIGTERM/SIGHUP
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HOST_CHECK_S = 3.0   # seconds of segbench doctor's host probe before the cases
SEED_MODELS = ["fastscnn", "ocrnet_hrnetw48", "segformer_b0"]
# --models all: every built-in model; --models zoo: mmseg's Cityscapes/ADE20K configs, one per
# network and crop (segbench.configs.zoo). Both run sp only (the suite's other settings apply).
MODEL_SETS = {"all": lambda: list(configs.MODELS), "zoo": configs.zoo}
# The CPU profile: a smoke run that shows the harness end to end on a 2-core machine in minutes.
# Its figures describe that CPU, nothing else.
CPU_PROFILE = {
    "iters": 12, "workers": 1, "log_interval": 2, "mp_procs": 2,
    "crop": {"fastscnn": "128x256", "ocrnet_hrnetw48": "64x128", "segformer_b0": "128x256"},
    "other_crop": "64x128",   # every other model's
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


def flags(log_dir: Path, name: str) -> list[str]:
    """The warnings of a case the analysis flagged (signs of a busy or noisy host), from its
    sidecar; [] when not flagged or without a readable sidecar. Older sidecars have no
    ``flagged``: any warning flags them."""
    try:
        d = json.loads((log_dir / f"{name}_stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(d, dict):
        return []
    warnings = [str(w) for w in d["warnings"] if w] if isinstance(d.get("warnings"), list) else []
    flagged = d["flagged"] if isinstance(d.get("flagged"), bool) else bool(warnings)
    return (warnings or ["flagged (the sidecar lists no warning)"]) if flagged else []


class _Stop:
    """SIGINT, SIGTERM or SIGHUP while the suite runs: no further case starts. A terminal's
    Ctrl-C reaches the running case too (same process group); a SIGTERM or SIGHUP sent to the
    suite is passed on to it as SIGTERM. run_benchmark.sh then ends the case and exits 130."""

    def __init__(self):
        self.signal: int | None = None
        self.child: subprocess.Popen | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._on) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _on(self, signum, _frame):
        self.signal = signum
        self._pass_on()

    def _pass_on(self):
        if self.child is not None and self.signal not in (None, signal.SIGINT):
            self.child.send_signal(signal.SIGTERM)  # a no-op once the case has ended

    def run(self, argv: list[str], env: dict) -> tuple[int, str]:
        """One case: (exit status, stderr); stdout is discarded like subprocess.run's PIPE."""
        with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as self.child:
            self._pass_on()  # a signal that came as it started
            _, err = self.child.communicate()
        rc, self.child = self.child.returncode, None
        return rc, err


def host_check(log_dir: Path, seconds: float = HOST_CHECK_S) -> dict:
    """segbench doctor's host probe before the cases: its one-line verdict printed, the probe and
    the verdict stored with the results (``<log_dir>/suite_host.json``)."""
    from segbench import doctor
    host = doctor.host_steadiness(seconds)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host,
              "verdict": doctor.verdict(host)}
    print(f"run_PyTorch.sh: host: {record['verdict']}", flush=True)
    (log_dir / "suite_host.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def _cpu_crop(model: str) -> str:
    return CPU_PROFILE["crop"].get(model, CPU_PROFILE["other_crop"])


def _case_env(c: SuiteCase, env: dict, profile: str) -> dict:
    case_env = dict(env)
    if profile == "cpu" and not env.get("CROP"):
        case_env["CROP"] = _cpu_crop(c.model)
    return case_env


def _reason(rc: int, stderr: str) -> str | None:
    if rc == 0:
        return None
    if rc == INTERRUPTED:
        return "interrupted"
    err = [ln for ln in stderr.splitlines() if "error" in ln or "failed" in ln]
    return (err[0] if err else f"exit {rc}").split(": ", 1)[-1]


def _flag_text(warnings: list[str]) -> str:
    more = f" (+{len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return f"  FLAGGED: {warnings[0]}{more}" if warnings else ""


def _run_case(stop: _Stop, c: SuiteCase, case_env: dict, log_dir: Path, name: str) -> dict:
    """Run one case through run_benchmark.sh; its row (status passed, failed or interrupted)."""
    t0 = time.monotonic()
    rc, stderr = stop.run(["bash", str(RUN_BENCHMARK), *c.argv], case_env)
    result = 0.0
    try:
        result = json.loads((log_dir / f"{name}_speed").read_text(encoding="utf-8"))["FINAL_RESULT"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    reason = _reason(rc, stderr)
    status = ("passed" if reason is None else
              "interrupted" if reason == "interrupted" or stop.signal is not None else "failed")
    return {"case": name, "status": status, "images_per_s": result, "reason": reason,
            "seconds": round(time.monotonic() - t0, 1), "flags": flags(log_dir, name)}


def run(cases: list[SuiteCase], profile: str, log_dir: Path, resume: bool) -> tuple[list[dict], bool]:
    """Run cases in order; returns (rows of what ran, whether the suite was interrupted: a case
    exited 130 or the suite got SIGINT/SIGTERM/SIGHUP; the cases after it did not run)."""
    env = dict(os.environ, TRAIN_LOG_DIR=str(log_dir))
    if profile == "cpu":
        env.update(DEVICE="cpu", LOG_INTERVAL=str(CPU_PROFILE["log_interval"]),
                   MP_PROCS=str(CPU_PROFILE["mp_procs"]))
        ngpu_mp = CPU_PROFILE["mp_procs"]
    else:
        import torch
        ngpu_mp = torch.cuda.device_count()
    rows, done_times, t_suite = [], [], time.monotonic()
    with _Stop() as stop:
        for i, c in enumerate(cases, 1):
            if stop.signal is not None:
                break
            case_env = _case_env(c, env, profile)
            # The name launch will give the case (its files are found by it): launch's own
            # Case.name, from the environment the case runs with.
            planned = launch.parse_case(c.argv, case_env)
            planned.nproc = 1 if c.run_mode == "sp" else ngpu_mp
            name = planned.name
            speed = log_dir / f"{name}_speed"
            head = f"[{i}/{len(cases)}] {name}"
            if resume and _speed_ok(speed):
                d = json.loads(speed.read_text(encoding="utf-8"))
                rows.append({"case": name, "status": "skipped (resume)",
                             "images_per_s": d["FINAL_RESULT"], "flags": flags(log_dir, name)})
                print(f"{head}: kept from an earlier run: {d['FINAL_RESULT']} images/s"
                      f"{_flag_text(rows[-1]['flags'])}", flush=True)
                continue
            row = _run_case(stop, c, case_env, log_dir, name)
            rows.append(row)
            done_times.append(row["seconds"])
            left = len(cases) - i
            eta = (f", ETA {_fmt_s(left * sum(done_times) / len(done_times))}"
                   if left and row["status"] != "interrupted" else "")
            said = {"passed": f"{row['images_per_s']} images/s", "interrupted": "INTERRUPTED"}.get(
                row["status"], f"FAILED: {row['reason']}")
            print(f"{head}: {said}{_flag_text(row['flags'])} ({_fmt_s(row['seconds'])}, elapsed "
                  f"{_fmt_s(time.monotonic() - t_suite)}{eta})", flush=True)
            if row["status"] == "interrupted":
                break
    return rows, stop.signal is not None or any(r["status"] == "interrupted" for r in rows)


def table(rows: list[dict], profile: str, not_run: int = 0) -> str:
    """The final table: each case's figure and status, FLAGGED where the analysis saw signs of a
    busy or noisy host, and what an interruption left unrun."""
    title = ("segbench results: CPU PROFILE (no GPU; small crops, few iterations; the figures "
             "describe this CPU, not a GPU)" if profile == "cpu" else "segbench results (GPU)")
    w = max([len(r["case"]) for r in rows] + [4])
    lines = [title, f"{'case':<{w}}  {'images/s':>10}  status", f"{'-' * w}  {'-' * 10}  ------"]
    for r in rows:
        reason = r.get("reason") if r["status"] != "interrupted" else None
        status = r["status"] + (f": {reason}" if reason else "") + _flag_text(r.get("flags") or [])
        lines.append(f"{r['case']:<{w}}  {r['images_per_s']:>10}  {status}")
    flagged = sum(1 for r in rows if r.get("flags"))
    if flagged:
        lines.append(f"{flagged} of {len(rows)} case(s) FLAGGED: the analysis saw signs of a busy or "
                     "noisy host; their figures may not describe the hardware (warnings in "
                     "<case>_stats.json)")
    if not_run or any(r["status"] == "interrupted" for r in rows):
        lines.append(f"INTERRUPTED: the suite stopped; {not_run} case(s) not run")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="run_PyTorch.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=Path, help="case file (one case per line)")
    p.add_argument("--models", default=",".join(SEED_MODELS),
                   help="comma list of models (built-in names, mmseg::<dir>/<file>.py, config files), "
                        "or all (every built-in model) or zoo (mmseg's Cityscapes/ADE20K configs, one "
                        "per network and crop); all and zoo run sp only")
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
            models, modes = _csv(a.models), _csv(a.modes)
            if a.models in MODEL_SETS:
                models, modes = MODEL_SETS[a.models](), ["sp"]
            cases = matrix(models, modes, _csv(a.bs), _csv(a.fp), iters, workers, venv)
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
            crop = (f"  CROP={os.environ.get('CROP') or _cpu_crop(c.model)}"
                    f"  LOG_INTERVAL={CPU_PROFILE['log_interval']}" if cpu else "")
            print(f"  [{i}/{len(cases)}] bash run_benchmark.sh {' '.join(c.argv)}{crop}")
        return 0
    a.log_dir.mkdir(parents=True, exist_ok=True)
    host_check(a.log_dir.resolve())
    rows, interrupted = run(cases, profile, a.log_dir.resolve(), a.resume)
    print()
    print(table(rows, profile, len(cases) - len(rows)))
    if interrupted:
        return INTERRUPTED
    return 0 if all(r["status"] != "failed" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
