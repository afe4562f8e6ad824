"""The imaged object, not the air around it, and the residual displacement it carries.

A field of view's corners lie in air, far from the isocentre, where the residual is largest; what a user
cares about is the anatomy. The object is taken as the voxels brighter than a tenth of the bright ones
(:data:`OBJECT_LEVEL` of the 99th percentile) on a lattice over the volume, and the displacement is reported
there: its 95th percentile and largest value, and at the object's point farthest from the isocentre (its edge,
where the residual grows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trueshape.geometry import Volume, percentile
from trueshape.gnl import ResidualField

__all__ = [
    "LATTICE_POINTS_PER_AXIS",
    "OBJECT_LEVEL",
    "ObjectDisplacement",
    "lattice_points",
    "object_displacement",
    "object_points",
]

#: Points per axis of the lattice the object is sampled on (edges included).
LATTICE_POINTS_PER_AXIS = 17
#: A lattice voxel belongs to the object when brighter than this fraction of the lattice's 99th percentile.
OBJECT_LEVEL = 0.1


def lattice_points(shape: tuple[int, ...], *, per_axis: int = LATTICE_POINTS_PER_AXIS) -> NDArray[np.float64]:
    """Return a lattice of voxel indices (i, j, k) over a grid of ``shape``, its corners included, shape (N, 3).

    Examples
    --------
    >>> points = lattice_points((5, 3, 2), per_axis=3)
    >>> points.shape, points[-1].tolist()
    ((27, 3), [4.0, 2.0, 1.0])
    """
    axes = [np.round(np.linspace(0, size - 1, per_axis)) for size in shape[:3]]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float64)


def object_points(volume: Volume, *, per_axis: int = LATTICE_POINTS_PER_AXIS) -> NDArray[np.float64]:
    """Return the lattice voxels inside the imaged object as indices (i, j, k), shape (N, 3).

    The whole lattice when nothing stands out (an empty image). A time series counts by its first volume.
    """
    lattice = lattice_points(volume.geometry.shape, per_axis=per_axis)
    index = lattice.astype(np.intp)
    values = np.abs(np.asarray(volume.array[index[:, 0], index[:, 1], index[:, 2]], dtype=np.float64))
    values = values.reshape(values.shape[0], -1)[:, 0]
    inside = values > OBJECT_LEVEL * percentile(values, 99.0)
    return np.asarray(lattice[inside] if inside.any() else lattice, dtype=np.float64)


@dataclass(frozen=True)
class ObjectDisplacement:
    """The residual displacement inside the imaged object, mm.

    Parameters
    ----------
    p95_mm, max_mm : float
        95th percentile and largest length of the residual displacement at the object's lattice points, mm.
    edge_lps : tuple of 3 float
        The object's lattice point farthest from the isocentre, mm LPS.
    edge_distance_mm : float
        Its distance from the isocentre, mm.
    edge_displacement_lps : tuple of 3 float
        The residual displacement there, mm LPS.
    """

    p95_mm: float
    max_mm: float
    edge_lps: tuple[float, float, float]
    edge_distance_mm: float
    edge_displacement_lps: tuple[float, float, float]


def object_displacement(volume: Volume, residual: ResidualField) -> ObjectDisplacement:
    """Measure the residual displacement inside the object ``volume`` images (see :class:`ObjectDisplacement`).

    Examples
    --------
    >>> measured = object_displacement(volume, ResidualField.from_volume(SYN_AS, volume))  # doctest: +SKIP
    >>> measured.p95_mm, measured.max_mm                                                   # doctest: +SKIP
    (2.1, 4.6)
    """
    points = volume.geometry.index_to_lps(object_points(volume))
    displacement = residual.displacement_lps(points)
    lengths = np.linalg.norm(displacement, axis=1)
    distances = np.linalg.norm(residual.magnet_frame.magnet_from_lps(points), axis=1)
    edge = int(np.argmax(distances))
    return ObjectDisplacement(
        percentile(lengths, 95.0),
        float(lengths.max()),
        _triple(points[edge]),
        float(distances[edge]),
        _triple(displacement[edge]),
    )


def _triple(vector: NDArray[np.float64]) -> tuple[float, float, float]:
    return float(vector[0]), float(vector[1]), float(vector[2])
