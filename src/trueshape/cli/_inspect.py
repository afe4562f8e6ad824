"""The ``inspect`` command: what each series is, what it means, and the command that deals with it.

Per stack: its geometry, its findings, one **Diagnosis** line (the loader, what the scanner corrected, how
far the field of view reaches from the isocentre) and the next command, ready to paste; with ``--coef`` or
``--model``, the displacement the coefficients predict inside the imaged object, at its edge and at
``--point``. ``--summary`` prints one line per stack instead. Series headers name their folder and study date
when the folder holds several visits; patient identifiers only with ``--show-identifiers``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trueshape.cli._common import (
    _SEVERITY_STYLE,
    EXIT_INPUT_ERROR,
    CoefficientsOption,
    IrregularOption,
    ModelOption,
    RadiusOption,
    _e,
    _fail,
    _hanging,
    _out,
    _point,
    _print_finding,
    _severity,
    _warn,
    app,
    flag,
)
from trueshape.errors import TrueshapeError
from trueshape.findings import Severity
from trueshape.geometry import IrregularPolicy

if TYPE_CHECKING:
    from trueshape.correction import StackPrediction, StatePrediction
    from trueshape.geometry import Inspection, Series, Stack

#: Where a coefficient file or model comes from, said once after the next commands that need one.
_WHERE_COEFFICIENTS_COME_FROM = (
    "coeff.grad is the scanner's coefficient file: ask your site physicist (Siemens keeps it on the scanner "
    "host). Without one, --model MODEL.json corrects with a scanner model that trueshape learn makes from "
    "sessions holding both a DIS3D (or other-orientation) series and the distorted one."
)
_RANK = {Severity.ERROR: 2, Severity.WARNING: 1, Severity.INFO: 0}


@dataclass(frozen=True)
class _Shown:
    """How to show an inspection: the SERIES root as typed, and what each header and next command says."""

    root: str
    restricted: bool
    several_visits: bool
    show_identifiers: bool
    coefficients: str | None = None
    model: str | None = None


PathArgument = Annotated[
    str,
    typer.Argument(
        help="DICOM file or folder (searched recursively); FOLDER#<series>[:stack] shows one series, named by "
        "number, UID or description."
    ),
]
SummaryOption = Annotated[
    bool, flag("--summary", "One line per stack: number, description, shape, spacing, state, reach, finding.")
]
PointOption = Annotated[
    list[str] | None,
    typer.Option(
        "--point",
        metavar="X,Y,Z",
        help="Also predict the displacement at this point (patient LPS mm; repeatable); needs --coef or --model.",
    ),
]
IdentifiersOption = Annotated[bool, flag("--show-identifiers", "Name the patient (name and ID) in each header.")]
JsonOption = Annotated[bool, flag("--json", "Print machine-readable JSON instead.")]


@app.command(
    epilog="Example: trueshape inspect demo-out/session/dicom   (then: --summary, or #3 --coef "
    "demo-out/SYN-AS.grad --point 95,0,0)"
)
def inspect(
    path: PathArgument,
    summary: SummaryOption = False,
    coef: CoefficientsOption = None,
    model: ModelOption = None,
    r0_mm: RadiusOption = None,
    point: PointOption = None,
    show_identifiers: IdentifiersOption = False,
    as_json: JsonOption = False,
    irregular: IrregularOption = IrregularPolicy.WARN,
    report_folder: Annotated[
        Path | None,
        typer.Option("--report", metavar="DIR", help="Also write DIR/inspect.json and DIR/report.html (figures)."),
    ] = None,
) -> None:
    """Every series and stack: geometry, findings, a diagnosis and the next command."""
    from trueshape import api
    from trueshape.geometry import parse_series_argument

    points = [_point(text, "--point") for text in point or []]
    if points and coef is None and model is None:
        _fail("--point needs --coef or --model: the displacement there comes from the coil's coefficients")
        raise typer.Exit(EXIT_INPUT_ERROR)
    try:
        inspection = api.inspect(path, irregular=irregular)
        predictions = _predict(inspection, coef, model, r0_mm, points)
        root, series_key, stack_index = parse_series_argument(path)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    restricted = series_key is not None or stack_index is not None
    several = _several_visits(inspection)
    shown = _Shown(str(root), restricted, several, show_identifiers, _text(coef), _text(model))
    if as_json:
        _print_json(inspection, predictions)
    elif summary:
        _render_summary(inspection, shown)
    else:
        render_inspection(inspection, shown, predictions)
    if report_folder is not None:
        _inspection_report(inspection, report_folder, show_identifiers=show_identifiers)
    _fail_on_input_errors(inspection)


def _inspection_report(inspection: Inspection, folder: Path, *, show_identifiers: bool) -> None:
    """Save the inspection as ``folder/inspect.json`` and write its report beside it."""
    from trueshape.cli._report import write_folder_report
    from trueshape.io import atomic_path, to_jsonable

    try:
        with atomic_path(folder / "inspect.json", force=True) as staged:
            staged.write_text(json.dumps(to_jsonable(inspection.to_json()), indent=2) + "\n")
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    write_folder_report(folder, show_identifiers=show_identifiers)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _fail_on_input_errors(inspection: Inspection) -> None:
    """Say what of the input could not be used, one line each, and end with the input-error code if anything."""
    from trueshape.geometry import describe_empty, input_errors, input_warnings

    for message in input_warnings(inspection):  # damaged copies left out: what they named is complete elsewhere
        _warn(message)
    messages = input_errors(inspection)
    if not inspection.series and not messages:
        messages.append(describe_empty(inspection))
    for message in messages:
        _fail(message)
    # Images that cannot be placed (GEOMETRY_MISSING) are an input error too, shown above with the series.
    if messages or any(f.severity is Severity.ERROR for s in inspection.series for f in s.findings):
        raise typer.Exit(EXIT_INPUT_ERROR)


def _predict(
    inspection: Inspection,
    coef: Path | None,
    model: Path | None,
    r0_mm: float | None,
    points: list[tuple[float, float, float]],
) -> list[StackPrediction] | None:
    """Return what the coefficients predict for each stack; None without --coef or --model."""
    if coef is None and model is None:
        return None
    from trueshape.correction import predict_stacks
    from trueshape.gnl import read_coefficient_option

    coil, _ = read_coefficient_option(coef, model, r0_mm=r0_mm)
    return predict_stacks(inspection, coil, points_lps=points)


def _several_visits(inspection: Inspection) -> bool:
    """Whether the series belong to several studies (each header then names its folder and study date)."""
    return len({s.stacks[0].frames[0].study_instance_uid for s in inspection.series if s.stacks}) > 1


def _print_json(inspection: Inspection, predictions: list[StackPrediction] | None) -> None:
    from trueshape.geometry import inspection_json
    from trueshape.io import to_jsonable

    record = inspection_json(inspection)
    if predictions is not None:
        record["predictions"] = [prediction.to_json() for prediction in predictions]
    sys.stdout.write(json.dumps(to_jsonable(record), indent=2) + "\n")


def _visit(series: Series, shown: _Shown) -> str:
    """`` - subject01/dicom, study 2024-03-01`` (and the patient, when asked) for a series header; or nothing."""
    if not series.stacks or not (shown.several_visits or shown.show_identifiers):
        return ""
    from trueshape.dicom import study_facts

    first = series.stacks[0].frames[0]
    facts = study_facts(first.path)
    parts = []
    if shown.several_visits:
        folder = Path(first.path).parent
        try:
            parts.append(str(folder.relative_to(shown.root)) if Path(shown.root).is_dir() else str(folder))
        except ValueError:
            parts.append(str(folder))
        if facts.study_date:
            parts.append(f"study {facts.study_date}")
    if shown.show_identifiers and (facts.patient_name or facts.patient_id):
        parts.append(f"patient {facts.patient_name or '?'} ({facts.patient_id or 'no ID'})")
    return " - " + ", ".join(parts) if parts else ""


def shown_for(root: str, *, coefficients: str | None = None) -> _Shown:
    """How to show an inspection of all of ``root`` (the demo's): next commands name ``coefficients`` if given."""
    return _Shown(root, False, False, False, coefficients)


def render_inspection(
    inspection: Inspection, shown: _Shown | None = None, predictions: list[StackPrediction] | None = None
) -> None:
    """Print every series and stack: geometry, findings, the diagnosis and the next command."""
    from rich.table import Table

    from trueshape.geometry import diagnose, series_argument

    shown = shown or _Shown(inspection.root, False, _several_visits(inspection), False)
    predicted = {id(p.stack): p for p in predictions or []}
    console = _out()
    needs_coefficients = False
    for series in inspection.series:
        title = f"Series {series.series_number} {series.series_description} ({series.modality})"
        _heading(title + _visit(series, shown))
        for finding in series.findings:
            _print_finding(finding)
        for stack in series.stacks:
            table = Table(show_header=False, box=None, padding=(0, 1))
            table.add_row("stack", _e(f"{stack.selector}  ({stack.label})"))
            table.add_row("shape", " x ".join(str(s) for s in stack.shape))
            table.add_row("spacing (mm)", " x ".join(f"{s:.4g}" for s in stack.geometry.spacing))
            source = f"  (from {stack.distortion_source})" if stack.distortion_source else ""
            table.add_row("distortion", _e(f"{stack.distortion_state.value}{source}"))
            isocentre = [round(float(v), 2) for v in stack.isocentre_lps]
            table.add_row("isocentre (LPS mm)", _e(f"{isocentre}  ({stack.isocentre_source})"))
            table.add_row("farthest FOV point", f"{stack.max_distance_from_isocentre_mm:.0f} mm from isocentre")
            if stack.distinction:
                table.add_row("named", _e(f"{stack.label}: {stack.distinction}"))
            console.print(table)
            for finding in stack.findings:
                _print_finding(finding, indent=4)
            diagnosis = diagnose(stack)
            _hanging("Diagnosis:", diagnosis.sentence, style="bold")
            if id(stack) in predicted:
                _render_prediction(predicted[id(stack)], shown)
            argument = series_argument(shown.root, inspection, stack, restricted=shown.restricted)
            command = diagnosis.command(argument, coefficients=shown.coefficients, model=shown.model)
            if command:
                console.print(f"  [bold]Next:[/] {_e(command)}", soft_wrap=True)
                needs_coefficients |= "coeff.grad" in command
    if needs_coefficients:
        _hanging("Where coeff.grad comes from:", _WHERE_COEFFICIENTS_COME_FROM, indent=0, style="dim")
    skipped = inspection.skipped_non_dicom + inspection.skipped_non_image
    if skipped and inspection.series:
        console.print(
            f"[dim]{inspection.skipped_non_dicom} non-DICOM file(s) and {inspection.skipped_non_image} "
            f"non-image DICOM object(s) skipped.[/]"
        )


def _heading(title: str) -> None:
    """Print a rule with the series' title; a plain line when the title would not fit (it is never cut)."""
    console = _out()
    if len(title) + 6 <= console.width:
        console.rule(_e(title))
    else:
        console.print(f"[bold]-- {_e(title)}[/]", soft_wrap=True)


def _render_prediction(prediction: StackPrediction, shown: _Shown) -> None:
    """Print what the coefficients predict for one stack (both ways when its state is unknown)."""
    source = Path(shown.model or shown.coefficients or "").name
    for state in prediction.predictions:
        lead = f"Predicted with {source}" + (
            f" if it is {state.distortion_state.value}:" if len(prediction.predictions) > 1 else ":"
        )
        _hanging(lead, _prediction_text(state), style="bold")


def _prediction_text(state: StatePrediction) -> str:
    import numpy as np

    from trueshape.geometry import anatomical_axis_name

    inside = state.inside
    if state.field_of_view_max_mm == 0.0:
        return "nothing left: the scanner corrected this in 3-D."
    edge = ", ".join(f"{v:.0f}" for v in inside.edge_lps)
    moved = sum(v * v for v in inside.edge_displacement_lps) ** 0.5
    axis = anatomical_axis_name(np.asarray(inside.edge_displacement_lps, dtype=np.float64)).split(" (")[0]
    text = (
        f"inside the object 95% of it moves at most {inside.p95_mm:.1f} mm (up to {inside.max_mm:.1f} mm); at its "
        f"edge farthest from the isocentre (LPS {edge} mm, {inside.edge_distance_mm:.0f} mm away) {moved:.1f} mm, "
        f"mostly {axis}; up to {state.field_of_view_max_mm:.1f} mm at the corners of the field of view."
    )
    for point in state.points:
        where = ", ".join(f"{v:g}" for v in point.point_lps)
        shift = ", ".join(f"{v:+.2f}" for v in point.displacement_lps)
        text += (
            f" At LPS {where} mm ({point.distance_from_isocentre_mm:.0f} mm from the isocentre): "
            f"{point.length_mm:.2f} mm (LPS {shift})."
        )
    if state.assumptions:
        text += f" Assumed: {'; '.join(state.assumptions)}."
    return text


def _render_summary(inspection: Inspection, shown: _Shown) -> None:
    """Print one header line and one line per stack (plain columns: each stack stays one line in a log)."""
    columns = ["#", "description", "shape", "spacing (mm)", "state", "reach", "worst finding"]
    if shown.several_visits:
        columns.insert(2, "folder")
    rows: list[list[str]] = []
    styles: list[str] = []
    for series in inspection.series:
        visit = _visit(series, shown).removeprefix(" - ")
        for stack in series.stacks:
            worst, style = _worst(stack)
            row = [
                _pick(stack),
                series.series_description,  # a distinction the label needs is in the first column
                "x".join(str(s) for s in stack.shape),
                "x".join(f"{s:.3g}" for s in stack.geometry.spacing),
                "localizer" if stack.is_localizer else stack.distortion_state.value,
                f"{stack.max_distance_from_isocentre_mm:.0f} mm",
                worst,
            ]
            if shown.several_visits:
                row.insert(2, visit)
            rows.append(row)
            styles.append(style)
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns) - 1)]
    console = _out()

    def lead(cells: list[str]) -> str:
        return "".join(cell.ljust(width) + "  " for cell, width in zip(cells, widths, strict=False))

    console.print(_e(_where_and_when(inspection, shown)), soft_wrap=True)
    console.print(f"[bold]{_e(lead(columns) + columns[-1])}[/]", soft_wrap=True)
    for row, style in zip(rows, styles, strict=True):
        word, _, rest = row[-1].partition(" ")
        worst = f"[{style}]{_e(word)}[/] {_e(rest)}" if style else _e(row[-1])
        console.print(_e(lead(row)) + worst, soft_wrap=True)


def _where_and_when(inspection: Inspection, shown: _Shown) -> str:
    """Return the summary's first line: the folder, how many series and stacks, and the study date(s)."""
    from trueshape.dicom import study_facts

    series = [s for s in inspection.series if s.stacks]
    studies = {}
    for one in series:  # one file per study is read for its date (and patient)
        uid = one.stacks[0].frames[0].study_instance_uid
        if uid not in studies:
            studies[uid] = study_facts(one.stacks[0].frames[0].path)
    dates = sorted({facts.study_date for facts in studies.values() if facts.study_date})
    when = (f"{len(studies)} studies, " if len(studies) > 1 else "") + (
        f"study date {', '.join(dates)}" if dates else "no study date"
    )
    patients = sorted({f"{f.patient_name or '?'} ({f.patient_id or 'no ID'})" for f in studies.values()})
    who = f"; patient {', '.join(patients)}" if shown.show_identifiers and patients else ""
    return f"{shown.root}: {len(series)} series, {len(inspection.stacks)} stacks; {when}{who}"


def _pick(stack: Stack) -> str:
    """Return what follows ``#`` to name the stack: its number (``:index`` when its series has several).

    A number other series share does not name it: its label does (as ``correct`` and ``convert`` take it).
    """
    if stack.number_shared or stack.series_number is None:
        return stack.label
    return str(stack.series_number) + (f":{stack.index}" if stack.stack_count_in_series > 1 else "")


def _worst(stack: Stack) -> tuple[str, str]:
    """Return the stack's most severe finding as ``[warning] CODE (+2 more)``, and its colour."""
    if not stack.findings:
        return "-", ""
    worst = max(stack.findings, key=lambda f: _RANK[f.severity])
    more = f" (+{len(stack.findings) - 1} more)" if len(stack.findings) > 1 else ""
    return f"{_severity(worst.severity)} {worst.code.value}{more}", _SEVERITY_STYLE[worst.severity]
