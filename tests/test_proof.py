"""segbench.proof (TUNED_PROOF): a tuned case carries its equivalence verdict, and a tuned figure
whose step is not proven equivalent is flagged."""
import json
import subprocess
from pathlib import Path

import pytest

from segbench import analysis, case as case_mod, proof

REPO = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).parent / "logs"


CASE_TAG = "[segbench] case: "


def _log_with(tmp_path, verdict, **record):
    """segbench_success.log (fastscnn mp fp32, crop 512x1024) as a tuned case, with ``verdict``
    beside it (a dict, text, or None: no file)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "fastscnn_mp_bs4_fp32_2_tuned-foreach"
    lines = (LOGS / "segbench_success.log").read_text(encoding="utf-8").splitlines(keepends=True)
    case = {**json.loads(lines[0][len(CASE_TAG):]), "tuned": ["foreach"], **record}
    log.write_text(CASE_TAG + json.dumps(case) + "\n" + "".join(lines[1:]), encoding="utf-8")
    if verdict is not None:
        (tmp_path / (log.name + proof.SUFFIX)).write_text(
            verdict if isinstance(verdict, str) else json.dumps(verdict), encoding="utf-8")
    return log


OK = {"ok": True, "model": "fastscnn", "switches": ["foreach"], "precision": "fp32", "iters": 4,
      "crop": [512, 1024], "device": "cuda", "max_loss_rel_diff": 0.0, "max_state_rel_diff": 1e-4}


def test_the_verdict_reaches_the_sidecar_and_a_failed_or_wrong_check_flags_the_figure(tmp_path):
    plain = analysis.analyze(_log_with(tmp_path / "a", None), "fastscnn")
    assert plain.stats["equivalence"] is None    # tuned, not asked for: unchecked, not flagged
    good = analysis.analyze(_log_with(tmp_path / "b", OK), "fastscnn")
    assert good.stats["equivalence"]["ok"] is True and good.stats["equivalence"]["switches"] == ["foreach"]
    assert good.stats["warnings"] == plain.stats["warnings"]
    stock = analysis.analyze(_log_with(tmp_path / "s", OK, tuned=[]), "fastscnn")
    assert stock.stats["equivalence"] is None    # a stock case has no step to prove
    for name, verdict, record, words in (
            ("c", {**OK, "ok": False}, {}, "NOT EQUIVALENT"),
            ("d", {"ok": None, "error": "the check ended (timeout after 900 s): "}, {}, "timeout after"),
            ("e", "{not json", {}, "unreadable"),
            ("f", {**OK, "switches": ["foreach", "graph"]}, {}, "the check's switches"),
            ("g", {**OK, "crop": [64, 128]}, {}, "the check's crop"),
            ("h", None, {"tuned_proof": True}, "asked for (TUNED_PROOF) and not there")):
        res = analysis.analyze(_log_with(tmp_path / name, verdict, **record), "fastscnn")
        assert res.stats["flagged"] and any(words in w for w in res.stats["warnings"]), name
        assert res.ok   # the figure stands, flagged: JOB_FAIL_FLAG stays 0


def test_a_check_that_wrote_no_verdict_leaves_one_saying_so(tmp_path):
    path = tmp_path / "x_equivalence.json"
    proof.settle(path, 137, ["...", "Killed"])
    r = json.loads(path.read_text())
    assert r["ok"] is None and "(exit code 137): Killed" in r["error"]
    proof.settle(path, -15, [], "timeout after 900 s")
    assert "(timeout after 900 s)" in json.loads(path.read_text())["error"]
    path.write_text(json.dumps({"ok": False}))
    proof.settle(path, -15, [], "interrupted by SIGTERM")   # killed at exit, after its verdict
    assert json.loads(path.read_text()) == {"ok": False}   # a verdict stays as written


def test_the_check_is_run_with_the_cases_settings(tmp_path):
    env = {"TUNED": "foreach,graph,window_sync", "TUNED_PROOF": "1", "CROP": "64x128",
           "DATA_ROOT": str(tmp_path), "TRAIN_LOG_DIR": str(tmp_path), "LOG_INTERVAL": "2",
           "TUNED_COMPILE_MODE": "default"}
    c = case_mod.parse_case(["fastscnn", "sp", "bf16", "2", "12", "1"], env)
    cmd = proof.command(c, tmp_path / "v.json")
    assert cmd[1:5] == ["-m", "segbench.equivalence", "equivalence", "fastscnn"]
    pairs = dict(zip(cmd[5::2], cmd[6::2]))
    assert pairs == {"--switches": "foreach,graph,window_sync", "--iters": "4", "--precision": "bf16",
                     "--compile-mode": "default", "--compile-scope": "modules",
                     "--json": str(tmp_path / "v.json"), "--crop": "64x128", "--data-root": str(tmp_path)}


def test_tuned_proof_is_refused_for_several_nodes(tmp_path):
    env = {"TUNED": "foreach", "TUNED_PROOF": "1", "NNODES": "2", "TRAIN_LOG_DIR": str(tmp_path)}
    with pytest.raises(case_mod.BadInput, match="one node"):
        case_mod.parse_case(["fastscnn", "mp", "fp32", "2", "500", "1"], env)


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
    assert verdict["device"] == "cpu"   # the CPU profile's check ran where the case trained
    assert "\nEQUIVALENT" in (log_dir / f"{case}_equivalence.log").read_text()
    stats = json.loads((log_dir / f"{case}_stats.json").read_text())
    assert stats["equivalence"]["ok"] is True and stats["equivalence"]["file"] == f"{case}_equivalence.json"
    assert not any("equivalen" in w for w in stats["warnings"])
