"""Cubic B-spline sampling of an image with its exact gradient, at arbitrary points.

An estimator's Gauss-Newton step needs the image and the derivative *of the same interpolant* at moved
points: a gradient from finite differences of the voxels, interpolated separately, biases the solution
where residuals are not zero. ``scipy.ndimage.map_coordinates`` gives values only, so the 4 x 4 x 4 taps
and their weights are gathered here in numpy (written by hand for that reason).

Examples
--------
>>> i, j, k = np.meshgrid(*(np.arange(12.0),) * 3, indexing="ij")
>>> sampler = SplineImage.from_array(3 * i + 2 * j + k)     # linear away from the edges
>>> values, gradient = sampler.sample(np.array([[5.5, 6.25, 5.0]]), with_gradient=True)
>>> round(float(values[0]), 3), gradient[0].round(3).tolist()
(34.0, [3.0, 2.0, 1.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["SPLINE_PADDING", "SplineImage"]

#: Coefficients kept beyond each edge, so that a point up to one voxel outside still finds its 4 taps.
SPLINE_PADDING = 3
#: Points sampled together (bounds the (P, 64) gather to about 32 MB).
_CHUNK = 1 << 16


def _weights(fraction: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cubic B-spline weights of the taps at offsets -1, 0, 1, 2 and their derivatives, shape (P, 4)."""
    t = fraction
    one_minus = 1.0 - t
    weights = np.stack([one_minus**3 / 6.0, (3.0 * t**3 - 6.0 * t**2 + 4.0) / 6.0,
                        (-3.0 * t**3 + 3.0 * t**2 + 3.0 * t + 1.0) / 6.0, t**3 / 6.0], axis=1)
    derivatives = np.stack([-(one_minus**2) / 2.0, (3.0 * t**2 - 4.0 * t) / 2.0,
                            (-3.0 * t**2 + 2.0 * t + 1.0) / 2.0, t**2 / 2.0], axis=1)
    return weights, derivatives


@dataclass(frozen=True, eq=False)
class SplineImage:
    """B-spline coefficients of an image (padded by :data:`SPLINE_PADDING`), ready to sample.

    Parameters
    ----------
    coefficients : ndarray, shape (I + 2p, J + 2p, K + 2p)
        Prefiltered cubic B-spline coefficients, padded.
    shape : tuple of 3 int
        The image's own shape (I, J, K).
    """

    coefficients: NDArray[np.float64]
    shape: tuple[int, int, int]

    @classmethod
    def from_array(cls, image: NDArray[np.floating], *, sigma_voxels: tuple[float, float, float] | None = None
                   ) -> SplineImage:
        """Prefilter ``image`` (optionally Gaussian-smoothed first, sigma in voxels per axis)."""
        from scipy import ndimage

        data = np.asarray(image, dtype=np.float32)
        if sigma_voxels is not None and max(sigma_voxels) > 0:
            data = ndimage.gaussian_filter(data, sigma_voxels, mode="nearest", truncate=3.0, output=np.float32)
        # Continued as a point reflection, so that gradients stay smooth up to the edges (a single slice has
        # nothing to reflect: it stays constant along that axis).
        padded = np.pad(data, SPLINE_PADDING, mode="reflect", reflect_type="odd") if min(data.shape) > SPLINE_PADDING \
            else np.pad(data, SPLINE_PADDING, mode="edge")
        coefficients = ndimage.spline_filter(padded, order=3, mode="mirror", output=np.float32)
        shape = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
        return cls(coefficients, shape)

    def inside(self, index: NDArray[np.float64], *, margin: float | NDArray[np.float64] = 0.0) -> NDArray[np.bool_]:
        """Whether continuous indices (P, 3) lie within the image's voxel centres widened by ``margin`` voxels.

        ``margin`` may be one number or one per axis; negative narrows.
        """
        upper = np.asarray(self.shape, dtype=np.float64) - 1.0 + margin
        return np.asarray(np.all((index >= -margin) & (index <= upper), axis=-1))

    def sample(self, index: NDArray[np.float64], *, with_gradient: bool = False
               ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Values (P,) and, optionally, gradients (P, 3) per index unit at continuous indices (P, 3).

        Points more than a voxel beyond the edges read the edge values (callers mask them out).
        """
        points = np.asarray(index, dtype=np.float64).reshape(-1, 3)
        values = np.empty(points.shape[0])
        gradient = np.empty((points.shape[0], 3)) if with_gradient else None
        flat = self.coefficients.ravel()
        strides = np.array([self.coefficients.shape[1] * self.coefficients.shape[2], self.coefficients.shape[2], 1])
        offsets = (np.arange(4)[:, None, None] * strides[0] + np.arange(4)[None, :, None] * strides[1]
                   + np.arange(4)[None, None, :]).ravel()
        # One voxel beyond the outer voxel centres at most: the taps then stay within the padding.
        low = np.full(3, SPLINE_PADDING - 1.0)
        high = np.asarray(self.shape, dtype=np.float64) + SPLINE_PADDING - 1e-9
        for start in range(0, points.shape[0], _CHUNK):
            part = np.clip(points[start:start + _CHUNK] + SPLINE_PADDING, low, high)
            base = np.floor(part)
            fraction = part - base
            corner = (base.astype(np.intp) - 1) @ strides
            taps = flat[corner[:, None] + offsets[None, :]].reshape(-1, 16, 4)
            (wi, di), (wj, dj), (wk, dk) = (_weights(fraction[:, axis]) for axis in range(3))
            along_k = np.matmul(taps, wk[:, :, None]).reshape(-1, 4, 4)
            along_jk = np.matmul(along_k, wj[:, :, None])[:, :, 0]
            values[start:start + _CHUNK] = np.einsum("pa,pa->p", along_jk, wi)
            if gradient is not None:
                gradient[start:start + _CHUNK, 0] = np.einsum("pa,pa->p", along_jk, di)
                gradient[start:start + _CHUNK, 1] = np.einsum("pa,pa->p", np.matmul(along_k, dj[:, :, None])[:, :, 0],
                                                              wi)
                slope_k = np.matmul(taps, dk[:, :, None]).reshape(-1, 4, 4)
                gradient[start:start + _CHUNK, 2] = np.einsum("pa,pa->p", np.matmul(slope_k, wj[:, :, None])[:, :, 0],
                                                              wi)
        return values, gradient


@dataclass(frozen=True, eq=False)
class ColumnSpline:
    """An image interpolated along its k axis only, sampled at whole (i, j) and any k.

    At integer i and j the 3-D cubic B-spline interpolant equals the 1-D interpolant of the voxel column
    (the prefilter is separable and reproduces the samples), so a displacement along the slice normal needs
    4 taps per point instead of 64: the through-plane fast path of a DIS2D series.

    Parameters
    ----------
    coefficients : ndarray, shape (I, J, K + 2p)
        Column-wise B-spline coefficients, padded along k.
    shape : tuple of 3 int
        The image's own shape.
    """

    coefficients: NDArray[np.float64]
    shape: tuple[int, int, int]

    @classmethod
    def from_array(cls, image: NDArray[np.floating]) -> ColumnSpline:
        """Prefilter every column of ``image`` along k."""
        from scipy import ndimage

        data = np.asarray(image, dtype=np.float32)
        pad = ((0, 0), (0, 0), (SPLINE_PADDING, SPLINE_PADDING))
        padded = np.pad(data, pad, mode="reflect", reflect_type="odd") if data.shape[2] > SPLINE_PADDING \
            else np.pad(data, pad, mode="edge")
        coefficients = ndimage.spline_filter1d(padded, order=3, axis=2, mode="mirror", output=np.float32)
        return cls(coefficients, (int(data.shape[0]), int(data.shape[1]), int(data.shape[2])))

    def inside(self, index: NDArray[np.float64], *, margin: float = 0.0) -> NDArray[np.bool_]:
        """Whether the k index (column 2 of (P, 3) indices) lies within the slices widened by ``margin``."""
        return np.asarray((index[:, 2] >= -margin) & (index[:, 2] <= self.shape[2] - 1.0 + margin))

    def sample_columns(self, columns: NDArray[np.intp], k: NDArray[np.float64], *, with_gradient: bool = False
                       ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Values and d/dk at flat column numbers ``i * J + j`` (P,) and continuous slice indices ``k`` (P,)."""
        depth = self.coefficients.shape[2]
        position = np.clip(k + SPLINE_PADDING, 1.0, depth - 3.0 - 1e-9)
        base = np.floor(position)
        weights, derivatives = _weights(position - base)
        start = columns * depth + base.astype(np.intp) - 1
        taps = self.coefficients.reshape(-1)[start[:, None] + np.arange(4)[None, :]]
        values = np.einsum("pa,pa->p", taps, weights)
        return values, (np.einsum("pa,pa->p", taps, derivatives) if with_gradient else None)
