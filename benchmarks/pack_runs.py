"""Pack a GPU session's results into a summary archive for benchmarks/runs/ (no raw artefacts).

    python benchmarks/pack_runs.py SRC NAME [--plan FILE ...] [--notes FILE] [--out benchmarks/runs]

SRC is gpu_session.py's output, extracted (one folder per step). Kept, under NAME/: each step's
speed files, stats sidecars, 14-key records, ``*equivalence.json``, ``suite_*.json`` and notes
(``*.txt``), the sessions' ``session*.json``, the last :data:`TAIL_LINES` lines of each
``console.log`` (Python warnings left out), the plans given (``plans/``), the notes given
(``call.txt``: which calls ran what, on which machine) and ``segbench report``'s summary.md and
summary.csv (its charts left out). Everything else -- full case logs, per-iteration files, host
samples, work dirs, locks, history databases -- is listed, with its size, in ``LEFT_OUT.txt``.
Writes ``OUT/NAME.tar.gz`` and prints its path and size.
"""
from __future__ import annotations

import argparse
import io
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TAIL_LINES = 40
KEEP = re.compile(r"(_speed|\.txt|_stats\.json|_paddle\.json|equivalence\.json|^suite_[^/]*\.json"
                  r"|^session[^/]*\.json)$")
WARNING = re.compile(r"\b\w*Warning\b|warnings\.warn\(")


def kept(rel: str) -> bool:
    """Whether a file (path relative to SRC) is a summary the archive keeps as it is."""
    name = rel.rsplit("/", 1)[-1]
    return "_work/" not in rel and bool(KEEP.search(name))


def console_tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a console log, without Python's warnings (a warning's line and
    the indented source line it quotes)."""
    out, after_warning = [], False
    for line in text.splitlines():
        if WARNING.search(line):
            after_warning = True
            continue
        if after_warning and line.startswith((" ", "\t")):
            continue
        after_warning = False
        out.append(line)
    return "\n".join(out[-lines:]) + "\n"


def pack(src: Path, name: str, out_dir: Path, plans=(), notes: Path | None = None) -> Path:
    left_out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / name
        root.mkdir()
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src).as_posix()
            if path.name == "results.tgz":
                continue
            dest = root / rel
            if kept(rel):
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
            elif path.name == "console.log":
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(console_tail(path.read_text(encoding="utf-8", errors="replace")),
                                encoding="utf-8")
            else:
                left_out.append(f"{rel} ({path.stat().st_size} bytes)")
        for plan in plans:
            (root / "plans").mkdir(exist_ok=True)
            shutil.copyfile(plan, root / "plans" / Path(plan).name)
        if notes is not None:
            shutil.copyfile(notes, root / "call.txt")
        (root / "LEFT_OUT.txt").write_text(
            "Raw per-run files not kept (full case logs, per-iteration jsonl, host samples, work dirs, "
            "locks, history db):\n" + "".join(f"{x}\n" for x in left_out), encoding="utf-8")
        _report(root)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{name}.tar.gz"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(root, arcname=name)
        target.write_bytes(buf.getvalue())
    return target


def _report(root: Path) -> None:
    """segbench report's summary.md and .csv of the kept files, in ``root``; no charts."""
    sys.path.insert(0, str(REPO))
    from segbench import report
    try:
        paths = report.write_report(root, root)
    except report.ReportError as exc:   # no case results (an equivalence-only session)
        print(f"pack_runs: no report: {exc}", file=sys.stderr)
        return
    for path in map(Path, paths.values()):
        if path.suffix == ".png":
            path.unlink(missing_ok=True)
        elif path.suffix == ".md":   # the archive's own name, not the temporary folder's path
            path.write_text(path.read_text(encoding="utf-8").replace(str(root), root.name),
                            encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("name")
    p.add_argument("--plan", action="append", default=[], type=Path)
    p.add_argument("--notes", type=Path)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "runs")
    a = p.parse_args(argv)
    if not a.src.is_dir():
        p.error(f"{a.src} is not a directory")
    target = pack(a.src, a.name, a.out, a.plan, a.notes)
    print(f"{target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
