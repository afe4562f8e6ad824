"""DisplacementField: vectors on a regular grid, in the ITK resampling convention.

A field ``v`` on grid G maps an output point ``p`` (mm, LPS) to the input point ``p + v(p)`` that supplies
its value - exactly ITK's DisplacementFieldTransform, so io/ writes it unchanged for Slicer and ANTs.
Between nodes the field is trilinear (what ITK does); outside the grid ITK returns zero displacement,
so builders pad the grid beyond the region they serve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trueshape.geometry._volume import VolumeGeometry

__all__ = ["DisplacementField"]


@dataclass(frozen=True, eq=False)
class DisplacementField:
    """Displacement vectors (mm, LPS) at the nodes of ``geometry``.

    Parameters
    ----------
    geometry : VolumeGeometry
        Grid of the nodes.
    vectors : ndarray, shape (I, J, K, 3)
        Displacement at each node, mm, LPS components.
    description : str
        What the field does, for file metadata.

    Examples
    --------
    >>> g = VolumeGeometry.from_components(shape=(2, 2, 2), origin=(0, 0, 0), spacing=(1, 1, 1))
    >>> field = DisplacementField(g, np.ones((2, 2, 2, 3)))
    >>> field.displacement_at(np.array([[0.5, 0.5, 0.5]]))
    array([[1., 1., 1.]])
    """

    geometry: VolumeGeometry
    vectors: NDArray[np.float64]
    description: str = ""

    def __post_init__(self) -> None:
        if self.vectors.shape != (*self.geometry.shape, 3):
            raise ValueError(f"vectors shape {self.vectors.shape} != grid {self.geometry.shape} + (3,)")

    def displacement_at(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """Trilinear displacement at LPS points, shape (..., 3) (zero outside the grid, as in ITK)."""
        from scipy import ndimage  # deferred: scipy.ndimage adds 0.2 s to every start-up

        index = self.geometry.lps_to_index(points)
        flat = index.reshape(-1, 3).T
        inside = np.all((flat >= -1e-9) & (flat <= np.array(self.geometry.shape)[:, None] - 1 + 1e-9), axis=0)
        out = np.zeros((flat.shape[1], 3))
        for component in range(3):
            out[:, component] = ndimage.map_coordinates(self.vectors[..., component], flat, order=1, mode="nearest")
        out[~inside] = 0.0
        return out.reshape(points.shape)

    def max_norm_mm(self) -> float:
        """Largest displacement length on the grid, mm."""
        return float(np.max(np.linalg.norm(self.vectors, axis=-1))) if self.vectors.size else 0.0
