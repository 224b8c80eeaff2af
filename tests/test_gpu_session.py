"""benchmarks/gpu_session.py: the plan format, the budget rule (a step starts only if its timeout
fits; a shorter later step may run instead), timeouts that end only the step's own process group,
and resuming from the state folder."""
import contextlib
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_session  # noqa: E402
from segbench import cli, launch  # noqa: E402


def test_parse_plan():
    steps = gpu_session.parse_plan("# c\n\na | 10 | echo 'x | y'\nb|5|true\n")
    assert steps == [{"name": "a", "timeout": 10, "command": "echo 'x | y'"},
                     {"name": "b", "timeout": 5, "command": "true"}]
    for bad in ("a | ten | true", "a | 10", "a | 1 | x\na | 2 | y"):
        with pytest.raises(ValueError, match="plan line"):
            gpu_session.parse_plan(bad)


@contextlib.contextmanager
def _environ(extra: dict):
    saved = dict(os.environ)
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _check_step(command: str, tmp_path: Path) -> None:
    """Each part of a step's command (split at &&) as today's code takes it, nothing run: a
    run_benchmark.sh case through launch.parse_case with the step's VAR=value knobs, fidelity.py's
    arguments through its parse_args, ``-m segbench.equivalence``'s through its parser."""
    import shlex

    import fidelity

    from segbench import equivalence
    words = shlex.split(command.replace("$STEP_DIR", str(tmp_path)).replace('"$PY"', "python"))
    parts, part = [], []
    for w in words + ["&&"]:
        if w == "&&":
            parts.append(part)
            part = []
        else:
            part.append(w)
    for part in parts:
        env = {"TRAIN_LOG_DIR": str(tmp_path)}
        while part and "=" in part[0] and part[0].split("=", 1)[0].isupper():
            k, v = part.pop(0).split("=", 1)
            env[k] = v
        if part[:2] == ["bash", "run_benchmark.sh"]:
            launch.parse_case(part[2:], env)
        elif part[:2] == ["python", "benchmarks/fidelity.py"]:
            fidelity.parse_args(part[2:])
        elif part[:3] == ["python", "-m", "segbench.equivalence"]:
            equivalence._parser().parse_args(part[3:])
        elif part[:2] == ["bash", "run_PyTorch.sh"]:   # as run_PyTorch.sh runs it: segbench suite, dry
            rest = [w for w in part[2:] if w not in ("--local", "--no-setup")]
            with _environ(env):
                assert cli.main(["suite", *rest, "--profile", "gpu", "--dry-run"]) == 0, part
        elif part[:2] == ["bash", "PrepareEnv.sh"]:
            assert env.get("STACK", "mmseg1") in ("mmseg1", "mmseg0") and set(part[2:]) <= {
                "--wheelhouse", ".whl", ".whl0", "--system"}, part
        else:
            raise AssertionError(f"a step this test cannot check: {part}")


@pytest.mark.parametrize("plan", sorted((REPO / "benchmarks" / "plans").glob("*_next.txt")),
                         ids=lambda p: p.name)
def test_the_plans_still_to_run_are_valid_for_todays_code(plan, tmp_path):
    """A plan waiting for a GPU host (the dated ones are records of what ran) must not fail at a
    step because a case, knob or option it names changed since it was written."""
    steps = gpu_session.parse_plan(plan.read_text())
    assert steps
    for step in steps:
        try:
            _check_step(step["command"], tmp_path)
        except (launch.BadInput, SystemExit) as exc:
            raise AssertionError(f"{plan.name}: step {step['name']} ({step['command']}): {exc!r}") from exc


def test_a_step_with_a_changed_case_or_option_is_caught(tmp_path):
    """The check above rejects what today's code would: a bad case, a bad knob, an unknown
    option."""
    _check_step("TUNED=all bash run_benchmark.sh fastscnn sp fp32 2 500 5", tmp_path)
    _check_step('"$PY" benchmarks/fidelity.py --models m --pairs 4 --concurrent 0,1 --sides HH '
                '--out "$STEP_DIR"', tmp_path)
    for bad in ("bash run_benchmark.sh unet sp fp32 2 500 5",
                "TUNED=turbo bash run_benchmark.sh fastscnn sp fp32 2 500 5"):
        with pytest.raises(launch.BadInput):
            _check_step(bad, tmp_path)
    for bad in ('"$PY" benchmarks/fidelity.py --pairs 2 --lanes 2',
                '"$PY" benchmarks/fidelity.py --sides PN',            # --sides needs --concurrent
                '"$PY" -m segbench.equivalence equivalence fastscnn --iterations 3'):
        with pytest.raises(SystemExit):
            _check_step(bad, tmp_path)
    _check_step("TUNED=all bash run_PyTorch.sh --local --no-setup --models fastscnn --modes sp "
                "--bs 2,16,max --max-within 0.25 --iters 60", tmp_path)
    for bad in ("bash run_PyTorch.sh --local --models unet --modes sp",        # no such model
                "bash run_PyTorch.sh --local --models fastscnn --bs max,2",    # max must come last
                "TUNED=turbo bash run_PyTorch.sh --models fastscnn --modes sp",
                "bash run_PyTorch.sh --models fastscnn --max-depth 3"):        # no such option
        with pytest.raises((AssertionError, SystemExit)):
            _check_step(bad, tmp_path)


def test_budget_timeout_and_resume(tmp_path, monkeypatch):
    plan = tmp_path / "plan.txt"
    plan.write_text("a | 10 | echo \"$STEP_DIR\" > \"$TRAIN_LOG_DIR/where\"\n"
                    "hang | 2 | sleep 60 & wait\n"
                    "big | 500 | echo big\n"
                    "small | 10 | echo small\n")
    monkeypatch.setattr(gpu_session, "setup",
                        lambda wheelhouse, state: {"name": "setup", "rc": 0, "wall_s": 0})
    out = tmp_path / "out"
    args = ["--plan", str(plan), "--out", str(out), "--state", str(tmp_path / "state")]
    assert gpu_session.main(args + ["--budget", "60"]) == 0
    rec = json.loads((out / "session.json").read_text())
    by = {s["name"]: s for s in rec["steps"]}
    assert list(by) == ["a", "hang", "small"]               # big did not fit; small ran after it
    assert by["hang"]["timed_out"] and by["hang"]["rc"] != 0 and by["hang"]["wall_s"] < 30
    assert (tmp_path / "state" / "a" / "where").read_text().strip() == str(tmp_path / "state" / "a")
    with tarfile.open(out / "results.tgz") as tar:
        assert "a/console.log" in tar.getnames()
    # resumed with more budget: only what has not run yet
    assert gpu_session.main(args + ["--budget", "600"]) == 0
    rec = json.loads((out / "session.json").read_text())
    assert [s["name"] for s in rec["steps"]] == ["a", "hang", "small", "big"]


def test_a_timed_out_step_ends_when_its_whole_group_has(tmp_path, monkeypatch):
    """At a step's timeout its shell dies of the SIGTERM at once, while the harness below it is
    still writing its files: the step (and the pack) waits for the whole group."""
    late = ("import signal, sys, time\n"
            "def done(*a):\n"
            "    time.sleep(1)\n"
            "    open(sys.argv[1], 'w').write('written after SIGTERM')\n"
            "    sys.exit(1)\n"
            "signal.signal(signal.SIGTERM, done)\n"
            "time.sleep(60)\n")
    (tmp_path / "late.py").write_text(late)
    plan = tmp_path / "plan.txt"
    plan.write_text(f'slow | 2 | "{sys.executable}" "{tmp_path / "late.py"}" "$STEP_DIR/late" & wait\n')
    monkeypatch.setattr(gpu_session, "setup",
                        lambda wheelhouse, state: {"name": "setup", "rc": 0, "wall_s": 0})
    out = tmp_path / "out"
    assert gpu_session.main(["--plan", str(plan), "--out", str(out), "--state", str(tmp_path / "state"),
                             "--budget", "60"]) == 0
    step = json.loads((out / "session.json").read_text())["steps"][0]
    assert step["timed_out"] and step["wall_s"] < 20
    with tarfile.open(out / "results.tgz") as tar:
        assert "slow/late" in tar.getnames()
