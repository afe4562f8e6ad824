"""The geometry layer's findings: one constructor per sentence, the numbers in it, the files that caused it.

Each constructor takes what its check measured and returns the :class:`~trueshape.findings.Finding` a
clinician reads (README table: codes and severities). The checks (``_series``, ``_stack``, ``_distortion``)
decide when a finding applies; the wording lives here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import FileProblem, Frame
from trueshape.findings import Finding, FindingCode, Severity
from trueshape.geometry._affine import MAX_COSINE, MAX_POSITION_MM, MAX_SPACING_MM, MIN_SPACING_MM, orientation_usable

__all__ = [
    "corners_mismatch",
    "distortion_2d_only",
    "distortion_not_corrected",
    "distortion_state_unknown",
    "far_from_isocentre",
    "files_unreadable",
    "frames_disagree",
    "gantry_tilt",
    "geometry_missing",
    "isocentre_assumed",
    "localizer_excluded",
    "orientation_mixed",
    "orientation_not_orthonormal",
    "positions_copied",
    "positions_incomplete",
    "positions_untold",
    "series_split",
    "single_slice",
    "slices_missing",
    "spacing_from_protocol",
    "spacing_irregular",
    "spacing_tag_mismatch",
    "stack_resampled",
    "stack_split",
    "thickness_ne_spacing",
    "uid_reused",
]


# ------------------------------------------------------------------------------------------------ series


def geometry_missing(unplaced: Sequence[Frame]) -> Finding:
    """GEOMETRY_MISSING: images without position, orientation or pixel spacing were left out."""
    return Finding(
        FindingCode.GEOMETRY_MISSING,
        Severity.ERROR,
        f"{len(unplaced)} image(s) cannot be placed in space and were left out: {_unplaced_reasons(unplaced)}.",
        measured=float(len(unplaced)),
        unit="images",
        where=tuple(f.where for f in unplaced),
    )


def _missing_geometry_tags(frame: Frame) -> str:
    """Name the geometry tags ``frame`` lacks (or holds unusable values of)."""
    missing = [
        name
        for name, value in (
            ("ImagePositionPatient (0020,0032)", frame.image_position),
            ("ImageOrientationPatient (0020,0037)", frame.image_orientation),
            ("PixelSpacing (0028,0030)", frame.pixel_spacing),
        )
        if value is None
    ]
    spacing = frame.pixel_spacing
    if spacing is not None and min(spacing) <= 0:
        missing.append(f"a positive PixelSpacing (0028,0030) (found {list(spacing)})")
    elif spacing is not None and not MIN_SPACING_MM <= min(spacing) <= max(spacing) <= MAX_SPACING_MM:
        missing.append(
            f"a PixelSpacing (0028,0030) between {MIN_SPACING_MM:g} and {MAX_SPACING_MM:g} mm (found {list(spacing)})"
        )
    if frame.image_position is not None and max(abs(v) for v in frame.image_position) > MAX_POSITION_MM:
        missing.append(
            f"an ImagePositionPatient (0020,0032) within {MAX_POSITION_MM:g} mm of the origin "
            f"(found {[float(f'{v:.6g}') for v in frame.image_position]})"
        )
    orientation = frame.image_orientation
    if orientation is not None and not orientation_usable(orientation):
        damaged = ", or cosines beyond 1000" if max(abs(v) for v in orientation) > MAX_COSINE else ""
        missing.append(
            f"a usable ImageOrientationPatient (0020,0037) (found {list(orientation)}: "
            f"a zero or parallel row/column vector{damaged})"
        )
    return ", ".join(missing)


def _unplaced_reasons(unplaced: Sequence[Frame]) -> str:
    """One clause per reason ("3 lack PixelSpacing (0028,0030), e.g. a.dcm; 1 lacks a positive ..., e.g. b.dcm")."""
    by_reason: dict[str, list[Frame]] = {}
    for frame in unplaced:
        reason = re.sub(r" \(found .*?\)(?=,|$)", "", _missing_geometry_tags(frame))  # group by kind, not value
        by_reason.setdefault(reason, []).append(frame)
    return "; ".join(
        f"{len(frames)} lack{'s' if len(frames) == 1 else ''} {_missing_geometry_tags(frames[0])}, "
        f"e.g. {frames[0].where}"
        for reason, frames in by_reason.items()
    )


def files_unreadable(problems: Sequence[FileProblem]) -> Finding:
    """FILES_UNREADABLE: files of the series that could not be used."""
    return Finding(
        FindingCode.FILES_UNREADABLE,
        Severity.ERROR,
        f"{len(problems)} file(s) of this series could not be used (e.g. {problems[0].message}).",
        measured=float(len(problems)),
        unit="files",
        where=tuple(p.path for p in problems),
    )


def damaged_copy_skipped(problems: Sequence[FileProblem]) -> Finding:
    """DAMAGED_COPY_SKIPPED: damaged files whose slice another file of the series holds whole."""
    first = problems[0]
    return Finding(
        FindingCode.DAMAGED_COPY_SKIPPED,
        Severity.WARNING,
        f"{len(problems)} damaged copy(ies) of files of this series left out: {first.path} names {first.slice_text} "
        f"(SOPInstanceUID {first.sop_instance_uid}), which {first.copy_of} holds whole ({first.message}).",
        measured=float(len(problems)),
        unit="files",
        where=tuple(p.path for p in problems),
        details={"copies": [{"damaged": p.path, "whole": p.copy_of} for p in problems]},
    )


def localizer_excluded(excluded: Sequence[Frame], reason: str, *, near_stack: bool) -> Finding:
    """LOCALIZER_EXCLUDED: images kept out of the volume (a warning when one may be a slice of the stack)."""
    return Finding(
        FindingCode.LOCALIZER_EXCLUDED,
        Severity.WARNING if near_stack else Severity.INFO,
        f"{len(excluded)} {'' if near_stack else 'localizer '}image(s) in this series ({reason}) were kept out "
        "of the volume, so they "
        f"cannot distort its slice spacing (e.g. {excluded[0].where}).",
        measured=float(len(excluded)),
        unit="images",
        where=tuple(f.where for f in excluded),
    )


def orientation_mixed(
    count: int, described: Sequence[str], widest_degrees: float, where: tuple[str, ...], *, tolerance: float
) -> Finding:
    """ORIENTATION_MIXED: ``count`` slice orientations in one series, each its own stack."""
    return Finding(
        FindingCode.ORIENTATION_MIXED,
        Severity.WARNING,
        f"This series mixes {count} slice orientations ({', '.join(described)}; slice "
        f"normals up to {widest_degrees:.3g} degrees apart); each orientation became its own stack.",
        measured=float(count),
        tolerance=1.0,  # one orientation per stack; the grouping tolerance is in the details
        unit="orientations",
        details={"orientation_tolerance": tolerance},
        where=where,
    )


def series_split(names: Sequence[str], parts: Sequence[str], *, grid_changes: bool, where: tuple[str, ...]) -> Finding:
    """SERIES_SPLIT: images differing in ``names`` became stacks of their own (a warning for another grid)."""
    return Finding(
        FindingCode.SERIES_SPLIT,
        Severity.WARNING if grid_changes else Severity.INFO,
        f"This series holds images that differ in {' and '.join(names)}: {'; '.join(parts)}; each kind became its "
        "own stack (a slice on another grid is not a missing slice of the rest).",
        measured=float(len(parts)),
        unit="stacks",
        where=where,
    )


# ------------------------------------------------------------------------------------------------- stack


def orientation_not_orthonormal(frame: Frame, deviation: float, tolerance: float) -> Finding:
    """ORIENTATION_NOT_ORTHONORMAL: the orientation vectors were made orthonormal."""
    return Finding(
        FindingCode.ORIENTATION_NOT_ORTHONORMAL,
        Severity.WARNING,
        f"ImageOrientationPatient (0020,0037) {list(frame.image_orientation or ())} is not orthonormal "
        f"(largest |length - 1| or |cos| {deviation:.2e}); the column direction was made perpendicular "
        f"to the row direction and both normalised.",
        measured=deviation,
        tolerance=tolerance,
        unit="",
        where=(frame.where,),
    )


def uid_reused(clashes: Sequence[Frame]) -> Finding:
    """UID_REUSED: images elsewhere share a SOPInstanceUID (kept as distinct images)."""
    return Finding(
        FindingCode.UID_REUSED,
        Severity.WARNING,
        f"{len(clashes)} image(s) share a SOPInstanceUID with another image at a different position, e.g. "
        f"{clashes[0].label}; they were kept as distinct images (UIDs rewritten by an anonymiser?).",
        measured=float(len(clashes)),
        tolerance=0.0,
        unit="images",
        where=tuple(f.where for f in clashes),
    )


def positions_copied(copies: Sequence[Frame]) -> Finding:
    """POSITIONS_DUPLICATED: files that copy an image already loaded were ignored."""
    return Finding(
        FindingCode.POSITIONS_DUPLICATED,
        Severity.WARNING,
        f"{len(copies)} file(s) are copies of an image already loaded (same SOPInstanceUID); each copy was ignored.",
        measured=float(len(copies)),
        tolerance=0.0,
        unit="images",
        where=tuple(f.where for f in copies),
    )


def positions_untold(count: int, where: tuple[str, ...]) -> Finding:
    """POSITIONS_DUPLICATED: every position repeats ``count`` times and no tag tells the images apart."""
    # Nothing says which is first, or that they are volumes at all (an export twice over looks alike).
    return Finding(
        FindingCode.POSITIONS_DUPLICATED,
        Severity.WARNING,
        f"Every position holds {count} images that no time, echo or acquisition tag tells apart: "
        f"they were taken as {count} volumes in instance-number order; if they are copies of one "
        "acquisition, load one of them.",
        measured=float(count),
        unit="images per position",
        where=where,
    )


def positions_incomplete(extra: Sequence[Frame], counts: Sequence[int]) -> Finding:
    """POSITIONS_DUPLICATED: positions repeat unequally (no complete time or echo axis); the first was kept."""
    histogram = Counter(counts)
    return Finding(
        FindingCode.POSITIONS_DUPLICATED,
        Severity.WARNING,
        f"{len(extra)} image(s) repeat a slice position without forming a complete time or echo series "
        f"(positions hold {min(counts)} to {max(counts)} images: "
        + ", ".join(f"{n} position(s) with {k}" for k, n in sorted(histogram.items()))
        + "); the first image at each position was kept.",
        measured=float(len(extra)),
        tolerance=0.0,
        unit="images",
        where=tuple(f.where for f in extra),
        details={"images_per_position": list(counts)},
    )


def slices_missing(holes: Sequence[dict[str, Any]], dominant_mm: float) -> Finding:
    """SLICES_MISSING: gaps that are whole multiples of the slice spacing (``holes``: where and how many)."""
    missing = sum(int(h["missing"]) for h in holes)
    first = holes[0]
    return Finding(
        FindingCode.SLICES_MISSING,
        Severity.WARNING,
        f"{missing} slice(s) missing: slices are {dominant_mm:.3f} mm apart but {len(holes)} gap(s) are "
        f"whole multiples of that (e.g. {first['gap_mm']:.3f} mm after slice {first['after_slice'] + 1}, "
        f"between {first['between'][0]} and {first['between'][1]}).",
        measured=float(missing),
        tolerance=0.0,
        unit="slices",
        where=tuple(w for h in holes for w in h["between"]),
        details={"holes": list(holes), "spacing_mm": dominant_mm},
    )


def spacing_irregular(
    gaps: NDArray[np.float64],
    dominant_mm: float,
    worst: int,
    tolerance_mm: float,
    zones: Sequence[dict[str, Any]],
    slices: Sequence[Sequence[Frame]],
) -> Finding:
    """SPACING_IRREGULAR: gaps differ; ``worst`` is the gap furthest from the dominant one, ``zones`` the runs."""
    zone_text = "; ".join(
        f"slices {z['slices'][0] + 1}-{z['slices'][1] + 1} {z['spacing_mm']:.3f} mm apart" for z in zones[:3]
    )
    return Finding(
        FindingCode.SPACING_IRREGULAR,
        Severity.WARNING,
        f"Slice spacing is irregular: gaps range from {float(np.min(gaps)):.3f} to "
        f"{float(np.max(gaps)):.3f} mm (most common {dominant_mm:.3f} mm; largest deviation "
        f"{float(abs(gaps[worst] - dominant_mm)):.3f} mm between {slices[worst][0].where} and "
        f"{slices[worst + 1][0].where})" + (f"; {zone_text}" if zone_text else "") + ".",
        measured=float(abs(gaps[worst] - dominant_mm)),
        tolerance=tolerance_mm,
        unit="mm",
        where=(slices[worst][0].where, slices[worst + 1][0].where),
        details={"zones": list(zones), "gaps_mm": [round(float(g), 4) for g in gaps]},
    )


def gantry_tilt(
    angle_degrees: float, largest_mm: float, worst: int, tolerance_degrees: float, slices: Sequence[Sequence[Frame]]
) -> Finding:
    """GANTRY_TILT: slices drift sideways of a straight stack (``worst`` the slice furthest off, by ``largest_mm``)."""
    tag = slices[0][0].gantry_tilt_deg
    tag_text = f"; GantryDetectorTilt (0018,1120) says {tag:g} degrees" if tag is not None else ""
    return Finding(
        FindingCode.GANTRY_TILT,
        Severity.WARNING,
        f"Slices are not stacked along their normal: the stack is sheared by {angle_degrees:.2f} degrees (gantry "
        f"tilt), slice {worst + 1} sits {largest_mm:.3f} mm sideways of a straight stack{tag_text}; on an orthogonal "
        f"grid the true positions need an acquisition transform, or resampling (--irregular resample).",
        measured=angle_degrees,
        tolerance=tolerance_degrees,
        unit="deg",
        where=(slices[0][0].where, slices[worst][0].where),
        details={"max_in_plane_shift_mm": largest_mm, "gantry_detector_tilt_deg": tag},
    )


def thickness_ne_spacing(
    frame: Frame, thickness_mm: float, spacing_mm: float, tolerance_mm: float, measured_from: str
) -> Finding:
    """THICKNESS_NE_SPACING: SliceThickness differs from the measured spacing (a gap or an overlap)."""
    gap = spacing_mm - thickness_mm
    relation = f"a {gap:.3f} mm gap between slices" if gap > 0 else f"slices overlapping by {-gap:.3f} mm"
    return Finding(
        FindingCode.THICKNESS_NE_SPACING,
        Severity.INFO,
        f"Slices are {thickness_mm:.3f} mm thick but {spacing_mm:.3f} mm apart ({relation}); spacing is "
        f"measured from {measured_from}: a loader that uses SliceThickness would make this volume "
        f"{100 * abs(thickness_mm - spacing_mm) / spacing_mm:.1f}% too {'short' if gap > 0 else 'long'} "
        f"along the slice axis.",
        measured=spacing_mm - thickness_mm,
        tolerance=tolerance_mm,
        unit="mm",
        where=(frame.where,),
        details={"slice_thickness_mm": thickness_mm, "slice_spacing_mm": spacing_mm},
    )


def spacing_tag_mismatch(
    frame: Frame, tag_mm: float, spacing_mm: float, tolerance_mm: float, measured_from: str
) -> Finding:
    """SPACING_TAG_MISMATCH: SpacingBetweenSlices disagrees with the measured spacing (which is used)."""
    return Finding(
        FindingCode.SPACING_TAG_MISMATCH,
        Severity.WARNING,
        f"SpacingBetweenSlices (0018,0088) says {tag_mm:g} mm but the slices are {spacing_mm:.3f} mm apart "
        f"(measured from {measured_from}); the measured spacing is used.",
        measured=abs(abs(tag_mm) - spacing_mm),
        tolerance=tolerance_mm,
        unit="mm",
        where=(frame.where,),
        details={"spacing_between_slices_mm": tag_mm, "slice_spacing_mm": spacing_mm},
    )


def spacing_from_protocol(frame: Frame) -> Finding:
    """SPACING_FROM_PROTOCOL: a mosaic's slice positions come from the protocol (a warning unless Phoenix's)."""
    return Finding(
        FindingCode.SPACING_FROM_PROTOCOL,
        Severity.INFO if "Phoenix" in frame.geometry_source else Severity.WARNING,
        f"A Siemens mosaic carries one position for all {frame.mosaic_slice_count} slices; {frame.geometry_source}.",
        unit="",
        where=(frame.where,),
    )


def single_slice(frame: Frame, slice_mm: float, source: str) -> Finding:
    """SINGLE_SLICE: the thickness along the normal is taken from ``source`` (a tag or a default)."""
    return Finding(
        FindingCode.SINGLE_SLICE,
        Severity.INFO,
        f"A single slice: its thickness along the normal ({abs(slice_mm):g} mm) is taken from {source}.",
        measured=abs(slice_mm),
        unit="mm",
        where=(frame.where,),
    )


def corners_mismatch(error_mm: float, worst: str, cause: str, tolerance_mm: float) -> Finding:
    """CORNERS_MISMATCH: slice corners from the headers are off the volume's grid, and why."""
    return Finding(
        FindingCode.CORNERS_MISMATCH,
        Severity.WARNING,
        f"Slice corners from the headers differ from the volume geometry by up to {error_mm:.4f} mm "
        f"(at {worst}): {cause}.",
        measured=error_mm,
        tolerance=tolerance_mm,
        unit="mm",
        where=(worst,),
    )


def stack_resampled(frame: Frame, source_slices: int, target_slices: int, step_mm: float) -> Finding:
    """STACK_RESAMPLED: slices interpolated onto a regular grid in their true positions."""
    return Finding(
        FindingCode.STACK_RESAMPLED,
        Severity.INFO,
        f"The {source_slices} slices were interpolated (linear) onto {target_slices} regular slices "
        f"{step_mm:.3f} mm apart in their true positions (policy 'resample').",
        measured=step_mm,
        unit="mm",
        where=(frame.where,),
        details={"source_slices": source_slices, "target_slices": target_slices},
    )


def stack_split(part: int, parts: int, run: Sequence[Sequence[Frame]]) -> Finding:
    """STACK_SPLIT: part ``part`` of ``parts`` of a stack split where its spacing changes."""
    return Finding(
        FindingCode.STACK_SPLIT,
        Severity.INFO,
        f"Part {part} of {parts}: the stack was split where its slice spacing changes "
        f"(policy 'split'); this part holds {len(run)} slice(s).",
        measured=float(len(run)),
        unit="slices",
        where=(run[0][0].where,),
        details={"part": part, "parts": parts},
    )


# -------------------------------------------------------------------------------------------- distortion


def frames_disagree(message: str, subject: str, odd: Sequence[Frame]) -> Finding:
    """FRAMES_DISAGREE: slices of one stack disagree on ``subject`` (patient_position or table_position)."""
    return Finding(
        FindingCode.FRAMES_DISAGREE,
        Severity.ERROR,
        message,
        where=tuple(dict.fromkeys(f.path for f in odd)),  # the files that differ
        details={"disagree_on": subject},
    )


def distortion_2d_only(source: str, axis: str, distance_mm: float, where: tuple[str, ...]) -> Finding:
    """DISTORTION_2D_ONLY: corrected in-plane only; the through-plane part along ``axis`` remains."""
    return Finding(
        FindingCode.DISTORTION_2D_ONLY,
        Severity.WARNING,
        f"The scanner corrected gradient distortion only within each slice ({source} says DIS2D): the "
        f"through-plane part, along the slice normal ({axis}), is still in the images and grows steeply "
        f"with distance from the isocentre; this field of view reaches {distance_mm:.0f} mm from it.",
        measured=distance_mm,
        unit="mm",
        where=where,
        details={"slice_normal_axis": axis},
    )


def distortion_not_corrected(source: str, distance_mm: float, where: tuple[str, ...]) -> Finding:
    """DISTORTION_NOT_CORRECTED: the scanner did not correct gradient distortion (ND)."""
    return Finding(
        FindingCode.DISTORTION_NOT_CORRECTED,
        Severity.WARNING,
        f"The scanner did not correct gradient distortion ({source} says ND): anatomy is displaced in all "
        f"three directions, increasingly with distance from the isocentre; this field of view reaches "
        f"{distance_mm:.0f} mm from it.",
        measured=distance_mm,
        unit="mm",
        where=where,
    )


def distortion_state_unknown(disagreement: str | None, where: tuple[str, ...]) -> Finding:
    """DISTORTION_STATE_UNKNOWN: no marker says what was corrected (or the slices disagree: ``disagreement``)."""
    return Finding(
        FindingCode.DISTORTION_STATE_UNKNOWN,
        Severity.INFO,
        (
            "The headers do not say whether gradient distortion was corrected (no ND/DIS2D/DIS3D in "
            "ImageType or the Siemens private tags); "
            if disagreement is None
            else f"The slices disagree on whether gradient distortion was corrected ({disagreement}); "
        )
        + "treat the geometry far from the isocentre with care.",
        where=where,
    )


def far_from_isocentre(
    distance_mm: float,
    radius_mm: float,
    isocentre_lps: NDArray[np.float64],
    isocentre_source: str,
    *,
    corrected_3d: bool,
    where: tuple[str, ...],
) -> Finding:
    """FAR_FROM_ISOCENTRE: the field of view reaches beyond ``radius_mm`` (information once DIS3D)."""
    return Finding(
        FindingCode.FAR_FROM_ISOCENTRE,
        Severity.INFO if corrected_3d else Severity.WARNING,
        f"The field of view reaches {distance_mm:.0f} mm from the magnet isocentre (beyond {radius_mm:g} mm), "
        + (
            "where gradient non-linearity is strongest, but the scanner corrected this in 3-D: only its own "
            "small residual remains "
            if corrected_3d
            else "where uncorrected gradient non-linearity typically displaces anatomy by several millimetres "
        )
        + f"(isocentre {np.round(isocentre_lps, 1).tolist()} mm LPS: {isocentre_source}).",
        measured=distance_mm,
        tolerance=radius_mm,
        unit="mm",
        where=where,
    )


def isocentre_assumed(where: tuple[str, ...]) -> Finding:
    """ISOCENTRE_ASSUMED: no table position in the headers, so the isocentre is taken at the origin."""
    return Finding(
        FindingCode.ISOCENTRE_ASSUMED,
        Severity.INFO,
        "No table position in the headers: the magnet isocentre is assumed at the patient-coordinate origin "
        "(true for most scans at the landmark position).",
        where=where,
    )
