"""One stack: frames of one orientation sorted along the slice normal, checked, and placed on a grid.

Checks (each a :class:`~trueshape.findings.Finding`): orthonormal orientation, repeated positions (a time
or echo axis, or duplicates), spacing measured from ImagePositionPatient (regular, missing slices, zones),
shear (gantry tilt), SliceThickness and SpacingBetweenSlices against the measured spacing, and finally every
slice's four corners against the affine (plus the acquisition transform when slices are off-grid).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import Frame
from trueshape.errors import GeometryError
from trueshape.findings import Finding, FindingCode, Severity, Tolerance
from trueshape.geometry._acquisition import AcquisitionTransform
from trueshape.geometry._affine import (
    MAX_SPACING_MM,
    MIN_SPACING_MM,
    ORTHOGONALITY_TOLERANCE,
    lps_from_ijk_matrix,
    orthonormal_directions,
)
from trueshape.geometry._findings import (
    corners_mismatch,
    gantry_tilt,
    orientation_not_orthonormal,
    positions_copied,
    positions_incomplete,
    positions_untold,
    single_slice,
    slices_missing,
    spacing_from_protocol,
    spacing_irregular,
    spacing_tag_mismatch,
    stack_resampled,
    stack_split,
    thickness_ne_spacing,
    uid_reused,
)
from trueshape.geometry._statistics import percentile
from trueshape.geometry._volume import VolumeGeometry

__all__ = [
    "CORNER_TOLERANCE_MM",
    "POSITION_TOLERANCE",
    "SHEAR_TOLERANCE",
    "SPACING_TOLERANCE",
    "THICKNESS_TOLERANCE",
    "IrregularPolicy",
    "StackLayout",
    "layout_stack",
]

#: Two images closer than this along the normal share a position (voxel = smallest pixel spacing).
POSITION_TOLERANCE = Tolerance(absolute_mm=0.01, fraction_of_voxel=0.01)
#: A gap may differ from the slice spacing by this much (voxel = slice spacing).
SPACING_TOLERANCE = Tolerance(absolute_mm=0.01, fraction_of_voxel=0.01)
#: In-plane drift of a slice off the normal line allowed before it counts as shear (voxel = pixel spacing).
SHEAR_TOLERANCE = Tolerance(absolute_mm=0.01, fraction_of_voxel=0.01)
#: SliceThickness and SpacingBetweenSlices may differ from the measured spacing by this much.
THICKNESS_TOLERANCE = Tolerance(absolute_mm=0.01, fraction_of_voxel=0.01)
#: Largest distance between a slice corner from its header and from the volume's geometry (as Slicer).
CORNER_TOLERANCE_MM = 1e-3


class IrregularPolicy(enum.StrEnum):
    """What to do with a stack whose slices are not on a regular grid."""

    WARN = "warn"  #: regular grid at the mean spacing (as Slicer/ITK) + acquisition transform + finding
    RESAMPLE = "resample"  #: interpolate onto a regular grid at the dominant spacing, in true geometry
    SPLIT = "split"  #: one stack per regularly spaced run
    FAIL = "fail"  #: raise GeometryError


@dataclass(frozen=True, eq=False)
class StackLayout:
    """Sorted frames and the grid they are stored on.

    Parameters
    ----------
    slices : tuple of tuple of Frame
        ``slices[k][t]``: the frame of slice k (ascending along the normal) and volume t.
    source_geometry : VolumeGeometry
        Regular grid the slices are stored on (slice k of the data = ``slices[k]``).
    acquisition : AcquisitionTransform or None
        True slice positions relative to ``source_geometry`` when they are off-grid beyond tolerance.
    geometry : VolumeGeometry
        Grid of the volume the user gets (``source_geometry`` unless the stack is resampled).
    findings : tuple of Finding
        Everything the checks found.
    """

    slices: tuple[tuple[Frame, ...], ...]
    source_geometry: VolumeGeometry
    acquisition: AcquisitionTransform | None
    geometry: VolumeGeometry
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def resampled(self) -> bool:
        """Whether voxel values are interpolated from the source slices."""
        return self.geometry is not self.source_geometry

    @property
    def volume_count(self) -> int:
        """Size of the 4th (time/echo) axis; 1 for a 3-D stack."""
        return len(self.slices[0])


def _cluster_positions(frames: Sequence[Frame], normal: NDArray[np.float64], tolerance_mm: float) -> list[list[Frame]]:
    """Group frames sharing a position (within tolerance), ascending along the normal."""
    along = np.array([np.dot(normal, f.image_position) for f in frames])  # type: ignore[arg-type]
    order = sorted(range(len(frames)), key=lambda n: (along[n], frames[n].temporal_key))
    clusters: list[list[Frame]] = []
    anchor = None
    for n in order:
        if anchor is None or along[n] - anchor > tolerance_mm:
            clusters.append([frames[n]])
            anchor = along[n]
        else:
            clusters[-1].append(frames[n])
    return clusters


def _drop_copies(frames: Sequence[Frame]) -> tuple[list[Frame], list[Frame], list[Frame]]:
    """Remove repeated copies of one image: same SOPInstanceUID and frame, at the same place.

    Returns (kept, copies, clashes): ``clashes`` are kept images whose SOPInstanceUID an image elsewhere
    already has (a broken anonymiser reuses UIDs): dropping them as copies would lose slices silently.
    """
    seen: dict[tuple[str, int, tuple[int, int] | None], list[Frame]] = {}
    kept: list[Frame] = []
    copies: list[Frame] = []
    clashes: list[Frame] = []
    for frame in frames:
        key = (
            frame.sop_instance_uid,
            frame.pixels.frame_index if frame.pixels else 0,
            frame.pixels.tile if frame.pixels else None,
        )
        earlier = seen.setdefault(key, []) if frame.sop_instance_uid else []
        if any(_same_place(frame, other) for other in earlier):
            copies.append(frame)
            continue
        if earlier:
            clashes.append(frame)
        earlier.append(frame)
        kept.append(frame)
    return kept, copies, clashes


def _same_place(a: Frame, b: Frame) -> bool:
    """Whether two images sit at one position and orientation (to 0.01 mm and 1e-4: a re-export may round)."""
    if a.image_position is None or b.image_position is None:
        return a.image_position is b.image_position
    return bool(
        np.allclose(a.image_position, b.image_position, atol=0.01, rtol=0.0)
        and np.allclose(a.image_orientation or (), b.image_orientation or (), atol=1e-4, rtol=0.0)
    )


def _when(frame: Frame) -> tuple[object, ...]:
    """Return what tells repeated images at one position apart in time or echo (instance numbers aside)."""
    return (
        frame.temporal_index,
        frame.acquisition_number,
        frame.acquisition_time_s,
        frame.trigger_time_ms,
        frame.echo_time,
        frame.echo_number,
        frame.diffusion.key if frame.diffusion is not None else None,
    )


def _time_axis(clusters: list[list[Frame]], copies: list[Frame]) -> tuple[list[list[Frame]], list[Finding]]:
    """Turn repeated positions into a 4th axis when every position repeats equally, else keep the first."""
    findings = [positions_copied(copies)] if copies else []
    counts = [len(c) for c in clusters]
    ordered = _aligned_by_diffusion([sorted(c, key=lambda f: f.temporal_key) for c in clusters])
    if len(set(counts)) <= 1:
        if counts and counts[0] > 1 and all(len({_when(f) for f in c}) == 1 for c in clusters):
            findings.append(positions_untold(counts[0], tuple(f.where for f in clusters[0])))
        return ordered, findings
    findings.append(positions_incomplete([f for c in ordered for f in c[1:]], counts))
    return [[c[0]] for c in ordered], findings


def _aligned_by_diffusion(ordered: list[list[Frame]]) -> list[list[Frame]]:
    """Order each position's images as the first position's, by diffusion weighting (b-value, direction, repeat).

    Volume t is then one b-value and direction at every position, in the order acquired (as dcm2niix keeps
    them), whatever the instance numbers of the other positions say. Left as it is when an image has no
    weighting or a position lacks one another has.
    """
    if any(frame.diffusion is None for cluster in ordered for frame in cluster):
        return ordered

    def keyed(cluster: list[Frame]) -> dict[tuple[Any, int], Frame]:
        repeats: dict[Any, int] = {}
        found = {}
        for frame in cluster:
            assert frame.diffusion is not None
            key = frame.diffusion.key
            found[(key, repeats.get(key, 0))] = frame
            repeats[key] = repeats.get(key, 0) + 1
        return found

    reference = list(keyed(ordered[0]))
    aligned = []
    for cluster in ordered:
        found = keyed(cluster)
        if set(found) != set(reference):
            return ordered
        aligned.append([found[key] for key in reference])
    return aligned


@dataclass(frozen=True)
class _Spacing:
    mean: float
    dominant: float
    kind: str  # "regular", "missing", "irregular", "single"
    findings: tuple[Finding, ...]
    runs: tuple[tuple[int, int], ...]  # half-open slice ranges with constant spacing


def _dominant_gap(gaps: NDArray[np.float64], tolerance_mm: float) -> float:
    """Return the gap shared by most neighbouring pairs (clusters within tolerance; ties go to the smaller)."""
    best_count, best_value = -1, float(gaps[0])
    for gap in np.sort(gaps):
        members = gaps[np.abs(gaps - gap) <= tolerance_mm]
        if members.size > best_count:
            best_count, best_value = members.size, percentile(members, 50.0)
    return best_value


def _runs(gaps: NDArray[np.float64], tolerance_mm: float) -> list[tuple[int, int]]:
    """Half-open slice ranges with one constant gap; a gap that differs separates two runs.

    Examples
    --------
    >>> _runs(np.array([1.0, 1.0, 2.0, 1.0, 1.0]), 0.01)
    [(0, 3), (3, 6)]
    """
    count = gaps.size + 1
    runs: list[tuple[int, int]] = []
    start = 0
    while start < count:
        if start == count - 1:
            runs.append((start, count))
            break
        reference, stop = gaps[start], start
        while stop < count - 1 and abs(gaps[stop] - reference) <= tolerance_mm:
            stop += 1
        runs.append((start, stop + 1))
        start = stop + 1
    return runs


def _analyse_spacing(along: NDArray[np.float64], slices: list[list[Frame]]) -> _Spacing:
    count = along.size
    if count == 1:
        return _Spacing(0.0, 0.0, "single", (), ((0, 1),))
    gaps = np.diff(along)
    mean = float((along[-1] - along[0]) / (count - 1))
    tolerance = SPACING_TOLERANCE.mm(voxel_size_mm=percentile(gaps, 50.0))
    deviation = np.abs(gaps - mean)
    if float(np.max(deviation)) <= tolerance:
        return _Spacing(mean, mean, "regular", (), ((0, count),))
    dominant = _dominant_gap(gaps, tolerance)
    tolerance = SPACING_TOLERANCE.mm(voxel_size_mm=dominant)
    multiples = np.round(gaps / dominant)
    findings: list[Finding] = []
    if np.all(multiples >= 1) and np.all(np.abs(gaps - multiples * dominant) <= tolerance):
        holes: list[dict[str, Any]] = [
            {
                "after_slice": int(k),
                "missing": int(multiples[k] - 1),
                "gap_mm": round(float(gaps[k]), 4),
                "between": [slices[k][0].where, slices[k + 1][0].where],
            }
            for k in np.flatnonzero(multiples > 1)
        ]
        findings.append(slices_missing(holes, dominant))
        kind = "missing"
    else:
        worst = int(np.argmax(np.abs(gaps - dominant)))
        zones: list[dict[str, Any]] = [
            {"slices": [start, stop - 1], "spacing_mm": round(float(np.mean(gaps[start : stop - 1])), 4)}
            for start, stop in _runs(gaps, tolerance)
            if stop - start >= 2
        ]
        findings.append(spacing_irregular(gaps, dominant, worst, tolerance, zones, slices))
        kind = "irregular"
    runs = tuple(_runs(gaps, tolerance))
    return _Spacing(mean, dominant, kind, tuple(findings), runs)


#: A regular grid holding a stack's slices may span this many slice positions (or 8 per real slice, if more)
#: before the stack counts as broken by a stray position: a grid that size is no acquisition's.
MAX_SPANNED_SLICES = 4096


def _refuse_a_stray_position(spacing: _Spacing, along: NDArray[np.float64], slices: list[list[Frame]]) -> None:
    """Raise GeometryError, naming the image, when one position puts the stack's grid over millions of slices.

    Missing slices and uneven gaps are placed on a regular grid (and an acquisition transform); a slice whose
    position is off by orders of magnitude (a damaged ImagePositionPatient) would make that grid absurd.
    """
    if spacing.kind not in ("missing", "irregular") or spacing.dominant <= 0:
        return
    spanned = (along[-1] - along[0]) / spacing.dominant + 1
    if spanned <= max(MAX_SPANNED_SLICES, 8 * len(slices)):
        return
    offsets = np.abs(along - percentile(along, 50.0))
    worst = int(np.argmax(offsets))
    frame = slices[worst][0]
    position = ", ".join(f"{v:.6g}" for v in frame.image_position or ())
    raise GeometryError(
        f"{frame.where}: ImagePositionPatient (0020,0032) ({position}) lies {offsets[worst]:.4g} "
        f"mm from the middle of the stack's other {len(slices) - 1} slice positions ({spacing.dominant:.4g} mm "
        f"apart): the stack would span {spanned:.4g} slices; the position is damaged or the image belongs elsewhere"
    )


def _shear(
    positions: NDArray[np.float64],
    along: NDArray[np.float64],
    normal: NDArray[np.float64],
    pixel_mm: float,
    slices: list[list[Frame]],
) -> tuple[NDArray[np.float64], Finding | None]:
    """In-plane drift of each slice from the line through slice 0 along the normal (LPS mm)."""
    drift = (positions - positions[0]) - np.outer(along - along[0], normal)
    largest = float(np.max(np.linalg.norm(drift, axis=1)))
    tolerance = SHEAR_TOLERANCE.mm(voxel_size_mm=pixel_mm)
    if largest <= tolerance:
        return drift, None
    extent = float(along[-1] - along[0])
    slope = np.linalg.lstsq((along - along[0])[:, None], drift, rcond=None)[0][0] if extent > 0 else np.zeros(3)
    angle = float(np.degrees(np.arctan(np.linalg.norm(slope))))
    worst = int(np.argmax(np.linalg.norm(drift, axis=1)))
    angle_tolerance = float(np.degrees(np.arctan(tolerance / extent))) if extent > 0 else 0.0
    return drift, gantry_tilt(angle, largest, worst, angle_tolerance, slices)


def _tag_checks(spacing_mm: float, slices: list[list[Frame]], measured_from: str) -> list[Finding]:
    """SliceThickness and SpacingBetweenSlices against the measured spacing."""
    findings: list[Finding] = []
    first = slices[0][0]
    tolerance = THICKNESS_TOLERANCE.mm(voxel_size_mm=spacing_mm)
    thickness = first.slice_thickness
    if thickness is not None and thickness > 0 and abs(thickness - spacing_mm) > tolerance:
        findings.append(thickness_ne_spacing(first, thickness, spacing_mm, tolerance, measured_from))
    tag = first.spacing_between_slices
    if tag is not None and tag != 0 and abs(abs(tag) - spacing_mm) > tolerance:
        findings.append(spacing_tag_mismatch(first, tag, spacing_mm, tolerance, measured_from))
    return findings


def _corner_error(
    slices: Sequence[Sequence[Frame]], geometry: VolumeGeometry, acquisition: AcquisitionTransform | None
) -> tuple[float, float, str]:
    """Largest corner distance (mm) between each frame's header and the grid, without/with the transform."""
    columns, rows = geometry.shape[0], geometry.shape[1]
    corners_ij = np.array([[0, 0], [columns - 1, 0], [0, rows - 1], [columns - 1, rows - 1]], dtype=np.float64)
    plain, corrected, worst_file = 0.0, 0.0, ""
    for k, frames_at_k in enumerate(slices):
        ijk = np.column_stack([corners_ij, np.full(4, float(k))])
        grid_points = geometry.index_to_lps(ijk)
        true_grid = acquisition.true_points(ijk) if acquisition is not None else grid_points
        for frame in frames_at_k:
            assert frame.image_orientation is not None and frame.pixel_spacing is not None
            orientation = np.asarray(frame.image_orientation).reshape(2, 3)
            header = (
                np.asarray(frame.image_position)
                + np.outer(corners_ij[:, 0] * frame.pixel_spacing[1], orientation[0])
                + np.outer(corners_ij[:, 1] * frame.pixel_spacing[0], orientation[1])
            )
            error = float(np.max(np.linalg.norm(header - grid_points, axis=1)))
            error_corrected = float(np.max(np.linalg.norm(header - true_grid, axis=1)))
            if error_corrected > corrected:
                worst_file = frame.where
            plain, corrected = max(plain, error), max(corrected, error_corrected)
    return plain, corrected, worst_file


def layout_stack(frames: Sequence[Frame], *, policy: IrregularPolicy = IrregularPolicy.WARN) -> list[StackLayout]:
    """Sort, check and place one orientation group of frames on a grid.

    Parameters
    ----------
    frames : sequence of Frame
        Frames with geometry, one orientation, one pixel grid (grouping guarantees this).
    policy : IrregularPolicy
        What to do when slices are off a regular grid (see :class:`IrregularPolicy`).

    Returns
    -------
    list of StackLayout
        One layout, or several when ``policy`` is SPLIT and the stack has runs of different spacing.

    Raises
    ------
    GeometryError
        When ``policy`` is FAIL and the slices are irregular, missing, duplicated or sheared.
    """
    first = frames[0]
    assert first.image_orientation is not None and first.pixel_spacing is not None
    findings: list[Finding] = []
    directions, deviation = orthonormal_directions(first.image_orientation)
    if deviation > ORTHOGONALITY_TOLERANCE:
        findings.append(orientation_not_orthonormal(first, deviation, ORTHOGONALITY_TOLERANCE))
    normal = directions[:, 2]
    pixel_mm = float(min(first.pixel_spacing))
    slices = _sorted_slices(frames, normal, pixel_mm, findings)
    positions = np.array([s[0].image_position for s in slices], dtype=np.float64)
    along = positions @ normal
    spacing = _analyse_spacing(along, slices)
    _refuse_a_stray_position(spacing, along, slices)
    findings.extend(spacing.findings)
    slice_mm = _slice_spacing(spacing, slices, findings)
    drift, shear_finding = _shear(positions, along, normal, pixel_mm, slices)
    if shear_finding is not None:
        findings.append(shear_finding)
    off_grid = spacing.kind in ("missing", "irregular") or shear_finding is not None
    problems = [f for f in findings if f.code in _REFUSED_BY_FAIL]
    if policy is IrregularPolicy.FAIL and problems:
        raise GeometryError(
            f"{first.where}: " + " ".join(f.message for f in problems) + " (policy --irregular fail)",
            findings=tuple(replace(f, severity=Severity.ERROR) for f in problems),
        )
    if policy is IrregularPolicy.SPLIT and spacing.kind in ("missing", "irregular") and len(spacing.runs) > 1:
        return _split(frames_runs=[slices[a:b] for a, b in spacing.runs], findings=findings)
    return [_place(slices, directions, positions, along, drift, slice_mm, spacing, findings, off_grid, policy)]


#: Findings that refuse a stack under ``--irregular fail``: slices off a regular grid, or repeated positions.
_REFUSED_BY_FAIL = (
    FindingCode.SLICES_MISSING,
    FindingCode.SPACING_IRREGULAR,
    FindingCode.GANTRY_TILT,
    FindingCode.POSITIONS_DUPLICATED,
)


def _sorted_slices(
    frames: Sequence[Frame], normal: NDArray[np.float64], pixel_mm: float, findings: list[Finding]
) -> list[list[Frame]]:
    """Frames without repeated copies, clustered by position along ``normal``: ``slices[k][t]`` (findings added)."""
    unique, copies, clashes = _drop_copies(frames)
    if clashes:
        findings.append(uid_reused(clashes))
    clusters = _cluster_positions(unique, normal, POSITION_TOLERANCE.mm(voxel_size_mm=pixel_mm))
    slices, time_findings = _time_axis(clusters, copies)
    findings.extend(time_findings)
    return slices


def _slice_spacing(spacing: _Spacing, slices: list[list[Frame]], findings: list[Finding]) -> float:
    """Return the grid's slice spacing, mm: measured, or a tag's for a single slice (adding findings about it)."""
    first = slices[0][0]
    measured_from = "ImagePositionPatient (0020,0032)"
    if first.mosaic_slice_count:
        measured_from = first.geometry_source.replace("mosaic tiles placed from ", "")
        findings.append(spacing_from_protocol(first))
    if spacing.kind != "single":
        if not first.mosaic_slice_count or "Phoenix" in first.geometry_source:
            findings.extend(_tag_checks(spacing.dominant, slices, measured_from))
        return spacing.mean
    tags = (
        (first.spacing_between_slices, "SpacingBetweenSlices (0018,0088)"),
        (first.slice_thickness, "SliceThickness (0018,0050)"),
    )
    slice_mm, source = next(
        ((abs(v), name) for v, name in tags if v is not None and MIN_SPACING_MM <= abs(v) <= MAX_SPACING_MM),
        (1.0, "a 1 mm default"),
    )
    findings.append(single_slice(first, slice_mm, source))
    return abs(slice_mm)


def _place(
    slices: list[list[Frame]],
    directions: NDArray[np.float64],
    positions: NDArray[np.float64],
    along: NDArray[np.float64],
    drift: NDArray[np.float64],
    slice_mm: float,
    spacing: _Spacing,
    findings: list[Finding],
    off_grid: bool,
    policy: IrregularPolicy,
) -> StackLayout:
    first = slices[0][0]
    assert first.pixel_spacing is not None and first.image_orientation is not None
    matrix = lps_from_ijk_matrix(
        image_position=positions[0],
        image_orientation=first.image_orientation,
        pixel_spacing=first.pixel_spacing,
        slice_spacing=slice_mm,
    )
    source = VolumeGeometry((first.columns, first.rows, len(slices)), matrix)
    regular = positions[0] + np.outer(np.arange(len(slices)) * slice_mm, directions[:, 2])
    offsets = positions - regular
    acquisition = AcquisitionTransform(source, offsets) if off_grid else None
    plain, corrected, worst = _corner_error(slices, source, acquisition)
    if corrected > CORNER_TOLERANCE_MM:
        cause = _corner_cause(slices, offsets @ directions[:, 2] if acquisition is None else None, corrected)
        findings.append(corners_mismatch(corrected, worst, cause, CORNER_TOLERANCE_MM))
    if acquisition is not None:
        findings[:] = [
            replace(f, details={**f.details, "max_corner_error_without_transform_mm": plain})
            if f.code in (FindingCode.SLICES_MISSING, FindingCode.SPACING_IRREGULAR, FindingCode.GANTRY_TILT)
            else f
            for f in findings
        ]
    geometry = source
    if policy is IrregularPolicy.RESAMPLE and acquisition is not None:
        step = spacing.dominant if spacing.kind in ("missing", "irregular") else slice_mm
        count = round((along[-1] - along[0]) / step) + 1
        target_matrix = matrix.copy()
        target_matrix[:3, 2] = directions[:, 2] * step
        geometry = VolumeGeometry((first.columns, first.rows, count), target_matrix)
        findings.append(stack_resampled(first, len(slices), count, step))
    return StackLayout(tuple(tuple(s) for s in slices), source, acquisition, geometry, tuple(findings))


def _corner_cause(slices: list[list[Frame]], drift_mm: NDArray[np.float64] | None, error_mm: float) -> str:
    """Say why slice corners are off the grid by ``error_mm``.

    Slice positions drifting from the mean spacing (each gap within tolerance, the sum not: ``drift_mm``, the
    offsets along the normal, when no acquisition transform holds them), orientations or pixel spacings
    varying, or orientation vectors that are not orthonormal.
    """
    first = slices[0][0]
    assert first.pixel_spacing is not None and first.image_orientation is not None
    drifted = float(np.max(np.abs(drift_mm))) if drift_mm is not None else 0.0
    frames = [frame for group in slices for frame in group]
    varies = any(
        not np.allclose(f.image_orientation or (), first.image_orientation, atol=1e-6, rtol=0.0)
        or not np.allclose(f.pixel_spacing or (), first.pixel_spacing, atol=1e-6, rtol=0.0)
        for f in frames
    )
    row, column = np.asarray(first.image_orientation[:3]), np.asarray(first.image_orientation[3:])
    skewed = max(
        abs(float(np.linalg.norm(row)) - 1.0), abs(float(np.linalg.norm(column)) - 1.0), abs(float(row @ column))
    )
    if drifted >= 0.5 * error_mm:
        return (
            f"slice positions drift from the regular spacing by up to {drifted:.4f} mm (each gap is within "
            "tolerance, their sum is not)"
        )
    if varies:
        return "slice orientations or pixel spacings vary slightly within the stack"
    if skewed > 1e-6:
        return (
            f"the ImageOrientationPatient row and column vectors are not unit length and perpendicular "
            f"(off by {skewed:.2g}); the volume uses them made orthonormal"
        )
    return "the slice corners do not fit one regular grid"


def _split(*, frames_runs: list[list[list[Frame]]], findings: list[Finding]) -> list[StackLayout]:
    layouts: list[StackLayout] = []
    for index, run in enumerate(frames_runs):
        flat = [f for position in run for f in position]
        (layout,) = layout_stack(flat, policy=IrregularPolicy.WARN)
        note = stack_split(index + 1, len(frames_runs), run)
        layouts.append(
            StackLayout(
                layout.slices,
                layout.source_geometry,
                layout.acquisition,
                layout.geometry,
                (*findings, *layout.findings, note),
            )
        )
    return layouts
