"""The ``kneeload`` console script (and ``python -m analysis``): starts a build's heap warm-up
before anything heavy is imported, then runs the typer app (:func:`analysis.cli.main`).

``kneeload build RAW ...`` faults in the build's heap on the second core while the
interpreter imports (:func:`analysis.memory.prepare_build_process`). Started here, before
typer, rich and the CLI module load (0.07-0.1 s), rather than from the build command: on
this project's 2-core VMs the warm-up of the 2,000 x 365 bench build (640 MiB, 0.35-0.4 s)
outlasted the imports after the command started, so the build waited for it. Twelve fresh
processes each, alternately (``bench/bench_build.py`` data), in two runs: wall 2.10 ->
1.91 s and 2.38 -> 2.26 s median; the bench's ratio to DuckDB 2.33x -> 2.14x.
This module imports only :mod:`analysis.memory` (standard library) before the CLI.
"""

from __future__ import annotations

import sys

#: The command whose first argument is the raw folder to warm the heap for.
BUILD_COMMAND = "build"


#: Options that make the command print and exit without building.
HELP_OPTIONS = ("--help",)


def build_folder(argv: list[str]) -> str | None:
    """RAW of ``kneeload build RAW ...`` (``argv`` without the program name) when it comes
    right after the command, where click reads it as RAW whatever follows; None otherwise
    (an option first, another command, a request for help): the build command then starts
    the warm-up itself, after the imports and once its options are checked."""
    if (len(argv) >= 2 and argv[0] == BUILD_COMMAND and not argv[1].startswith("-")
            and not any(a in HELP_OPTIONS for a in argv[2:])):
        return argv[1]
    return None


def main() -> None:
    """The console script: the warm-up for ``build``, then the typer app."""
    raw = build_folder(sys.argv[1:])
    if raw is not None:
        from analysis.memory import prepare_build_process

        prepare_build_process(raw)  # the build command waits for it (the same call again)
    from analysis.cli import main as run_app

    run_app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
