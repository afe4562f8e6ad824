"""The Python API that the CLI is a thin shell over.

Examples
--------
>>> import trueshape
>>> report = trueshape.inspect("path/to/dicom")                      # doctest: +SKIP
>>> volume = trueshape.load("path/to/dicom#3")                       # doctest: +SKIP
>>> result = trueshape.convert("path/to/dicom", "out", fmt="nrrd")   # doctest: +SKIP
"""

from __future__ import annotations

import enum
import itertools
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trueshape._version import __version__
from trueshape.dicom import scan
from trueshape.errors import DicomInputError, GeometryError, TrueshapeError, VolumeInputError
from trueshape.findings import Finding, FindingCode, Severity
from trueshape.geometry import (
    DisplacementField,
    Inspection,
    IrregularPolicy,
    Stack,
    Volume,
    VolumeGeometry,
    group_series,
    load_stack,
)
from trueshape.io import (
    OutputFormat,
    OutputTransaction,
    check_free_space,
    check_output_folder,
    check_writable,
    obsolete_outputs,
    physical_memory,
    refuse_output_inside,
    write_json,
    write_stack,
    write_volume,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from trueshape.correct import CorrectionResult
    from trueshape.dicom import Frame
    from trueshape.gnl import GradientCoefficients
    from trueshape.io import SourceImage
from trueshape.settings import ValidationMode, settings, warn_and_log

__all__ = [
    "GEOMETRY_WARNING_CODES",
    "ConvertResult",
    "CorrectOutput",
    "CorrectionRequest",
    "OutputFormat",
    "convert",
    "correct",
    "correct_stack",
    "correct_volume_file",
    "describe_empty",
    "inspect",
    "load",
    "parse_series_argument",
    "select_stacks",
]


def parse_series_argument(argument: str | os.PathLike[str]) -> tuple[Path, str | None, int | None]:
    """Split ``FOLDER#<SeriesInstanceUID or SeriesNumber>[:stack]`` into (path, series, stack).

    Examples
    --------
    >>> parse_series_argument("dicom#3:2")
    (PosixPath('dicom'), '3', 2)
    >>> parse_series_argument("dicom")
    (PosixPath('dicom'), None, None)
    """
    text = str(argument)
    if not text.strip():
        raise DicomInputError("an empty path was given (an unset shell variable?): name a DICOM file or folder")
    try:
        whole = "#" not in text or Path(text).exists()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise DicomInputError(f"{text}: cannot be read ({error.strerror or error})") from None
    if whole:
        return Path(text), None, None
    path, _, selector = text.rpartition("#")
    series, _, stack = selector.partition(":")
    if stack and not stack.isdigit():
        raise DicomInputError(f"{text}: the stack after ':' must be a number (1, 2, ...), got {stack!r}")
    return Path(path), series or None, int(stack) if stack else None


def inspect(path: str | os.PathLike[str], *, irregular: IrregularPolicy | str = IrregularPolicy.WARN) -> Inspection:
    """Scan a file or folder and check the geometry of every series and stack.

    Parameters
    ----------
    path : str or PathLike
        DICOM file or folder (searched recursively).
    irregular : IrregularPolicy or str
        ``warn`` (default), ``resample``, ``split`` or ``fail``.

    Returns
    -------
    Inspection
        Series, stacks with findings, and the files that could not be used.
    """
    return group_series(scan(path), policy=_choice(IrregularPolicy, irregular, "--irregular"))


def select_stacks(inspection: Inspection, series: str | None, stack: int | None) -> list[Stack]:
    """Pick stacks by SeriesInstanceUID or SeriesNumber (and 1-based stack index).

    Raises
    ------
    DicomInputError
        When nothing matches (the message lists what is there).
    """
    stacks = inspection.stacks
    if series is not None:
        stacks = [s for s in stacks if series in (s.series_instance_uid, str(s.series_number))]
    if stack is not None:
        stacks = [s for s in stacks if s.index == stack]
    if not stacks:
        available = ", ".join(s.selector for s in inspection.stacks) or "none"
        raise DicomInputError(
            f"{inspection.root}: no stack matches series {series!r}"
            + (f" stack {stack}" if stack is not None else "")
            + f" (available: {available})"
        )
    return stacks


#: Findings that mean the voxel grid departs from where the slices really were.
GEOMETRY_WARNING_CODES = frozenset({
    FindingCode.SPACING_IRREGULAR, FindingCode.SLICES_MISSING, FindingCode.POSITIONS_DUPLICATED,
    FindingCode.GANTRY_TILT, FindingCode.ORIENTATION_NOT_ORTHONORMAL, FindingCode.CORNERS_MISMATCH,
    FindingCode.SPACING_TAG_MISMATCH, FindingCode.ORIENTATION_MIXED,
})


def _validate(stack: Stack, validation: ValidationMode | str | None) -> None:
    """Apply the strictness policy to a stack's geometry findings (warn, ignore or raise)."""
    mode = ValidationMode(validation) if validation is not None else settings.validation_mode
    on_grid = stack.layout.resampled or stack.layout.acquisition is None  # resampled or split: grid is true
    off_grid_codes = {FindingCode.SLICES_MISSING, FindingCode.SPACING_IRREGULAR, FindingCode.GANTRY_TILT}
    problems = [f for f in stack.findings if f.code in GEOMETRY_WARNING_CODES and f.severity is not Severity.INFO
                and not (on_grid and f.code in off_grid_codes)]
    if not problems or mode is ValidationMode.IGNORE:
        return
    if mode is ValidationMode.RAISE:
        raise GeometryError(f"{stack.frames[0].path}: " + " ".join(f"{f.code.value}: {f.message}" for f in problems)
                            + " (validation mode raise)", findings=tuple(problems))
    for finding in problems:
        warn_and_log(f"{stack.label}: {finding.code.value}: {finding.message}", stacklevel=3)


def load(
    series: str | os.PathLike[str],
    *,
    irregular: IrregularPolicy | str = IrregularPolicy.WARN,
    include_localizers: bool = False,
    validation: ValidationMode | str | None = None,
) -> Volume:
    """Load one stack as a Volume: ``FOLDER``, ``FILE`` or ``FOLDER#<UID or number>[:stack]``.

    Geometry findings of the stack (missing slices, uneven spacing, tilt, ...) are emitted as
    :class:`~trueshape.settings.TrueshapeWarning` (``validation="warn"``, the default of
    :data:`trueshape.settings.settings`), ignored (``"ignore"``) or raised as GeometryError (``"raise"``).

    Raises
    ------
    DicomInputError
        When the argument names no stack, or several (the message lists selectors to choose from).
    GeometryError
        When the geometry is rejected by ``irregular="fail"`` or ``validation="raise"``.
    """
    path, series_key, stack_index = parse_series_argument(series)
    stack = _one_stack(inspect(path, irregular=irregular), path, series_key, stack_index,
                       include_localizers=include_localizers)
    _validate(stack, validation)
    return load_stack(stack)


def _one_stack(inspection: Inspection, path: Path, series_key: str | None, stack_index: int | None, *,
               include_localizers: bool = False) -> Stack:
    """Resolve a SERIES argument to exactly one stack, or say why not (and what to type instead)."""
    if not inspection.stacks:
        if inspection.errors:
            raise GeometryError(inspection.errors[0])
        raise DicomInputError(describe_empty(inspection))
    stacks = select_stacks(inspection, series_key, stack_index)
    if not include_localizers and len(stacks) > 1:
        stacks = [s for s in stacks if not s.is_localizer] or stacks
    if len(stacks) > 1:
        raise DicomInputError(
            f"{path}: {len(stacks)} stacks match; name one as {path}#<series>[:stack] "
            f"(choices: {', '.join(s.selector for s in stacks)})"
        )
    stack = stacks[0]
    _refuse_incomplete(inspection, stack)
    return stack


def _refuse_incomplete(inspection: Inspection, stack: Stack) -> None:
    """Raise when a file that may hold slices of ``stack`` could not be used.

    A file of this series (or one whose series cannot be told, beside or below its slices) that could not be
    used would leave a slice to be interpolated or the series short: the rest would be a silently wrong volume.
    """
    folders = {Path(frame.path).parent for frame in stack.frames}
    unusable = [p for p in inspection.problems if p.may_be_slice and (
        p.series_instance_uid == stack.series_instance_uid
        or (not p.series_instance_uid and _beside_or_below(Path(p.path), folders)))]
    if unusable:
        more = f" (and {len(unusable) - 1} more)" if len(unusable) > 1 else ""
        raise DicomInputError(f"{unusable[0].message}{more}; it may hold slices of {stack.label}: make it readable "
                              "or move it out of the folder")


def _beside_or_below(path: Path, folders: set[Path]) -> bool:
    """Whether the unreadable file ``path`` is in or under one of ``folders``, where a slice could be.

    An unreadable folder (say a data disk's lost+found) is reported by inspect but does not stop a series.
    """
    if path.is_dir():
        return False
    return any(folder in path.parents for folder in folders)


def describe_empty(inspection: Inspection) -> str:
    """Say in one line why a path gave no loadable stack (the first problem, or that nothing was found)."""
    if inspection.problems:
        return inspection.problems[0].message
    if inspection.errors:
        return inspection.errors[0]
    for series in inspection.series:
        for finding in series.findings:
            return f"{finding.where[0] if finding.where else inspection.root}: {finding.message}"
    skipped = inspection.skipped_non_dicom + inspection.skipped_non_image
    return f"{inspection.root}: no DICOM images found" + (f" ({skipped} other file(s) skipped)" if skipped else "")


@dataclass
class ConvertResult:
    """What ``convert`` wrote and what it could not."""

    inspection: Inspection
    stacks: list[Stack] = field(default_factory=list)  #: the stacks this call selected
    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

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
) -> ConvertResult:
    """Write one volume per stack, plus a JSON sidecar (and an acquisition transform when slices are off-grid).

    A stack that fails (corrupt pixels, rejected geometry) is reported in ``errors``; the others are
    still written. Existing outputs are never overwritten unless ``force``. With ``validation="raise"`` a
    stack with geometry warnings is not written but reported in ``errors``.
    """
    check_output_folder(out)
    output_format = _choice(OutputFormat, fmt, "--format")
    irregular = _choice(IrregularPolicy, irregular, "--irregular")
    if output_format is OutputFormat.DICOM:
        raise TrueshapeError("trueshape convert writes NIfTI or NRRD; DICOM output is for corrected series "
                             "(trueshape correct --format dicom)")
    source, series_key, stack_index = parse_series_argument(path)
    refuse_output_inside(source, out)
    inspection = inspect(source, irregular=irregular)
    result = ConvertResult(inspection)
    result.errors.extend(p.message for p in inspection.problems)
    result.errors.extend(inspection.errors)
    for series in inspection.series:
        for finding in series.findings:
            if finding.severity is Severity.ERROR and finding.code is FindingCode.GEOMETRY_MISSING:
                result.errors.append(f"{finding.where[0]}: {finding.message}")
    if not inspection.stacks:
        if not result.errors:
            result.errors.append(describe_empty(inspection))
        return result
    stacks = select_stacks(inspection, series_key, stack_index)
    out_dir = Path(out)
    mode = _choice(ValidationMode, validation, "--validation") if validation is not None else settings.validation_mode
    for stack in stacks:
        if stack.is_localizer and not include_localizers:
            continue
        result.stacks.append(stack)
        try:
            try:
                _refuse_incomplete(inspection, stack)  # the other series are still written
            except DicomInputError:  # the unreadable file is already named once above
                result.errors.append(f"{stack.label}: not written: a file that may hold its slices could not be "
                                     "read (named above)")
                continue
            # warn: the findings go into each sidecar (and the CLI prints them); raise: refuse the stack
            _validate(stack, ValidationMode.IGNORE if mode is ValidationMode.WARN else mode)
            result.written.extend(write_stack(stack, out_dir, output_format, force=force))
        except TrueshapeError as error:
            result.errors.append(str(error))
    return result


@dataclass
class CorrectOutput:
    """What ``correct`` produced: files, diagnostics and the corrected volume."""

    volume: Volume
    written: list[Path]
    diagnostics: dict[str, object]
    #: What inspecting the source found that the correction does not remove (missing slices, duplicates, ...).
    findings: tuple[Finding, ...] = ()


def _choice(enum_type: type[enum.Enum], value: object, option: str, *, unlisted: frozenset[Any] = frozenset()) -> Any:
    """Convert a user's value to an enum member, or say which values exist (``unlisted`` ones are not offered)."""
    if value is None or isinstance(value, enum_type):
        return value
    text = str(value).strip()
    for candidate in (text, text.upper(), text.lower()):
        try:
            return enum_type(candidate)
        except ValueError:
            continue
    choices = ", ".join(str(member.value) for member in enum_type if member not in unlisted)
    raise TrueshapeError(f"{option} {value!r} is not one of: {choices}")


def correct_stack(
    stack: Stack,
    request: CorrectionRequest,
    out: str | os.PathLike[str],
    *,
    volume: Volume | None = None,
) -> CorrectOutput:
    """Correct one already-inspected stack as ``request`` says and write the outputs (see :func:`correct`).

    ``volume`` is the stack's loaded Volume when the caller already has it (saves reading it again).

    Examples
    --------
    >>> request = CorrectionRequest.build(SYN_AS, coefficient_file="SYN-AS.grad")  # doctest: +SKIP
    >>> correct_stack(inspect("session").stacks[1], request, "out")                # doctest: +SKIP

    Raises
    ------
    GeometryError
        When the stack's slices are off a regular grid and were not resampled: correcting on the wrong grid
        would put anatomy in the wrong place (use ``irregular="resample"``).
    """
    if stack.layout.acquisition is not None and not stack.layout.resampled:
        raise GeometryError(
            f"{stack.frames[0].path}: the slices of {stack.label} are off a regular grid by up to "
            f"{stack.layout.acquisition.max_offset_mm:.2f} mm; resample them first (--irregular resample)"
        )
    where = f"{Path(stack.frames[0].path).parent} ({stack.label})"
    for finding in stack.findings:
        if finding.code is FindingCode.FRAMES_DISAGREE:
            if not request.settles(str(finding.details.get("disagree_on"))):
                raise GeometryError(f"{where}: {finding.message}", findings=(finding,))
    if request.state is None and stack.distortion_state.value == "UNKNOWN":
        said = f" ({stack.distortion_source})" if stack.distortion_source else ""
        raise DicomInputError(f"{where}: the headers do not say what the scanner corrected{said}: give --state ND, "
                              "DIS2D or DIS3D")
    targets = request.targets(out, stack.label)
    volume = volume if volume is not None else load_stack(stack)
    first = stack.frames[0]
    template = _DicomTemplate(stack.layout.slices, first.vendor.table_position_mm,
                              integer_source=volume.array.dtype.kind in "iu" and not volume.is_scaled)
    output = request.run(volume, stack.to_json(), targets, template=template, where=where)
    return replace(output, findings=(*output.findings,
                                     *(f for f in stack.findings if f.code not in _CORRECTED_CODES)))


#: Findings a GNL correction answers: the rest (slice layout, files left out, ...) still concern the result.
_CORRECTED_CODES = frozenset({FindingCode.DISTORTION_2D_ONLY, FindingCode.DISTORTION_NOT_CORRECTED,
                              FindingCode.FAR_FROM_ISOCENTRE})


def correct_volume_file(
    path: str | os.PathLike[str],
    request: CorrectionRequest,
    out: str | os.PathLike[str],
) -> CorrectOutput:
    """Correct a NIfTI or NRRD volume, with the facts of its JSON sidecar (see :func:`correct`).

    What correction needs and the file cannot say must be given: the distortion state when no sidecar
    records it, and the isocentre when only an unapplied dcm2niix ``TablePosition`` does. Without any
    record the isocentre is taken at the patient-coordinate origin and HFS is assumed; the diagnostics list
    both assumptions.

    Raises
    ------
    VolumeInputError
        The file or its sidecar cannot be read, or a needed fact is unknown (the message says which option
        supplies it).
    """
    from trueshape.dicom import DistortionState
    from trueshape.io import (
        NIFTI_XFORM_ALIGNED_ANAT,
        NIFTI_XFORM_SCANNER_ANAT,
        read_volume_file,
        sidecar_path,
        volume_stem,
    )

    if request.output_format is OutputFormat.DICOM:
        raise TrueshapeError(f"{path}: a derived DICOM series needs a DICOM source (its patient, study and "
                             "frame of reference): correct the DICOM series, or write NIfTI or NRRD")
    targets = request.targets(out, volume_stem(path))
    volume = read_volume_file(path)
    provenance = volume.provenance
    code = provenance.nifti_xform_code
    if code is not None and code not in (NIFTI_XFORM_SCANNER_ANAT, NIFTI_XFORM_ALIGNED_ANAT):
        raise VolumeInputError(
            f"{path}: its affine is in a template space (NIfTI xform code {code}); "
            "gradient distortion lives in scanner coordinates (code 1, or 2 for aligned)"
        )
    json_path = provenance.sidecar
    if request.state is None and provenance.distortion_state is DistortionState.UNKNOWN:
        known = f" ({provenance.distortion_source})" if provenance.distortion_source else ""
        reason = (f"its sidecar {Path(json_path).name}{known} does not say" if json_path else
                  f"no sidecar ({sidecar_path(path).name}) says")
        raise VolumeInputError(f"{path}: {reason} what the scanner corrected: give --state ND, DIS2D or DIS3D")
    for subject, message in provenance.frames_disagree.items():
        if not request.settles(subject):  # as for the DICOM series
            raise VolumeInputError(f"{path}: its sidecar says: {message}")
    table = provenance.unverified_table_position_mm
    if table is not None and request.isocentre_lps is None:
        raise VolumeInputError(
            f"{json_path}: TablePosition {list(table)} is not applied (its sign convention is unverified here): give "
            "--isocentre X,Y,Z, the isocentre in patient LPS mm (0,0,0 when the table was not moved)"
        )
    source = {
        "file": str(path),
        "sidecar": json_path,
        "label": volume_stem(path),
        "shape": list(volume.geometry.shape),
        "volume_count": volume.array.shape[3] if volume.array.ndim == 4 else 1,
        **volume.geometry.to_json(),
        "distortion_state": provenance.distortion_state,
        "distortion_source": provenance.distortion_source,
        "patient_position": provenance.patient_position,
        "gradient_coil": provenance.gradient_coil,
        "isocentre_lps": list(provenance.isocentre_lps),
        "isocentre_source": provenance.isocentre_source,
    }
    return request.run(volume, source, targets)


def _grid_of(like: str | os.PathLike[str]) -> VolumeGeometry:
    """Return the 3-D grid of a volume file or of one DICOM stack (``FOLDER#<series>[:stack]``), no pixels."""
    from trueshape.io import is_volume_file, read_volume_geometry

    if is_volume_file(like):
        return read_volume_geometry(like)
    path, series_key, stack_index = parse_series_argument(like)
    return _one_stack(inspect(path), path, series_key, stack_index).geometry


@dataclass(frozen=True)
class _DicomTemplate:
    """The source series' frames (``slices[k][t]``) and facts a derived DICOM series carries over."""

    slices: tuple[tuple[Frame, ...], ...]
    table_position_mm: tuple[float, float, float] | None
    integer_source: bool

    @property
    def paths(self) -> tuple[str, ...]:
        """The file of each volume's first slice: where per-volume attributes are read."""
        return tuple(frame.path for frame in self.slices[0])

    def cited_sources(self, ranges: NDArray[np.float64], geometry: VolumeGeometry) -> list[list[list[SourceImage]]]:
        """``[t][k]``: the source frames output slice k of volume t was computed from.

        ``ranges`` (K, 2) is what each output slice sampled along ``geometry``'s slice normal (see
        :func:`trueshape.correct.sampled_normal_range`); interpolation also reaches the slices within one
        slice gap of it (the larger of the volume's spacing and the source's widest gap, for resampled
        stacks), which are cited too.
        """
        from trueshape.io import SourceImage

        normal = geometry.direction[:, 2]
        along = np.array([float(np.dot(normal, frames[0].image_position or (0.0, 0.0, 0.0))) for frames in self.slices])
        gaps = np.diff(along)
        reach = max(float(geometry.spacing[2]), float(gaps.max()) if gaps.size else 0.0) - _CITE_TOLERANCE_MM
        cited: list[list[list[SourceImage]]] = [[] for _ in self.slices[0]]
        for low, high in ranges:
            within = np.nonzero((along > low - reach) & (along < high + reach))[0]
            for t, per_volume in enumerate(cited):
                frames = [self.slices[k][t] for k in within]
                per_volume.append([
                    SourceImage(f.sop_class_uid, f.sop_instance_uid,
                                f.pixels.frame_index + 1 if "#frame" in f.label and f.pixels is not None else None)
                    for f in frames if f.sop_class_uid and f.sop_instance_uid
                ])
        return cited


#: Farther than this from the patient origin an isocentre (mm) is beyond any table's travel: a unit mistake.
MAX_ISOCENTRE_OFFSET_MM = 5000.0


def _boxes_overlap(first: VolumeGeometry, second: VolumeGeometry) -> bool:
    """Whether the LPS bounding boxes of two grids' voxel centres (half a voxel wider) intersect."""
    boxes = []
    for grid in (first, second):
        corners = np.array(list(itertools.product(*((-0.5, size - 0.5) for size in grid.shape))))
        points = grid.index_to_lps(corners)
        boxes.append((points.min(axis=0), points.max(axis=0)))
    (low_a, high_a), (low_b, high_b) = boxes
    return bool(np.all(low_a < high_b) and np.all(low_b < high_a))


#: Slices exactly one gap beyond what a slice sampled are not read by interpolation (float noise aside), mm.
_CITE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class CorrectionRequest:
    """What the user asked of a correction, validated once for either kind of input (see :func:`correct`)."""

    coil: GradientCoefficients
    coefficient_file: str | os.PathLike[str] | None
    mode: Any
    intensity_correction: bool
    state: Any
    position: Any
    isocentre_lps: tuple[float, float, float] | None
    output_format: OutputFormat
    force: bool
    output_geometry: VolumeGeometry | None = None
    like: str | None = None

    @classmethod
    def build(cls, coil: GradientCoefficients, *, coefficient_file: str | os.PathLike[str] | None = None,
              mode: str = "auto", intensity_correction: bool = True, distortion_state: str | None = None,
              patient_position: str | None = None, isocentre_lps: tuple[float, float, float] | None = None,
              fmt: OutputFormat | str = OutputFormat.NIFTI, force: bool = False,
              like: str | os.PathLike[str] | None = None) -> CorrectionRequest:
        """Check the user's choices (enum names, a finite isocentre) and keep them with the coil.

        ``like`` names a volume file or DICOM series whose grid the corrected volume is written on.
        """
        from trueshape.correct import CorrectionMode
        from trueshape.dicom import DistortionState, PatientPosition

        isocentre = None
        if isocentre_lps is not None:
            values = tuple(float(v) for v in isocentre_lps)
            if len(values) != 3 or not all(np.isfinite(values)):
                raise TrueshapeError(f"--isocentre needs three finite numbers (LPS mm), got {isocentre_lps!r}")
            if max(abs(v) for v in values) > MAX_ISOCENTRE_OFFSET_MM:
                raise TrueshapeError(f"--isocentre {values} is more than {MAX_ISOCENTRE_OFFSET_MM:.0f} mm from the "
                                     "patient origin: no scanner table moves that far (the unit is mm)")
            isocentre = (values[0], values[1], values[2])
        requested = _choice(CorrectionMode, mode, "--mode", unlisted=frozenset({CorrectionMode.NONE}))
        if requested is CorrectionMode.NONE:
            raise TrueshapeError("--mode none is what a correction reports when nothing is left to correct; "
                                 "ask for auto, full or through-plane")
        return cls(coil, coefficient_file, requested, intensity_correction,
                   _choice(DistortionState, distortion_state, "--state"),
                   _choice(PatientPosition, patient_position, "--patient-position"), isocentre,
                   _choice(OutputFormat, fmt, "--format"),
                   force, None if like is None else _grid_of(like), None if like is None else str(like))

    def settles(self, disagreement: str) -> bool:
        """Whether the caller said what slices disagreeing on ``disagreement`` (FRAMES_DISAGREE) leave open.

        ``patient_position`` is settled by ``--patient-position``, ``table_position`` by ``--isocentre``.
        """
        given = {"patient_position": self.position, "table_position": self.isocentre_lps}
        return given.get(disagreement) is not None

    def targets(self, out: str | os.PathLike[str], label: str) -> list[Path]:
        """Output paths for ``label``, checked writable before any work is done."""
        base = Path(out) / label
        # Uncompressed output stays uncompressed: a float field deflates slowly and poorly.
        field_suffix = ".nii" if self.output_format is OutputFormat.NII else ".nii.gz"
        targets = [base.with_name(base.name + suffix) for suffix in
                   ("_corrected" + self.output_format.suffix, "_residual_field" + field_suffix, "_residual.h5",
                    "_corrected.json")]
        for target in targets:  # refuse before any work, so a run never leaves a mix of new and old files
            check_writable(target, force=self.force)
        return targets

    def run(self, volume: Volume, source: dict[str, Any], targets: list[Path], *,
            template: _DicomTemplate | None = None, where: str = "") -> CorrectOutput:
        """Correct ``volume`` and write the volume, the field (NIfTI and ITK .h5) and the JSON sidecar.

        Everything is written into a hidden folder beside the targets and moved into place only when all of
        it succeeded: a failure leaves the output folder as it was.
        """
        where = where or str(source.get("file") or source.get("label") or targets[0].name)
        self._check_output_grid(volume, where)
        self._check_room_for_outputs(volume, targets[0].parent)
        findings = list(self._coil_findings(volume, where))
        inputs = [Path(str(source["file"]))] if source.get("file") else [
            Path(str(name).split("#")[0]) for names in source.get("slice_sources", [])[:1] for name in names[:1]]
        if source.get("file"):
            from trueshape.io import sidecar_path

            inputs.append(sidecar_path(str(source["file"])))  # the facts the correction read
        if self.like is not None:
            inputs.append(parse_series_argument(self.like)[0])
        # What the earlier run wrote for this label and this run does not; never an input (the file or series
        # being read, its sidecar, the --like grid).
        label = targets[3].name[: -len("_corrected.json")]
        names = {label + "_corrected" + f.suffix for f in OutputFormat} | {
            label + "_residual_field.nii", label + "_residual_field.nii.gz", label + "_residual.h5"}
        obsolete = obsolete_outputs(targets[3], names, targets=targets, inputs=inputs)
        with OutputTransaction(targets, force=self.force, obsolete=obsolete) as transaction:
            try:
                result = self._write(volume, source, targets, transaction, template, findings, where)
            except GeometryError as error:  # e.g. through-plane asked of a grid it cannot serve: name the input
                raise GeometryError(f"{where}: {error}", findings=error.findings) from None
        return CorrectOutput(result.volume, targets, result.diagnostics.to_json(), tuple(findings))

    def _coil_findings(self, volume: Volume, where: str) -> tuple[Finding, ...]:
        """Warn when the series names another gradient coil than the coefficients do (both must be known).

        Names are compared by their letters and digits only ("AS82" = "as-82"); a file without a coil id (a
        vendor ``coeff.grad``) cannot be compared.
        """
        def key(name: str) -> str:
            return re.sub(r"[^0-9a-z]", "", name.casefold())

        series_coil, model_coil = volume.provenance.gradient_coil or "", self.coil.coil_id or ""
        if not key(series_coil) or not key(model_coil) or key(series_coil) == key(model_coil):
            return ()
        return (Finding(FindingCode.COIL_MISMATCH, Severity.WARNING,
                        f"{where} was acquired on gradient coil {series_coil!r}, but the coefficients describe "
                        f"{model_coil!r}: a scanner model corrects only series of its own coil",
                        details={"series_coil": series_coil, "model_coil": model_coil}),)

    def _check_room_for_outputs(self, volume: Volume, folder: Path) -> None:
        """Refuse before the work when the outputs cannot fit on the disk (uncompressed sizes: an upper bound)."""
        from trueshape.correct import exported_field_shape

        grid = self.output_geometry or volume.geometry
        volumes = volume.array.shape[3] if volume.array.ndim == 4 else 1
        voxel_bytes = 2 if self.output_format is OutputFormat.DICOM else 4
        nodes = float(np.prod(exported_field_shape(grid), dtype=np.float64))
        check_free_space(folder, voxel_bytes * volumes * float(np.prod(grid.shape, dtype=np.float64))
                          + nodes * 3 * (4 + 8))  # the field as float32 NIfTI and float64 HDF5

    def _check_output_grid(self, volume: Volume, label: str) -> None:
        """Refuse a ``--like`` grid that misses the volume, or any output that cannot fit in memory."""
        grid = self.output_geometry or volume.geometry
        if self.output_geometry is not None and not _boxes_overlap(grid, volume.geometry):
            raise TrueshapeError(f"{self.like}: its grid does not overlap {label} (the corrected volume would be "
                                 "empty): give a series of the same session and frame of reference")
        volumes = volume.array.shape[3] if volume.array.ndim == 4 else 1
        # The corrected volume (float32) and the input copy the resampler works on.
        needed = 4.0 * volumes * (float(np.prod(grid.shape, dtype=np.float64))
                                   + float(np.prod(volume.geometry.shape, dtype=np.float64)))
        memory = physical_memory()
        if memory and needed > memory:
            raise TrueshapeError(f"{self.like or label}: the corrected volume on a {' x '.join(map(str, grid.shape))} "
                                 f"grid needs {needed / 2**30:.1f} GiB, more than this machine's "
                                 f"{memory / 2**30:.1f} GiB of memory")

    def _write(self, volume: Volume, source: dict[str, Any], targets: list[Path], transaction: OutputTransaction,
               template: _DicomTemplate | None, findings: list[Finding], where: str) -> CorrectionResult:
        from trueshape.correct import correct_volume
        from trueshape.gnl import ResidualField
        from trueshape.io import write_derived_series, write_field_nifti, write_itk_transform

        residual = ResidualField.from_volume(self.coil, volume, distortion_state=self.state,
                                             patient_position=self.position, isocentre_lps=self.isocentre_lps)
        coil = self.coil.coil_id or (Path(self.coefficient_file).stem if self.coefficient_file else "")
        derived = None
        # The field is written while the image is resampled; the writers spend their time in zlib, HDF5 and
        # write(), without the GIL.
        with ThreadPoolExecutor(max_workers=2) as pool:
            field_writes: list[Future[Path]] = []

            def write_field(field: DisplacementField) -> None:
                field_writes.append(pool.submit(write_field_nifti, field, targets[1], transaction=transaction))
                field_writes.append(pool.submit(write_itk_transform, field, targets[2], transaction=transaction))

            result = correct_volume(volume, residual, mode=self.mode, intensity_correction=self.intensity_correction,
                                    output_geometry=self.output_geometry, on_field=write_field)
            findings.extend(_outside_findings(result.diagnostics.outside_fraction, volume, where))
            if self.output_format is OutputFormat.DICOM:
                assert template is not None
                done = result.diagnostics
                derivation = (
                    f"trueshape {__version__} gradient-nonlinearity correction of a {done.distortion_state} series "
                    f"({done.mode.value} mode, coil {coil}, "
                    f"intensity {'corrected' if done.intensity_corrected else 'not corrected'})"
                    if done.mode.value != "none" else
                    f"trueshape {__version__}: copy of a {done.distortion_state} series, nothing left to correct"
                )
                from trueshape.correct import sampled_normal_range

                cited = template.cited_sources(sampled_normal_range(result, volume.geometry), volume.geometry)
                derived = write_derived_series(result.volume, targets[0], transaction=transaction,
                                               template=template.paths,
                                               source_images=cited,
                                               derivation=derivation, table_position_mm=template.table_position_mm,
                                               integer_source=template.integer_source)
            else:
                write_volume(result.volume, targets[0], transaction=transaction)
            for future in field_writes:
                future.result()
        file = self.coefficient_file
        sidecar = {
            "source": source,
            "coefficients": str(file) if file else None,
            "coil": coil,
            "correction": result.diagnostics.to_json(),
            "transform_convention": "ITK resampling: output (true) point p -> input (distorted) point p + d(p), "
                                    "LPS mm",
            "output_grid": None if self.like is None else {"like": self.like, **result.volume.geometry.to_json()},
            "findings": [finding.to_json() for finding in findings],
            "outputs": [path.name for path in targets],
            "software": {"name": "trueshape", "version": __version__},
        }
        if derived is not None:
            sidecar["dicom"] = {
                "folder": derived.folder.name, "files": len(derived.files),
                "series_instance_uid": derived.series_instance_uid, "series_number": derived.series_number,
                "rescale_slope": derived.rescale_slope, "rescale_intercept": derived.rescale_intercept,
                "quantization_step": derived.quantization_step, "nonfinite_voxels": derived.nonfinite_voxels,
            }
        write_json(sidecar, targets[3], transaction=transaction)
        return result


#: Share of corrected voxels left 0 (sampled beyond the acquired volume) above which ``correct`` warns.
OUTSIDE_WARNING_FRACTION = 0.05


def _outside_findings(fraction: float, volume: Volume, where: str) -> tuple[Finding, ...]:
    """Warn when the correction samples much of the image beyond the acquired volume (left 0 there)."""
    single = volume.geometry.shape[2] == 1
    if not (fraction >= OUTSIDE_WARNING_FRACTION or (single and fraction > 0.0)):
        return ()
    why = (f"a single slice is {float(volume.geometry.spacing[2]):g} mm thick and the residual moves part of it "
           "further through its plane" if single else "the residual moves them beyond the acquired volume")
    return (Finding(FindingCode.OUTSIDE_ACQUIRED_VOLUME, Severity.WARNING,
                    f"{where}: about {100 * fraction:.1f}% of the corrected voxels take their value from outside "
                    f"the acquired volume and are left 0 ({why}); acquire more slices, or a thicker slab, to keep "
                    "them", measured=fraction, tolerance=OUTSIDE_WARNING_FRACTION, unit="fraction"),)


def correct(
    series: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    coefficients: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    mode: str = "auto",
    intensity_correction: bool = True,
    distortion_state: str | None = None,
    patient_position: str | None = None,
    isocentre_lps: tuple[float, float, float] | None = None,
    r0_mm: float | None = None,
    irregular: IrregularPolicy | str = IrregularPolicy.RESAMPLE,
    fmt: OutputFormat | str = OutputFormat.NIFTI,
    force: bool = False,
    like: str | os.PathLike[str] | None = None,
) -> CorrectOutput:
    """Remove gradient-nonlinearity distortion from one series with a coil's coefficients or a scanner model.

    ``series`` is a DICOM folder or file (``FOLDER#<series>[:stack]`` picks one), or a NIfTI/NRRD volume
    whose JSON sidecar (trueshape's or dcm2niix's) says what the scanner corrected (see
    :func:`correct_volume_file`). Writes ``<label>_corrected`` (volume), ``<label>_residual_field.nii.gz``
    (the field as a vector image; ``.nii`` with ``fmt="nii"``), ``<label>_residual.h5`` (ITK
    displacement-field transform: apply it to the original volume in Slicer or ANTs to get the same
    correction) and ``<label>_corrected.json``
    (diagnostics, assumptions, provenance). Stacks with missing or uneven slices are resampled onto their
    true geometry first (``irregular``). ``like`` (a volume file or DICOM series) puts the corrected
    volume on that series' grid instead of its own, e.g. the reference series of the session. Nothing is
    written unless every output can be.

    Examples
    --------
    >>> correct("session/cor_t1", "out", coefficients="AS82.grad")          # doctest: +SKIP
    >>> correct("cor_t1.nii.gz", "out", coefficients="AS82.grad", distortion_state="DIS2D")  # doctest: +SKIP
    """
    from trueshape.gnl import read_coefficients
    from trueshape.io import is_volume_file

    check_output_folder(out)
    if (coefficients is None) == (model is None):
        raise TrueshapeError("give exactly one of --coef (vendor .grad/.coef) or --model (trueshape .json)")
    coefficient_file = coefficients if coefficients is not None else model
    assert coefficient_file is not None
    coil = read_coefficients(coefficient_file, r0_mm=r0_mm)
    request = CorrectionRequest.build(
        coil, coefficient_file=coefficient_file, mode=mode, intensity_correction=intensity_correction,
        distortion_state=distortion_state, patient_position=patient_position, isocentre_lps=isocentre_lps,
        fmt=fmt, force=force, like=like,
    )
    if like is not None and not is_volume_file(like):  # the --like series is read too: never written into
        refuse_output_inside(parse_series_argument(like)[0], out)
    if is_volume_file(series):
        return correct_volume_file(series, request, out)
    path, series_key, stack_index = parse_series_argument(series)
    refuse_output_inside(path, out)
    stack = _one_stack(inspect(path, irregular=irregular), path, series_key, stack_index)
    return correct_stack(stack, request, out)
