"""The ``batch`` command: a cohort CSV run job by job, locally or on a Dask cluster, resumably."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from trueshape.cli._common import EXIT_INPUT_ERROR, OutOption, _consoles, _e, _fail, _out, app
from trueshape.cli._report import ReportOption, ShowIdentifiersOption
from trueshape.errors import TrueshapeError


@app.command(epilog="Example: trueshape batch cohort.csv --out cohort-out --workers 2 --report")
def batch(
    cohort: Annotated[Path, typer.Argument(help="CSV with header path,action,options (paths relative to its folder).")],
    out: OutOption,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Jobs at a time on this machine (default: its cores).")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", metavar="ADDRESS", help="A dask.distributed scheduler (tcp://host:8786)."),
    ] = None,
    report: ReportOption = False,
    show_identifiers: ShowIdentifiersOption = False,
) -> None:
    """Run one trueshape command per CSV row into OUT/<row>_<name>/; a re-run finishes only what is missing."""
    from trueshape.batching import batch as run_batch

    with _bar() as progress:
        try:
            result = run_batch(
                cohort,
                out,
                workers=workers,
                scheduler=scheduler,
                report=report,
                show_identifiers=show_identifiers,
                progress=progress,
            )
        except TrueshapeError as error:
            _fail(str(error))
            raise typer.Exit(EXIT_INPUT_ERROR) from None
    console = _out()
    console.print(
        f"{len(result.rows)} job(s): {len(result.rows) - len(result.failed)} ok "
        f"({result.resumed} finished earlier), {len(result.failed)} failed"
    )
    console.print(f"wrote {_e(result.summary)}", soft_wrap=True)
    if result.report is not None:
        console.print(f"report: {_e(result.report)}", soft_wrap=True)
    for row in result.failed:
        _fail(f"row {row['row']} ({row['path']}, {row['action']}): {row['reason']}")
    if result.failed:
        raise typer.Exit(EXIT_INPUT_ERROR)


@contextlib.contextmanager
def _bar() -> Iterator[Callable[[int, int], None]]:
    """Show a progress bar over the jobs on a terminal (stderr); quiet otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _consoles()[1]
    if not console.is_terminal:
        yield lambda _done, _total: None
        return
    columns = (TextColumn("jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("jobs", total=None)
        yield lambda done, total: bar.update(task, total=total, completed=done)
