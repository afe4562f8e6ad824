"""The commands that learn the field from images: ``estimate``, ``model fit`` and ``learn``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trueshape.cli._common import (
    EXIT_INPUT_ERROR,
    App,
    ForceOption,
    OutOption,
    StatedState,
    _e,
    _fail,
    _out,
    _progress,
    app,
    flag,
)
from trueshape.cli._report import ReportOption, write_folder_report
from trueshape.errors import TrueshapeError
from trueshape.io import OutputFormat

if TYPE_CHECKING:
    from trueshape.estimation import EstimateOptions, EstimateOutput, PairChoice

#: Exit code of a finished estimate whose fit is poor, with ``--strict``.
EXIT_POOR_FIT = 3

model_app = App(no_args_is_help=True, help="Scanner models: pool estimates into one model.")
app.add_typer(model_app, name="model")

ReferenceOption = Annotated[
    str | None,
    typer.Option("--reference", metavar="SERIES", help="A series of the same session: DIS3D, or another orientation."),
]
MovingOption = Annotated[
    str, typer.Option("--moving", metavar="SERIES", help="The distorted series (DIS2D or ND): DICOM or NIfTI/NRRD.")
]
PhantomOption = Annotated[
    Path | None,
    typer.Option("--phantom", metavar="MARKERS.csv", help="Marker positions (header x,y,z, mm) of a phantom scan."),
]
OrderOption = Annotated[int, typer.Option("--order", min=2, max=10, help="Highest harmonic degree to fit.")]
SimilarityOption = Annotated[
    str, typer.Option("--similarity", help="cr: any contrast between the series (default); ncc: one contrast.")
]
NoMotionOption = Annotated[bool, flag("--no-motion", "Assume the patient did not move between the series.")]
StrictOption = Annotated[bool, flag("--strict", "Exit with code 3 when the fit is poor (outputs are written).")]
EstimateFormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="Of the corrected series: nifti .nii.gz; nii uncompressed; nrrd .nrrd; dicom a derived DICOM series.",
    ),
]
#: What follows ``#`` in the examples: the demo session's reference (2) and distorted coronal (3) series.
_DEMO = "demo-out/session/dicom"


def _options(order: int, similarity: str, no_motion: bool, fmt: OutputFormat, force: bool, strict: bool,
             free_form_mm: float | None = None) -> EstimateOptions:
    from trueshape.estimation import FREE_FORM_PRIOR_SD_MM, EstimateOptions, FitOptions, Similarity
    from trueshape.settings import parse_choice

    chosen = parse_choice(Similarity, similarity, "--similarity")
    if free_form_mm is not None:  # the fallback: a rigid shift along the axis would be part of the field
        fit = FitOptions(similarity=chosen, motion=False, free_form_spacing_mm=free_form_mm,
                         prior_sd=FREE_FORM_PRIOR_SD_MM, max_points=30_000)
    else:
        fit = FitOptions(order=order, similarity=chosen, motion=not no_motion)
    return EstimateOptions(fit=fit, output_format=fmt, force=force, strict=strict)


def _render_estimate(result: EstimateOutput) -> None:
    console = _out()
    report = result.report
    if report["kind"] == "pair":
        fit = report["fit"]
        motion = report["motion_reference_to_moving"]
        console.print(f"reference {_e(report['reference']['label'])} ({report['reference']['distortion_state']}), "
                      f"moving {_e(report['moving']['label'])} ({report['moving']['distortion_state']})")
        console.print(f"fit: harmonics to order {fit['order']}, {len(fit['iterations'])} levels "
                      f"({'/'.join(str(i) for i in fit['iterations'])} iterations), {fit['seconds']:.1f} s; "
                      f"the series agree {100 * fit['agreement_before']:.0f}% before, "
                      f"{100 * fit['agreement_after']:.0f}% after; motion found {motion['shift_mm']:.2f} mm, "
                      f"{motion['angle_deg']:.2f} deg")
    else:
        markers = report["markers"]
        console.print(f"phantom: {markers['matched']} of {markers['found']} markers found were matched; they sit "
                      f"{markers['residual_mean_mm']:.3f} mm (mean, {markers['residual_max_mm']:.3f} max) from the "
                      f"fitted positions; distortion at the markers up to {markers['distortion_max_mm']:.2f} mm")
    if not report.get("transferable", True):
        console.print(f"free-form field: {_e(report['why_not_transferable'])}; no model.json is written")
    identifiability = result.identifiability
    undetermined = identifiability.undetermined()
    console.print(f"the data determine {identifiability.determined_combinations} of {len(identifiability.terms)} "
                  f"coefficient combinations"
                  + (f"; written as 0 (undetermined): {_e(', '.join(undetermined))}" if undetermined else ""))
    for label, field in report["field"].items():
        bins = ", ".join(f"{b['from_mm']:.0f}-{b['to_mm']:.0f} mm: {b['rms_mm']:.2f}"
                         for b in field["by_distance_from_isocentre"])
        console.print(f"estimated residual of {_e(label)}: RMS {field['rms_mm']:.2f} mm, up to {field['max_mm']:.2f} "
                      f"mm in the object (uncertainty {field['uncertainty_rms_mm']:.3f} mm RMS)")
        console.print(f"  RMS by distance from the isocentre: {bins}", soft_wrap=True)
    for warning in result.warnings:
        console.print(f"[yellow]\\[warning][/] poor fit: {_e(warning)}")
    for written in result.written:
        console.print(f"wrote {_e(written)}", soft_wrap=True)


ReferenceStateOption = Annotated[
    StatedState | None,
    typer.Option(
        "--reference-state", case_sensitive=False, help="What the scanner corrected in --reference: nd, dis2d, dis3d."
    ),
]
MovingStateOption = Annotated[
    StatedState | None,
    typer.Option(
        "--moving-state", case_sensitive=False, help="What the scanner corrected in --moving: nd, dis2d, dis3d."
    ),
]


@app.command(
    epilog=f"Example: trueshape estimate --reference {_DEMO}#2 --moving {_DEMO}#3 --out out/estimated   "
    "(a phantom: --phantom MARKERS.csv --moving SERIES)"
)
def estimate(
    moving: MovingOption,
    out: OutOption,
    reference: ReferenceOption = None,
    phantom: PhantomOption = None,
    order: OrderOption = 5,
    similarity: SimilarityOption = "cr",
    no_motion: NoMotionOption = False,
    same_frame: Annotated[
        bool, flag("--same-frame", "The series' frames of reference differ, but the patient did not move.")
    ] = False,
    reference_state: ReferenceStateOption = None,
    moving_state: MovingStateOption = None,
    marker_radius_mm: Annotated[
        float, typer.Option("--marker-radius-mm", help="Radius of the phantom's markers.")
    ] = 3.0,
    markers_in_lps: Annotated[
        bool, flag("--markers-in-lps", "The CSV gives the markers in patient LPS (a known pose).")
    ] = False,
    free_form: Annotated[
        bool, flag("--free-form", "Fallback: a smooth B-spline field, for these series only (no model).")
    ] = False,
    free_form_spacing_mm: Annotated[
        float, typer.Option("--free-form-spacing-mm", min=10.0, help="Control-point spacing of --free-form.")
    ] = 60.0,
    fmt: EstimateFormatOption = OutputFormat.NIFTI,
    strict: StrictOption = False,
    force: ForceOption = False,
    report: ReportOption = False,
) -> None:
    """Learn the scanner's distortion from a reference and a moving series of one session (or a phantom)."""
    from trueshape import api

    options = _options(order, similarity, no_motion, fmt, force, strict,
                       free_form_spacing_mm if free_form else None)
    try:
        with _progress("estimating") as progress:
            result = api.estimate(
                moving, out, reference=reference, phantom=phantom, options=options, same_frame=same_frame,
                reference_state=None if reference_state is None else reference_state.value,
                moving_state=None if moving_state is None else moving_state.value,
                marker_radius_mm=marker_radius_mm, markers_in_lps=markers_in_lps, progress=progress)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    _render_estimate(result)
    if report:
        write_folder_report(out)
    if strict and result.poor:
        raise typer.Exit(EXIT_POOR_FIT)


@model_app.command("fit", epilog="Example: trueshape model fit out/estimated --out out/scanner.json")
def model_fit(
    estimates: Annotated[list[Path], typer.Argument(help="Folders written by trueshape estimate (or learn).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The scanner model file to write (.json).")],
    force: ForceOption = False,
) -> None:
    """Pool several sessions' estimates into one scanner model, with leave-one-session-out checks."""
    from trueshape import api

    try:
        fitted = api.fit_model(list(estimates), out, force=force)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    _render_model(fitted.pooled, fitted.warnings, fitted.path)


def _render_model(pooled: object, warnings: tuple[str, ...], path: Path) -> None:
    from rich.table import Table

    from trueshape.estimation import PooledModel

    assert isinstance(pooled, PooledModel)
    console = _out()
    identifiability = pooled.identifiability
    console.print(f"model from {max(len(pooled.cross_validation), 1)} session(s): the data determine "
                  f"{identifiability.determined_combinations} of {len(identifiability.terms)} coefficient combinations")
    if pooled.cross_validation:
        table = Table(title="leave-one-session-out: the others' model against each session's own estimate")
        for column in ("session", "its field RMS (mm)", "difference RMS (mm)", "max (mm)",
                       "where the others measured: RMS (mm)"):
            table.add_column(column)
        for check in pooled.cross_validation:
            table.add_row(_e(check.session), f"{check.rms_field_mm:.3f}", f"{check.rms_difference_mm:.3f}",
                          f"{check.max_difference_mm:.3f}",
                          f"{check.overlap_rms_difference_mm:.3f} ({100 * check.overlap_fraction:.0f}% of it)")
        console.print(table)
    for warning in warnings:
        console.print(f"[yellow]\\[warning][/] {_e(warning)}")
    console.print(f"wrote {_e(path)}", soft_wrap=True)


@app.command(
    epilog="Example: trueshape learn demo-out/learning/subject1 demo-out/learning/subject2 --out out/learned"
)
def learn(
    sessions: Annotated[list[Path], typer.Argument(help="Session folders, each holding both scans of one visit.")],
    out: OutOption,
    order: OrderOption = 5,
    similarity: SimilarityOption = "cr",
    no_motion: NoMotionOption = False,
    fmt: EstimateFormatOption = OutputFormat.NIFTI,
    force: ForceOption = False,
    report: ReportOption = False,
) -> None:
    """Pick each session's pair, estimate it, and pool a scanner model (then: correct OTHER --model OUT/model.json)."""
    from trueshape import api

    console = _out()

    def chosen(name: str, choice: PairChoice) -> None:
        console.print(f"[bold]{_e(name)}[/]: {_e(choice.reason)}", soft_wrap=True)

    options = _options(order, similarity, no_motion, fmt, force, strict=False)
    try:
        with _progress("learning") as progress:
            learned = api.learn(list(sessions), out, options=options, on_choice=chosen, progress=progress)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    for name, result in learned.estimates:
        console.rule(_e(name))
        _render_estimate(result)
    console.rule("scanner model")
    _render_model(learned.model.pooled, learned.model.warnings, learned.model.path)
    console.print(f"next: trueshape correct SERIES --model {_e(learned.model.path)} --out DIR", soft_wrap=True)
    if report:
        write_folder_report(out)
    for name, reason in learned.failures:
        _fail(f"{name}: not used: {reason}")
    if learned.failures:
        raise typer.Exit(EXIT_INPUT_ERROR)
