"""TUNED_PROOF: a tuned case carries the verdict of segbench.equivalence on its own switches.

With ``TUNED_PROOF=1`` (``segbench run --tuned-proof``) a tuned case first runs
``python -m segbench.equivalence equivalence MODEL --switches <the case's> ...`` at the case's
crop (a config without a crop of its own: the check's 64x128), precision, data and compile mode,
on the device the case trains on, at the check's own batch of 2 with one loader worker, into
``<case>_equivalence.json`` (its console output in ``<case>_equivalence.log``), within its own
BENCH_TIMEOUT; then it trains as usual. The analysis reads the file beside the log
(:func:`verdict`): the sidecar's ``equivalence`` block holds the verdict, and a tuned figure whose
step was NOT EQUIVALENT, whose check did not finish, or whose check was of other settings than the
case's (model, switches, crop, precision), is flagged -- as is a case that asked for the check
(the case record's ``tuned_proof``) and has none. Without the file, and not asked for, the block
is null: the figure is tuned, its step unchecked on this machine.

The check runs one process; for an ``mp`` case it proves the step, not the all-reduce around it.
Multi-node cases are refused (the other nodes would wait in the rendezvous for it).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

CHECK_ITERS = 4   # eager, and with the graph switch captured and two replays (docs/TUNED.md)
SUFFIX = "_equivalence.json"


def command(case, json_path: Path) -> list[str]:
    """The check of ``case``'s switches, as a command line (segbench.case.Case)."""
    crop = case.crop or case.default_crop
    args = ["-m", "segbench.equivalence", "equivalence", case.model, "--switches", ",".join(case.tuned),
            "--iters", str(CHECK_ITERS), "--precision", case.fp_item,
            "--compile-mode", case.compile_mode, "--compile-scope", case.compile_scope,
            "--json", str(json_path)]
    if crop:
        args += ["--crop", f"{crop[0]}x{crop[1]}"]
    if case.data_root:
        args += ["--data-root", str(case.data_root)]
    return [sys.executable, *args]


def settle(json_path: Path, exit_code: int | None, tail: list[str], stop_reason: str | None = None) -> None:
    """After the check: a check that wrote no verdict (a crash, a refusal, a timeout, a signal)
    leaves one saying so, so that the figure is flagged rather than shown as unchecked; a verdict
    written stays, whatever the exit."""
    try:
        if isinstance(json.loads(json_path.read_text(encoding="utf-8")).get("ok"), bool):
            return
    except (OSError, ValueError, AttributeError):
        pass
    last = next((t for t in reversed(tail) if t.strip()), "")
    why = stop_reason or f"exit code {exit_code}"
    json_path.write_text(json.dumps({"ok": None, "error": f"the check ended ({why}): {last[:200]}"})
                         + "\n", encoding="utf-8")


def _mismatch(r: dict, case: dict) -> str | None:
    """The first setting in which a check's result differs from the case record, else None."""
    crop = case.get("crop")
    pairs = (("model", r.get("model"), case.get("model")), ("switches", r.get("switches"), case.get("tuned")),
             ("precision", r.get("precision"), case.get("fp_item")),
             ("crop", r.get("crop"), crop if crop else r.get("crop")))
    return next((f"the check's {k} {a!r} is not the case's {b!r}" for k, a, b in pairs if a != b), None)


def verdict(log_path: str, case: dict | None = None) -> tuple[dict | None, list[str]]:
    """The sidecar's ``equivalence`` block from ``<log>_equivalence.json`` and the warnings it
    gives; ``case`` is the log's case record (its ``tuned``, ``tuned_proof``, settings). None for a
    stock case, and for a tuned one without the file that did not ask for the check."""
    case = case or {}
    if not case.get("tuned"):
        return None, []
    path = os.fspath(log_path) + SUFFIX
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as fh:
            r = json.load(fh)
    except FileNotFoundError:
        if not case.get("tuned_proof"):
            return None, []
        r = {"ok": None, "error": "asked for (TUNED_PROOF) and not there"}
    except (OSError, ValueError) as exc:
        r = {"ok": None, "error": f"unreadable: {exc}"}
    if not isinstance(r, dict):
        r = {"ok": None, "error": "not a JSON object"}
    if isinstance(r.get("ok"), bool) and (other := _mismatch(r, case)):
        r = {**r, "ok": None, "error": other}
    block = {"ok": r.get("ok") if isinstance(r.get("ok"), bool) else None, "file": name,
             "switches": r.get("switches"), "iters": r.get("iters"), "crop": r.get("crop"),
             "device": r.get("device"), "max_loss_rel_diff": r.get("max_loss_rel_diff"),
             "max_state_rel_diff": r.get("max_state_rel_diff"), "error": r.get("error")}
    if block["ok"] is True:
        return block, []
    if block["ok"] is False:
        return block, [f"not equivalent: the tuned step is NOT EQUIVALENT to the stock step "
                       f"(segbench equivalence, {name})"]
    return block, [f"not proven: the tuned step's equivalence check gave no verdict for this case "
                   f"({block['error'] or 'no verdict'}; {name})"]
