"""benchmarks/gpu_session.py: the plan format, the budget rule (a step starts only if its timeout
fits; a shorter later step may run instead), timeouts that end only the step's own process group,
and resuming from the state folder."""
import json
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_session  # noqa: E402


def test_parse_plan():
    steps = gpu_session.parse_plan("# c\n\na | 10 | echo 'x | y'\nb|5|true\n")
    assert steps == [{"name": "a", "timeout": 10, "command": "echo 'x | y'"},
                     {"name": "b", "timeout": 5, "command": "true"}]
    for bad in ("a | ten | true", "a | 10", "a | 1 | x\na | 2 | y"):
        with pytest.raises(ValueError, match="plan line"):
            gpu_session.parse_plan(bad)


def test_the_committed_plans_parse():
    for plan in (REPO / "benchmarks" / "plans").glob("*.txt"):
        assert gpu_session.parse_plan(plan.read_text())


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
