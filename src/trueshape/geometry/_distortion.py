"""Distortion-state and isocentre findings of a stack (headers only; the physics lives in gnl/)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import DistortionState, Frame
from trueshape.findings import Finding
from trueshape.geometry._findings import (
    distortion_2d_only,
    distortion_not_corrected,
    distortion_state_unknown,
    far_from_isocentre,
    frames_disagree,
    isocentre_assumed,
)

__all__ = ["FAR_FROM_ISOCENTRE_RADIUS_MM", "anatomical_axis_name", "distortion_findings"]

#: Beyond this distance from the isocentre, uncorrected gradient non-linearity of whole-body systems
#: typically reaches several millimetres (~5 mm at 150 mm for the SYN-AS reference coil, DESIGN.md s.4).
FAR_FROM_ISOCENTRE_RADIUS_MM = 150.0


def anatomical_axis_name(direction: NDArray[np.float64]) -> str:
    """Name the patient axis closest to an LPS direction.

    Examples
    --------
    >>> anatomical_axis_name(np.array([0.0, 0.99, 0.1]))
    'front-to-back (anterior-posterior)'
    """
    names = ["left-right", "front-to-back (anterior-posterior)", "head-foot (superior-inferior)"]
    return names[int(np.argmax(np.abs(direction)))]


#: Table positions of one stack closer than this agree (the headers repeat one value; this allows for how
#: differently it may be rounded), mm.
TABLE_AGREEMENT_MM = 0.05


def _counted(frames: list[Frame], value: Callable[[Frame], object], what: str = "") -> str:
    """E.g. ``5 slices say DIS2D, 1 slice says ND (IM00001.dcm)``, largest group first."""
    groups: dict[str, list[Frame]] = {}
    for frame in frames:
        found = value(frame)
        groups.setdefault(str(getattr(found, "value", found)), []).append(frame)
    parts = sorted(groups.items(), key=lambda item: -len(item[1]))
    return ", ".join(
        f"{len(group)} slice{'s say' if len(group) > 1 else ' says'} {what}{name}"
        + (f" ({group[0].label})" if len(group) == 1 else "")
        for name, group in parts
    )


def _scanner_frame_disagreements(frames: list[Frame]) -> list[tuple[str, str, list[Frame]]]:
    """Say how the frames disagree on patient position and on table position: (message, subject, odd frames).

    The odd frames are those away from the most common value. Table positions agree within
    :data:`TABLE_AGREEMENT_MM` of the most common one.
    """
    found = []
    positions = [frame.vendor.patient_position for frame in frames]
    if len(set(positions)) > 1:
        usual = max(set(positions), key=positions.count)
        counted = _counted(frames, lambda f: f.vendor.patient_position or "(none)", "PatientPosition ")
        found.append(
            (
                f"{counted}, but the slices of one stack must share one patient position; give "
                "--patient-position to say which",
                "patient_position",
                [frame for frame, position in zip(frames, positions, strict=True) if position != usual],
            )
        )
    tables = [frame.vendor.table_position_mm for frame in frames]
    reference = max(set(tables), key=tables.count)
    odd = [frame for frame, table in zip(frames, tables, strict=True) if not _same_table(table, reference)]
    if odd:
        found.append(
            (
                f"{len(odd)} slice(s) give another table position than the other {len(frames) - len(odd)} "
                f"({_mm(reference)}), e.g. {odd[0].label}: {_mm(odd[0].vendor.table_position_mm)}; the "
                "stack's isocentre is not known: give --isocentre",
                "table_position",
                odd,
            )
        )
    return found


def _same_table(first: tuple[float, float, float] | None, second: tuple[float, float, float] | None) -> bool:
    if first is None or second is None:
        return first is second
    return max(abs(a - b) for a, b in zip(first, second, strict=True)) <= TABLE_AGREEMENT_MM


def _mm(table: tuple[float, float, float] | None) -> str:
    return "none" if table is None else f"{[float(v) for v in table]} mm"


def distortion_findings(
    frames: list[Frame],
    *,
    corners_lps: NDArray[np.float64],
    normal: NDArray[np.float64],
    isocentre_lps: NDArray[np.float64],
    isocentre_source: str,
    radius_mm: float = FAR_FROM_ISOCENTRE_RADIUS_MM,
) -> tuple[DistortionState, str, float, list[Finding]]:
    """Return the stack's distortion state, its source, the FOV's largest distance from isocentre, findings.

    Parameters
    ----------
    frames : list of Frame
        All frames of the stack (states must agree, else UNKNOWN).
    corners_lps : ndarray, shape (8, 3)
        Outer corners of the field of view, mm LPS.
    normal : ndarray, shape (3,)
        Slice normal, LPS.
    isocentre_lps : ndarray, shape (3,)
        Magnet isocentre in patient coordinates, mm.
    isocentre_source : str
        How the isocentre was found (said in messages).
    radius_mm : float
        Distance from isocentre beyond which ``FAR_FROM_ISOCENTRE`` is reported.
    """
    first = frames[0]
    states = {f.vendor.distortion_state for f in frames}
    state = first.vendor.distortion_state if len(states) == 1 else DistortionState.UNKNOWN
    source = first.vendor.distortion_source if len(states) == 1 else "frames disagree"
    distance = float(np.max(np.linalg.norm(corners_lps - isocentre_lps, axis=1)))
    findings: list[Finding] = []
    where = (first.path,)
    for disagreement, subject, odd in _scanner_frame_disagreements(frames):
        findings.append(frames_disagree(disagreement, subject, odd))
    if first.modality.upper() not in ("MR", ""):
        return state, source, distance, findings
    if state is DistortionState.IN_PLANE_2D:
        findings.append(distortion_2d_only(source, anatomical_axis_name(normal), distance, where))
    elif state is DistortionState.NONE:
        findings.append(distortion_not_corrected(source, distance, where))
    elif state is DistortionState.UNKNOWN:
        counted = None if len(states) == 1 else _counted(frames, lambda f: f.vendor.distortion_state)
        findings.append(distortion_state_unknown(counted, where))
    if distance > radius_mm:
        findings.append(
            far_from_isocentre(
                distance,
                radius_mm,
                isocentre_lps,
                isocentre_source,
                corrected_3d=state is DistortionState.FULL_3D,
                where=where,
            )
        )
    if not first.vendor.table_source and first.manufacturer:
        findings.append(isocentre_assumed(where))
    return state, source, distance, findings
