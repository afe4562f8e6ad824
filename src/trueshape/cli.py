"""The ``trueshape`` command: parse options, call the API, render. No logic of its own.

Start-up stays short (``benchmarks/startup.py`` measures it): only typer and the enums the options offer
load with the module; the API, rich and the layers that need nibabel, scipy or SimpleITK load when a
command runs. The options offer the core enums' values (a ``--state`` is a DistortionState, ...), some of
them restricted to what a user may ask for.
"""

from __future__ import annotations

import enum
import functools
import gc
import json
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from trueshape.correction import REQUESTED_MODES, CorrectionMode
from trueshape.dicom import DistortionState, PatientPosition
from trueshape.errors import TrueshapeError
from trueshape.findings import FindingCode, Severity
from trueshape.geometry import IrregularPolicy
from trueshape.io import OutputFormat
from trueshape.settings import ValidationMode

if TYPE_CHECKING:
    from rich.console import Console

    from trueshape.geometry import Inspection

EXIT_INPUT_ERROR = 2
#: Exit code of an unexpected failure (a bug); bad input exits with EXIT_INPUT_ERROR.
EXIT_INTERNAL_ERROR = 1

_Member = TypeVar("_Member", bound=enum.Enum)


def _offered(name: str, members: Iterable[_Member]) -> Any:
    """Return a StrEnum of ``members`` (same names and values): a core enum's choices a command offers."""
    return enum.StrEnum(name, [(member.name, str(member.value)) for member in members], module=__name__)


# What the options offer, derived from the core enums; type checkers see the core enum itself.
if TYPE_CHECKING:
    ConvertFormat = OutputFormat
    CorrectIrregular = IrregularPolicy
    RequestedMode = CorrectionMode
    StatedState = DistortionState
else:
    #: ``convert --format``: a derived DICOM series is for corrected series only.
    ConvertFormat = _offered("ConvertFormat", (f for f in OutputFormat if f is not OutputFormat.DICOM))
    #: ``correct --irregular``: a correction needs one regular grid in true geometry.
    CorrectIrregular = _offered("CorrectIrregular", (IrregularPolicy.RESAMPLE, IrregularPolicy.FAIL))
    #: ``--mode``: the modes one can ask for (``none`` is only ever a result).
    RequestedMode = _offered("RequestedMode", REQUESTED_MODES)
    #: ``--state``: what the scanner corrected (``UNKNOWN`` is what headers may say, not a fact).
    StatedState = _offered("StatedState", (s for s in DistortionState if s is not DistortionState.UNKNOWN))

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Why does this anatomy look distorted, and how do I fix it?",
)


@functools.cache
def _consoles() -> tuple[Console, Console]:
    """Return the standard output and standard error consoles (rich loads when a command first prints)."""
    from rich.console import Console

    # No emoji codes: ":ok:" in a file name is a file name.
    return Console(highlight=False, emoji=False), Console(stderr=True, highlight=False, emoji=False)


def _out() -> Console:
    return _consoles()[0]


_SEVERITY_STYLE = {Severity.INFO: "cyan", Severity.WARNING: "yellow", Severity.ERROR: "bold red"}

IrregularOption = Annotated[
    IrregularPolicy,
    typer.Option(
        "--irregular",
        case_sensitive=False,
        help="Slices off a regular grid: warn (keep + acquisition transform), resample, split, or fail.",
    ),
]


ValidationOption = Annotated[
    ValidationMode,
    typer.Option(
        "--validation",
        case_sensitive=False,
        help="Geometry warnings: warn (report), ignore, or raise (refuse those stacks, exit code 2).",
    ),
]
OutOption = Annotated[str, typer.Option("--out", "-o", help="Output folder.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]

# The options of ``correct``, in the order its help lists them.
SeriesArgument = Annotated[
    str,
    typer.Argument(
        help="DICOM folder/file, optionally FOLDER#<series>[:stack]; or a NIfTI/NRRD volume (its JSON sidecar, "
        "from trueshape convert or dcm2niix, says what the scanner corrected)."
    ),
]
CoefficientsOption = Annotated[Path | None, typer.Option("--coef", help="Vendor coefficients (.grad or .coef).")]
ModelOption = Annotated[Path | None, typer.Option("--model", help="trueshape scanner model (.json).")]
ModeOption = Annotated[RequestedMode, typer.Option("--mode", case_sensitive=False)]
StateOption = Annotated[
    StatedState | None, typer.Option("--state", case_sensitive=False, help="Override the distortion state.")
]
PositionOption = Annotated[
    PatientPosition | None, typer.Option("--patient-position", case_sensitive=False, help="Override PatientPosition.")
]
IsocentreOption = Annotated[
    str | None,
    typer.Option(
        "--isocentre",
        metavar="X,Y,Z",
        help="Override the isocentre: patient LPS mm (0,0,0 when the table was not moved).",
    ),
]
CorrectIrregularOption = Annotated[
    CorrectIrregular,
    typer.Option(
        "--irregular", case_sensitive=False, help="Slices off a regular grid: resample them first (default) or fail."
    ),
]
RadiusOption = Annotated[float | None, typer.Option("--r0-mm", help="Reference radius for .coef files (mm).")]
NoIntensityOption = Annotated[bool, typer.Option("--no-intensity", help="Skip Jacobian intensity correction.")]
CorrectFormatOption = Annotated[OutputFormat, typer.Option("--format", case_sensitive=False)]
LikeOption = Annotated[
    str | None,
    typer.Option(
        "--like",
        metavar="VOLUME_OR_SERIES",
        help="Write the corrected volume on the grid of this volume file or DICOM series (default: its own).",
    ),
]


_DATA_CHANGING = frozenset({FindingCode.STACK_RESAMPLED, FindingCode.STACK_SPLIT})


def _fail(message: str) -> None:
    # One line, and no markup from the message: paths such as "sub-01_[run1].nii" are data, not styles.
    _consoles()[1].print(f"[bold red]error:[/] {_e(' '.join(message.split()))}", soft_wrap=True)


def _e(value: object) -> str:
    """``value`` as text that rich prints literally (file names, descriptions and messages are data)."""
    from rich.markup import escape

    return escape(str(value))


def _render_inspection(inspection: Inspection) -> None:
    from rich.table import Table

    console = _out()
    for series in inspection.series:
        console.rule(_e(f"Series {series.series_number} {series.series_description} ({series.modality})"))
        for finding in series.findings:
            console.print(f"  [{_SEVERITY_STYLE[finding.severity]}]{finding.code.value}[/] {_e(finding.message)}")
        for stack in series.stacks:
            table = Table(show_header=False, box=None, padding=(0, 1))
            table.add_row("stack", _e(f"{stack.selector}  ({stack.label})"))
            table.add_row("shape", " x ".join(str(s) for s in stack.shape))
            table.add_row("spacing (mm)", " x ".join(f"{s:.4g}" for s in stack.geometry.spacing))
            table.add_row(
                "distortion",
                _e(
                    f"{stack.distortion_state.value}"
                    + (f"  (from {stack.distortion_source})" if stack.distortion_source else "")
                ),
            )
            table.add_row(
                "isocentre (LPS mm)",
                _e(f"{[round(float(v), 2) for v in stack.isocentre_lps]}  ({stack.isocentre_source})"),
            )
            table.add_row("farthest FOV point", f"{stack.max_distance_from_isocentre_mm:.0f} mm from isocentre")
            console.print(table)
            for finding in stack.findings:
                console.print(
                    f"    [{_SEVERITY_STYLE[finding.severity]}]{finding.code.value}[/] {_e(finding.message)}",
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
    path: Annotated[str, typer.Argument(help="DICOM file or folder (searched recursively).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    irregular: IrregularOption = IrregularPolicy.WARN,
) -> None:
    """Every series and stack: geometry, findings in plain words, distortion state."""
    from trueshape import api
    from trueshape.geometry import describe_empty
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
    messages = [p.message for p in inspection.problems] + list(inspection.errors)
    if not inspection.series and not messages:
        messages.append(describe_empty(inspection))
    for message in messages:
        _fail(message)
    # Images that cannot be placed (GEOMETRY_MISSING) are an input error too, shown above with the series.
    unplaced = any(f.severity is Severity.ERROR for s in inspection.series for f in s.findings)
    if messages or unplaced:
        raise typer.Exit(EXIT_INPUT_ERROR)


@app.command()
def convert(
    path: Annotated[str, typer.Argument(help="DICOM folder/file, optionally FOLDER#<series>[:stack].")],
    out: OutOption,
    fmt: Annotated[ConvertFormat, typer.Option("--format", case_sensitive=False)] = ConvertFormat.NIFTI,
    irregular: IrregularOption = IrregularPolicy.WARN,
    force: ForceOption = False,
    validation: ValidationOption = ValidationMode.WARN,
) -> None:
    """Write one volume per stack (NIfTI or NRRD) with a JSON sidecar."""
    from trueshape import api

    console = _out()
    try:
        result = api.convert(path, out, fmt=fmt.value, irregular=irregular, force=force, validation=validation)
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
    from rich.table import Table

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
    console.print(table)
    if result.quick:
        console.print(
            "[dim](--quick samples the heads on 3 mm pixels and 4 mm slices, and the correction "
            "interpolates along those slices: front-back diameters are off by a few percent; run without "
            "--quick for the real figures.)[/]"
        )
    for written in result.written:
        console.print(f"[dim]wrote {_e(written)}[/]", soft_wrap=True)


def _outward(shift_mm: float) -> str:
    return f"{abs(shift_mm):.2f} mm {'outward' if shift_mm > 0 else 'inward'}"


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
