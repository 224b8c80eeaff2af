"""TUNED_PROOF: a tuned case carries the verdict of segbench.equivalence on its own switches.

With ``TUNED_PROOF=1`` (``segbench run --tuned-proof``) a tuned case first runs
``python -m segbench.equivalence equivalence MODEL --switches <the case's> ...`` at the case's crop,
precision, data and compile mode, on the device the case trains on, into ``<case>_equivalence.json``
(its console output in ``<case>_equivalence.log``); then it trains as usual. The analysis reads the
file beside the log (:func:`verdict`): the sidecar's ``equivalence`` block holds the verdict, and a
tuned figure whose step was NOT EQUIVALENT, or whose check did not finish, is flagged. Without the
file the block is null: the figure is tuned, its step unchecked on this machine.

The check runs one process; for an ``mp`` case it proves the step, not the all-reduce around it.
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


def settle(json_path: Path, exit_code: int | None, tail: list[str]) -> None:
    """After the check: a check that wrote no verdict (a crash, a timeout, a signal) leaves one
    saying so, so that the figure is flagged rather than shown as unchecked."""
    if exit_code in (0, 1) and json_path.is_file():
        return
    last = next((t for t in reversed(tail) if t.strip()), "")
    json_path.write_text(json.dumps({"ok": None, "error": f"the check ended with exit code "
                                     f"{exit_code}: {last[:200]}"}) + "\n", encoding="utf-8")


def verdict(log_path: str) -> tuple[dict | None, list[str]]:
    """The sidecar's ``equivalence`` block from ``<log>_equivalence.json`` (None when there is no
    such file) and the warnings it gives."""
    path = os.fspath(log_path) + SUFFIX
    try:
        with open(path, encoding="utf-8") as fh:
            r = json.load(fh)
    except FileNotFoundError:
        return None, []
    except (OSError, ValueError) as exc:
        r = {"ok": None, "error": f"unreadable: {exc}"}
    if not isinstance(r, dict):
        r = {"ok": None, "error": "not a JSON object"}
    name = os.path.basename(path)
    block = {"ok": r.get("ok") if isinstance(r.get("ok"), bool) else None, "file": name,
             "switches": r.get("switches"), "iters": r.get("iters"), "crop": r.get("crop"),
             "device": r.get("device"), "max_loss_rel_diff": r.get("max_loss_rel_diff"),
             "max_state_rel_diff": r.get("max_state_rel_diff"), "error": r.get("error")}
    if block["ok"] is True:
        return block, []
    if block["ok"] is False:
        return block, [f"not equivalent: the tuned step is NOT EQUIVALENT to the stock step "
                       f"(segbench equivalence, {name})"]
    return block, [f"not proven: the tuned step's equivalence check did not finish "
                   f"({block['error'] or 'no verdict'}; {name})"]
