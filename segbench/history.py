"""The results history: one SQLite row per finished case, beside the JSON files.

Every case the launcher finishes (passed or failed) appends a row to ``segbench_history.sqlite``
in its log directory: the case's identity with all its settings, the environment and stack, the
commit, the figures and the flags. The JSON files stay as they are; the database is what lets one
ask how a case's figure moved from one torch to the next on one GPU::

    segbench history [--db FILE|DIR] [--where torch=2.11 --where model=fastscnn] [--case NAME]
        [--plot F.png]
    python -m segbench.report compare --db FILE|DIR --baseline torch=2.10 --current torch=2.11
        [--where device_name=...]

A ``--where`` value matches a column exactly or as a version prefix (``torch=2.11`` matches
``2.11.0+cu130``); ``--case NAME`` is ``--where case_name=NAME``. ``segbench compare --db``
compares two selections (segbench.compare). Standard library only (sqlite3).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import sys
from pathlib import Path

DB_NAME = "segbench_history.sqlite"
COLUMNS = (
    ("finished", "TEXT"), ("case_name", "TEXT"), ("model", "TEXT"), ("run_mode", "TEXT"),
    ("fp_item", "TEXT"), ("batch_size", "INTEGER"), ("gpu_num", "INTEGER"), ("variant", "TEXT"),
    ("settings", "TEXT"), ("profile", "TEXT"), ("device_name", "TEXT"), ("host", "TEXT"),
    ("torch", "TEXT"), ("cuda", "TEXT"), ("mmengine", "TEXT"), ("mmcv", "TEXT"), ("mmseg", "TEXT"),
    ("python", "TEXT"), ("segbench_commit", "TEXT"), ("images_per_s", "REAL"), ("job_fail_flag", "INTEGER"),
    ("reason", "TEXT"), ("flagged", "INTEGER"), ("warnings", "TEXT"), ("cv", "REAL"),
    ("peak_mem_mb", "REAL"), ("tflops", "REAL"), ("command", "TEXT"), ("stats", "TEXT"),
)
NAMES = tuple(name for name, _ in COLUMNS)


def db_path(where: str | os.PathLike[str]) -> Path:
    """A database file, or the one in a log directory."""
    path = Path(where)
    return path / DB_NAME if path.is_dir() else path


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30)
    con.execute(f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY, "
                f"{', '.join(f'{n} {t}' for n, t in COLUMNS)})")
    return con


def _peak(stats: dict) -> float | None:
    peaks = [p for p in (stats.get("memory") or {}).get("peak_mb_per_rank") or [] if p is not None]
    return max(peaks) if peaks else None


def row_from(stats: dict, settings: dict, finished: str) -> dict:
    """The row of one case: ``stats`` its sidecar dict, ``settings`` every setting that makes its
    identity (the launcher's case record), ``finished`` an ISO time."""
    env = stats.get("env") or {}
    spread = (stats.get("per_iter") or stats.get("window") or {}).get("cv")
    case = str(stats.get("case") or "")
    stock = f"{stats.get('model')}_{stats.get('run_mode')}_bs{stats.get('batch_size')}_" \
            f"{stats.get('fp_item')}_{stats.get('gpu_num')}"
    warnings = stats.get("warnings") or []
    return {
        "finished": finished, "case_name": case, "model": stats.get("model"),
        "run_mode": stats.get("run_mode"), "fp_item": stats.get("fp_item"),
        "batch_size": stats.get("batch_size"), "gpu_num": stats.get("gpu_num"),
        "variant": case[len(stock) + 1:] if case.startswith(stock + "_") else "",
        "settings": json.dumps(settings, sort_keys=True), "profile": stats.get("profile"),
        "device_name": ", ".join(env.get("gpu_names") or []) or stats.get("device"),
        "host": socket.gethostname(), "torch": env.get("torch"), "cuda": env.get("cuda"),
        "mmengine": env.get("mmengine"), "mmcv": env.get("mmcv") or env.get("mmcv-lite"),
        "mmseg": env.get("mmsegmentation"), "python": env.get("python"),
        "segbench_commit": env.get("segbench_commit"), "images_per_s": stats.get("FINAL_RESULT"),
        "job_fail_flag": stats.get("JOB_FAIL_FLAG"), "reason": stats.get("reason"),
        "flagged": int(bool(stats.get("flagged", warnings))), "warnings": json.dumps(warnings),
        "cv": spread, "peak_mem_mb": _peak(stats),
        "tflops": (stats.get("flops") or {}).get("tflops_achieved"),
        "command": stats.get("command"), "stats": json.dumps(stats, sort_keys=True),
    }


def append(where, stats: dict, settings: dict, finished: str) -> Path:
    """Append one case's row; returns the database's path."""
    path = db_path(where)
    row = row_from(stats, settings, finished)
    with _connect(path) as con:
        con.execute(f"INSERT INTO results ({', '.join(NAMES)}) VALUES ({', '.join('?' * len(NAMES))})",
                    [row[n] for n in NAMES])
    con.close()
    return path


def _filters(where: list[str]) -> tuple[str, list[str]]:
    clauses, args = [], []
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or key not in NAMES:
            raise ValueError(f"--where takes COLUMN=VALUE with a column of {', '.join(NAMES[:-1])}; "
                             f"not {item!r}")
        # a version prefix ends at "." or "+"; the value itself is literal (no LIKE wildcards)
        literal = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(f"({key} = ? OR {key} LIKE ? ESCAPE '\\' OR {key} LIKE ? ESCAPE '\\')")
        args += [value, literal + ".%", literal + "+%"]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def select(where, filters: list[str] = ()) -> list[dict]:
    """Rows matching every ``COLUMN=VALUE`` filter, oldest first."""
    path = db_path(where)
    if not path.is_file():
        raise FileNotFoundError(f"no results database at {path}")
    sql, args = _filters(list(filters))
    with _connect(path) as con:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute(f"SELECT * FROM results{sql} ORDER BY finished, id",
                                             args)]
    con.close()
    return rows


def table(rows: list[dict]) -> str:
    head = ("finished", "case_name", "images_per_s", "flags", "torch", "device_name", "commit")
    body = [(r["finished"], r["case_name"], "FAILED" if r["job_fail_flag"] else r["images_per_s"],
             "FLAGGED" if r["flagged"] else "", r["torch"], r["device_name"],
             (r["segbench_commit"] or "")[:12]) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(f"{str(x):<{w}}" for x, w in zip(line, widths)) for line in (head, *body))


def plot(rows: list[dict], out: Path, by: str = "torch") -> None:
    """images/s of each case over its runs (passed runs), each point labelled with ``by``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for case in sorted({r["case_name"] for r in rows}):
        mine = [r for r in rows if r["case_name"] == case and not r["job_fail_flag"]]
        ax.plot(range(len(mine)), [r["images_per_s"] for r in mine], marker="o", label=case)
        for i, r in enumerate(mine):
            ax.annotate(str(r[by]), (i, r["images_per_s"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("run (oldest first)")
    ax.set_ylabel("images/s")
    ax.set_title(f"segbench history (points labelled by {by})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def default_db() -> str:
    """TRAIN_LOG_DIR where set; else the current directory (run_benchmark.sh's default log dir)
    if it holds the database, else ./logs (run_PyTorch.sh's)."""
    if os.environ.get("TRAIN_LOG_DIR"):
        return os.environ["TRAIN_LOG_DIR"]
    return "." if db_path(".").is_file() or not db_path("logs").is_file() else "logs"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="segbench history", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=None,
                   help=f"the database, or a log directory holding {DB_NAME} (default: TRAIN_LOG_DIR; "
                        "without it ., else ./logs, where run_PyTorch.sh writes)")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE")
    p.add_argument("--case", metavar="NAME", help="one case's rows: the same as --where case_name=NAME")
    p.add_argument("--plot", type=Path, metavar="FILE.png")
    p.add_argument("--by", default="torch", choices=NAMES[:-1], help="label points by (default torch)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON lines")
    a = p.parse_args(argv)
    a.db = a.db or default_db()
    try:
        rows = select(a.db, a.where + ([f"case_name={a.case}"] if a.case else []))
    except (FileNotFoundError, ValueError, sqlite3.Error) as exc:
        print(f"segbench history: error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if k != "stats"}))
    else:
        print(table(rows))
    if a.plot and rows:
        plot(rows, a.plot, a.by)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
