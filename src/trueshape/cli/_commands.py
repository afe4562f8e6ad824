"""The conversion and correction commands: ``convert``, ``correct`` and ``demo`` (``inspect``: ``_inspect``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trueshape.cli._common import (
    _DATA_CHANGING,
    EXIT_INPUT_ERROR,
    CoefficientsOption,
    ConvertFormat,
    CorrectFormatOption,
    CorrectIrregular,
    CorrectIrregularOption,
    CorrectPhilipsScalingOption,
    ForceOption,
    IrregularOption,
    IsocentreOption,
    LikeOption,
    ModelOption,
    ModeOption,
    NoIntensityOption,
    OutOption,
    PhilipsScalingOption,
    PositionOption,
    RadiusOption,
    RequestedMode,
    SeriesArgument,
    StateOption,
    ValidationOption,
    _e,
    _fail,
    _hanging,
    _out,
    _point,
    _print_finding,
    _progress,
    _warn,
    app,
    flag,
)
from trueshape.cli._inspect import render_inspection, shown_for
from trueshape.cli._report import ReportOption, write_folder_report
from trueshape.correction import CorrectionMode
from trueshape.dicom import PhilipsScaling
from trueshape.errors import TrueshapeError
from trueshape.findings import FindingCode, Severity
from trueshape.geometry import IrregularPolicy
from trueshape.io import OutputFormat
from trueshape.settings import ValidationMode

#: Information ``correct`` says too: what changed the voxels before correction, and a coil it cannot check.
_SAID_WHEN_CORRECTING = _DATA_CHANGING | {FindingCode.COIL_UNVERIFIED}

if TYPE_CHECKING:
    from rich.table import Table

    from trueshape.correction import CorrectOutput
    from trueshape.demo import DemoResult
    from trueshape.demo_learn import LearningResult


@app.command(epilog="Example: trueshape convert demo-out/session/dicom --out converted")
def convert(
    path: Annotated[
        str,
        typer.Argument(help="DICOM folder or file; FOLDER#<series>[:stack] converts one series (number, UID or name)."),
    ],
    out: OutOption,
    fmt: Annotated[
        ConvertFormat,
        typer.Option("--format", case_sensitive=False, help="nifti: .nii.gz; nii: uncompressed; nrrd: .nrrd."),
    ] = ConvertFormat.NIFTI,
    irregular: IrregularOption = IrregularPolicy.WARN,
    force: ForceOption = False,
    validation: ValidationOption = ValidationMode.WARN,
    philips_scaling: PhilipsScalingOption = PhilipsScaling.DISPLAY,
    report: ReportOption = False,
) -> None:
    """Write one volume per stack (NIfTI or NRRD) with a JSON sidecar."""
    from trueshape import api

    console = _out()
    try:
        with _progress("converting"):
            result = api.convert(path, out, fmt=fmt.value, irregular=irregular, force=force, validation=validation,
                                 philips_scaling=philips_scaling)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    for stack in result.stacks:
        for finding in stack.findings:
            if finding.severity is not Severity.INFO:
                _print_finding(finding, indent=0, context=f"{stack.label}: ")
    for written in result.written:
        console.print(f"wrote {_e(written)}", soft_wrap=True)
    for message in result.warnings:
        _warn(message)
    if report and result.written:
        write_folder_report(out)
    for message in result.errors:
        _fail(message)
    if not result.ok:
        raise typer.Exit(EXIT_INPUT_ERROR)


@app.command(epilog="Example: trueshape correct demo-out/session/dicom#3 --coef demo-out/SYN-AS.grad --out corrected")
def correct(
    series: SeriesArgument,
    out: OutOption,
    coef: CoefficientsOption = None,
    model: ModelOption = None,
    mode: ModeOption = RequestedMode.AUTO,
    state: StateOption = None,
    patient_position: PositionOption = None,
    isocentre: IsocentreOption = None,
    irregular: CorrectIrregularOption = CorrectIrregular.RESAMPLE,
    r0_mm: RadiusOption = None,
    no_intensity: NoIntensityOption = False,
    fmt: CorrectFormatOption = OutputFormat.NIFTI,
    like: LikeOption = None,
    philips_scaling: CorrectPhilipsScalingOption = None,
    force: ForceOption = False,
    report: ReportOption = False,
) -> None:
    """Remove gradient-nonlinearity distortion with coil coefficients or a scanner model."""
    from trueshape import api

    console = _out()
    try:
        with _progress("correcting"):
            result = api.correct(
                series,
                out,
                coefficients=coef,
                model=model,
                mode=mode.value,
                distortion_state=None if state is None else state.value,
                patient_position=patient_position,
                isocentre_lps=None if isocentre is None else _point(isocentre, "--isocentre"),
                r0_mm=r0_mm,
                irregular=irregular.value,
                intensity_correction=not no_intensity,
                fmt=fmt,
                force=force,
                like=like,
                philips_scaling=philips_scaling,
            )
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    from trueshape.io import is_volume_file

    _render_correction(result, from_sidecar=is_volume_file(series))
    for written in result.written:
        console.print(f"wrote {_e(written)}", soft_wrap=True)
    if report:
        write_folder_report(out)


def _render_correction(result: CorrectOutput, *, from_sidecar: bool) -> None:
    """Say what the correction did (for the object and the field of view), on what facts, and what it found."""
    console = _out()
    done = result.diagnostics
    if done.mode is CorrectionMode.NONE:
        console.print(
            f"already corrected in 3-D ({done.distortion_state.value}): nothing is left to correct; the values are "
            "copied",
            soft_wrap=True,
        )
    else:
        inside = (
            f"inside the object 95% of it moved at most {done.object_p95_displacement_mm:.2f} mm (up to "
            f"{done.object_max_displacement_mm:.2f} mm); "
            if done.object_p95_displacement_mm is not None and done.object_max_displacement_mm is not None
            else ""
        )
        console.print(
            f"corrected ({done.mode.value}, {done.distortion_state.value}): residual displacement {inside}over the "
            f"whole field of view up to {done.max_displacement_mm:.2f} mm, mean {done.mean_displacement_mm:.2f} mm",
            soft_wrap=True,
        )
    read = "read from sidecar:" if from_sidecar else "read from headers:"
    for lead, facts in ((read, done.read_from_headers), ("given:", done.given), ("assumed:", done.assumptions)):
        for fact in facts:
            _hanging(lead, fact, style="dim" if lead != "assumed:" else "yellow")
    for finding in result.findings:
        # Warnings, what changed the voxels before correction (interpolated or split slices), and coil doubts.
        if finding.severity is not Severity.INFO or finding.code in _SAID_WHEN_CORRECTING:
            _print_finding(finding)


@app.command(epilog="Example: trueshape demo demo-out   (then the README's recipe runs on demo-out/)")
def demo(
    folder: Annotated[
        Path | None, typer.Argument(help="Where to write the demo (default: a temporary folder).")
    ] = None,
    quick: Annotated[bool, flag("--quick", "Coarser synthetic scans (half a minute, not two).")] = False,
    force: Annotated[bool, flag("--force", "Replace a previous demo in FOLDER.")] = False,
) -> None:
    """Show the whole story on synthetic data: a flattened femoral head, why, and the fix."""
    from trueshape.demo import run_demo

    console = _out()
    console.rule("trueshape demo: why does the femoral head look flattened?")
    console.print("Writing a synthetic session (SYN-FEMUR phantom, SYN-AS gradient coil) as DICOM ...")
    try:
        result = run_demo(folder, quick=quick, force=force)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    console.print(f"Session in {_e(result.folder)}\n")
    console.print("[bold]1. What the headers say[/] (trueshape inspect):")
    render_inspection(result.inspection, shown_for(result.inspection.root, coefficients=str(result.coil_file)))
    console.print("\n[bold]2. What the coil predicts at the femoral heads[/] (coronal series):")
    for prediction in result.predictions:
        side = "left" if prediction.centre_lps[0] > 0 else "right"
        console.print(
            f"  {side} head, {prediction.distance_from_isocentre_mm:.0f} mm from the isocentre: front edge moves "
            f"{_outward(prediction.front_shift_mm)}, back edge {_outward(prediction.back_shift_mm)} -> "
            f"front-to-back {prediction.true_ap_mm:.1f} mm appears as {prediction.predicted_ap_mm:.1f} mm "
            f"({100 * (prediction.predicted_ap_mm / prediction.true_ap_mm - 1):+.1f}%)"
        )
    console.print(f"\n[bold]Diagnosis:[/] {_e(result.diagnosis())}")
    diagnostics = result.correction.diagnostics
    console.print(
        f"\n[bold]3. Correction[/] with the coil coefficients ({diagnostics.mode.value} mode; residual"
        + (
            f" inside the object 95% at most {diagnostics.object_p95_displacement_mm:.1f} mm,"
            if diagnostics.object_p95_displacement_mm is not None
            else ""
        )
        + f" up to {diagnostics.max_displacement_mm:.1f} mm in the field of view)"
    )
    if result.learning is not None:
        _render_learning(result.learning)
    console.print(_heads_table(result))
    if result.quick:
        console.print(
            "[dim](--quick samples the scans on 3 mm pixels (4 mm axial slices, 2 mm coronal ones: the front-back "
            "axis measured); run without --quick for the full-resolution figures.)[/]"
        )
    for written in result.written:
        console.print(f"[dim]wrote {_e(written)}[/]", soft_wrap=True)
    from trueshape.demo_report import write_demo_report

    try:
        page = write_demo_report(result)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    console.print(f"\n[bold]Report[/] (open it in a browser): {_e(page)}", soft_wrap=True)


def _heads_table(result: DemoResult) -> Table:
    """Tabulate the femoral heads measured in every version of the series."""
    from rich.table import Table

    table = Table(title=f"Femoral head marrow, true diameter {result.true_diameter_mm:.1f} mm")
    for column in ("series", "head", "left-right (mm)", "front-back (mm)", "front-back / left-right"):
        table.add_column(column)
    for name, measured in result.measurements.items():
        for measurement in measured:
            side = "left" if measurement.centre_lps[0] > 0 else "right"
            table.add_row(
                name,
                side,
                f"{measurement.diameters_mm[0]:.2f}",
                f"{measurement.diameters_mm[1]:.2f}",
                f"{measurement.ap_lr_ratio:.3f}",
            )
    return table


def _render_learning(learning: LearningResult) -> None:
    """Print the demo's second half: the pairs learn picked, how well the sessions agree, the learned field."""
    console = _out()
    console.print(
        "\n[bold]4. No coefficient file?[/] Learn the correction from images: two other subjects had both scans "
        "(trueshape learn)"
    )
    for name, choice in learning.learned.choices:
        console.print(f"  {_e(name)}: {_e(choice.reason)}", soft_wrap=True)
    for check in learning.learned.model.pooled.cross_validation:
        console.print(
            f"  leave-one-out: the other subject's model predicts {_e(check.session)}'s field to "
            f"{check.rms_difference_mm:.2f} mm RMS ({check.rigid_adjusted_rms_mm:.2f} mm once a rigid shift is "
            f"taken out; its field {check.rms_field_mm:.2f} mm RMS)"
        )
    for side, learned, true in zip(
        ("right", "left"), learning.learned_ap_change_mm, learning.true_ap_change_mm, strict=True
    ):
        console.print(
            f"  {side} head: front-to-back, the learned model moves its back edge against its front by "
            f"{learned:+.2f} mm, the coil by {true:+.2f} mm"
        )
    console.print(
        f"  -> the same coronal series corrected with the learned model ({_e(learning.learned.model.path)}), "
        "no coefficient file: last row below"
    )
    for finding in learning.correction.findings:
        if finding.severity is not Severity.INFO:
            _print_finding(finding)


def _outward(shift_mm: float) -> str:
    return f"{abs(shift_mm):.2f} mm {'outward' if shift_mm > 0 else 'inward'}"
