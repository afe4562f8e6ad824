"""The images a fit compares, level by level: what a series is, how it is smoothed, where it is sampled.

A fit runs from smooth, coarse images to sharp ones (:class:`Level`). Each series is blurred by the other's
voxel box as well (both then carry the same blur), decimated where smoothing allows, and sampled at the
voxels of one of them inside the object, most of them at edges, where a displacement shows.

Examples
--------
>>> Level(2.0, 40_000, 5).smoothing_mm
2.0
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from trueshape.estimation._field_model import SeriesView
from trueshape.estimation._motion import RigidMotion
from trueshape.estimation._sampling import ColumnSpline, SplineImage
from trueshape.geometry import VolumeGeometry

__all__ = [
    "DEFAULT_LEVELS",
    "EDGE_SAMPLE_FRACTION",
    "Level",
    "LevelImage",
    "SeriesImage",
    "anchor_points",
    "cross_psf_sigma",
    "level_image",
    "mask_centre",
    "object_mask",
    "pyramid",
]


@dataclass(frozen=True, eq=False)
class SeriesImage:
    """One series as the estimator sees it.

    Parameters
    ----------
    values : ndarray, shape (I, J, K)
        Physical voxel values.
    geometry : VolumeGeometry
        Their grid (mm, LPS).
    view : SeriesView
        How the series sees the scanner's field.
    label : str
        Name in reports.
    psf_widths_mm : tuple of 3 float, optional
        Width of the region each voxel averages along i, j, k (pixel size in-plane, slice thickness through
        the plane); default: the voxel spacing.
    """

    values: NDArray[np.floating]
    geometry: VolumeGeometry
    view: SeriesView
    label: str = ""
    psf_widths_mm: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Level:
    """One resolution level: image smoothing, how many sample points at most, highest harmonic order."""

    smoothing_mm: float
    max_points: int
    max_order: int
    max_iterations: int = 12


#: From smooth images, low orders and few points to the full data: a Gaussian of 4 mm sees a 13 mm field
#: without getting lost, and smooth levels only need to bring the fit close; the motion is fitted while the
#: images are smooth (see MOTION_SMOOTHING_VOXELS); the last level keeps the images' own sharpness, which a
#: contrast map between series needs (smoothing mixes tissues before the map, shifting edges).
DEFAULT_LEVELS = (Level(4.0, 20_000, 3, 8), Level(2.0, 40_000, 99), Level(1.0, 80_000, 99), Level(0.5, 120_000, 99))


@dataclass(frozen=True, eq=False)
class LevelImage:
    """One series at one level: its smoothed (and decimated) image, grid and samplers."""

    series: SeriesImage
    geometry: VolumeGeometry
    values: NDArray[np.float32]
    #: Gaussian sigma of the smoothing in ``values`` along each axis, mm.
    blur_mm: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))

    @functools.cached_property
    def column_spline(self) -> ColumnSpline:
        """The image prefiltered along k (built once, shared by every fit step on this level)."""
        return ColumnSpline.from_array(self.values)

    @functools.cached_property
    def spline(self) -> SplineImage:
        """The image prefiltered for 3-D cubic sampling (built once)."""
        return SplineImage.from_array(self.values)

    @property
    def edge_voxels(self) -> NDArray[np.float64]:
        """Voxels along each axis, from the field of view's faces, that smoothing mixed with padding."""
        return np.asarray(EDGE_SIGMAS * self.blur_mm / self.geometry.spacing)

    @property
    def along_k(self) -> bool:
        """Whether the residual lies along the grid's k axis (the 1-D fast path applies)."""
        vectors = self.series.view.projector_basis()
        if vectors.shape[1] != 1:
            return False
        normal = self.series.view.coefficient_rotation.T @ vectors[:, 0]  # LPS
        return abs(abs(float(normal @ self.geometry.direction[:, 2])) - 1.0) < 1e-6


def pyramid(series: SeriesImage, levels: tuple[Level, ...], psf_sigma_mm: NDArray[np.float64] | None = None
             ) -> list[LevelImage]:
    """Smoothed and decimated copies, one per level (in the order of ``levels``), computed finest first.

    ``psf_sigma_mm`` (along the image's own axes) is added in quadrature at every level: the other series'
    sampling, so that both images compared carry the same blur.
    """
    from scipy import ndimage

    images: list[LevelImage] = []
    values = np.asarray(series.values, dtype=np.float32)
    geometry = series.geometry
    psf = np.zeros(3) if psf_sigma_mm is None else np.asarray(psf_sigma_mm, dtype=np.float64)
    applied = np.zeros(3)  # Gaussian sigma already in ``values`` per axis, mm
    for level in sorted(levels, key=lambda lv: lv.smoothing_mm):
        wanted = np.sqrt(level.smoothing_mm**2 + psf**2)
        extra = np.sqrt(np.maximum(wanted**2 - applied**2, 0.0))
        if np.any(extra > 0):
            values = ndimage.gaussian_filter(values, extra / geometry.spacing, mode="nearest", truncate=3.0,
                                             output=np.float32)
            applied = np.maximum(wanted, applied)
        steps = np.maximum(np.floor(level.smoothing_mm / geometry.spacing).astype(int), 1)
        steps = np.where(np.asarray(values.shape) >= 4 * steps, steps, 1)
        if np.any(steps > 1):
            values = np.ascontiguousarray(values[:: steps[0], :: steps[1], :: steps[2]])
            matrix = geometry.lps_from_ijk.copy()
            matrix[:3, :3] = matrix[:3, :3] * steps
            geometry = VolumeGeometry(shape=values.shape, lps_from_ijk=matrix)
        images.append(LevelImage(series, geometry, values, applied.copy()))
    order = sorted(range(len(levels)), key=lambda i: levels[i].smoothing_mm)
    by_level: list[LevelImage] = [images[0]] * len(levels)
    for rank, index in enumerate(order):
        by_level[index] = images[rank]
    return by_level


def level_image(series: SeriesImage, level: Level, psf_sigma_mm: NDArray[np.float64] | None = None) -> LevelImage:
    """One level's image of ``series``: smoothed and decimated as :func:`pyramid` does."""
    return pyramid(series, (level,), psf_sigma_mm)[0]


def cross_psf_sigma(target: SeriesImage, source: SeriesImage) -> NDArray[np.float64]:
    """Gaussian sigma (mm, along ``target``'s axes) that gives ``target`` the blur of ``source``'s voxels.

    A voxel averages a box (its pixel in-plane, its slice thickness through-plane): variance ``w^2 / 12``
    along each of ``source``'s axes, projected onto ``target``'s. Each series blurred by the other's box,
    both carry the same blur: sharp edges sampled differently by the two would otherwise shift against each
    other and bias the field.
    """
    widths = np.asarray(source.psf_widths_mm if source.psf_widths_mm is not None else source.geometry.spacing)
    directions = source.geometry.direction
    covariance = directions @ np.diag(widths**2 / 12.0) @ directions.T
    axes = target.geometry.direction
    return np.sqrt(np.maximum(np.einsum("ia,ij,ja->a", axes, covariance, axes), 0.0))


def object_mask(reference: SeriesImage, fraction: float) -> NDArray[np.bool_]:
    """Voxels of the object (smoothed reference above ``fraction`` of its 99th percentile), dilated by 4 mm."""
    from scipy import ndimage

    spacing = reference.geometry.spacing
    smooth = ndimage.gaussian_filter(np.asarray(reference.values, dtype=np.float32), 2.0 / spacing, truncate=3.0)
    level = float(np.percentile(smooth, 99.0))
    mask = smooth > fraction * level
    reach = np.maximum(np.round(4.0 / spacing).astype(int), 1)
    # A box dilation, as separable 1-D maxima (a 3-D structuring element costs seconds on a large series).
    return np.asarray(ndimage.maximum_filter(mask, size=tuple(int(2 * r + 1) for r in reach), mode="constant"))


def anchor_points(anchor: LevelImage, reference: SeriesImage, mask: NDArray[np.bool_], motion_to_reference:
                   RigidMotion, max_points: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Voxel centres of the anchor's level grid that fall in the reference's object mask (random subset).

    Candidates are drawn at random first (a few times more than needed), so that the cost follows the points
    kept, not the size of the series; most are then kept where the image changes (edge-weighted).
    """
    shape = np.asarray(anchor.geometry.shape)
    total = int(np.prod(shape))
    # reference index <- anchor index: the mask looked up at the nearest reference voxel.
    moved = np.eye(4)
    moved[:3, :3] = motion_to_reference.rotation
    moved[:3, 3] = motion_to_reference.centre_lps + motion_to_reference.translation_mm \
        - motion_to_reference.rotation @ motion_to_reference.centre_lps
    matrix = reference.geometry.ijk_from_lps @ moved @ anchor.geometry.lps_from_ijk
    wanted = CANDIDATES_PER_POINT * max_points
    # Drawn with replacement and made unique through a bitmap: a draw without replacement from millions costs
    # a permutation, and np.unique's hashing took seconds for the few million draws of a full-size series.
    if wanted >= total:
        flat = np.arange(total)
    else:
        drawn = np.zeros(total, dtype=bool)
        drawn[rng.integers(0, total, wanted)] = True
        flat = np.flatnonzero(drawn)
    index = np.stack(np.unravel_index(flat, anchor.geometry.shape), axis=1)
    looked = np.rint(index @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.intp)
    valid = np.all((looked >= 0) & (looked < np.asarray(mask.shape)), axis=1)
    inside = np.zeros(flat.size, dtype=bool)
    inside[valid] = mask[looked[valid, 0], looked[valid, 1], looked[valid, 2]]
    flat = flat[inside]
    if flat.size > max_points:
        flat = _edge_weighted_subset(anchor.values, flat, max_points, rng)
    index = np.stack(np.unravel_index(flat, anchor.geometry.shape), axis=1)
    return anchor.geometry.index_to_lps(index.astype(np.float64))


#: Random candidates drawn per sample point kept (the object may fill a third of the field of view).
CANDIDATES_PER_POINT = 8
#: Within this many sigmas of a field of view's face, smoothing mixed the image with its padding: a series cut
#: through the anatomy (a slab) would there compare a blurred edge of its own making with the other series.
EDGE_SIGMAS = 2.5
#: Share of the sample points drawn where the image changes (edges: where a displacement shows); the rest
#: are drawn uniformly (flat regions pin the intensity map).
EDGE_SAMPLE_FRACTION = 0.7


def _edge_weighted_subset(values: NDArray[np.float32], flat: NDArray[np.intp], count: int,
                          rng: np.random.Generator) -> NDArray[np.intp]:
    """``count`` of the voxels ``flat``: most drawn in proportion to the image's gradient, the rest uniformly."""
    shape = values.shape
    data = values.reshape(-1)
    strides = (shape[1] * shape[2], shape[2], 1)
    index = np.unravel_index(flat, shape)
    strength = np.zeros(flat.size)
    for axis, stride in enumerate(strides):
        up = np.where(index[axis] + 1 < shape[axis], flat + stride, flat)
        down = np.where(index[axis] > 0, flat - stride, flat)
        strength += (data[up].astype(np.float64) - data[down]) ** 2
    strength = np.sqrt(strength) + 1e-6 * (float(np.sqrt(strength.mean())) + 1e-30)
    edges = int(EDGE_SAMPLE_FRACTION * count)
    # Weighted draw without replacement by the Gumbel top-k trick: linear time.
    keys = np.log(strength) - np.log(-np.log(rng.random(flat.size)))
    chosen = np.argpartition(-keys, edges)[:edges]
    left = np.ones(flat.size, dtype=bool)
    left[chosen] = False
    uniform = rng.choice(np.flatnonzero(left), count - edges, replace=False)
    return np.sort(flat[np.concatenate([chosen, uniform])])


def mask_centre(geometry: VolumeGeometry, mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Centre of the mask's voxels, mm LPS (the grid centre for an empty mask)."""
    total = float(mask.sum())
    if total == 0:
        return geometry.index_to_lps((np.asarray(geometry.shape, dtype=np.float64) - 1.0) / 2.0)
    index = [float((np.arange(size) * mask.sum(axis=tuple(a for a in range(3) if a != axis))).sum()) / total
             for axis, size in enumerate(mask.shape)]
    return geometry.index_to_lps(np.asarray(index))
