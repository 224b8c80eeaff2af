"""Run a plan of benchmark steps on a GPU host inside a fixed time budget, resumably.

A device lease is short (minutes), so the GPU work of a session is written down once as a plan --
one step per line, ``name | timeout_s | bash command`` (``#`` starts a comment) -- in priority order,
and run over one or more calls:

    python benchmarks/gpu_session.py --plan benchmarks/plans/PLAN.txt --out OUT \\
        [--wheelhouse .whl] [--budget 560] [--skip a,b] [--state DIR]

- Set-up first (``PrepareEnv.sh --wheelhouse``, or ``--system`` if a venv cannot be made) unless
  the checkout is already set up.
- A step starts only if its whole timeout still fits in what is left of the budget; one that does
  not is left for a later call, and a shorter step further down may run instead. A later call
  resumes: steps recorded as done in ``--state`` (default ``.gpu_session/`` in the
  checkout, kept on a warm host) or named in ``--skip`` are not run again.
- Each step runs in its own process group with ``STEP_DIR`` (its output folder),
  ``TRAIN_LOG_DIR`` (= STEP_DIR) and ``PY`` (the set-up's python) set; at its timeout the group
  gets SIGTERM (the harness then writes its files) and, when any of it is still running 20 s later,
  SIGKILL; the step ends when the whole group has, not just its shell. Only that group is signalled.
- After every step, everything so far is packed into ``OUT/results.tgz`` (files over 4 MB left
  out) and ``OUT/session.json`` (per step: command, exit status, start, wall seconds), so what ran
  comes back even if the call itself is cut off.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PY = REPO / ".venv" / "bin" / "python"
MAX_PACKED_BYTES = 4 * 1024 * 1024
GRACE_S = 20  # after a step's timeout: SIGTERM, this long for its processes to finish, then SIGKILL


def parse_plan(text: str) -> list[dict]:
    steps, seen = [], set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|", 2)]
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2]:
            raise ValueError(f"plan line {n}: expected 'name | timeout_s | command', got {raw!r}")
        if parts[0] in seen:
            raise ValueError(f"plan line {n}: step {parts[0]!r} named twice")
        seen.add(parts[0])
        steps.append({"name": parts[0], "timeout": int(parts[1]), "command": parts[2]})
    return steps


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group(pgid: int, deadline: float) -> None:
    """Wait until no process of the group is left, or until ``deadline``; then SIGKILL the rest."""
    while _group_alive(pgid) and time.time() < deadline:
        time.sleep(0.2)
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_step(step: dict, step_dir: Path, env: dict) -> dict:
    step_dir.mkdir(parents=True, exist_ok=True)
    env = dict(env, STEP_DIR=str(step_dir), TRAIN_LOG_DIR=str(step_dir), PYTHONUNBUFFERED="1")
    start = time.time()
    with open(step_dir / "console.log", "w") as log:
        proc = subprocess.Popen(["bash", "-c", step["command"]], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=step["timeout"])
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                rc = None
            # The step's shell can die of the SIGTERM at once while the harness below it is still
            # writing its failing speed file: wait for the whole group, not just its leader.
            _wait_group(proc.pid, start + step["timeout"] + GRACE_S)
            if rc is None:
                rc = proc.wait()
    return {"name": step["name"], "command": step["command"], "rc": rc, "timed_out": timed_out,
            "start": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)),
            "wall_s": round(time.time() - start, 1)}


def pack(state: Path, out: Path) -> None:
    tmp = out / "results.tgz.part"
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(state.rglob("*")):
            if path.is_file() and path.stat().st_size <= MAX_PACKED_BYTES:
                tar.add(path, arcname=str(path.relative_to(state)))
    tmp.replace(out / "results.tgz")


def setup(wheelhouse: str | None, state: Path) -> dict:
    if VENV_PY.exists() and (REPO / "data" / "cityscapes").is_dir():
        return {"name": "setup", "rc": 0, "skipped": "already set up", "wall_s": 0}
    args = ["--wheelhouse", wheelhouse] if wheelhouse else []
    q = " ".join(shlex.quote(a) for a in args)
    cmd = (f"nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; "
           f"bash PrepareEnv.sh {q} || bash PrepareEnv.sh --system {q}")
    return run_step({"name": "setup", "command": cmd, "timeout": 300}, state / "setup", dict(os.environ))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_session.py")
    p.add_argument("--plan", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--wheelhouse")
    p.add_argument("--budget", type=float, default=560, help="seconds this call may use")
    p.add_argument("--skip", default="", help="comma list of steps not to run")
    p.add_argument("--state", default=str(REPO / ".gpu_session"))
    args = p.parse_args(argv)
    deadline = time.time() + args.budget
    steps = parse_plan(Path(args.plan).read_text())
    state, out = Path(args.state), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    record_path = state / "session.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"steps": []}
    done = {s["name"] for s in record["steps"] if s.get("rc") is not None}
    done |= {s for s in args.skip.split(",") if s}

    def save() -> None:
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        (out / "session.json").write_text(json.dumps(record, indent=1) + "\n")
        pack(state, out)

    r = setup(args.wheelhouse, state)
    record.setdefault("setups", []).append(r)
    save()
    print(f"gpu_session: setup rc {r['rc']} ({r['wall_s']} s)", flush=True)
    if r["rc"] != 0:
        return 1
    env = dict(os.environ)
    env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    env["PY"] = str(VENV_PY) if VENV_PY.exists() else sys.executable  # the stack's python
    for step in steps:
        if step["name"] in done:
            continue
        left = deadline - time.time()
        if step["timeout"] > left:
            print(f"gpu_session: not starting {step['name']}: its timeout {step['timeout']} s "
                  f"> {left:.0f} s left", flush=True)
            continue
        print(f"gpu_session: {step['name']} ...", flush=True)
        r = run_step(step, state / step["name"], env)
        record["steps"].append(r)
        done.add(step["name"])
        save()
        tail = (state / step["name"] / "console.log").read_text(errors="replace").splitlines()[-3:]
        print(f"gpu_session: {step['name']}: rc {r['rc']}{' (timed out)' if r['timed_out'] else ''}"
              f", {r['wall_s']} s", *("    " + t[:300] for t in tail), sep="\n", flush=True)
    todo = [s["name"] for s in steps if s["name"] not in done]
    print(f"gpu_session: not run yet: {', '.join(todo) or 'none'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
