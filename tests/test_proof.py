"""segbench.proof (TUNED_PROOF): a tuned case carries its equivalence verdict, and a tuned figure
whose step is not proven equivalent is flagged."""
import json
import shutil
import subprocess
from pathlib import Path

from segbench import analysis, case as case_mod, proof

REPO = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).parent / "logs"


def _log_with(tmp_path, verdict):
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "segformer_b0_sp_bs2_fp32_1_tuned"
    shutil.copyfile(LOGS / "segbench_success.log", log)
    if verdict is not None:
        (tmp_path / (log.name + proof.SUFFIX)).write_text(
            verdict if isinstance(verdict, str) else json.dumps(verdict), encoding="utf-8")
    return log


def test_the_verdict_reaches_the_sidecar_and_a_failed_or_missing_check_flags_the_figure(tmp_path):
    plain = analysis.analyze(_log_with(tmp_path / "a", None), "segformer_b0")
    assert plain.stats["equivalence"] is None
    ok = {"ok": True, "switches": ["foreach"], "iters": 4, "crop": [64, 128], "device": "cpu",
          "max_loss_rel_diff": 0.0, "max_state_rel_diff": 1e-4}
    good = analysis.analyze(_log_with(tmp_path / "b", ok), "segformer_b0")
    assert good.stats["equivalence"]["ok"] is True and good.stats["equivalence"]["switches"] == ["foreach"]
    assert good.stats["warnings"] == plain.stats["warnings"]
    for name, verdict, words in (("c", {**ok, "ok": False}, "NOT EQUIVALENT"),
                                 ("d", {"ok": None, "error": "the check ended with exit code 137: "},
                                  "did not finish"),
                                 ("e", "{not json", "did not finish")):
        res = analysis.analyze(_log_with(tmp_path / name, verdict), "segformer_b0")
        assert res.stats["flagged"] and any(words in w for w in res.stats["warnings"]), name
        assert res.ok   # the figure stands, flagged: JOB_FAIL_FLAG stays 0


def test_a_check_that_wrote_no_verdict_leaves_one_saying_so(tmp_path):
    path = tmp_path / "x_equivalence.json"
    proof.settle(path, 137, ["...", "Killed"])
    r = json.loads(path.read_text())
    assert r["ok"] is None and "exit code 137: Killed" in r["error"]
    path.write_text(json.dumps({"ok": False}))
    proof.settle(path, 1, [])
    assert json.loads(path.read_text()) == {"ok": False}   # a verdict stays as written


def test_the_check_is_run_with_the_cases_settings(tmp_path):
    env = {"TUNED": "foreach,graph,window_sync", "TUNED_PROOF": "1", "CROP": "64x128",
           "DATA_ROOT": str(tmp_path), "TRAIN_LOG_DIR": str(tmp_path), "DEVICE": "cpu", "LOG_INTERVAL": "2"}
    c = case_mod.parse_case(["fastscnn", "sp", "fp32", "2", "12", "1"], env)
    cmd = proof.command(c, tmp_path / "v.json")
    assert cmd[1:5] == ["-m", "segbench.equivalence", "equivalence", "fastscnn"]
    text = " ".join(cmd)
    for part in ("--switches foreach,graph,window_sync", "--iters 4", "--crop 64x128",
                 f"--data-root {tmp_path}", "--precision fp32", f"--json {tmp_path / 'v.json'}"):
        assert part in text


def test_tuned_proof_without_tuned_is_bad_input(cpu_env):
    env = dict(cpu_env, TUNED_PROOF="1")
    r = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "12", "1"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "TUNED_PROOF checks a tuned case's switches" in r.stderr + r.stdout


def test_a_tuned_case_with_its_proof_through_run_benchmark(cpu_env):
    env = dict(cpu_env, CROP="64x128", TUNED="foreach", TUNED_PROOF="1")
    r = subprocess.run(["bash", str(REPO / "run_benchmark.sh"), "fastscnn", "sp", "fp32", "2", "12", "1"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    case = "fastscnn_sp_bs2_fp32_1_tuned-foreach_crop64x128_li2"
    log_dir = Path(env["TRAIN_LOG_DIR"])
    verdict = json.loads((log_dir / f"{case}_equivalence.json").read_text())
    assert verdict["ok"] is True and verdict["switches"] == ["foreach"] and verdict["crop"] == [64, 128]
    assert "EQUIVALENT" in (log_dir / f"{case}_equivalence.log").read_text()
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["equivalence"]["ok"] is True and stats["equivalence"]["file"] == f"{case}_equivalence.json"
    assert not any("equivalen" in w for w in stats["warnings"])
