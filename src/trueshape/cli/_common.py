"""What every ``trueshape`` command shares: the app, its consoles, one-line errors, and the option types.

The options offer the core enums' values (a ``--state`` is a DistortionState, ...), some of them restricted to
what a user may ask for.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from trueshape.correction import REQUESTED_MODES, CorrectionMode
from trueshape.dicom import DistortionState, PatientPosition, PhilipsScaling
from trueshape.findings import Finding, FindingCode, Severity
from trueshape.geometry import IrregularPolicy
from trueshape.io import OutputFormat
from trueshape.settings import ValidationMode

if TYPE_CHECKING:
    from rich.console import Console


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


def _without_help_value(option: Any) -> Any:
    """Show ``--help`` (a flag) without a value in the help, as every other flag (typer's shows ``<bool>``)."""
    if option is not None:
        option.metavar = ""
    return option


class _Command(TyperCommand):
    def get_help_option(self, ctx: Any) -> Any:
        return _without_help_value(super().get_help_option(ctx))


class _Group(TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _without_help_value(super().get_help_option(ctx))


class App(typer.Typer):
    """The typer app whose commands and groups show ``--help`` as the flag it is."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(cls=_Group, **settings)

    def command(self, *args: Any, **settings: Any) -> Any:
        """Register a command as ``typer.Typer.command`` does, with the help flag shown as a flag."""
        return super().command(*args, cls=_Command, **settings)


app = App(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Why does this anatomy look distorted, and how do I fix it?",
    epilog="Start with: trueshape inspect DICOM_FOLDER (each series' diagnosis and the command that fixes it).",
)


def flag(name: str, help: str) -> Any:
    """Return a boolean option that takes no value (shown without a type in ``--help``)."""
    return typer.Option(name, help=help, metavar="")


def _print_version(asked: bool) -> None:
    if asked:
        from trueshape._version import __version__

        sys.stdout.write(f"trueshape {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, metavar="", help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Why does this anatomy look distorted, and how do I fix it."""


@functools.cache
def _consoles() -> tuple[Console, Console]:
    """Return the standard output and standard error consoles (rich loads when a command first prints)."""
    from rich.console import Console

    # No emoji codes: ":ok:" in a file name is a file name.
    return Console(highlight=False, emoji=False), Console(stderr=True, highlight=False, emoji=False)


def _out() -> Console:
    return _consoles()[0]


@contextlib.contextmanager
def _progress(description: str) -> Iterator[Callable[[str, float], None]]:
    """Show a progress bar on a terminal (stderr), nothing otherwise; yield the callback work reports to.

    Until the work reports a fraction the bar pulses (commands that cannot tell how far they are).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = _consoles()[1]
    if not console.is_terminal:
        yield lambda _text, _fraction: None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(description, total=None)

        def report(text: str, fraction: float) -> None:
            bar.update(task, total=1.0, completed=fraction, description=f"{description}: {text}")

        yield report


_SEVERITY_STYLE = {Severity.INFO: "cyan", Severity.WARNING: "yellow", Severity.ERROR: "bold red"}
#: A terminal narrower than this gets no hanging indents (the text is left to wrap as it will).
_NARROWEST = 50


def _hanging(lead: str, text: str, *, indent: int = 2, style: str = "", console: Console | None = None) -> None:
    """Print ``lead`` (plain words, styled ``style``) and ``text`` as one paragraph with a hanging indent.

    On a terminal the text wraps under itself, indented past ``indent``; elsewhere (a pipe, a log file) it
    stays on one line, so that each finding is one line to search.
    """
    console = console or _out()
    line = " " * indent + f"{lead} " + " ".join(text.split())
    if console.is_terminal and console.width >= _NARROWEST:
        lines = textwrap.wrap(
            line,
            width=console.width - 1,
            subsequent_indent=" " * (indent + 4),
            break_long_words=False,
            break_on_hyphens=False,
        )
    else:
        lines = [line]
    shown = "\n".join(_e(part) for part in lines)
    if style:
        escaped = _e(lead)
        shown = shown.replace(escaped, f"[{style}]{escaped}[/]", 1)
    console.print(shown, soft_wrap=True)


def _severity(severity: Severity) -> str:
    """Return the severity as a word in brackets (``[warning]``): kept in pipes and logs, where colour is lost."""
    return f"[{severity.value}]"


def _print_finding(finding: Finding, *, indent: int = 2, context: str = "", console: Console | None = None) -> None:
    """Print one finding: ``[warning] CODE message`` (``context`` before the message), with a hanging indent."""
    _hanging(
        _severity(finding.severity),
        f"{finding.code.value} {context}{finding.message}",
        indent=indent,
        style=_SEVERITY_STYLE[finding.severity],
        console=console,
    )


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
OutOption = Annotated[str, typer.Option("--out", "-o", help="Output folder (created if missing).")]
ForceOption = Annotated[
    bool, flag("--force", "Replace this command's earlier outputs (never inputs or files another tool wrote).")
]

# The options of ``correct``, in the order its help lists them.
SeriesArgument = Annotated[
    str,
    typer.Argument(
        help="DICOM folder or file; FOLDER#<series>[:stack] picks one series by number, UID or description; or a "
        "NIfTI/NRRD volume (its JSON sidecar, from trueshape convert or dcm2niix, says what the scanner corrected)."
    ),
]
CoefficientsOption = Annotated[
    Path | None,
    typer.Option(
        "--coef",
        help="The scanner's vendor coefficient file (.grad, or .coef with --r0-mm): ask your site physicist; "
        "Siemens keeps coeff.grad on the scanner host.",
    ),
]
ModelOption = Annotated[
    Path | None,
    typer.Option("--model", help="A scanner model (.json) learned by trueshape learn or estimate, instead of --coef."),
]
ModeOption = Annotated[
    RequestedMode,
    typer.Option(
        "--mode",
        case_sensitive=False,
        help="auto: through-plane for DIS2D series, else full; full: 3-D resampling; through-plane: along the "
        "slice normal only.",
    ),
]
StateOption = Annotated[
    StatedState | None,
    typer.Option(
        "--state",
        case_sensitive=False,
        help="What the scanner corrected, if the headers say nothing or wrong: nd none, dis2d within each slice, "
        "dis3d in 3-D.",
    ),
]
PositionOption = Annotated[
    PatientPosition | None,
    typer.Option(
        "--patient-position",
        case_sensitive=False,
        help="How the patient lay, overriding the headers: hfs head first supine, hfp prone, ffs/ffp feet first, "
        "hfdr/hfdl/ffdr/ffdl decubitus right/left.",
    ),
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
NoIntensityOption = Annotated[
    bool, flag("--no-intensity", "Leave intensities as they are (by default they are scaled by the Jacobian).")
]
CorrectFormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="nifti: .nii.gz; nii: uncompressed; nrrd: .nrrd; dicom: a derived DICOM series for PACS and viewers.",
    ),
]
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


def _point(text: str, option: str) -> tuple[float, float, float]:
    """Parse ``X,Y,Z`` (mm, patient LPS) given to ``option``; a malformed value ends the command in one line."""
    parts = text.replace(" ", "").split(",")
    try:
        x, y, z = (float(part) for part in parts)
    except ValueError:
        _fail(f"{option} needs three numbers X,Y,Z in mm (patient LPS), got {text!r}")
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    return (x, y, z)
