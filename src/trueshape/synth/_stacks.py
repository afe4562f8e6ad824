"""Synthetic slice stacks with exact, known geometry (for tests, the demo and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from trueshape.io import SlicePlane

__all__ = ["AXIAL", "CORONAL", "SAGITTAL", "regular_planes", "slice_pattern"]

#: ImageOrientationPatient of the three cardinal planes (row direction, column direction), LPS.
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def slice_pattern(rows: int, columns: int, index: int) -> NDArray[np.uint16]:
    """Return a plane whose values encode the slice index and pixel position (so mix-ups are visible).

    Examples
    --------
    >>> int(slice_pattern(4, 5, 3)[1, 2])
    3102
    """
    row, column = np.mgrid[0:rows, 0:columns]
    return (index * 1000 + row * 100 + column).astype(np.uint16)


def regular_planes(
    *,
    rows: int = 8,
    columns: int = 10,
    slices: int = 12,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = AXIAL,
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    slice_spacing: float = 2.0,
) -> list[SlicePlane]:
    """Planes of a regular stack along the slice normal (row x column), slice 0 at ``origin``.

    Parameters
    ----------
    rows, columns, slices : int
        Plane size and count.
    origin : sequence of 3 float
        ImagePositionPatient of slice 0, mm LPS.
    orientation : sequence of 6 float
        ImageOrientationPatient.
    pixel_spacing : sequence of 2 float
        (row spacing, column spacing), mm.
    slice_spacing : float
        Distance between slice centres, mm.
    """
    row_direction = np.asarray(orientation[:3], dtype=np.float64)
    column_direction = np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(row_direction, column_direction)
    planes = []
    for k in range(slices):
        position = np.asarray(origin, dtype=np.float64) + k * slice_spacing * normal
        planes.append(
            SlicePlane(slice_pattern(rows, columns, k), tuple(position), tuple(orientation), tuple(pixel_spacing))
        )
    return planes
