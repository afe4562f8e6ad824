"""Findings: the structured result of every geometry and distortion check.

A :class:`Finding` carries a stable upper-snake ``code`` (documented in the README table), a severity,
one plain sentence with the numbers in it, the measured value, the tolerance it was judged against and
the offending files. Tolerances follow one model (:class:`Tolerance`): an absolute floor in mm plus a
fraction of the relevant voxel size.

Examples
--------
>>> tol = Tolerance(absolute_mm=0.01, fraction_of_voxel=0.01)
>>> round(tol.mm(voxel_size_mm=4.8), 6)
0.058
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FINDING_CODES", "Finding", "FindingCode", "Severity", "Tolerance"]


class Severity(enum.StrEnum):
    """How much a finding matters to the geometry a user gets."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class FindingCode(enum.StrEnum):
    """Stable identifiers of every check (public API: never rename, only add)."""

    SPACING_IRREGULAR = "SPACING_IRREGULAR"
    SLICES_MISSING = "SLICES_MISSING"
    POSITIONS_DUPLICATED = "POSITIONS_DUPLICATED"
    GANTRY_TILT = "GANTRY_TILT"
    ORIENTATION_MIXED = "ORIENTATION_MIXED"
    ORIENTATION_NOT_ORTHONORMAL = "ORIENTATION_NOT_ORTHONORMAL"
    THICKNESS_NE_SPACING = "THICKNESS_NE_SPACING"
    SPACING_TAG_MISMATCH = "SPACING_TAG_MISMATCH"
    LOCALIZER_EXCLUDED = "LOCALIZER_EXCLUDED"
    GEOMETRY_MISSING = "GEOMETRY_MISSING"
    DISTORTION_2D_ONLY = "DISTORTION_2D_ONLY"
    DISTORTION_NOT_CORRECTED = "DISTORTION_NOT_CORRECTED"
    DISTORTION_STATE_UNKNOWN = "DISTORTION_STATE_UNKNOWN"
    FAR_FROM_ISOCENTRE = "FAR_FROM_ISOCENTRE"
    SINGLE_SLICE = "SINGLE_SLICE"
    SPACING_FROM_PROTOCOL = "SPACING_FROM_PROTOCOL"
    FILES_UNREADABLE = "FILES_UNREADABLE"
    STACK_RESAMPLED = "STACK_RESAMPLED"
    STACK_SPLIT = "STACK_SPLIT"
    ISOCENTRE_ASSUMED = "ISOCENTRE_ASSUMED"
    CORNERS_MISMATCH = "CORNERS_MISMATCH"
    FRAMES_DISAGREE = "FRAMES_DISAGREE"
    COIL_MISMATCH = "COIL_MISMATCH"
    COIL_UNVERIFIED = "COIL_UNVERIFIED"
    OUTSIDE_ACQUIRED_VOLUME = "OUTSIDE_ACQUIRED_VOLUME"
    UID_REUSED = "UID_REUSED"
    SERIES_SPLIT = "SERIES_SPLIT"
    MODEL_EXTRAPOLATED = "MODEL_EXTRAPOLATED"
    MODEL_FIT_POOR = "MODEL_FIT_POOR"
    DAMAGED_COPY_SKIPPED = "DAMAGED_COPY_SKIPPED"


#: Every code with a one-line explanation (rendered into the README table and ``--help``).
FINDING_CODES: dict[FindingCode, str] = {
    FindingCode.SPACING_IRREGULAR: "Gaps between neighbouring slices differ (zones, table speed, odd gaps).",
    FindingCode.SLICES_MISSING: "Gaps are whole multiples of the slice spacing: slices are missing.",
    FindingCode.POSITIONS_DUPLICATED: "Several images sit at one position without forming a clean time/echo axis.",
    FindingCode.GANTRY_TILT: "Slices are not stacked along their normal (gantry tilt or shear).",
    FindingCode.ORIENTATION_MIXED: "A series holds several slice orientations; it was split into stacks.",
    FindingCode.ORIENTATION_NOT_ORTHONORMAL: "ImageOrientationPatient row/column vectors are not unit or not "
    "perpendicular.",
    FindingCode.THICKNESS_NE_SPACING: "SliceThickness differs from the measured slice spacing (gap or overlap).",
    FindingCode.SPACING_TAG_MISMATCH: "SpacingBetweenSlices disagrees with the spacing measured from positions.",
    FindingCode.LOCALIZER_EXCLUDED: "Localizer images in the series were kept out of the volume.",
    FindingCode.GEOMETRY_MISSING: "Images lack position, orientation or pixel spacing and cannot be placed.",
    FindingCode.DISTORTION_2D_ONLY: "The scanner corrected gradient distortion in-plane only (DIS2D).",
    FindingCode.DISTORTION_NOT_CORRECTED: "The scanner did not correct gradient distortion (ND).",
    FindingCode.DISTORTION_STATE_UNKNOWN: "The headers do not say whether gradient distortion was corrected.",
    FindingCode.FAR_FROM_ISOCENTRE: "The field of view reaches far from the magnet isocentre, where gradient "
    "distortion grows.",
    FindingCode.SINGLE_SLICE: "A single slice: the slice spacing cannot be measured and is taken from a tag.",
    FindingCode.SPACING_FROM_PROTOCOL: "Slice positions come from the protocol (mosaic), not from per-slice headers.",
    FindingCode.FILES_UNREADABLE: "Some files of the series could not be read and were left out.",
    FindingCode.STACK_RESAMPLED: "The stack was resampled onto a regular grid (policy 'resample').",
    FindingCode.STACK_SPLIT: "The stack was split into regularly spaced parts (policy 'split').",
    FindingCode.CORNERS_MISMATCH: "Slice corners from the headers differ from the volume geometry by more than "
    "1e-3 mm.",
    FindingCode.FRAMES_DISAGREE: "Slices of one stack disagree on patient position or table position: where the "
    "magnet was relative to the patient cannot be known.",
    FindingCode.COIL_MISMATCH: "The series names a gradient coil other than the one the coefficients or model "
    "describe.",
    FindingCode.COIL_UNVERIFIED: "The series names its gradient coil but the coefficients or model name none: "
    "that they belong to this scanner cannot be checked.",
    FindingCode.OUTSIDE_ACQUIRED_VOLUME: "Part of the corrected image takes its values from beyond the acquired "
    "volume (a single slice, or a large through-plane residual at the slab ends) and is left 0.",
    FindingCode.UID_REUSED: "Images at different positions share a SOPInstanceUID (kept; not copies).",
    FindingCode.SERIES_SPLIT: "A series holds images on different grids, echoes, components or image types; "
    "each kind became its own stack.",
    FindingCode.ISOCENTRE_ASSUMED: "No table position in the headers: the isocentre is assumed at the "
    "patient-coordinate origin.",
    FindingCode.MODEL_EXTRAPOLATED: "The series reaches beyond the region of the magnet where the learned scanner "
    "model was measured: the correction there extrapolates it.",
    FindingCode.MODEL_FIT_POOR: "The learned scanner model comes from a fit that was judged poor (its warnings are "
    "repeated).",
    FindingCode.DAMAGED_COPY_SKIPPED: "A damaged copy of a file (a partial copy or download) was left out: another "
    "file holds the same slice whole.",
}


@dataclass(frozen=True)
class Tolerance:
    """An absolute floor in mm plus a fraction of the relevant voxel size.

    Parameters
    ----------
    absolute_mm : float
        Always-allowed deviation, mm.
    fraction_of_voxel : float
        Additional allowance as a fraction of the voxel size the check concerns.
    """

    absolute_mm: float
    fraction_of_voxel: float = 0.0

    def mm(self, *, voxel_size_mm: float) -> float:
        """Return the tolerance in mm for a given voxel size (mm)."""
        return self.absolute_mm + self.fraction_of_voxel * abs(voxel_size_mm)


@dataclass(frozen=True)
class Finding:
    """One check's verdict, with the numbers that back it.

    Parameters
    ----------
    code : FindingCode
        Stable identifier.
    severity : Severity
        info, warning or error.
    message : str
        One sentence a clinician understands, numbers included.
    measured : float or None
        The measured quantity (unit given by ``unit``); None only for purely categorical findings.
    tolerance : float or None
        The threshold the measurement was judged against (same unit).
    unit : str
        Unit of ``measured`` and ``tolerance`` (``"mm"``, ``"deg"``, ``"slices"``, ...).
    where : tuple of str
        Offending files (or frames as ``file#frame``).
    details : dict
        Extra machine-readable facts (zones, indices, ...), JSON-serialisable.
    """

    code: FindingCode
    severity: Severity
    message: str
    measured: float | None = None
    tolerance: float | None = None
    unit: str = ""
    where: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (codes and severities as strings)."""
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "message": self.message,
            "measured": self.measured,
            "tolerance": self.tolerance,
            "unit": self.unit,
            "where": list(self.where),
            "details": self.details,
        }
