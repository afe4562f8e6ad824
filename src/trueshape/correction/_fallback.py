"""The numpy/scipy sampler: what the compiled kernel computes, for machines without it and for cubic sampling.

:class:`FallbackSampler` pulls back one slab of output rows at a time: the field upsampled for the slab,
trilinear (``scipy.ndimage.map_coordinates``, order 1) or cubic B-spline (order 3, prefiltered input) samples,
edge values within half a voxel of the input grid and 0 beyond (as ITK and the kernel), and the intensity
factor. Along the slice normal only (through-plane) it samples in 1-D. The helpers for cubic sampling of
inputs with non-finite voxels live here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trueshape.correction._kernel import SlabStatistics
from trueshape.gnl import SlabUpsampler

__all__ = ["FallbackSampler", "cubic_footprint", "nearest_finite", "prefilter", "within_half_voxel"]


@dataclass(frozen=True, eq=False)
class FallbackSampler:
    """Pull back slabs of output rows (axis 0) of every volume of ``stack`` into ``outputs``.

    Parameters
    ----------
    stack, outputs : list of ndarray, float32
        Input volumes (prefiltered for ``order`` 3) and the output arrays, in working (memory) order.
    upsampler : SlabUpsampler
        The field per slab: displacement in input index units (3 components, or 1 along ``through_axis``),
        then ``det(I + grad d)`` when ``intensity_correction``.
    through_axis : int or None
        The input axis (0 or 2) of a through-plane displacement, or None for a 3-D one.
    order : int
        1 trilinear, 3 cubic B-spline.
    intensity_correction : bool
        Multiply by the determinant, clipped to [0, ``max_jacobian_determinant``].
    max_jacobian_determinant : float
        Upper clip of the intensity factor.
    linear_in_from_out : ndarray, shape (4, 4)
        Output index to input index without displacement.
    input_shape : tuple of 3 int
        Input grid size in working order.
    scale_sq : ndarray, shape (3,), float32
        Squared input voxel sizes, mm^2.
    planes : list of 3 ndarray, float32
        Per input axis, ``a[1] j + a[2] k + a[3]`` of the base map over an output slab's (j, k).
    kk : ndarray, shape (1, 1, K), float32
        Output k indices.
    """

    stack: list[NDArray[np.float32]]
    outputs: list[NDArray[np.float32]]
    upsampler: SlabUpsampler
    through_axis: int | None
    order: int
    intensity_correction: bool
    max_jacobian_determinant: float
    linear_in_from_out: NDArray[np.float64]
    input_shape: tuple[int, int, int]
    scale_sq: NDArray[np.float32]
    planes: list[NDArray[np.float32]]
    kk: NDArray[np.float32]

    def slab(self, start: int, stop: int) -> SlabStatistics:
        """Pull back output rows ``start:stop`` and return what they measured."""
        fine = self.upsampler.slab(start, stop)
        ii = np.arange(start, stop, dtype=np.float32)[:, None, None]
        if self.through_axis is not None:
            stats = self._through_plane(fine, ii, start, stop, self.through_axis)
        else:
            stats = self._full(fine, ii, start, stop)
        if self.intensity_correction:
            determinant = fine[-1]
            stats.jacobian_min = float(determinant.min())
            stats.jacobian_max = float(determinant.max())
            stats.folded = int(np.count_nonzero(determinant <= 0.0))
            np.clip(determinant, 0.0, self.max_jacobian_determinant, out=determinant)
            for target in self.outputs:
                target[start:stop] *= determinant
        return stats

    def _through_plane(
        self, fine: NDArray[np.float32], ii: NDArray[np.float32], start: int, stop: int, axis: int
    ) -> SlabStatistics:
        """1-D sampling along ``axis`` (0 or 2): the other axes sample at whole indices."""
        stats = SlabStatistics()
        shift = fine[0]
        stats.max_norm_sq = float(np.max(shift * shift)) * float(self.scale_sq[axis])
        stats.sum_norm = float(np.sum(np.abs(shift), dtype=np.float64)) * float(np.sqrt(self.scale_sq[axis]))
        position = shift + (ii if axis == 0 else self.kk)
        inside = within_half_voxel(position, self.input_shape[axis])
        for source, target in zip(self.stack, self.outputs, strict=True):
            # Along axis 0 the samples come from the whole array; along axis 2 from the slab itself.
            part = source if axis == 0 else source[start:stop]
            sampled = _cubic_1d(part, position, axis) if self.order == 3 else _linear_1d(part, position, axis)
            sampled[~inside] = 0.0
            target[start:stop] = sampled
        return stats

    def _full(self, fine: NDArray[np.float32], ii: NDArray[np.float32], start: int, stop: int) -> SlabStatistics:
        """3-D sampling with scipy.ndimage.map_coordinates."""
        stats = SlabStatistics()
        scale_sq = self.scale_sq
        norm_sq = scale_sq[0] * fine[0] ** 2 + scale_sq[1] * fine[1] ** 2 + scale_sq[2] * fine[2] ** 2
        stats.max_norm_sq = float(norm_sq.max())
        stats.sum_norm = float(np.sum(np.sqrt(norm_sq), dtype=np.float64))
        del norm_sq
        coordinates = fine[:3]
        for axis in range(3):
            coordinates[axis] += self.planes[axis]
            coordinates[axis] += np.float32(self.linear_in_from_out[axis, 0]) * ii
        inside = np.ones(coordinates.shape[1:], dtype=bool)
        for axis, size in enumerate(self.input_shape):
            inside &= within_half_voxel(coordinates[axis], size)
        from scipy import ndimage  # deferred: 0.2 s of start-up, and the compiled kernel needs none

        for source, target in zip(self.stack, self.outputs, strict=True):
            destination = target[start:stop]
            # Edge values within half a voxel of the grid, 0 beyond (as the compiled kernel and ITK).
            ndimage.map_coordinates(
                source,
                coordinates,
                output=destination,
                order=self.order,
                mode="nearest" if self.order == 1 else "mirror",
                prefilter=False,
            )
            destination[~inside] = 0.0
        return stats


def cubic_footprint(source: NDArray[np.float32], axes: tuple[int, ...]) -> NDArray[np.float32] | None:
    """Non-finite voxels grown by one along ``axes`` (float32 0/1), or None when every voxel is finite.

    A linear sample that reads this mask is non-zero exactly where a cubic sample reads a bad voxel (the
    cubic taps reach one index further on each side than the linear ones, diagonals included: the growth is
    a box, one axis after the other).
    """
    bad = ~np.isfinite(source)
    if not bad.any():
        return None
    grown = bad.copy()
    for axis in axes:
        step = grown.copy()
        for shift in (-1, 1):
            step |= np.roll(grown, shift, axis=axis) & _not_wrapped(bad.shape, axis, shift)
        grown = step
    return grown.astype(np.float32)


def nearest_finite(source: NDArray[np.float32]) -> NDArray[np.float32]:
    """Return ``source`` with each non-finite voxel replaced by its nearest finite one (0 if there is none)."""
    from scipy import ndimage

    bad = ~np.isfinite(source)
    if bad.all():
        return np.zeros_like(source)
    nearest = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return np.asarray(source[tuple(nearest)], dtype=np.float32)


def _not_wrapped(shape: tuple[int, ...], axis: int, shift: int) -> NDArray[np.bool_]:
    """Return False on the slice np.roll wrapped around (the first one for +1, the last one for -1)."""
    keep = np.ones(shape[axis], dtype=bool)
    keep[0 if shift > 0 else -1] = False
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return keep.reshape(view)


def prefilter(source: NDArray[np.float32], axes: tuple[int, ...]) -> NDArray[np.float32]:
    """Cubic B-spline coefficients along ``axes`` (mirror ends), float32."""
    from scipy import ndimage  # deferred: 0.3 s of start-up (python -X importtime)

    coefficients = np.array(source, dtype=np.float32, copy=True)
    for axis in axes:
        ndimage.spline_filter1d(coefficients, order=3, axis=axis, mode="mirror", output=coefficients)
    return coefficients


def _gather(values: NDArray[np.float32], index: NDArray[np.intp], axis: int) -> NDArray[np.float32]:
    """``values`` at ``index`` along ``axis`` (index has the slab's shape; values is the slab or, along 0, all)."""
    return np.take_along_axis(values, index, axis=axis)


def _cubic_1d(coefficients: NDArray[np.float32], position: NDArray[np.float32], axis: int) -> NDArray[np.float32]:
    """Cubic B-spline along ``axis`` of prefiltered ``coefficients`` at ``position``, mirror ends."""
    size = coefficients.shape[axis]
    base = np.floor(position)
    t = (position - base).astype(np.float32)
    base_index = base.astype(np.intp)
    t2 = t * t
    t3 = t2 * t
    weights = (
        (1.0 - t) ** 3 / 6.0,
        (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0,
        (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0,
        t3 / 6.0,
    )
    out = np.zeros(position.shape, dtype=np.float32)
    period = max(2 * (size - 1), 1)  # mirror ends: reflect with period 2 (size - 1), however far the tap
    for offset, weight in zip((-1, 0, 1, 2), weights, strict=True):
        index = np.mod(base_index + offset, period)
        index = np.where(index > size - 1, period - index, index)
        np.clip(index, 0, size - 1, out=index)
        out += weight * _gather(coefficients, index, axis)
    return out


def within_half_voxel(position: NDArray[np.float32], size: int) -> NDArray[np.bool_]:
    """Where an index position lies within [-0.5, size - 0.5): the grid's voxels, as ITK counts them."""
    return (position >= -0.5) & (position < size - 0.5)


def _linear_1d(values: NDArray[np.float32], position: NDArray[np.float32], axis: int) -> NDArray[np.float32]:
    """Linear interpolation along ``axis`` at ``position`` (beyond the end samples: their values)."""
    size = values.shape[axis]
    position = np.clip(position, 0, size - 1)
    lower = np.clip(np.floor(position), 0, max(size - 2, 0)).astype(np.intp)
    weight = position - lower
    v0 = _gather(values, lower, axis)
    v1 = _gather(values, np.minimum(lower + 1, size - 1), axis)
    with np.errstate(invalid="ignore"):  # a non-finite neighbour of weight 0 is not read (as the kernel)
        blended = (1.0 - weight) * v0 + weight * v1
    return np.asarray(np.where(weight == 0, v0, np.where(weight == 1, v1, blended)), dtype=np.float32)
