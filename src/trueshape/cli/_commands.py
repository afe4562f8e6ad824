"""The geometry and correction commands: ``inspect``, ``convert``, ``correct`` and ``demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trueshape.cli._common import (
    _DATA_CHANGING,
    _SEVERITY_STYLE,
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
    _out,
    _render_inspection,
    _warn,
    app,
)
from trueshape.dicom import PhilipsScaling
from trueshape.errors import TrueshapeError
from trueshape.findings import Severity
from trueshape.geometry import IrregularPolicy
from trueshape.io import OutputFormat
from trueshape.settings import ValidationMode

if TYPE_CHECKING:
    from rich.table import Table

    from trueshape.demo import DemoResult
    from trueshape.demo_learn import LearningResult


@app.command()
def inspect(
    path: Annotated[str, typer.Argument(help="DICOM file or folder (searched recursively).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    irregular: IrregularOption = IrregularPolicy.WARN,
) -> None:
    """Every series and stack: geometry, findings in plain words, distortion state."""
    from trueshape import api
    from trueshape.geometry import describe_empty, input_errors, input_warnings
    from trueshape.io import to_jsonable

    try:
        inspection = api.inspect(path, irregular=irregular)
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    if as_json:
        sys.stdout.write(json.dumps(to_jsonable(inspection.to_json()), indent=2) + "\n")
    else:
        _render_inspection(inspection)
    for message in input_warnings(inspection):
        _warn(message)
    # Unreadable files, refused series and images that cannot be placed (GEOMETRY_MISSING): one line each.
    messages = input_errors(inspection)
    if not inspection.series and not messages:
        messages.append(describe_empty(inspection))
    for message in messages:
        _fail(message)
    if messages or any(f.severity is Severity.ERROR for s in inspection.series for f in s.findings):
        raise typer.Exit(EXIT_INPUT_ERROR)


@app.command()
def convert(
    path: Annotated[str, typer.Argument(help="DICOM folder/file, optionally FOLDER#<series>[:stack].")],
    out: OutOption,
    fmt: Annotated[ConvertFormat, typer.Option("--format", case_sensitive=False)] = ConvertFormat.NIFTI,
    irregular: IrregularOption = IrregularPolicy.WARN,
    force: ForceOption = False,
    validation: ValidationOption = ValidationMode.WARN,
    philips_scaling: PhilipsScalingOption = PhilipsScaling.DISPLAY,
) -> None:
    """Write one volume per stack (NIfTI or NRRD) with a JSON sidecar."""
    from trueshape import api

    console = _out()
    try:
        result = api.convert(
            path,
            out,
            fmt=fmt.value,
            irregular=irregular,
            force=force,
            validation=validation,
            philips_scaling=philips_scaling,
        )
    except TrueshapeError as error:
        _fail(str(error))
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    for stack in result.stacks:
        for finding in stack.findings:
            if finding.severity is not Severity.INFO:
                console.print(
                    f"[{_SEVERITY_STYLE[finding.severity]}]{finding.code.value}[/] {_e(stack.label)}: "
                    f"{_e(finding.message)}"
                )
    for written in result.written:
        console.print(f"wrote {_e(written)}", soft_wrap=True)
    for message in result.warnings:
        _warn(message)
    for message in result.errors:
        _fail(message)
    if not result.ok:
        raise typer.Exit(EXIT_INPUT_ERROR)


@app.command()
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
) -> None:
    """Remove gradient-nonlinearity distortion with coil coefficients or a scanner model."""
    from trueshape import api

    console = _out()
    try:
        result = api.correct(
            series,
            out,
            coefficients=coef,
            model=model,
            mode=mode.value,
            distortion_state=None if state is None else state.value,
            patient_position=patient_position,
            isocentre_lps=_isocentre(isocentre),
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
    diagnostics = result.diagnostics
    console.print(
        f"corrected ({diagnostics.mode.value}, {diagnostics.distortion_state.value}): residual "
        f"displacement up to {diagnostics.max_displacement_mm:.2f} mm, mean "
        f"{diagnostics.mean_displacement_mm:.2f} mm"
    )
    for assumption in diagnostics.assumptions:
        console.print(f"  assumed: {_e(assumption)}")
    for finding in result.findings:
        # Warnings, and what changed the voxels before correction (interpolated or split slices).
        if finding.severity is not Severity.INFO or finding.code in _DATA_CHANGING:
            console.print(f"  [{_SEVERITY_STYLE[finding.severity]}]{finding.code.value}[/] {_e(finding.message)}")
    for written in result.written:
        console.print(f"wrote {_e(written)}", soft_wrap=True)


def _isocentre(text: str | None) -> tuple[float, float, float] | None:
    """Parse ``X,Y,Z`` (mm); a malformed value ends the command with a one-line error."""
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        x, y, z = (float(part) for part in parts)
    except ValueError:
        _fail(f"--isocentre needs three numbers X,Y,Z in mm (patient LPS), got {text!r}")
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    return (x, y, z)


@app.command()
def demo(
    folder: Annotated[
        Path | None, typer.Argument(help="Where to write the demo (default: a temporary folder).")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Coarser synthetic scans (seconds, not a minute).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a previous demo in FOLDER.")] = False,
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
    _render_inspection(result.inspection)
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
        f"\n[bold]3. Correction[/] with the coil coefficients ({diagnostics.mode.value} mode, residual up "
        f"to {diagnostics.max_displacement_mm:.1f} mm in the field of view)"
    )
    if result.learning is not None:
        _render_learning(result.learning)
    console.print(_heads_table(result))
    if result.quick:
        console.print(
            "[dim](--quick samples the heads on 3 mm pixels and 4 mm slices, and the correction "
            "interpolates along those slices: front-back diameters are off by a few percent; run without "
            "--quick for the real figures.)[/]"
        )
    for written in result.written:
        console.print(f"[dim]wrote {_e(written)}[/]", soft_wrap=True)


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
    for side, learned, true in zip(("right", "left"), learning.learned_ap_change_mm, learning.true_ap_change_mm,
                                   strict=True):
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
            console.print(f"  [{_SEVERITY_STYLE[finding.severity]}]{finding.code.value}[/] {_e(finding.message)}")


def _outward(shift_mm: float) -> str:
    return f"{abs(shift_mm):.2f} mm {'outward' if shift_mm > 0 else 'inward'}"
