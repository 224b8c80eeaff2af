"""A matrix of cases, run one after another through run_benchmark.sh (what run_PyTorch.sh runs).

    python -m segbench.suite [--cases FILE | --models A,B --modes sp,mp --bs 2[,4...][,max] --fp fp32]
                             [--bs-cap N] [--max-within F] [--iters N] [--workers N]
                             [--profile auto|gpu|cpu] [--dry-run] [--resume]

Default: the seed's six cases (3 models x sp/mp, fp32, bs 2, 500 iterations, 5 workers). With no GPU
the CPU profile applies (small crops, few iterations, mp = 2 CPU processes), labelled as such.
A case file has one case per line in run_benchmark.sh's argument order; `#` starts a comment.
One failed case never stops the rest; the exit status is 0 only if every case passed. An interrupted
case (run_benchmark.sh's exit 130), or SIGINT/SIGTERM/SIGHUP to the suite, stops it: the table shows
what ran, and it exits 130. A case the analysis flagged (signs of a busy or noisy host in its
<case>_stats.json) is marked FLAGGED on its line and in the table; passed/failed are unchanged.
Cases that differ only in the batch form a group; ``--bs ...,max`` searches each group for the
largest batch per GPU that fits (segbench.sweep: grow, then bisect). A case that ran out of memory
is status ``oom`` with its failure kind (segbench.failure); one found while searching for a max is
expected, one at a size listed without max fails the suite, and so does a search that found no size
that fits or stopped on a failure (on a GPU running out of host memory is one: it is no evidence of
the max batch per GPU). A sweep's sizes tried and max (only once bracketed; else a lower bound) go to
``<log_dir>/suite_sweep.json`` (docs/FORMATS.md), merged by group with what an earlier sweep put there.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from segbench import configs, failure, launch, results, sweep

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


@dataclass
class Group:
    """Cases that differ only in the batch size: ``case`` holds the settings (its bs the first
    listed size), ``plan`` the sizes to run (segbench.sweep)."""
    case: SuiteCase
    plan: sweep.Plan

    def at(self, bs: int) -> SuiteCase:
        return dataclasses.replace(self.case, bs=bs)

    @property
    def label(self) -> str:
        c = self.case
        return f"{c.model} {c.run_mode} {c.fp_item}"


def parse_case_file(path: Path, environ: dict) -> list[Group]:
    """Every invalid line is reported (by number) before anything runs; each case is a group of
    its one batch size."""
    groups, errors = [], []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            c = launch.parse_case(line.split(), environ)
        except launch.BadInput as exc:
            errors.append(f"{path}:{n}: {exc}")
            continue
        groups.append(Group(SuiteCase(c.model, c.run_mode, c.fp_item, c.batch_size, c.max_iter,
                                      c.num_workers, n), sweep.Plan((c.batch_size,))))
    if errors:
        raise launch.BadInput("invalid case file:\n  " + "\n  ".join(errors))
    return groups


def matrix(models, modes, plan: sweep.Plan, fps, iters, workers, environ: dict) -> list[Group]:
    groups = [Group(SuiteCase(m, mode, fp, plan.listed[0], iters, workers), plan)
              for m in models for mode in modes for fp in fps]
    for g in groups:  # same validation as run_benchmark.sh, before anything runs
        for bs in plan.listed + ((plan.cap,) if plan.to_max else ()):
            launch.parse_case(g.at(bs).argv, environ)
    return groups


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


def _sidecar(log_dir: Path, name: str) -> dict:
    """The case's ``<case>_stats.json``; {} where missing or unreadable."""
    return results.read_sidecar(str(log_dir / f"{name}_speed"), None)


def flags(log_dir: Path, name: str) -> list[str]:
    """The warnings of a case the analysis flagged (signs of a busy or noisy host), from its
    sidecar; [] when not flagged or without a readable sidecar. Older sidecars have no
    ``flagged``: any warning flags them."""
    d = _sidecar(log_dir, name)
    if not d:
        return []
    warnings = [str(w) for w in d["warnings"] if w] if isinstance(d.get("warnings"), list) else []
    flagged = d["flagged"] if isinstance(d.get("flagged"), bool) else bool(warnings)
    return (warnings or ["flagged (the sidecar lists no warning)"]) if flagged else []


def figures(log_dir: Path, name: str) -> dict:
    """From the sidecar: ``peak_mb`` (the largest rank's peak memory, MB per GPU), ``images_per_j``
    (the energy block's), ``failure_kind``, ``reason`` and ``device``; None where it has none."""
    d = _sidecar(log_dir, name)
    peak = results.peak_mb(d)
    return {"peak_mb": None if peak is None else round(peak),
            "images_per_j": results.energy_figures(d)["images_per_j"],
            "failure_kind": d.get("failure_kind"), "reason": d.get("reason"), "device": d.get("device")}


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
    """Run one case through run_benchmark.sh; its row (status passed, failed, oom -- the sidecar's
    failure_kind gpu_oom or host_oom -- or interrupted)."""
    t0 = time.monotonic()
    rc, stderr = stop.run(["bash", str(RUN_BENCHMARK), *c.argv], case_env)
    result = 0.0
    try:
        result = json.loads((log_dir / f"{name}_speed").read_text(encoding="utf-8"))["FINAL_RESULT"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    reason, fig = _reason(rc, stderr), figures(log_dir, name)
    status = ("passed" if reason is None else
              "interrupted" if reason == "interrupted" or stop.signal is not None else
              "oom" if fig["failure_kind"] in failure.OOM_KINDS else "failed")
    if status in ("oom", "failed") and fig["reason"]:
        reason = fig["reason"]   # launch's own words, from the sidecar
    return {"case": name, "bs": c.bs, "status": status, "images_per_s": result, "reason": reason,
            **_keep(fig), "seconds": round(time.monotonic() - t0, 1), "flags": flags(log_dir, name)}


def _keep(fig: dict) -> dict:
    return {k: fig[k] for k in ("peak_mb", "images_per_j", "failure_kind", "device")}


def _kept(log_dir: Path, name: str, bs: int) -> dict | None:
    """--resume: the row of a case an earlier run settled -- it passed, or ran out of GPU memory
    (its sidecar says gpu_oom; a host OOM may have been the host's state, it runs again)."""
    speed, fig = log_dir / f"{name}_speed", figures(log_dir, name)
    if _speed_ok(speed):
        d = json.loads(speed.read_text(encoding="utf-8"))
        return {"case": name, "bs": bs, "status": "skipped (resume)", "images_per_s": d["FINAL_RESULT"],
                **_keep(fig), "flags": flags(log_dir, name)}
    if fig["failure_kind"] == failure.GPU_OOM and speed.is_file():
        return {"case": name, "bs": bs, "status": "oom (resume)", "images_per_s": 0,
                "reason": fig["reason"], **_keep(fig), "flags": []}
    return None


def _said(row: dict) -> str:
    if row["status"] == "skipped (resume)":
        return f"kept from an earlier run: {row['images_per_s']} images/s"
    if row["status"] == "oom (resume)":
        return f"kept from an earlier run: OOM ({row['failure_kind']}): {row['reason']}"
    return {"passed": f"{row['images_per_s']} images/s", "interrupted": "INTERRUPTED",
            "oom": f"OOM ({row['failure_kind']}): {row['reason']}"}.get(row["status"],
                                                                       f"FAILED: {row['reason']}")


def sweep_status(row: dict) -> str:
    """A row's status as segbench.sweep reads it: passed, its OOM's kind, or the failure."""
    st = {"skipped (resume)": sweep.PASSED, "oom (resume)": "oom"}.get(row["status"], row["status"])
    return (row.get("failure_kind") or st) if st == "oom" else st


def _tried(rows: list[dict]) -> list[tuple[int, str]]:
    return [(r["bs"], sweep_status(r)) for r in rows]


def _bounded(plan: sweep.Plan, rows: list[dict], profile: str) -> sweep.Plan:
    """The plan with the memory that bounds its batch: that of the device its cases ran on (the
    sidecar's ``device``), else the profile's (cpu: the host's)."""
    device = next((r["device"] for r in rows if r.get("device") in sweep.BOUNDS),
                  "cpu" if profile == "cpu" else "cuda")
    return dataclasses.replace(plan, bounds=sweep.BOUNDS[device])


def _sweep_record(g: Group, key: str, profile: str, rows: list[dict],
                  stopped: tuple[str, str] | None) -> dict:
    """suite_sweep.json's entry of a group (docs/FORMATS.md)."""
    c, tried, plan = g.case, _tried(rows), _bounded(g.plan, rows, profile)
    return {"group": key, "profile": profile, "model": c.model, "run_mode": c.run_mode,
            "fp_item": c.fp_item, "max_iter": c.max_iter, "num_workers": c.workers,
            "listed": list(plan.listed), "to_max": plan.to_max, "cap": plan.cap, "max_within": plan.within,
            "tried": [{k: r.get(k) for k in ("bs", "case", "status", "failure_kind", "images_per_s",
                                             "peak_mb", "images_per_j", "reason")} for r in rows],
            "max_bs": sweep.found_max(plan, tried), "max_at_least": sweep.largest_fit(plan, tried),
            "stopped": stopped[0] if stopped else None, "why": stopped[1] if stopped else None}


def _group_key(record: dict) -> str:
    return json.dumps([record.get(k) for k in ("group", "max_iter", "num_workers")])


class _Sweeps:
    """``<log_dir>/suite_sweep.json``: the groups found there, each replaced by a later sweep of
    the same group (its case name but the batch, MAX_ITER, NUM_WORKERS); written after every case."""

    def __init__(self, log_dir: Path, profile: str):
        self.path, self.profile = log_dir / "suite_sweep.json", profile
        try:
            old = list(json.loads(self.path.read_text(encoding="utf-8")).get("groups"))
        except (OSError, ValueError, AttributeError, TypeError):
            old = []
        self.groups = {_group_key(g): g for g in old if isinstance(g, dict)}

    def put(self, record: dict) -> None:
        self.groups[_group_key(record)] = record   # in place where the group was already
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profile": self.profile,
               "groups": list(self.groups.values())}
        self.path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _suite_env(profile: str, log_dir: Path) -> tuple[dict, int]:
    """The environment every case starts from, and mp's process count."""
    env = dict(os.environ, TRAIN_LOG_DIR=str(log_dir))
    if profile == "cpu":
        env.update(DEVICE="cpu", LOG_INTERVAL=str(CPU_PROFILE["log_interval"]),
                   MP_PROCS=str(CPU_PROFILE["mp_procs"]))
        return env, CPU_PROFILE["mp_procs"]
    import torch
    return env, torch.cuda.device_count()


class _Progress:
    """The ``[i/N] case: ...`` lines: N the listed cases (``+`` when max searches add more)."""

    def __init__(self, groups: list[Group]):
        self.total = listed_cases(groups)
        self.more = "+" if any(g.plan.to_max for g in groups) else ""
        self.i, self.times, self.t0 = 0, [], time.monotonic()

    def head(self, name: str) -> str:
        self.i += 1
        return f"[{self.i}/{self.total}{self.more}] {name}"

    def tail(self, row: dict) -> str:
        self.times.append(row["seconds"])
        left = max(self.total - self.i, 0)
        eta = (f", ETA {_fmt_s(left * sum(self.times) / len(self.times))}{self.more}"
               if left and row["status"] != "interrupted" else "")
        return f" ({_fmt_s(row['seconds'])}, elapsed {_fmt_s(time.monotonic() - self.t0)}{eta})"


@dataclass
class _Context:
    """What every case of a run shares."""
    stop: _Stop
    env: dict
    ngpu_mp: int
    profile: str
    log_dir: Path
    resume: bool
    progress: _Progress

    def name(self, c: SuiteCase) -> str:
        """The name launch will give the case (its files are found by it), in the case's environment."""
        planned = launch.parse_case(c.argv, _case_env(c, self.env, self.profile))
        planned.nproc = 1 if c.run_mode == "sp" else self.ngpu_mp
        return planned.name


def listed_cases(groups: list[Group]) -> int:
    """How many cases the groups list (a max search may add more)."""
    return sum(len(g.plan.listed) for g in groups)


def is_sweep(g: Group) -> bool:
    return g.plan.to_max or len(g.plan.listed) > 1


def run(groups: list[Group], profile: str, log_dir: Path,
        resume: bool) -> tuple[list[dict], list[dict], bool]:
    """Run each group's sizes in order (segbench.sweep decides the next); returns (rows of what
    ran, the sweep groups' records, whether the suite was interrupted: a case exited 130 or the
    suite got SIGINT/SIGTERM/SIGHUP; nothing after it ran). A run with a sweep group merges its
    groups into ``<log_dir>/suite_sweep.json``."""
    env, ngpu_mp = _suite_env(profile, log_dir)
    rows, records, sweeps = [], [], _Sweeps(log_dir, profile)
    with _Stop() as stop:
        ctx = _Context(stop, env, ngpu_mp, profile, log_dir, resume, _Progress(groups))
        for gi, g in enumerate(groups):
            if stop.signal is not None:
                break
            mine, record = _run_group(ctx, g, gi, sweeps if is_sweep(g) else None)
            rows += mine
            records += [record] if is_sweep(g) else []
            if record["stopped"] == sweep.INTERRUPTED:
                break
    return rows, records, stop.signal is not None or any(r["status"] == "interrupted" for r in rows)


def _run_group(ctx: _Context, g: Group, gi: int, sweeps: _Sweeps | None) -> tuple[list[dict], dict]:
    """One group's sizes, each recorded (``sweeps``: in suite_sweep.json) as it ends."""
    key = ctx.name(g.case).replace(f"_{g.case.run_mode}_bs{g.case.bs}_", f"_{g.case.run_mode}_bs*_", 1)
    mine, stopped = [], None
    while stopped is None:
        bs, stopped = sweep.next_size(_bounded(g.plan, mine, ctx.profile), _tried(mine))
        if bs is None:
            break
        row = _one(ctx, g.at(bs))
        row.update(group=gi, probing=g.plan.to_max)
        mine.append(row)
        if row["status"] == "interrupted" or ctx.stop.signal is not None:
            stopped = (sweep.INTERRUPTED, "the suite was interrupted")
        if sweeps and stopped is None:
            sweeps.put(_sweep_record(g, key, ctx.profile, mine, None))
    record = _sweep_record(g, key, ctx.profile, mine, stopped)
    if sweeps:
        sweeps.put(record)
    _mark_max(g, mine, record)
    return mine, record


def _max_note(record: dict) -> str:
    """How the table marks a max search's largest fit: ``(max)`` only once bracketed."""
    n, stopped = record["max_at_least"], record["stopped"]
    return ("(max)" if record["max_bs"] is not None else
            f"(max >= {n}: the cap)" if stopped == sweep.CAP else
            f"(largest that fit; the search stopped: {stopped})")


def _mark_max(g: Group, mine: list[dict], record: dict) -> None:
    if not g.plan.to_max:
        return
    for r in mine:
        if r["bs"] == record["max_at_least"] and sweep_status(r) == sweep.PASSED:
            r["max_note"] = _max_note(record)
    n = record["max_bs"] or (f"none; at least {record['max_at_least']}" if record["max_at_least"] else "none")
    print(f"  max batch per GPU, {g.label}: {n} ({record['why']})", flush=True)


def _one(ctx: _Context, c: SuiteCase) -> dict:
    """One case: kept from an earlier run (--resume) or run; printed."""
    name = ctx.name(c)
    head = ctx.progress.head(name)
    row = _kept(ctx.log_dir, name, c.bs) if ctx.resume else None
    if row is not None:
        print(f"{head}: {_said(row)}{_flag_text(row['flags'])}", flush=True)
        return row
    row = _run_case(ctx.stop, c, _case_env(c, ctx.env, ctx.profile), ctx.log_dir, name)
    print(f"{head}: {_said(row)}{_flag_text(row['flags'])}{ctx.progress.tail(row)}", flush=True)
    return row


def _cell(x) -> str:
    return "\u2014" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


def table(rows: list[dict], profile: str, not_run: int = 0, sweeps: list[dict] = ()) -> str:
    """The final table: each case's figure, peak memory per GPU (MB), images per joule and status
    (``(max)`` on a max search's answer, what is known on its largest fit where it found none), a
    line for each search where no size fits, FLAGGED where the analysis saw signs of a busy or
    noisy host, and what an interruption left unrun."""
    title = ("segbench results: CPU PROFILE (no GPU; small crops, few iterations; the figures "
             "describe this CPU, not a GPU)" if profile == "cpu" else "segbench results (GPU)")
    w = max([len(r["case"]) for r in rows] + [4])
    lines = [title, f"{'case':<{w}}  {'images/s':>10}  {'peak MB':>8}  {'img/J':>7}  status",
             f"{'-' * w}  {'-' * 10}  {'-' * 8}  {'-' * 7}  ------"]
    for r in rows:
        reason = r.get("reason") if r["status"] != "interrupted" else None
        status = r["status"].replace("oom", f"oom ({r.get('failure_kind')})", 1)
        status = (status + (f" {r['max_note']}" if r.get("max_note") else "")
                  + (f": {reason}" if reason else "") + _flag_text(r.get("flags") or []))
        lines.append(f"{r['case']:<{w}}  {r['images_per_s']:>10}  {_cell(r.get('peak_mb')):>8}  "
                     f"{_cell(r.get('images_per_j')):>7}  {status}")
    lines += [f"NO SIZE FITS: {s['model']} {s['run_mode']} {s['fp_item']}: {s['why']}" for s in sweeps
              if s["stopped"] == sweep.NONE_FIT]
    flagged = sum(1 for r in rows if r.get("flags"))
    if flagged:
        lines.append(f"{flagged} of {len(rows)} case(s) FLAGGED: the analysis saw signs of a busy or "
                     "noisy host; their figures may not describe the hardware (warnings in "
                     "<case>_stats.json)")
    if not_run or any(r["status"] == "interrupted" for r in rows):
        lines.append(f"INTERRUPTED: the suite stopped; {not_run} case(s) not run")
    return "\n".join(lines)


def failed(groups: list[Group], rows: list[dict], sweeps: list[dict] = ()) -> bool:
    """A case failed, or ran out of memory at a size asked for (no max search in its group), or a
    max search found no size that fits or stopped on a failure (on a GPU a host OOM): an OOM of the
    memory that bounds the batch found while searching for a max is expected."""
    return (any(s["stopped"] in (sweep.NONE_FIT, sweep.FAILED) for s in sweeps)
            or any(r["status"] == "failed" or (r["status"].startswith("oom")
                                               and not groups[r["group"]].plan.to_max) for r in rows))


def _dry_run(groups: list[Group], cpu: bool) -> None:
    n, i = listed_cases(groups), 0
    for g in groups:
        for bs in g.plan.listed:
            i += 1
            c = g.at(bs)
            crop = (f"  CROP={os.environ.get('CROP') or _cpu_crop(c.model)}"
                    f"  LOG_INTERVAL={CPU_PROFILE['log_interval']}" if cpu else "")
            print(f"  [{i}/{n}] bash run_benchmark.sh {' '.join(c.argv)}{crop}")
        if g.plan.to_max:
            print(f"        {g.plan.search()}")


SWEEP_FLAGS = ("bs", "bs_cap", "max_within")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_PyTorch.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=Path, help="case file (one case per line)")
    p.add_argument("--models", default=",".join(SEED_MODELS),
                   help="comma list of models (built-in names, mmseg::<dir>/<file>.py, config files), "
                        "or all (every built-in model) or zoo (mmseg's Cityscapes/ADE20K configs, one "
                        "per network and crop); all and zoo run sp only")
    p.add_argument("--modes", default="sp,mp")
    # the sweep's flags default to None (their defaults below): given with --cases, they are an error
    p.add_argument("--bs", help="comma list of batch sizes per GPU, optionally ending in max: then "
                   "grow/bisect to the largest that fits in memory (e.g. 2,4,8,max; default 2)")
    p.add_argument("--bs-cap", type=int,
                   help=f"with max: the largest batch tried (default {sweep.DEFAULT_CAP})")
    p.add_argument("--max-within", type=float,
                   help="with max: stop bisecting when the gap between the last fit and the first "
                        f"OOM is at most this share of the fit, or 1 (default {sweep.DEFAULT_WITHIN}; "
                        "0: exact)")
    p.add_argument("--fp", default="fp32")
    p.add_argument("--iters", type=int, help="MAX_ITER (default 500; CPU profile 12)")
    p.add_argument("--workers", type=int, help="NUM_WORKERS (default 5; CPU profile 1)")
    p.add_argument("--profile", choices=("auto", "gpu", "cpu"), default="auto")
    p.add_argument("--log-dir", type=Path, default=Path(os.environ.get("TRAIN_LOG_DIR") or "logs"))
    p.add_argument("--dry-run", action="store_true", help="print the cases and stop")
    p.add_argument("--resume", action="store_true",
                   help="skip cases whose speed file passed (and, in a max search, those whose sidecar "
                        "says gpu_oom)")
    return p


def _plan(a: argparse.Namespace) -> sweep.Plan:
    try:
        listed, to_max = sweep.parse_bs("2" if a.bs is None else a.bs)
        return sweep.Plan(listed, to_max, sweep.DEFAULT_CAP if a.bs_cap is None else a.bs_cap,
                          sweep.DEFAULT_WITHIN if a.max_within is None else a.max_within)
    except ValueError as exc:
        raise launch.BadInput(str(exc)) from None


def _groups(a: argparse.Namespace, cpu: bool) -> list[Group]:
    """The cases asked for (launch.BadInput: what is wrong, before anything runs)."""
    iters = a.iters or (CPU_PROFILE["iters"] if cpu else 500)
    workers = a.workers or (CPU_PROFILE["workers"] if cpu else 5)
    venv = dict(os.environ, LOG_INTERVAL=str(CPU_PROFILE["log_interval"])) if cpu else dict(os.environ)
    if a.cases:
        given = [f"--{f.replace('_', '-')}" for f in SWEEP_FLAGS if getattr(a, f) is not None]
        if given:
            raise launch.BadInput(f"{', '.join(given)} with --cases: a case file gives each case's batch; "
                                  "drop them, or drop --cases")
        if not a.cases.is_file():
            raise launch.BadInput(f"case file {a.cases} does not exist")
        return parse_case_file(a.cases, venv)
    models, modes = _csv(a.models), _csv(a.modes)
    if a.models in MODEL_SETS:
        models, modes = MODEL_SETS[a.models](), ["sp"]
    return matrix(models, modes, _plan(a), _csv(a.fp), iters, workers, venv)


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    profile = a.profile
    if profile == "auto":
        profile = "gpu" if _has_gpu() else "cpu"
    cpu = profile == "cpu"
    try:
        groups = _groups(a, cpu)
    except launch.BadInput as exc:
        print(f"run_PyTorch.sh: error: {exc}", file=sys.stderr)
        return 2
    if not groups:
        print("run_PyTorch.sh: error: no cases to run", file=sys.stderr)
        return 2
    label = ("CPU PROFILE: no GPU here; small crops, few iterations, mp = "
             f"{CPU_PROFILE['mp_procs']} CPU processes (gloo, BN)" if cpu else "GPU")
    n, searches = listed_cases(groups), sum(g.plan.to_max for g in groups)
    more = f" then {searches} max search(es)" if searches else ""
    print(f"run_PyTorch.sh: {n} cases{more}, {label}; logs in {a.log_dir.resolve()}", flush=True)
    if a.dry_run:
        _dry_run(groups, cpu)
        return 0
    a.log_dir.mkdir(parents=True, exist_ok=True)
    host_check(a.log_dir.resolve())
    rows, sweeps, interrupted = run(groups, profile, a.log_dir.resolve(), a.resume)
    print()
    print(table(rows, profile, max(n - len(rows), 0) if interrupted else 0, sweeps))
    if interrupted:
        return INTERRUPTED
    return 1 if failed(groups, rows, sweeps) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
