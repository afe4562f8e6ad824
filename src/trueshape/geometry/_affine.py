"""Affine helpers: homogeneous 4x4 matrices that map voxel indices (i, j, k) to patient LPS millimetres.

Index convention (DESIGN.md section 3): i = column, j = row, k = slice; arrays are indexed ``[i, j, k]``.
DICOM ImageOrientationPatient gives the row direction (along increasing i) first and the column direction
(along increasing j) second; PixelSpacing gives the row spacing (between rows, along j) first.

Examples
--------
>>> import numpy as np
>>> lps_from_ijk = lps_from_ijk_matrix(
...     image_position=(10.0, 20.0, 30.0), image_orientation=(1, 0, 0, 0, 1, 0),
...     pixel_spacing=(0.5, 0.25), slice_spacing=2.0)
>>> apply_affine(lps_from_ijk, [[1, 2, 3]])
array([[10.25, 21.  , 36.  ]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trueshape.errors import GeometryError

__all__ = [
    "AFFINE_LAST_ROW",
    "MAX_COSINE",
    "MAX_POSITION_MM",
    "MAX_SPACING_MM",
    "MIN_SPACING_MM",
    "ORTHOGONALITY_TOLERANCE",
    "apply_affine",
    "check_affine",
    "lps_from_ijk_matrix",
    "orientation_usable",
    "orthonormal_directions",
]

AFFINE_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])
#: Largest |cos| between direction columns (and deviation of their length from 1) accepted as orthonormal.
ORTHOGONALITY_TOLERANCE = 1e-4
#: Farther than this from the patient origin no scanner places an image (table travel is about 2 m): a damaged
#: ImagePositionPatient, mm.
MAX_POSITION_MM = 1e5
#: A pixel or slice spacing beyond this (10 m) or below the next (1 nm) is damaged, not a voxel, mm.
MAX_SPACING_MM = 1e4
MIN_SPACING_MM = 1e-6
#: Direction cosines beyond this are damaged (trueshape makes slightly non-unit ones orthonormal, not these).
MAX_COSINE = 1e3


def apply_affine(matrix: NDArray[np.float64], points: ArrayLike) -> NDArray[np.float64]:
    """Apply a 4x4 homogeneous ``matrix`` to ``points`` of shape ``(..., 3)``.

    Examples
    --------
    >>> apply_affine(np.diag([2.0, 2.0, 2.0, 1.0]), [0.5, 1.0, 1.5])
    array([1., 2., 3.])
    """
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:3, :3].T + matrix[:3, 3]


def check_affine(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ``matrix`` as float64 after checking it is a valid voxel-to-patient affine.

    Raises
    ------
    GeometryError
        Wrong shape, bad last row, non-finite or singular, or non-orthogonal columns.
    """
    affine = np.asarray(matrix, dtype=np.float64)
    if affine.shape != (4, 4):
        raise GeometryError(f"an affine must be 4x4, got shape {affine.shape}")
    if not np.all(np.isfinite(affine)):  # first: a NaN anywhere spreads to every row of a product
        raise GeometryError("affine holds non-finite values")
    if not np.allclose(affine[3], AFFINE_LAST_ROW, atol=1e-12):
        raise GeometryError(f"affine last row must be [0, 0, 0, 1], got {affine[3].tolist()}")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise GeometryError(f"affine has a zero-length axis (spacings {spacing.tolist()})")
    directions = affine[:3, :3] / spacing
    gram = directions.T @ directions
    deviation = float(np.max(np.abs(gram - np.eye(3))))
    if deviation > ORTHOGONALITY_TOLERANCE:
        raise GeometryError(
            f"affine direction columns are not orthogonal (largest |cos| or length error {deviation:.2e} > "
            f"{ORTHOGONALITY_TOLERANCE:g})"
        )
    return affine


def orientation_usable(orientation: Sequence[float] | None) -> bool:
    """Whether ImageOrientationPatient can place a frame: row and column vectors non-zero and not parallel.

    Examples
    --------
    >>> orientation_usable((1, 0, 0, 0, 1, 0)), orientation_usable((1, 0, 0, 1, 0, 0))
    (True, False)
    """
    if orientation is None or max(abs(v) for v in orientation) > MAX_COSINE:
        return False
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return bool(
        np.linalg.norm(row) > 1e-6
        and np.linalg.norm(column) > 1e-6
        and np.linalg.norm(np.cross(row, column)) > 1e-3 * np.linalg.norm(row) * np.linalg.norm(column)
    )


def orthonormal_directions(image_orientation: Sequence[float]) -> tuple[NDArray[np.float64], float]:
    """Return the 3x3 orthonormal (row, column, normal) directions as columns, and the input's deviation.

    The row direction is kept; the column direction loses its component along the row (Gram-Schmidt), as
    GDCM and Slicer do when they normalise silently. The deviation (largest of |length - 1| and |row . col|)
    is returned so the caller can report it.
    """
    values = np.asarray(image_orientation, dtype=np.float64).reshape(2, 3)
    row, column = values[0], values[1]
    deviation = float(max(abs(np.linalg.norm(row) - 1), abs(np.linalg.norm(column) - 1), abs(row @ column)))
    if np.linalg.norm(row) < 1e-6 or np.linalg.norm(column) < 1e-6:
        raise GeometryError(f"ImageOrientationPatient (0020,0037) {values.ravel().tolist()} has a zero vector")
    row_unit = row / np.linalg.norm(row)
    column_orth = column - (column @ row_unit) * row_unit
    if np.linalg.norm(column_orth) < 1e-6:
        raise GeometryError(
            f"ImageOrientationPatient (0020,0037) {values.ravel().tolist()}: row and column are parallel"
        )
    column_unit = column_orth / np.linalg.norm(column_orth)
    return np.column_stack([row_unit, column_unit, np.cross(row_unit, column_unit)]), deviation


def lps_from_ijk_matrix(
    *,
    image_position: Sequence[float],
    image_orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_spacing: float,
    slice_direction: Sequence[float] | None = None,
) -> NDArray[np.float64]:
    """Build the voxel-to-LPS affine of a stack from its first slice.

    Parameters
    ----------
    image_position : sequence of 3 float
        ImagePositionPatient of slice k = 0 (centre of the first transmitted pixel), mm, LPS.
    image_orientation : sequence of 6 float
        ImageOrientationPatient (row direction, then column direction).
    pixel_spacing : sequence of 2 float
        PixelSpacing as DICOM orders it: (row spacing, column spacing), mm.
    slice_spacing : float
        Distance between slice centres along ``slice_direction``, mm.
    slice_direction : sequence of 3 float, optional
        Unit step direction of k (default: the slice normal, row x column).
    """
    directions, _ = orthonormal_directions(image_orientation)
    step = directions[:, 2] if slice_direction is None else np.asarray(slice_direction, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, 0] = directions[:, 0] * float(pixel_spacing[1])
    affine[:3, 1] = directions[:, 1] * float(pixel_spacing[0])
    affine[:3, 2] = step * float(slice_spacing)
    affine[:3, 3] = np.asarray(image_position, dtype=np.float64)
    return affine
