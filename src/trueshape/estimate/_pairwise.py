"""Fit one scanner field (and a rigid motion) to a reference and a moving series of one session.

For patient points ``x`` in the object, the corrected reference and moving images must agree::

    R~(x) = R(x + u_R(x)) det(I + grad u_R)        M~(x) = M(y + u_M(y)) det(I + grad u_M),  y = T(x)

with ``u_s`` the residual each series sees of one field (:mod:`trueshape.estimate._field_model`) and ``T``
the patient's rigid motion between the two series. The fit minimises ``|M~ - g(R~)|^2`` over the
coefficients and the motion, with ``g`` the intensity map projected out (:mod:`._intensity`), a Gaussian
prior on the coefficients (Tikhonov towards zero, weighed against the measured residual noise), by
Gauss-Newton with exact derivatives of the B-spline images and of the linear harmonic basis, level by
level from smooth images and low orders to sharp images and the full order (DESIGN.md section 5).

Examples
--------
>>> # see tests/estimate/test_pairwise.py: a DIS2D coronal series recovered against a DIS3D axial one
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from trueshape.errors import EstimationError
from trueshape.estimate._field_model import FieldModel, SeriesView
from trueshape.estimate._intensity import IntensityMap, Similarity
from trueshape.estimate._sampling import SplineImage
from trueshape.geometry import VolumeGeometry
from trueshape.gnl._basis import HarmonicBasis

__all__ = ["DEFAULT_LEVELS", "FitOptions", "Level", "PairFit", "RigidMotion", "SeriesImage", "fit_pair"]


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
    """One resolution level: image smoothing, spacing of the sample points, highest harmonic order."""

    smoothing_mm: float
    point_spacing_mm: float
    max_order: int
    max_iterations: int = 12


#: From smooth images and low orders to the full data: a Gaussian of 4 mm sees a 13 mm field without getting
#: lost; the motion is fitted down to 1 mm (below a voxel, noise interpolated at moving points would make it
#: wander); the last level keeps the images' own sharpness, which a contrast map between series needs
#: (smoothing mixes tissues before the map, shifting edges).
DEFAULT_LEVELS = (Level(4.0, 6.0, 3), Level(2.0, 3.0, 99), Level(1.0, 2.0, 99), Level(0.5, 1.5, 99))


@dataclass(frozen=True)
class FitOptions:
    """Choices of the fit (the defaults are what the benchmarks measure).

    Parameters
    ----------
    order : int
        Highest harmonic degree n.
    lowest_order : int
        Lowest degree (2: constant shifts and linear scalings belong to motion and the scanner's calibration).
    r0_mm : float
        Reference radius of the coefficients, mm.
    similarity : Similarity
        Intensity relation between the series.
    motion : bool
        Fit a rigid motion of the patient between the series.
    prior_sd : float
        Prior standard deviation of the coefficients a symmetric coil has (Siemens normalisation; real coils:
        0.001-0.1).
    asymmetric_prior_sd : float
        Prior standard deviation of the other coefficients (a real coil's asymmetries: 0.001-0.01). A low
        even-degree term over an object far from the isocentre looks much like a shift of the patient; this
        prior tells them apart.
    levels : tuple of Level
        Resolution schedule.
    max_points : int
        Sample points per level at most (a random subset beyond).
    mask_fraction : float
        Object mask: smoothed reference above this fraction of its 99th percentile.
    seed : int
        Seed of the random subset.
    """

    order: int = 5
    lowest_order: int = 2
    r0_mm: float = 250.0
    similarity: Similarity = Similarity.CORRELATION_RATIO
    motion: bool = True
    prior_sd: float = 0.1
    asymmetric_prior_sd: float = 0.02
    levels: tuple[Level, ...] = DEFAULT_LEVELS
    max_points: int = 250_000
    mask_fraction: float = 0.1
    seed: int = 0


@dataclass(frozen=True, eq=False)
class RigidMotion:
    """``T(x) = rotation (x - centre) + centre + translation`` (mm, LPS): where anatomy moved between series."""

    rotation: NDArray[np.float64] = field(default_factory=lambda: np.eye(3))
    translation_mm: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    centre_lps: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))

    def apply(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """Move points (P, 3), mm LPS."""
        return np.asarray((points - self.centre_lps) @ self.rotation.T + self.centre_lps + self.translation_mm)

    @property
    def angle_deg(self) -> float:
        """Rotation angle, degrees."""
        return math.degrees(math.acos(max(-1.0, min(1.0, (float(np.trace(self.rotation)) - 1.0) / 2.0))))

    def updated(self, step: NDArray[np.float64]) -> RigidMotion:
        """Compose a small step (rotation vector, rad; translation, mm) on the left."""
        return RigidMotion(_rodrigues(step[:3]) @ self.rotation, self.translation_mm + step[3:], self.centre_lps)

    def inverse(self) -> RigidMotion:
        """Return the motion back: ``T^-1(y) = R^T (y - c - t) + c``, written about the moved centre ``c + t``."""
        centre = self.centre_lps + self.translation_mm
        return RigidMotion(self.rotation.T, self.centre_lps - centre, centre)

    def to_json(self) -> dict[str, object]:
        """Plain values for sidecars."""
        return {"rotation": self.rotation.tolist(), "translation_mm": self.translation_mm.tolist(),
                "centre_lps": self.centre_lps.tolist(), "angle_deg": self.angle_deg,
                "shift_mm": float(np.linalg.norm(self.translation_mm))}


def _rodrigues(vector: NDArray[np.float64]) -> NDArray[np.float64]:
    angle = float(np.linalg.norm(vector))
    if angle < 1e-15:
        return np.eye(3)
    x, y, z = vector / angle
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * cross @ cross


@dataclass(frozen=True, eq=False)
class PairFit:
    """What the fit found, with the numbers that say how well.

    Parameters
    ----------
    model : FieldModel
        Basis and axes of ``theta``.
    theta : ndarray, shape (N,)
        Coefficients (Siemens normalisation, coefficient frame).
    motion : RigidMotion
        Motion of the patient from the reference to the moving series.
    covariance : ndarray, shape (N, N)
        Posterior covariance of ``theta``.
    normal_matrix : ndarray, shape (N, N)
        ``J^T J / sigma^2`` of the data at the solution (what the data say about each combination).
    prior_precision : ndarray, shape (N,)
        ``1 / prior_sd^2`` of each coefficient.
    residual_sd : float
        Standard deviation of the image residual at the solution (signal units).
    cost_start, cost_end : float
        Mean squared image residual before and after (same points, finest level).
    iterations : tuple of int
        Gauss-Newton iterations per level.
    points : int
        Sample points of the finest level.
    converged : bool
        Whether the last level's steps fell below the tolerance.
    seconds : float
        Time of the fit.
    """

    model: FieldModel
    theta: NDArray[np.float64]
    motion: RigidMotion
    covariance: NDArray[np.float64]
    normal_matrix: NDArray[np.float64]
    prior_precision: NDArray[np.float64]
    residual_sd: float
    cost_start: float
    cost_end: float
    iterations: tuple[int, ...]
    points: int
    converged: bool
    seconds: float


#: The motion is fitted at levels whose smoothing is at least this many of the other series' largest voxel size.
MOTION_SMOOTHING_VOXELS = 0.6
#: A Gauss-Newton level stops when no sample point's field moves by more than this, mm.
STEP_TOLERANCE_MM = 2e-3
#: ... and the motion by less than this (rad or mm).
MOTION_TOLERANCE = 1e-4
_TRUTH: dict[tuple[int, str], float] | None = None
_DEBUG = bool(__import__("os").environ.get("TRUESHAPE_DEBUG_FIT"))
#: Line-search halvings before a level is taken as converged.
_LINE_SEARCH_STEPS = 6


@dataclass(frozen=True, eq=False)
class _LevelOutcome:
    """What one level's fit ends with."""

    theta: NDArray[np.float64]
    motion: RigidMotion
    iterations: int
    covariance: NDArray[np.float64]
    normal: NDArray[np.float64]
    residual_sd: float
    cost_start: float
    cost_end: float
    points: int
    converged: bool


@dataclass(frozen=True, eq=False)
class _LevelImage:
    """One series at one level: its smoothed (and decimated) image, grid and samplers."""

    series: SeriesImage
    geometry: VolumeGeometry
    values: NDArray[np.float32]

    @property
    def along_k(self) -> bool:
        """Whether the residual lies along the grid's k axis (the 1-D fast path applies)."""
        vectors = _projector_basis(self.series.view)
        if vectors.shape[1] != 1:
            return False
        normal = self.series.view.coefficient_rotation.T @ vectors[:, 0]  # LPS
        return abs(abs(float(normal @ self.geometry.direction[:, 2])) - 1.0) < 1e-6


def _pyramid(series: SeriesImage, levels: tuple[Level, ...], psf_sigma_mm: NDArray[np.float64] | None = None
             ) -> list[_LevelImage]:
    """Smoothed and decimated copies, one per level (in the order of ``levels``), computed finest first.

    ``psf_sigma_mm`` (along the image's own axes) is added in quadrature at every level: the other series'
    sampling, so that both images compared carry the same blur.
    """
    from scipy import ndimage

    images: list[_LevelImage] = []
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
        images.append(_LevelImage(series, geometry, values))
    order = sorted(range(len(levels)), key=lambda i: levels[i].smoothing_mm)
    by_level: list[_LevelImage] = [images[0]] * len(levels)
    for rank, index in enumerate(order):
        by_level[index] = images[rank]
    return by_level


def _level_image(series: SeriesImage, level: Level, psf_sigma_mm: NDArray[np.float64] | None = None) -> _LevelImage:
    """One level's image of ``series``: smoothed and decimated as :func:`_pyramid` does."""
    return _pyramid(series, (level,), psf_sigma_mm)[0]


def _cross_psf_sigma(target: SeriesImage, source: SeriesImage) -> NDArray[np.float64]:
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


#: Fewer sample points than this in the object and both fields of view: the series do not overlap.
_MIN_POINTS = 200
#: Sample points at which the contrast map between the series is fitted.
_MAP_POINTS = 60_000
#: Nodes of that map.
_MAP_NODES = 32
#: Gaussian smoothing (mm) of a series before it is mapped into the other's contrast.
_REMAP_SMOOTHING_MM = float(__import__("os").environ.get("REMAP_SMOOTH", "0"))
#: A nonlinear map is used only when it explains this much more of the variance than a linear one.
_NONLINEAR_GAIN = 0.02


IntensityFunction = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def _remapped(series: SeriesImage, mapping: IntensityFunction, *, smoothing_mm: float) -> SeriesImage:
    """``series`` in the other contrast: smoothed a little first (noise through a steep map would bias it)."""
    from scipy import ndimage

    values = np.asarray(series.values, dtype=np.float32)
    if smoothing_mm > 0:
        values = ndimage.gaussian_filter(values, smoothing_mm / series.geometry.spacing, mode="nearest", truncate=3.0,
                                         output=np.float32)
    return SeriesImage(mapping(values), series.geometry, series.view, series.label)


def _contrast_maps(anchor: _Side, other: _Side, points: NDArray[np.float64], theta: NDArray[np.float64],
                   motion: RigidMotion) -> tuple[IntensityFunction | None, IntensityFunction | None]:
    """Return the map into the anchor's contrast (``E[anchor | other]``) or the other's, whichever explains more.

    At most one of the two is returned: the direction in which one series' intensity is (more nearly) a
    function of the other's - by the correlation ratio, the share of variance the map explains - and none
    when a linear map explains nearly as much (the same contrast up to scale).
    """
    anchor_values, _, _, anchor_inside = anchor.corrected(theta, points, need_jacobian=False)
    other_values, _, _, other_inside = other.corrected(theta, motion.apply(points), need_jacobian=False)
    use = anchor_inside & other_inside
    source = {"anchor": anchor_values[use], "other": other_values[use]}
    best: tuple[float, str, NDArray[np.float64], NDArray[np.float64]] | None = None
    linear = 0.0
    for given, predicted in (("other", "anchor"), ("anchor", "other")):
        for count in (2, _MAP_NODES):
            mapping = IntensityMap.spanning(source[given], nodes=count)
            fit = mapping.fit(source[given], source[predicted])
            explained = 1.0 - float(np.var(fit.residual)) / max(float(np.var(source[predicted])), 1e-30)
            if count == 2:
                linear = max(linear, explained)
            elif best is None or explained > best[0]:
                best = (explained, predicted, mapping.nodes, fit.node_values)
    assert best is not None
    if _DEBUG:
        print(f"  contrast map: linear explains {linear:.4f}, nonlinear {best[0]:.4f} predicting {best[1]}")
    if best[0] - linear < _NONLINEAR_GAIN:
        return None, None  # one contrast up to scale: compare as it is
    _, predicted, knots, values = best

    def apply(image: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.interp(image, knots, values).astype(np.float32)

    return (apply, None) if predicted == "anchor" else (None, apply)


def _projector_basis(view: SeriesView) -> NDArray[np.float64]:
    """Orthonormal columns V (3, r) with ``V V^T`` the series' projector in the coefficient frame."""
    values, vectors = np.linalg.eigh(view.projector_in_coefficient_frame)
    return np.asarray(vectors[:, values > 0.5])


class _Side:
    """One series during a level: how it is sampled, and what stays fixed while the coefficients change."""

    def __init__(self, image: _LevelImage, model: FieldModel, points: NDArray[np.float64], *, anchor: bool,
                 moves: bool) -> None:
        from trueshape.estimate._sampling import ColumnSpline

        self.image = image
        self.model = model
        self.points = points
        self.view = image.series.view
        self.vectors = _projector_basis(self.view)
        self.sees = self.vectors.shape[1] > 0
        self.moves = moves
        self.fast = anchor and image.along_k
        geometry = image.geometry
        self.to_index = geometry.ijk_from_lps
        if self.fast:
            self.column_sampler = ColumnSpline.from_array(image.values)
            index = np.rint(geometry.lps_to_index(points)).astype(np.intp)
            self.columns = index[:, 0] * geometry.shape[1] + index[:, 1]
            self.k0 = index[:, 2].astype(np.float64)
            normal = geometry.direction[:, 2]
            self.k_per_mm = normal / float(geometry.spacing[2])  # dk per LPS mm along the normal
        else:
            self.sampler = SplineImage.from_array(image.values)
        self.static_basis = None if moves else self._basis(points)
        self.static_values: NDArray[np.float64] | None = None
        if not self.sees and not moves:
            values, _, _, self.static_inside = self.corrected(np.zeros(model.size), points, need_jacobian=False)
            self.static_values = values

    def _basis(self, points: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if not self.sees:
            return np.zeros((points.shape[0], len(self.model.basis.terms))), np.zeros((points.shape[0], 0, 0))
        values, gradients = self.model.basis.evaluate(self.view.coefficient_points(points), with_gradient=True)
        assert gradients is not None
        return values, np.einsum("ptb,br->ptr", gradients, self.vectors)

    def corrected(self, theta: NDArray[np.float64], points: NDArray[np.float64], *, need_jacobian: bool,
                  need_position: bool = False) -> tuple[NDArray[np.float64], NDArray[np.float64] | None,
                                                        NDArray[np.float64] | None, NDArray[np.bool_]]:
        """Corrected values at ``points`` (their own, this series' anatomy), d/dtheta, d/d(position) and inside."""
        model = self.model
        count = points.shape[0]
        if self.static_values is not None:  # sees no field and does not move: fixed values
            return (self.static_values, np.zeros((count, model.size)) if need_jacobian else None, None,
                    self.static_inside)
        values_h, slopes_h = self.static_basis if self.static_basis is not None else self._basis(points)
        axes = list(model.axes)
        table = model.table(theta)[axes]  # (A, T)
        weights = self.view.weights[:, axes]  # (3, A)
        along_axes = values_h @ table.T  # (P, A) coefficient-frame displacement
        displacement = along_axes @ weights.T  # (P, 3) LPS
        if self.fast:
            k = self.k0 + displacement @ self.k_per_mm
            inside = self.column_sampler.inside(np.stack([k, k, k], axis=1), margin=-1.0)
            sampled, slope_k = self.column_sampler.sample_columns(self.columns, k, with_gradient=need_jacobian)
            gradient = None if slope_k is None else slope_k[:, None] * self.k_per_mm[None, :]
        else:
            index = (points + displacement) @ self.to_index[:3, :3].T + self.to_index[:3, 3]
            inside = self.sampler.inside(index, margin=-1.0)
            want = need_jacobian or need_position
            sampled, gradient_index = self.sampler.sample(index, with_gradient=want)
            gradient = None if gradient_index is None else gradient_index @ self.to_index[:3, :3]
        if not self.sees:
            jacobian = np.zeros((count, model.size)) if need_jacobian else None
            return sampled, jacobian, gradient, inside
        rank = self.vectors.shape[1]
        spread = np.einsum("at,ptr->par", table, slopes_h)  # (P, A, r): D V on the fitted axes
        if rank == 1:
            determinant = 1.0 + spread[:, :, 0] @ self.vectors[axes, 0]
            corrected = determinant * sampled
            position = None if gradient is None else determinant[:, None] * gradient
            if not need_jacobian:
                return corrected, None, position, inside
            assert gradient is not None
            along = gradient @ weights  # (P, A)
            first = (sampled[:, None, None] * slopes_h[:, None, :, 0]) * self.vectors[axes, 0][None, :, None]
            second = (determinant[:, None] * along)[:, :, None] * values_h[:, None, :]
            return corrected, (first + second).reshape(count, -1), position, inside
        full = np.zeros((count, 3, rank))
        full[:, axes, :] = spread
        matrix = np.eye(rank)[None] + np.einsum("ai,par->pir", self.vectors, full)
        determinant = np.linalg.det(matrix)
        corrected = determinant * sampled
        position = None if gradient is None else determinant[:, None] * gradient
        if not need_jacobian:
            return corrected, None, position, inside
        assert gradient is not None
        quotient = np.einsum("pji,ai->pja", np.linalg.inv(matrix), self.vectors[axes])  # (P, r, A)
        along = gradient @ weights
        first = (determinant * sampled)[:, None, None] * np.einsum("ptj,pja->pat", slopes_h, quotient)
        second = (determinant[:, None] * along)[:, :, None] * values_h[:, None, :]
        return corrected, (first + second).reshape(count, -1), position, inside


def _object_mask(reference: SeriesImage, fraction: float) -> NDArray[np.bool_]:
    """Voxels of the object (smoothed reference above ``fraction`` of its 99th percentile), dilated by 4 mm."""
    from scipy import ndimage

    spacing = reference.geometry.spacing
    smooth = ndimage.gaussian_filter(np.asarray(reference.values, dtype=np.float32), 2.0 / spacing, truncate=3.0)
    level = float(np.percentile(smooth, 99.0))
    mask = smooth > fraction * level
    reach = np.maximum(np.round(4.0 / spacing).astype(int), 1)
    # A box dilation, as separable 1-D maxima (a 3-D structuring element costs seconds on a large series).
    return np.asarray(ndimage.maximum_filter(mask, size=tuple(int(2 * r + 1) for r in reach), mode="constant"))


def _anchor_points(anchor: _LevelImage, reference: SeriesImage, mask: NDArray[np.bool_], motion_to_reference:
                   RigidMotion, max_points: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Voxel centres of the anchor's level grid that fall in the reference's object mask (random subset)."""
    from scipy import ndimage

    # reference index <- anchor index: nearest-neighbour lookup of the mask, in C, without a point array per voxel
    moved = np.eye(4)
    moved[:3, :3] = motion_to_reference.rotation
    moved[:3, 3] = motion_to_reference.centre_lps + motion_to_reference.translation_mm \
        - motion_to_reference.rotation @ motion_to_reference.centre_lps
    matrix = reference.geometry.ijk_from_lps @ moved @ anchor.geometry.lps_from_ijk
    inside = ndimage.affine_transform(mask.astype(np.uint8), matrix[:3, :3], offset=matrix[:3, 3],
                                      output_shape=anchor.geometry.shape, order=0, mode="constant", cval=0)
    flat = np.flatnonzero(inside)
    if flat.size > max_points:
        flat = _edge_weighted_subset(anchor.values, flat, max_points, rng)
    index = np.stack(np.unravel_index(flat, anchor.geometry.shape), axis=1)
    return anchor.geometry.index_to_lps(index.astype(np.float64))


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
    # Weighted draw without replacement by the Gumbel top-k trick: linear time over millions of voxels.
    keys = np.log(strength) - np.log(-np.log(rng.random(flat.size)))
    chosen = np.argpartition(-keys, edges)[:edges]
    rest = np.setdiff1d(np.arange(flat.size), chosen, assume_unique=True)
    uniform = rng.choice(rest, count - edges, replace=False)
    return np.sort(flat[np.concatenate([chosen, uniform])])


def _mask_centre(geometry: VolumeGeometry, mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Centre of the mask's voxels, mm LPS (the grid centre for an empty mask)."""
    total = float(mask.sum())
    if total == 0:
        return geometry.index_to_lps((np.asarray(geometry.shape, dtype=np.float64) - 1.0) / 2.0)
    index = [float((np.arange(size) * mask.sum(axis=tuple(a for a in range(3) if a != axis))).sum()) / total
             for axis, size in enumerate(mask.shape)]
    return geometry.index_to_lps(np.asarray(index))


def fit_pair(reference: SeriesImage, moving: SeriesImage, *, options: FitOptions = FitOptions(),
             progress: Callable[[str, float], None] | None = None) -> PairFit:
    """Fit the scanner field (and motion) that makes ``moving`` agree with ``reference`` once both are corrected.

    See :func:`_fit_pair` (this wrapper keeps BLAS to one thread: its matrices are small, and a second BLAS
    thread spinning against the other core's work costs more than it gives).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_pair(reference, moving, options=options, progress=progress)


def _fit_pair(reference: SeriesImage, moving: SeriesImage, *, options: FitOptions = FitOptions(),
              progress: Callable[[str, float], None] | None = None) -> PairFit:
    """Fit the scanner field (and motion) that makes ``moving`` agree with ``reference`` once both are corrected.

    Parameters
    ----------
    reference, moving : SeriesImage
        The two series (same frame of reference).
    options : FitOptions
        Order, similarity, prior, levels.
    progress : callable, optional
        Called with a short description and the fraction done.

    Returns
    -------
    PairFit
        Coefficients, motion (reference -> moving), covariance and diagnostics.

    Raises
    ------
    EstimationError
        When neither series carries a residual, or the series do not overlap inside the object.
    """
    started = time.perf_counter()
    axes = tuple(sorted(set(reference.view.axes_seen()) | set(moving.view.axes_seen())))
    if not axes:
        raise EstimationError("neither series carries a residual distortion (both were corrected in 3-D): there is "
                              "nothing to estimate")
    # The anchor's voxels are the sample points; the motion moves the other series' anatomy.
    anchor_is_moving = bool(moving.view.axes_seen())
    anchor, other = (moving, reference) if anchor_is_moving else (reference, moving)
    rng = np.random.default_rng(options.seed)
    mask = _object_mask(reference, options.mask_fraction)
    centre = _mask_centre(reference.geometry, mask)
    motion = RigidMotion(centre_lps=np.asarray(centre))  # anchor anatomy -> other anatomy
    anchor_psf, other_psf = _cross_psf_sigma(anchor, other), _cross_psf_sigma(other, anchor)
    anchor_levels = _pyramid(anchor, options.levels, anchor_psf)
    other_levels = _pyramid(other, options.levels, other_psf)
    finest = int(np.argmin([level.smoothing_mm for level in options.levels]))
    raw_anchor = _level_image(anchor, Level(0.0, 0.0, 0), anchor_psf)
    raw_other = _level_image(other, Level(0.0, 0.0, 0), other_psf)
    theta_by_term: dict[tuple[int, object], float] = {}
    iterations: list[int] = []
    outcome: _LevelOutcome | None = None
    for number, level in enumerate(options.levels):
        order = min(options.order, level.max_order)
        basis = HarmonicBasis.up_to(order, r0_mm=options.r0_mm, lowest=options.lowest_order)
        model = FieldModel(basis, axes)
        theta = np.array([theta_by_term.get((a, t), 0.0) for a in axes for t in basis.terms])
        if progress is not None:
            progress(f"level {number + 1}/{len(options.levels)}: images smoothed {level.smoothing_mm:g} mm, "
                     f"harmonics up to order {order}", number / len(options.levels))
        to_reference = motion if anchor_is_moving else RigidMotion(centre_lps=motion.centre_lps)
        points = _anchor_points(anchor_levels[number], reference, mask, to_reference, options.max_points, rng)
        if points.shape[0] < _MIN_POINTS:
            raise EstimationError(f"the two series overlap in {points.shape[0]} voxels of the object at most "
                                  f"({_MIN_POINTS} needed): they must image the same anatomy in one frame of reference")
        anchor_level, other_level = anchor_levels[number], other_levels[number]
        nodes = 2
        if options.similarity is Similarity.CORRELATION_RATIO and number == finest:
            # Sharp images: the other series predicted from the corrected anchor value by a map fitted at every
            # step. A map must act on det(I + grad u) I(x + u), as the anatomy's own contrast does, not on the
            # uncorrected image (they differ where the field squeezes the signal).
            nodes = options.similarity.nodes
        elif options.similarity is Similarity.CORRELATION_RATIO:
            # Another contrast: map one series into the other's contrast voxel by voxel at full resolution (a
            # map fitted to smoothed images would mix tissues), in the direction the data say is a function of
            # the other, then compare as one contrast.
            fine_points = _anchor_points(anchor_levels[finest], reference, mask, to_reference, _MAP_POINTS, rng)
            to_anchor, to_other = _contrast_maps(
                _Side(raw_anchor, model, fine_points, anchor=True, moves=False),
                _Side(raw_other, model, fine_points, anchor=False, moves=True), fine_points, theta, motion)
            if to_other is not None:
                anchor_level = _level_image(_remapped(anchor, to_other, smoothing_mm=_REMAP_SMOOTHING_MM), level,
                                            anchor_psf)
            elif to_anchor is not None:
                other_level = _level_image(_remapped(other, to_anchor, smoothing_mm=_REMAP_SMOOTHING_MM), level,
                                           other_psf)
        # The motion is fitted while the images are smooth: below about a voxel, noise interpolated at moving
        # points changes with the sub-voxel shift, and the motion would drift towards the smoothest sampling.
        moving_now = (options.motion and number != finest
                      and level.smoothing_mm >= MOTION_SMOOTHING_VOXELS * float(other.geometry.spacing.max()))
        outcome = _fit_level(_Side(anchor_level, model, points, anchor=True, moves=False),
                             _Side(other_level, model, points if moving_now else motion.apply(points), anchor=False,
                                   moves=moving_now),
                             points, theta, motion, level, options, nodes=nodes)
        theta, motion = outcome.theta, outcome.motion
        iterations.append(outcome.iterations)
        theta_by_term = {(a, t): float(v) for (a, t), v in
                         zip(((a, t) for a in axes for t in basis.terms), theta, strict=True)}
    if progress is not None:
        progress("done", 1.0)
    assert outcome is not None
    reported = motion.inverse() if anchor_is_moving else motion
    precision = 1.0 / model.prior_sd(symmetric=options.prior_sd, asymmetric=options.asymmetric_prior_sd) ** 2
    return PairFit(model, theta, reported, outcome.covariance, outcome.normal, precision,
                   outcome.residual_sd, outcome.cost_start, outcome.cost_end, tuple(iterations), outcome.points,
                   outcome.converged, time.perf_counter() - started)


def _fit_level(anchor: _Side, other: _Side, points: NDArray[np.float64], theta: NDArray[np.float64],
               motion: RigidMotion, level: Level, options: FitOptions, *, nodes: int = 2) -> _LevelOutcome:
    """Gauss-Newton with a line search at one level; returns theta, motion, iterations and diagnostics."""
    model = anchor.model
    count = model.size
    fit_motion = other.moves
    mapping: IntensityMap | None = None
    keep: NDArray[np.bool_] | None = None

    def evaluate(theta_now: NDArray[np.float64], motion_now: RigidMotion, *, need_jacobian: bool
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None, NDArray[np.bool_]]:
        nonlocal mapping
        anchor_values, anchor_jac, _, anchor_inside = anchor.corrected(theta_now, points, need_jacobian=need_jacobian)
        moved = motion_now.apply(points) if fit_motion else other.points
        other_values, other_jac, position, other_inside = other.corrected(
            theta_now, moved, need_jacobian=need_jacobian, need_position=need_jacobian and fit_motion)
        inside = anchor_inside & other_inside
        use = inside if keep is None else keep
        every = bool(use.all())
        # The other series is predicted from the warped anchor: its values move only with the motion, so the
        # fit cannot lower the residual by flattening the image it warps (as predicting the anchor would allow).
        if mapping is None:
            mapping = IntensityMap.spanning(anchor_values[use], nodes=nodes)
        fit = mapping.fit(anchor_values[use], other_values[use])
        if not need_jacobian:
            return fit.residual, None, inside
        assert anchor_jac is not None and other_jac is not None
        slopes = fit.slopes[:, None]
        jacobian = -slopes * (anchor_jac if every else anchor_jac[use])
        if other.sees:
            jacobian = jacobian + (other_jac if every else other_jac[use])
        if fit_motion:
            assert position is not None
            arm = (moved if every else moved[use]) - motion_now.centre_lps - motion_now.translation_mm
            grad = position if every else position[use]
            # d/d(rotation vector) of I(exp(w) R (x - c) + c + t) at w = 0: (e_i x arm) . grad = e_i . (arm x grad)
            jacobian = np.concatenate([jacobian, np.cross(arm, grad), grad], axis=1)
        return fit.residual, fit.project(jacobian), inside

    _, _, inside = evaluate(theta, motion, need_jacobian=False)
    keep = inside
    needed = 10 * (count + (6 if fit_motion else 0))
    if int(keep.sum()) < needed:
        raise EstimationError(f"the two series overlap in only {int(keep.sum())} sample points inside the object "
                              f"({needed} needed at the least): they must image the same anatomy")
    mapping = None
    residual, _, _ = evaluate(theta, motion, need_jacobian=False)
    cost_start = float(np.mean(residual**2))
    if _DEBUG and _TRUTH is not None:
        truth = np.array([_TRUTH.get((a, t.label), 0.0) for a in model.axes for t in model.basis.terms])
        true_residual, _, _ = evaluate(truth, motion, need_jacobian=False)
        print(f"  level start cost {cost_start:.6g}; at the true field {float(np.mean(true_residual**2)):.6g}")
    prior = np.zeros(count + (6 if fit_motion else 0))
    prior[:count] = 1.0 / model.prior_sd(symmetric=options.prior_sd, asymmetric=options.asymmetric_prior_sd) ** 2
    converged = False
    done = 0
    for done in range(1, level.max_iterations + 1):
        residual, jacobian, _ = evaluate(theta, motion, need_jacobian=True)
        assert jacobian is not None
        variance = float(np.mean(residual**2))
        parameters = np.concatenate([theta, np.zeros(6)]) if fit_motion else theta
        penalty = variance * prior
        step = -np.asarray(np.linalg.solve(jacobian.T @ jacobian + np.diag(penalty),
                                           jacobian.T @ residual + penalty * parameters), dtype=np.float64)
        cost_now = float(residual @ residual) + float(np.sum(penalty * parameters**2))
        scale = 1.0
        for _ in range(_LINE_SEARCH_STEPS):
            trial_theta = theta + scale * step[:count]
            trial_motion = motion.updated(scale * step[count:]) if fit_motion else motion
            trial_residual, _, _ = evaluate(trial_theta, trial_motion, need_jacobian=False)
            trial_parameters = np.concatenate([trial_theta, np.zeros(6)]) if fit_motion else trial_theta
            trial_cost = float(trial_residual @ trial_residual) + float(np.sum(penalty * trial_parameters**2))
            if trial_cost <= cost_now:
                break
            scale /= 2.0
        else:
            converged = True  # no step lowers the cost: at the minimum within rounding
            break
        change = max(_largest_field_change(model, side.view, points, scale * step[:count]) for side in (anchor, other))
        theta, motion = trial_theta, trial_motion
        if _DEBUG:
            print(f"    it {done} cost {cost_now:.6g} -> {trial_cost:.6g} scale {scale:g} change {change:.4f} mm "
                  f"motion {np.abs(scale * step[count:]).max() if fit_motion else 0:.2e}")
        motion_still = not fit_motion or float(np.abs(scale * step[count:]).max()) < MOTION_TOLERANCE
        if change < STEP_TOLERANCE_MM and motion_still:
            converged = True
            break
    residual, jacobian, _ = evaluate(theta, motion, need_jacobian=True)
    assert jacobian is not None
    variance = float(np.mean(residual**2))
    if _DEBUG:
        print(f"  level end cost {variance:.6g}")
    full_normal = jacobian.T @ jacobian / variance
    covariance = np.asarray(np.linalg.inv(full_normal + np.diag(prior))[:count, :count], dtype=np.float64)
    # What the data say about the coefficients once the motion is free (the Schur complement): what pooling
    # sessions, each with its own motion, may add up.
    normal = full_normal[:count, :count]
    if fit_motion:
        coupling = full_normal[:count, count:]
        normal = normal - coupling @ np.linalg.solve(full_normal[count:, count:], coupling.T)
    return _LevelOutcome(theta, motion, done, covariance, np.asarray(normal, dtype=np.float64), math.sqrt(variance),
                         cost_start, variance, int(keep.sum()), converged)


def _largest_field_change(model: FieldModel, view: SeriesView, points: NDArray[np.float64],
                          step: NDArray[np.float64]) -> float:
    """Largest displacement change a coefficient step makes at (a subset of) the sample points, mm."""
    subset = points[:: max(1, points.shape[0] // 4000)]
    change = model.residual(view, step, subset)
    return float(np.abs(change).max()) if change.size else 0.0
