"""The acquisition transform: how the true slices of a stack depart from its regular grid.

When slices are missing, unevenly spaced or sheared (gantry tilt), a volume is still written on a
regular grid (like Slicer and ITK do) and this transform says exactly where each slice really was.
It is the regularisation transform Slicer builds on load, but available outside a viewer: written next to
the volume (io/) for a user to harden in Slicer, and applied by trueshape's ``resample`` policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trueshape.geometry._field import DisplacementField
from trueshape.geometry._volume import VolumeGeometry

__all__ = ["AcquisitionTransform"]

#: Slice positions are placed on a lattice to this precision (mm) when building an exact field grid.
_LATTICE_TOLERANCE_MM = 1e-4
_MAX_FIELD_NODES_ALONG_NORMAL = 8192


@dataclass(frozen=True, eq=False)
class AcquisitionTransform:
    """True slice positions relative to a regular grid.

    Parameters
    ----------
    geometry : VolumeGeometry
        The regular grid the voxels are stored on.
    slice_offsets : ndarray, shape (K, 3)
        True position minus regular position of each slice, mm LPS (identical for every voxel of a slice).

    Notes
    -----
    A voxel (i, j, k) truly sits at ``geometry.index_to_lps((i, j, k)) + slice_offsets[k]``; between slices
    the offset is linear in k. The true slice positions must increase along the grid's third axis.
    """

    geometry: VolumeGeometry
    slice_offsets: NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.slice_offsets.shape != (self.geometry.shape[2], 3):
            raise ValueError(f"slice_offsets shape {self.slice_offsets.shape} != ({self.geometry.shape[2]}, 3)")

    @property
    def normal(self) -> NDArray[np.float64]:
        """Unit direction of the grid's third axis (LPS)."""
        return self.geometry.direction[:, 2]

    @property
    def max_offset_mm(self) -> float:
        """Largest distance of a true slice from its regular position, mm."""
        return float(np.max(np.linalg.norm(self.slice_offsets, axis=1)))

    def _true_normal_coordinates(self) -> NDArray[np.float64]:
        regular = self.geometry.index_to_lps(
            np.column_stack(
                [
                    np.zeros(self.geometry.shape[2]),
                    np.zeros(self.geometry.shape[2]),
                    np.arange(self.geometry.shape[2], dtype=np.float64),
                ]
            )
        )
        return np.asarray((regular + self.slice_offsets) @ self.normal, dtype=np.float64)

    def true_points(self, ijk: NDArray[np.float64]) -> NDArray[np.float64]:
        """Return the true LPS position of continuous voxel indices, shape (..., 3)."""
        k = np.clip(ijk[..., 2], 0, self.geometry.shape[2] - 1)
        offsets = np.stack(
            [np.interp(k, np.arange(self.geometry.shape[2]), self.slice_offsets[:, c]) for c in range(3)], axis=-1
        )
        return self.geometry.index_to_lps(ijk) + offsets

    def regular_points(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map true LPS points (..., 3) to the regular-grid points that hold their values (the inverse map)."""
        true_along = self._true_normal_coordinates()
        fractional_k = np.interp(points @ self.normal, true_along, np.arange(self.geometry.shape[2]))
        offsets = np.stack(
            [np.interp(fractional_k, np.arange(self.geometry.shape[2]), self.slice_offsets[:, c]) for c in range(3)],
            axis=-1,
        )
        return points - offsets

    def _lattice_step(self, true_along: NDArray[np.float64]) -> float:
        """Largest step whose lattice from the first slice contains every true slice (exact field)."""
        gaps = np.diff(true_along)
        if gaps.size == 0:
            return float(self.geometry.spacing[2])
        smallest = float(np.min(gaps))
        relative = true_along - true_along[0]
        for divisor in range(1, 17):
            step = smallest / divisor
            if np.all(np.abs(relative / step - np.round(relative / step)) * step < _LATTICE_TOLERANCE_MM):
                return step
        return max(smallest / 16, (true_along[-1] - true_along[0]) / _MAX_FIELD_NODES_ALONG_NORMAL)

    def resampling_field(self) -> DisplacementField:
        """Return the transform as a displacement field in ITK's resampling convention (true -> regular point).

        Applied to the regular volume by an ITK resampler (or hardened in Slicer), it puts every slice back
        at its true position. The field grid has nodes at every true slice position, so it reproduces
        them exactly; it is padded by one node along the normal and by the largest in-plane offset plus one
        voxel in-plane, because ITK treats points outside a field as undisplaced.
        """
        true_along = self._true_normal_coordinates()
        step = self._lattice_step(true_along)
        count = round((true_along[-1] - true_along[0]) / step) + 1 if true_along.size > 1 else 1
        direction = self.geometry.direction
        spacing = self.geometry.spacing
        in_plane_margin = (
            float(np.max(np.abs(self.slice_offsets @ direction[:, :2]))) if self.slice_offsets.size else 0.0
        )
        lower = -in_plane_margin - spacing[:2]
        upper = (np.array(self.geometry.shape[:2]) - 1) * spacing[:2] + in_plane_margin + spacing[:2]
        first_true = self.geometry.origin + self.slice_offsets[0] @ np.outer(direction[:, 2], direction[:, 2])
        origin = first_true + direction[:, 0] * lower[0] + direction[:, 1] * lower[1] - direction[:, 2] * step
        node_spacing = (float(upper[0] - lower[0]), float(upper[1] - lower[1]), step)
        grid = VolumeGeometry.from_components(
            shape=(2, 2, count + 2), origin=origin, spacing=node_spacing, direction=direction
        )
        nodes = grid.voxel_centres()
        vectors = self.regular_points(nodes) - nodes
        return DisplacementField(grid, vectors, "acquisition transform: true slice position -> regular grid")

    def resample_to(self, array: NDArray[np.float64], target: VolumeGeometry) -> NDArray[np.float32]:
        """Resample regular-grid ``array`` (I, J, K[, T]) onto ``target`` in true geometry (linear).

        ``target`` must share the in-plane grid and orientation (it differs along the normal only).
        Slices are blended along the normal; each source slice is first shifted in-plane by its offset.
        """
        from scipy import ndimage  # deferred: scipy.ndimage adds 0.2 s to every start-up

        source = array.astype(np.float32, copy=False)
        true_along = self._true_normal_coordinates()
        target_along = (
            target.index_to_lps(
                np.column_stack(
                    [np.zeros(target.shape[2]), np.zeros(target.shape[2]), np.arange(target.shape[2], dtype=np.float64)]
                )
            )
            @ self.normal
        )
        fractional = np.interp(target_along, true_along, np.arange(self.geometry.shape[2]))
        in_plane = self.slice_offsets @ self.geometry.direction[:, :2] / self.geometry.spacing[:2]
        in_plane += (self.geometry.origin - target.origin) @ self.geometry.direction[:, :2] / self.geometry.spacing[:2]
        out = np.empty((*target.shape, *array.shape[3:]), dtype=np.float32)

        def shifted(k: int) -> NDArray[np.float32]:
            plane = source[:, :, k]
            if np.allclose(in_plane[k], 0, atol=1e-6):
                return plane
            shift = [in_plane[k][0], in_plane[k][1]] + [0] * (plane.ndim - 2)
            moved = np.asarray(ndimage.shift(plane, shift, order=1, mode="nearest"), dtype=np.float32)
            # As ITK resamples: within half a pixel of the acquired plane the edge pixel, beyond it nothing was
            # acquired (0), not copies of the edge row.
            for axis in (0, 1):
                source_index = np.arange(plane.shape[axis]) - shift[axis]
                outside = (source_index < -0.5) | (source_index > plane.shape[axis] - 0.5)
                moved[(slice(None),) * axis + (outside,)] = 0.0
            return moved

        for m, kappa in enumerate(fractional):
            lower = int(np.floor(kappa))
            upper = min(lower + 1, self.geometry.shape[2] - 1)
            weight = float(kappa - lower)
            out[:, :, m] = shifted(lower) if weight < 1e-9 else (1 - weight) * shifted(lower) + weight * shifted(upper)
        return out
