"""Frames of the GNL physics: patient LPS <-> magnet (isocentre, patient position) <-> coefficient axes.

* Patient frame: DICOM patient coordinates, LPS, mm.
* Magnet frame: gradient axes X, Y, Z with origin at the isocentre; equal to LPS for a head-first-supine
  patient at the landmark table position. A patient point ``r`` maps to ``m = R^T (r - iso)`` with
  ``R = LPS_FROM_MAGNET[patient position]`` (:mod:`trueshape.dicom.vendor`), and a magnet displacement
  ``d`` maps back as ``R d``.
* Coefficient frame: the axes a coefficient set is written in. gradunwarp evaluates Siemens coefficients in
  "LAI" axes (x = left, y = anterior, z = inferior): the magnet frame with Y and Z negated.

Examples
--------
>>> frame = MagnetFrame(PatientPosition.FFS, isocentre_lps=np.array([0.0, 0.0, 20.0]))
>>> frame.magnet_from_lps(np.array([10.0, 0.0, 50.0]))
array([-10.,   0., -30.])
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trueshape.dicom.vendor import LPS_FROM_MAGNET, PatientPosition

__all__ = ["COEFFICIENT_FROM_MAGNET", "CoefficientFrame", "MagnetFrame"]


class CoefficientFrame(enum.StrEnum):
    """Axes a set of harmonic coefficients is written in."""

    #: gradunwarp's Siemens convention: x = magnet X (left), y = -magnet Y (anterior), z = -magnet Z (inferior).
    LAI = "LAI"
    #: The magnet frame itself (X, Y, Z = L, P, S for a head-first-supine patient).
    MAGNET = "magnet"


#: Rotation (here a reflection pair, proper: det +1) taking magnet-frame vectors to coefficient-frame vectors.
#: Each matrix is its own inverse and its own transpose.
COEFFICIENT_FROM_MAGNET: dict[CoefficientFrame, NDArray[np.float64]] = {
    CoefficientFrame.LAI: np.diag([1.0, -1.0, -1.0]),
    CoefficientFrame.MAGNET: np.eye(3),
}


def _isocentre_default() -> NDArray[np.float64]:
    return np.zeros(3)


@dataclass(frozen=True, eq=False)
class MagnetFrame:
    """Where the magnet frame sits in patient coordinates.

    Parameters
    ----------
    patient_position : PatientPosition
        DICOM PatientPosition (0018,5100); selects the rotation ``LPS_FROM_MAGNET``.
    isocentre_lps : ndarray, shape (3,)
        Magnet isocentre in patient coordinates, mm, LPS.
    """

    patient_position: PatientPosition = PatientPosition.HFS
    isocentre_lps: NDArray[np.float64] = field(default_factory=_isocentre_default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patient_position", PatientPosition(self.patient_position))
        iso = np.asarray(self.isocentre_lps, dtype=np.float64).reshape(-1)
        if iso.shape != (3,) or not np.all(np.isfinite(iso)):
            raise ValueError(f"isocentre_lps needs 3 finite values (mm), got {self.isocentre_lps!r}")
        object.__setattr__(self, "isocentre_lps", iso)

    @property
    def lps_from_magnet(self) -> NDArray[np.float64]:
        """Rotation taking magnet vectors to LPS vectors, shape (3, 3)."""
        return LPS_FROM_MAGNET[self.patient_position]

    def magnet_from_lps(self, points_lps: ArrayLike) -> NDArray[np.float64]:
        """Map patient points (mm, LPS, shape (..., 3)) to magnet points ``R^T (r - iso)`` (mm)."""
        points = np.asarray(points_lps, dtype=np.float64)
        return np.asarray((points - self.isocentre_lps) @ self.lps_from_magnet, dtype=np.float64)

    def lps_from_magnet_points(self, points_magnet: ArrayLike) -> NDArray[np.float64]:
        """Map magnet points (mm, shape (..., 3)) to patient points ``R m + iso`` (mm, LPS)."""
        points = np.asarray(points_magnet, dtype=np.float64)
        return np.asarray(points @ self.lps_from_magnet.T + self.isocentre_lps, dtype=np.float64)

    def lps_vectors_from_magnet(self, vectors_magnet: ArrayLike) -> NDArray[np.float64]:
        """Rotate displacement vectors (mm, shape (..., 3)) from the magnet frame to LPS: ``R d``."""
        vectors = np.asarray(vectors_magnet, dtype=np.float64)
        return np.asarray(vectors @ self.lps_from_magnet.T, dtype=np.float64)

    def magnet_vectors_from_lps(self, vectors_lps: ArrayLike) -> NDArray[np.float64]:
        """Rotate displacement vectors (mm, shape (..., 3)) from LPS to the magnet frame: ``R^T v``."""
        vectors = np.asarray(vectors_lps, dtype=np.float64)
        return np.asarray(vectors @ self.lps_from_magnet, dtype=np.float64)
