"""The ``report`` command, and the ``--report`` option other commands share: one HTML page for an output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trueshape.cli._common import EXIT_INPUT_ERROR, _e, _fail, _out, app, flag
from trueshape.errors import TrueshapeError

ReportOption = Annotated[
    bool, flag("--report", "Also write OUT/report.html: the results as figures, one self-contained page.")
]
ShowIdentifiersOption = Annotated[
    bool,
    flag(
        "--show-identifiers",
        "Show patient name, ID, birth date, accession number and institution (left out by default).",
    ),
]


def write_folder_report(folder: str | Path, *, show_identifiers: bool = False) -> None:
    """Write ``folder``'s report and print where; a failure is one line and exit code 2."""
    from trueshape import api

    try:
        page = api.report(folder, show_identifiers=show_identifiers)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    _out().print(f"report: {_e(page)}", soft_wrap=True)


@app.command(epilog="Example: trueshape report demo-out/learned")
def report(
    folder: Annotated[
        Path, typer.Argument(help="An output folder of inspect --report, convert, correct, estimate, learn or batch.")
    ],
    show_identifiers: ShowIdentifiersOption = False,
) -> None:
    """Write FOLDER/report.html: series, findings, the magnet, before/after, the field, models, cohorts."""
    write_folder_report(folder, show_identifiers=show_identifiers)
