"""What every ``trueshape`` command shares: the app, its consoles, one-line errors, and the option types.

The options offer the core enums' values (a ``--state`` is a DistortionState, ...), some of them restricted to
what a user may ask for.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from trueshape.correction import REQUESTED_MODES, CorrectionMode
from trueshape.dicom import DistortionState, PatientPosition, PhilipsScaling
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
_PHILIPS_SCALING = typer.Option(
    "--philips-scaling",
    case_sensitive=False,
    help="Philips values: display (DICOM RescaleSlope/Intercept, as pydicom and Slicer; the default) or precise "
    "(Philips' floating-point values, dcm2niix's default).",
)
PhilipsScalingOption = Annotated[PhilipsScaling, _PHILIPS_SCALING]
#: ``correct``: unset means display values, and a volume file (already scaled) is not refused.
CorrectPhilipsScalingOption = Annotated[PhilipsScaling | None, _PHILIPS_SCALING]
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


def _warn(message: str) -> None:
    """One warning line on standard error (input that was worked around, e.g. a damaged copy left out)."""
    _consoles()[1].print(f"[yellow]warning:[/] {_e(' '.join(message.split()))}", soft_wrap=True)


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
