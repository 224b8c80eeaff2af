"""The ``segbench`` command: one entry point, a subcommand per job, each with ``--help``.

    segbench run MODEL RUN_MODE FP_ITEM BS MAX_ITER NUM_WORKERS [--crop HxW --tuned all ...]
    segbench suite [--models ... --modes ... --bs ... --resume] [--log-dir DIR ...]
    segbench analyze MODEL_NAME LOG_FILE SPEED_FILE
    segbench report DIR | segbench compare BASELINE_DIR CURRENT_DIR
    segbench equivalence MODEL
    segbench history [--where torch=2.11] [--plot F.png]
    segbench doctor

Each subcommand is the module that does the work (run: segbench.launch, suite: segbench.suite,
analyze: segbench.analysis, report/compare: segbench.report, the equivalence checks:
segbench.equivalence, history: segbench.history, doctor: segbench.doctor); ``run`` and ``suite`` take
every case knob as a flag (segbench.knobs), which sets the environment variable that the seed's
scripts set.
"""
from __future__ import annotations

import argparse
import os
import sys

from segbench import knobs

def _run(argv: list[str]) -> int:
    from segbench import launch
    from segbench.case import RUN_ARGS
    p = argparse.ArgumentParser(prog="segbench run", description="Run one benchmark case (what "
                                "run_benchmark.sh runs); writes the log, <log>_speed and "
                                "<log>_stats.json. Exit 0 passed, 1 failed, 2 bad input, "
                                "130 interrupted.")
    # one list, checked by launch itself: missing or extra arguments are bad input, which still
    # leaves a log and a failing speed file, exactly as with run_benchmark.sh
    p.add_argument("case", nargs="*", metavar=" ".join(RUN_ARGS))
    knobs.add_flags(p)
    a = p.parse_args(argv)
    return launch.main(a.case, knobs.environ_from(a, os.environ), prog="segbench run")


def _suite(argv: list[str]) -> int:
    from segbench import suite
    # no abbreviations: the suite's own options (--profile, --bs) must not be read as a prefix of a
    # knob's flag (--profiler, --bs-...)
    p = argparse.ArgumentParser(prog="segbench suite", add_help=False, allow_abbrev=False)
    knobs.add_flags(p)
    a, rest = p.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        p.print_help()   # the knob flags, then the suite's own options
        print()
    os.environ.update(knobs.environ_from(a, {}))   # the suite's cases inherit them
    return suite.main(rest)


def _delegate(module: str, prefix: tuple[str, ...] = ()):
    def call(argv: list[str]) -> int:
        import importlib
        return importlib.import_module(f"segbench.{module}").main([*prefix, *argv])
    return call


COMMANDS = {
    "run": (_run, "run one case (run_benchmark.sh)"),
    "suite": (_suite, "run a matrix of cases and print a table (run_PyTorch.sh)"),
    "analyze": (_delegate("analysis"), "write the speed file and sidecar of any log (analysis_log.py)"),
    "report": (_delegate("report", ("report",)), "summary.md/.csv/.png of a result directory"),
    "compare": (_delegate("report", ("compare",)), "compare two result directories"),
    "equivalence": (_delegate("equivalence", ("equivalence",)),
                    "prove a tuned run trains the same thing as stock"),
    "history": (_delegate("history"), "list and plot a case's figures over time or across stacks"),
    "doctor": (_delegate("doctor"), "pre-flight check: GPUs, stack, data, disk, host steadiness"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return (f"usage: segbench COMMAND [ARGS]   (segbench COMMAND --help for each)\n\n"
            f"How fast PyTorch trains mmsegmentation models.\n\ncommands:\n{rows}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        sys.stderr.write(f"segbench: error: unknown command {argv[0]!r}\n{usage()}")
        return 2
    return command[0](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
