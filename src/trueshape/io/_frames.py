"""The one converter between trueshape's LPS patient frame and the RAS frame of NIfTI and Slicer."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["LPS_TO_RAS", "lps_to_ras_affine", "ras_to_lps_affine"]

#: Flips x and y: LPS (DICOM, ITK) <-> RAS (NIfTI, Slicer world). Its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras_affine(lps_from_ijk: NDArray[np.float64]) -> NDArray[np.float64]:
    """Turn a voxel-to-LPS affine into a voxel-to-RAS affine.

    Examples
    --------
    >>> lps_to_ras_affine(np.eye(4))[:3, :3].diagonal()
    array([-1., -1.,  1.])
    """
    return np.asarray(LPS_TO_RAS @ lps_from_ijk, dtype=np.float64)


def ras_to_lps_affine(ras_from_ijk: NDArray[np.float64]) -> NDArray[np.float64]:
    """Turn a voxel-to-RAS affine into a voxel-to-LPS affine."""
    return np.asarray(LPS_TO_RAS @ ras_from_ijk, dtype=np.float64)
