"""Geometry you can check by eye: the size and shape of a bright, roughly spherical structure.

A femoral head's marrow is bright on T1 and enclosed by dark cortex. Its diameters along the patient axes
come from intensity-weighted second moments: for a solid ellipsoid with semi-axis a, the variance along
that axis is a^2 / 5. Partial-volume voxels are weighted by their fraction between the inside and outside
levels, and the variance that voxel sampling adds (voxel size^2 / 12 along each grid axis) is removed,
so slices thicker than the in-plane pixels do not bias the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trueshape.geometry import Volume

__all__ = ["SphereMeasurement", "measure_bright_sphere", "physical_values"]


@dataclass(frozen=True, eq=False)
class SphereMeasurement:
    """Centre and diameters (mm) along the patient axes x (LR), y (AP), z (SI)."""

    centre_lps: NDArray[np.float64]
    diameters_mm: NDArray[np.float64]
    voxels: int

    @property
    def ap_lr_ratio(self) -> float:
        """Front-to-back over left-to-right diameter (1.0 for a true sphere)."""
        return float(self.diameters_mm[1] / self.diameters_mm[0])


def measure_bright_sphere(
    volume: Volume,
    centre_guess_lps: ArrayLike,
    radius_mm: float,
    *,
    inside_level: float,
    outside_level: float,
    surround_level: float | None = None,
    psf_variance_mm2: ArrayLike | None = None,
) -> SphereMeasurement:
    """Measure the bright blob containing ``centre_guess_lps`` (e.g. femoral head marrow).

    Parameters
    ----------
    volume : Volume
        Image (the first volume of a 4-D series is used).
    centre_guess_lps : array_like, shape (3,)
        A point inside the structure, mm LPS.
    radius_mm : float
        Expected radius of the structure, mm.
    inside_level : float
        Signal of the structure (e.g. marrow).
    outside_level : float
        Signal of its thin boundary (e.g. cortex): partial-volume fractions are measured against it.
    surround_level : float, optional
        Signal of the tissue beyond the boundary (e.g. muscle); the structure is segmented halfway between
        it and ``inside_level`` (default: ``outside_level``).
    psf_variance_mm2 : array_like, shape (3,), optional
        Variance of the voxel sampling profile along i, j, k (default: a box as wide as the voxel).

    Returns
    -------
    SphereMeasurement
        Centroid and diameters along x, y, z (mm).

    Notes
    -----
    Voxels are kept within an ellipsoid around the centroid, one voxel beyond the extent measured so far:
    first a ball of ``radius_mm``, then the ellipsoid of the measured diameters, until the diameters settle
    (at most 1.5 ``radius_mm``). Structures attached to the blob (a femoral neck) stay out of the moments,
    while a flattened or elongated blob is measured whole (a fixed ball read a 1.20 elongation as 1.09).
    """
    from scipy import ndimage

    stored = volume.array[..., 0] if volume.array.ndim == 4 else volume.array
    geometry = volume.geometry
    surround = outside_level if surround_level is None else surround_level
    centre = np.asarray(centre_guess_lps, dtype=np.float64)
    centre_index = geometry.lps_to_index(centre)
    half = np.ceil(1.6 * radius_mm / geometry.spacing).astype(int)
    low = np.maximum(np.round(centre_index).astype(int) - half, 0)
    high = np.minimum(np.round(centre_index).astype(int) + half + 1, geometry.shape)
    values = physical_values(volume, stored[tuple(slice(a, b) for a, b in zip(low, high, strict=True))])
    bright = (values - surround) / (inside_level - surround) > 0.5
    labels, count = ndimage.label(bright)
    if count == 0:
        raise ValueError(f"no voxel brighter than halfway to {inside_level:g} near {np.round(centre, 1)}")
    seed = tuple(np.clip(np.round(centre_index).astype(int) - low, 0, np.array(bright.shape) - 1))
    label = labels[seed] or int(np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    region = ndimage.binary_dilation(labels == label, iterations=1)
    fraction = np.clip((values - outside_level) / (inside_level - outside_level), 0.0, 1.0)
    grids = np.meshgrid(*(np.arange(a, b, dtype=np.float64) for a, b in zip(low, high, strict=True)), indexing="ij")
    points = geometry.index_to_lps(np.stack(grids, axis=-1)).reshape(-1, 3)
    voxel = float(np.max(geometry.spacing))
    semi_axes = np.full(3, radius_mm)  # along x, y, z (LPS)
    candidate = np.where(region, fraction, 0.0).reshape(-1)
    if psf_variance_mm2 is None:
        psf_variance_mm2 = geometry.spacing**2 / 12.0
    direction = geometry.direction
    psf = direction @ np.diag(np.asarray(psf_variance_mm2, dtype=np.float64)) @ direction.T
    diameters = np.zeros(3)
    for _ in range(12):
        limit = np.minimum(semi_axes + voxel, 1.5 * radius_mm + voxel)
        w = np.where(np.sum(((points - centre) / limit) ** 2, axis=1) <= 1.0, candidate, 0.0)
        total = float(w.sum())
        if total <= 0:
            raise ValueError(f"nothing bright within {radius_mm + voxel:.1f} mm of {np.round(centre, 1)}")
        centre = (w @ points) / total
        offsets = points - centre
        covariance = (offsets * w[:, None]).T @ offsets / total - psf
        measured = 2.0 * np.sqrt(5.0 * np.clip(np.diag(covariance), 0.0, None))
        settled = bool(np.max(np.abs(measured - diameters)) < 0.01 * voxel)
        diameters = measured
        if settled:
            break
        semi_axes = diameters / 2.0
    return SphereMeasurement(centre, diameters, int(np.count_nonzero(w)))


def physical_values(volume: Volume, stored: NDArray[Any], dtype: type[np.floating[Any]] = np.float64) -> NDArray[Any]:
    """Return physical values (stored * slope + intercept) of ``stored``, a part of ``volume.array``.

    Converting only the part a measurement reads keeps a report of a large series from copying all of it.
    """
    data = stored.astype(dtype, copy=True)
    if volume.is_scaled:
        data *= dtype(volume.rescale_slope)
        data += dtype(volume.rescale_intercept)
    return data
