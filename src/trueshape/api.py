"""The Python API: one function per command, the face the CLI is a thin shell over.

Each function takes what a user types (paths, a SERIES argument, option names as text or enums), checks it
once, and hands the work to the layer that owns it: ``dicom`` and ``geometry`` (:func:`inspect`,
:func:`load`), ``io`` (:func:`convert`), ``correction`` (:func:`correct`), ``estimation``
(:func:`estimate`, :func:`fit_model`, :func:`learn`), ``reporting`` (:func:`report`). The layers that need
nibabel, scipy or SimpleITK are imported by the functions that use them, so that ``trueshape inspect`` starts
fast. ``trueshape.batch`` is a layer above (``batching``).

Examples
--------
>>> import trueshape
>>> inspection = trueshape.inspect("path/to/dicom")                  # doctest: +SKIP
>>> volume = trueshape.load("path/to/dicom#3")                       # doctest: +SKIP
>>> result = trueshape.convert("path/to/dicom", "out", fmt="nrrd")   # doctest: +SKIP
>>> output = trueshape.correct("path/to/dicom#4", "out", coefficients="coil.grad")  # doctest: +SKIP
>>> page = trueshape.report("out")                                   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trueshape.correction import CorrectionMode, CorrectOutput
from trueshape.dicom import DistortionState, PatientPosition, PhilipsScaling, scan
from trueshape.errors import TrueshapeError
from trueshape.geometry import (
    Inspection,
    IrregularPolicy,
    Stack,
    Volume,
    apply_validation,
    describe_empty,
    group_series,
    input_errors,
    input_warnings,
    load_stack,
    one_stack,
    parse_series_argument,
    restrict,
    select_stacks,
)
from trueshape.io import OutputFormat, check_output_folder, check_writable, refuse_output_inside
from trueshape.settings import ValidationMode, parse_choice, settings

if TYPE_CHECKING:
    from trueshape.estimation import EstimateOptions, EstimateOutput, LearnOutput, ModelFit, PairChoice

__all__ = [
    "ConvertResult",
    "CorrectOutput",
    "OutputFormat",
    "convert",
    "correct",
    "estimate",
    "fit_model",
    "inspect",
    "learn",
    "load",
    "report",
]


# ------------------------------------------------------------------------------------------ inspect, load


def inspect(path: str | os.PathLike[str], *, irregular: IrregularPolicy | str = IrregularPolicy.WARN) -> Inspection:
    """Scan a file or folder and check the geometry of every series and stack.

    Parameters
    ----------
    path : str or PathLike
        DICOM file or folder (searched recursively); ``FOLDER#<series>[:stack]`` keeps the stacks it names.
    irregular : IrregularPolicy or str
        ``warn`` (default), ``resample``, ``split`` or ``fail``.

    Returns
    -------
    Inspection
        Series, stacks with findings, and the files that could not be used.

    Examples
    --------
    >>> inspection = inspect("session/dicom")                        # doctest: +SKIP
    >>> [stack.selector for stack in inspection.stacks]              # doctest: +SKIP
    ['2:1', '3:1']
    """
    source, series_key, stack_index = parse_series_argument(path)
    inspection = group_series(scan(source), policy=parse_choice(IrregularPolicy, irregular, "--irregular"))
    return restrict(inspection, series_key, stack_index) if inspection.stacks else inspection


def load(
    series: str | os.PathLike[str],
    *,
    irregular: IrregularPolicy | str = IrregularPolicy.WARN,
    include_localizers: bool = False,
    validation: ValidationMode | str | None = None,
    philips_scaling: PhilipsScaling | str = PhilipsScaling.DISPLAY,
) -> Volume:
    """Load one stack as a Volume: ``FOLDER``, ``FILE`` or ``FOLDER#<UID or number>[:stack]``.

    Values are DICOM display values, or Philips' precise values with ``philips_scaling="precise"``.

    Geometry findings of the stack (missing slices, uneven spacing, tilt, ...) are emitted as
    :class:`~trueshape.settings.TrueshapeWarning` (``validation="warn"``, the default of
    :data:`trueshape.settings.settings`), ignored (``"ignore"``) or raised as GeometryError (``"raise"``).

    Raises
    ------
    DicomInputError
        When the argument names no stack, or several (the message lists selectors to choose from).
    GeometryError
        When the geometry is rejected by ``irregular="fail"`` or ``validation="raise"``.

    Examples
    --------
    >>> volume = load("session/dicom#3")                             # doctest: +SKIP
    >>> volume.array.shape, volume.provenance.distortion_state       # doctest: +SKIP
    ((146, 146, 30), <DistortionState.IN_PLANE_2D: 'DIS2D'>)
    """
    path, series_key, stack_index = parse_series_argument(series)
    stack = one_stack(
        inspect(path, irregular=irregular), path, series_key, stack_index, include_localizers=include_localizers
    )
    apply_validation(stack, validation)
    return load_stack(stack, philips_scaling=parse_choice(PhilipsScaling, philips_scaling, "--philips-scaling"))


# ---------------------------------------------------------------------------------------------- convert


@dataclass
class ConvertResult:
    """What ``convert`` wrote and what it could not."""

    inspection: Inspection
    stacks: list[Stack] = field(default_factory=list)  #: the stacks this call selected
    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  #: damaged copies left out (another file holds them whole)

    @property
    def ok(self) -> bool:
        """True when every stack converted and every file was usable."""
        return not self.errors


def convert(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: OutputFormat | str = OutputFormat.NIFTI,
    irregular: IrregularPolicy | str = IrregularPolicy.WARN,
    force: bool = False,
    include_localizers: bool = True,
    validation: ValidationMode | str | None = None,
    philips_scaling: PhilipsScaling | str = PhilipsScaling.DISPLAY,
) -> ConvertResult:
    """Write one volume per stack, plus a JSON sidecar (and an acquisition transform when slices are off-grid).

    Values are DICOM display values, or Philips' precise values (dcm2niix's default) with
    ``philips_scaling="precise"``; each sidecar's ``values`` says which. A stack that fails (corrupt pixels,
    rejected geometry) is reported in ``errors``; the others are still written. Existing outputs are never
    overwritten unless ``force``. With ``validation="raise"`` a stack with geometry warnings is not written but
    reported in ``errors``.

    Examples
    --------
    >>> result = convert("session/dicom", "out", fmt="nrrd")        # doctest: +SKIP
    >>> result.ok, [p.name for p in result.written]                 # doctest: +SKIP
    (True, ['2_ax.nrrd', '2_ax.json', '3_cor.nrrd', '3_cor.json'])
    """
    from trueshape.io import convert_stack  # deferred with nibabel: inspect and load need neither

    check_output_folder(out)
    output_format = parse_choice(OutputFormat, fmt, "--format")
    policy = parse_choice(IrregularPolicy, irregular, "--irregular")
    scaling = parse_choice(PhilipsScaling, philips_scaling, "--philips-scaling")
    if output_format is OutputFormat.DICOM:
        raise TrueshapeError(
            "trueshape convert writes NIfTI or NRRD; DICOM output is for corrected series "
            "(trueshape correct --format dicom)"
        )
    source, series_key, stack_index = parse_series_argument(path)
    refuse_output_inside(source, out)
    inspection = inspect(source, irregular=policy)
    result = ConvertResult(inspection, errors=input_errors(inspection), warnings=input_warnings(inspection))
    if not inspection.stacks:
        if not result.errors:
            result.errors.append(describe_empty(inspection))
        return result
    mode = settings.validation_mode if validation is None else parse_choice(ValidationMode, validation, "--validation")
    chosen = [s for s in select_stacks(inspection, series_key, stack_index) if include_localizers or not s.is_localizer]
    for stack in chosen:  # an existing output refuses the command before any work (and any warning)
        check_writable(Path(out) / (stack.label + output_format.suffix), force=force)
    for stack in chosen:
        result.stacks.append(stack)
        try:  # a stack that cannot be written is said; the others still are
            result.written += convert_stack(inspection, stack, Path(out), output_format, force=force, validation=mode,
                                            philips_scaling=scaling)
        except TrueshapeError as error:
            result.errors.append(str(error))
    return result


# ---------------------------------------------------------------------------------------------- correct


def correct(
    series: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    coefficients: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    mode: CorrectionMode | str = CorrectionMode.AUTO,
    intensity_correction: bool = True,
    distortion_state: DistortionState | str | None = None,
    patient_position: PatientPosition | str | None = None,
    isocentre_lps: tuple[float, float, float] | None = None,
    r0_mm: float | None = None,
    irregular: IrregularPolicy | str = IrregularPolicy.RESAMPLE,
    fmt: OutputFormat | str = OutputFormat.NIFTI,
    force: bool = False,
    like: str | os.PathLike[str] | None = None,
    philips_scaling: PhilipsScaling | str | None = None,
) -> CorrectOutput:
    """Remove gradient-nonlinearity distortion from one series with a coil's coefficients or a scanner model.

    ``series`` is a DICOM folder or file (``FOLDER#<series>[:stack]`` picks one), or a NIfTI/NRRD volume whose
    JSON sidecar (trueshape's or dcm2niix's) says what the scanner corrected. Writes ``<label>_corrected``
    (volume), ``<label>_residual_field.nii.gz`` (``.nii`` with ``fmt="nii"``), ``<label>_residual.h5`` (ITK
    transform: on the original volume in Slicer or ANTs it gives the same correction) and ``<label>_corrected.json``,
    all or none. Uneven slices are resampled first (``irregular``); ``like`` (a volume file or series) puts the
    result on that grid. ``mode`` is auto, full or through-plane; ``distortion_state``, ``patient_position`` and
    ``isocentre_lps`` (mm, LPS) override the headers; ``philips_scaling="precise"`` takes Philips' precise values.

    Examples
    --------
    >>> correct("session/cor_t1", "out", coefficients="AS82.grad")          # doctest: +SKIP
    >>> correct("cor_t1.nii.gz", "out", coefficients="AS82.grad", distortion_state="DIS2D")  # doctest: +SKIP
    """
    from trueshape.correction import CorrectionRequest, correct_argument
    from trueshape.gnl import read_coefficient_option

    check_output_folder(out)
    coil, coefficient_file = read_coefficient_option(coefficients, model, r0_mm=r0_mm)
    request = CorrectionRequest.build(
        coil,
        coefficient_file=coefficient_file,
        mode=mode,
        intensity_correction=intensity_correction,
        distortion_state=distortion_state,
        patient_position=patient_position,
        isocentre_lps=isocentre_lps,
        fmt=fmt,
        force=force,
        like=like,
        philips_scaling=philips_scaling,
    )
    return correct_argument(series, request, out, irregular=parse_choice(IrregularPolicy, irregular, "--irregular"))


# ------------------------------------------------------------------------------------ estimate, model, learn


def estimate(
    moving: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    reference: str | os.PathLike[str] | None = None,
    phantom: str | os.PathLike[str] | None = None,
    options: EstimateOptions | None = None,
    same_frame: bool = False,
    reference_state: DistortionState | str | None = None,
    moving_state: DistortionState | str | None = None,
    marker_radius_mm: float = 3.0,
    markers_in_lps: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> EstimateOutput:
    """Learn the scanner's distortion from images: a reference and a moving series of one session, or a phantom.

    Writes ``model.json`` (for ``correct --model``), each series with a residual corrected with it, and
    ``estimate.json``. ``phantom``: marker positions, CSV ``x,y,z`` in mm (phantom frame, or LPS with
    ``markers_in_lps``).

    Examples
    --------
    >>> estimate("session/dicom#3", "out", reference="session/dicom#2").warnings  # doctest: +SKIP
    ()
    """
    from trueshape.estimation import estimate_arguments

    return estimate_arguments(
        moving,
        out,
        reference=reference,
        phantom=phantom,
        options=options,
        same_frame=same_frame,
        reference_state=parse_choice(DistortionState, reference_state, "--reference-state"),
        moving_state=parse_choice(DistortionState, moving_state, "--moving-state"),
        marker_radius_mm=marker_radius_mm,
        markers_in_lps=markers_in_lps,
        progress=progress,
    )


def fit_model(estimates: list[str | os.PathLike[str]], out: str | os.PathLike[str], *, force: bool = False) -> ModelFit:
    """Pool finished estimates (folders of ``estimate`` or ``learn``) into one scanner model file ``out``.

    Examples
    --------
    >>> fit_model(["est/subject1", "est/subject2"], "scanner.json").path          # doctest: +SKIP
    PosixPath('scanner.json')
    """
    from trueshape.estimation import fit_scanner_model

    return fit_scanner_model(list(estimates), out, force=force)


def learn(
    sessions: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    options: EstimateOptions | None = None,
    on_choice: Callable[[str, PairChoice], None] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> LearnOutput:
    """Pick each session's pair, estimate it, and pool the estimates into ``out/model.json``.

    Examples
    --------
    >>> learned = learn(["visits/subject1", "visits/subject2"], "learned")         # doctest: +SKIP
    >>> correct("visits/subject3/dicom#3", "out", model="learned/model.json")      # doctest: +SKIP
    """
    from trueshape.estimation import learn_sessions

    return learn_sessions(list(sessions), out, options=options, on_choice=on_choice, progress=progress)


def report(folder: str | os.PathLike[str], *, show_identifiers: bool = False) -> Path:
    """Write ``folder/report.html`` (self-contained; each figure also a PNG beside it) for any output folder."""
    from trueshape.reporting import write_report

    return write_report(folder, show_identifiers=show_identifiers)
