"""The ``trueshape`` command: parse options, call the API, render. No logic of its own.

Start-up stays short (``benchmarks/startup.py`` measures it): only typer and the enums the options offer
load with the package; the API, rich and the layers that need nibabel, scipy or SimpleITK load when a
command runs. ``_common`` holds the app and what commands share; ``_inspect`` the inspect command;
``_commands`` the conversion and correction commands; ``_estimation`` those that learn the field from images;
``_report`` and ``_batch`` the report and cohorts.
"""

from __future__ import annotations

import gc
import os
import signal
import sys

from trueshape.cli import _batch, _commands, _estimation, _inspect, _report  # noqa: F401 - importing them registers
from trueshape.cli._common import EXIT_INPUT_ERROR, EXIT_INTERNAL_ERROR, _fail, app

__all__ = ["EXIT_INPUT_ERROR", "EXIT_INTERNAL_ERROR", "app", "main"]


def main() -> None:
    """Console entry point."""
    # Start-up created the long-lived objects (modules, classes); the cyclic collector need not traverse
    # them again on every collection and at exit.
    gc.freeze()
    # A scheduler's SIGTERM (or timeout) unwinds like Ctrl-C, so staged outputs are cleaned up.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        app()
    except MemoryError:
        _fail("not enough memory for this input (a smaller --like grid, or a machine with more memory, helps)")
        sys.exit(EXIT_INTERNAL_ERROR)
    except Exception as error:  # a bug rather than bad input: one line, and the traceback on request
        if os.environ.get("TRUESHAPE_TRACEBACK", "0").strip() not in ("", "0"):
            raise
        _fail(
            f"unexpected {type(error).__name__}: {error} (a trueshape bug: please report it with the command; "
            "TRUESHAPE_TRACEBACK=1 shows where it happened)"
        )
        sys.exit(EXIT_INTERNAL_ERROR)


def _terminated(_signal: int, _frame: object) -> None:
    raise SystemExit(128 + signal.SIGTERM)


if __name__ == "__main__":
    main()
