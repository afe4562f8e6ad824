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
import warnings
from typing import NoReturn

from trueshape.cli import _batch, _commands, _estimation, _inspect, _report  # noqa: F401 - importing them registers
from trueshape.cli._common import EXIT_INPUT_ERROR, EXIT_INTERNAL_ERROR, _fail, app

__all__ = ["EXIT_INPUT_ERROR", "EXIT_INTERNAL_ERROR", "app", "main", "run"]


def run() -> NoReturn:
    """Run the ``trueshape`` console script: :func:`main`, then leave without the interpreter's teardown.

    When ``main`` returns, every output is in place (each is moved there complete) and every lock released;
    what the interpreter would still do is free the arrays and unload the modules, memory the operating
    system takes back at once: 0.1 s of a 256^3 correction (``benchmarks/gnl_correct.py``). The streams
    are flushed and the exit status is ``main``'s. ``main`` itself exits normally (tests call it in-process).
    """
    try:
        main()
        status = 0
    except SystemExit as exit_:
        status = _exit_status(exit_.code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``trueshape inspect | head``) has nothing left to take
            pass
    os._exit(status)


def _exit_status(code: object) -> int:
    """Return the status ``sys.exit(code)`` gives: 0 for None, an integer as is, else 1 (the message printed)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def main() -> None:
    """Run the command line (:func:`run` is the console script)."""
    # Start-up created the long-lived objects (modules, classes); the cyclic collector need not traverse
    # them again on every collection and at exit.
    gc.freeze()
    # A scheduler's SIGTERM (or timeout) unwinds like Ctrl-C, so staged outputs are cleaned up.
    signal.signal(signal.SIGTERM, _terminated)
    # pydicom warns about every value that strays from the standard (a long description, an odd UID, a file
    # that ends early); trueshape says what of it matters in its own one-line errors and findings.
    warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
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
