"""The ``trueshape`` command: parse options, call the API, render. No logic of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trueshape import api
from trueshape.errors import TrueshapeError
from trueshape.findings import Severity
from trueshape.geometry import Inspection, IrregularPolicy
from trueshape.io import to_jsonable

EXIT_OK = 0
EXIT_INPUT_ERROR = 2

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Why does this anatomy look distorted, and how do I fix it?"
)
console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)

_SEVERITY_STYLE = {Severity.INFO: "cyan", Severity.WARNING: "yellow", Severity.ERROR: "bold red"}

IrregularOption = Annotated[
    IrregularPolicy,
    typer.Option(
        "--irregular",
        case_sensitive=False,
        help="Slices off a regular grid: warn (keep + acquisition transform), resample, split, or fail.",
    ),
]


def _fail(message: str) -> None:
    error_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)


def _render_inspection(inspection: Inspection) -> None:
    for series in inspection.series:
        console.rule(f"Series {series.series_number} {series.series_description} ({series.modality})")
        for finding in series.findings:
            console.print(f"  [{_SEVERITY_STYLE[finding.severity]}]{finding.code.value}[/] {finding.message}")
        for stack in series.stacks:
            table = Table(show_header=False, box=None, padding=(0, 1))
            table.add_row("stack", f"{stack.selector}  ({stack.label})")
            table.add_row("shape", " x ".join(str(s) for s in stack.shape))
            table.add_row("spacing (mm)", " x ".join(f"{s:.4g}" for s in stack.geometry.spacing))
            table.add_row(
                "distortion",
                f"{stack.distortion_state.value}"
                + (f"  (from {stack.distortion_source})" if stack.distortion_source else ""),
            )
            table.add_row(
                "isocentre (LPS mm)", f"{[round(float(v), 2) for v in stack.isocentre_lps]}  ({stack.isocentre_source})"
            )
            table.add_row("farthest FOV point", f"{stack.max_distance_from_isocentre_mm:.0f} mm from isocentre")
            console.print(table)
            for finding in stack.findings:
                console.print(
                    f"    [{_SEVERITY_STYLE[finding.severity]}]{finding.code.value}[/] {finding.message}",
                    soft_wrap=False,
                )
    skipped = inspection.skipped_non_dicom + inspection.skipped_non_image
    if skipped:
        console.print(
            f"[dim]{inspection.skipped_non_dicom} non-DICOM file(s) and {inspection.skipped_non_image} "
            f"non-image DICOM object(s) skipped.[/]"
        )


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="DICOM file or folder (searched recursively).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    irregular: IrregularOption = IrregularPolicy.WARN,
) -> None:
    """Every series and stack: geometry, findings in plain words, distortion state."""
    try:
        inspection = api.inspect(path, irregular=irregular)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    if as_json:
        sys.stdout.write(json.dumps(to_jsonable(inspection.to_json()), indent=2) + "\n")
    else:
        _render_inspection(inspection)
    messages = [p.message for p in inspection.problems] + list(inspection.errors)
    if not inspection.series and not messages:
        messages.append(api._nothing_loadable(inspection))
    for message in messages:
        _fail(message)
    if messages:
        raise typer.Exit(EXIT_INPUT_ERROR)


@app.command()
def convert(
    path: Annotated[str, typer.Argument(help="DICOM folder/file, optionally FOLDER#<series>[:stack].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    fmt: Annotated[api.OutputFormat, typer.Option("--format", case_sensitive=False)] = api.OutputFormat.NIFTI,
    irregular: IrregularOption = IrregularPolicy.WARN,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
) -> None:
    """Write one volume per stack (NIfTI or NRRD) with a JSON sidecar."""
    try:
        result = api.convert(path, out, fmt=fmt, irregular=irregular, force=force)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    for written in result.written:
        console.print(f"wrote {written}")
    for message in result.errors:
        _fail(message)
    if not result.ok:
        raise typer.Exit(EXIT_INPUT_ERROR)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
