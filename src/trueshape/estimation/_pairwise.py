"""Fit one scanner field (and a rigid motion) to a reference and a moving series of one session.

For patient points ``x`` in the object, the corrected reference and moving images must agree::

    R~(x) = R(x + u_R(x)) det(I + grad u_R)        M~(x) = M(y + u_M(y)) det(I + grad u_M),  y = T(x)

with ``u_s`` the residual each series sees of one field (:mod:`trueshape.estimation._field_model`) and ``T``
the patient's rigid motion between the two series. The fit minimises ``|R~ - g(M~)|^2`` over the
coefficients and the motion, with ``g`` the intensity map projected out (:mod:`._intensity`, and
:mod:`._contrast` for another contrast), a Gaussian prior on the coefficients (Tikhonov towards zero,
weighed against the measured residual noise), by Gauss-Newton with exact derivatives of the B-spline images
and of the linear harmonic basis, level by level from smooth images and low orders to sharp images and the
full order (DESIGN.md section 5; :mod:`._levels`).

Examples
--------
>>> # see tests/estimation/test_pairwise.py: a DIS2D coronal series recovered against a DIS3D axial one
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from trueshape.errors import EstimationError
from trueshape.estimation._contrast import MAP_POINTS, contrast_maps, remapped
from trueshape.estimation._field_model import FieldModel, SeriesView
from trueshape.estimation._freeform import FreeFormBasis
from trueshape.estimation._intensity import IntensityMap, Similarity
from trueshape.estimation._levels import (
    DEFAULT_LEVELS,
    Level,
    SeriesImage,
    anchor_points,
    cross_psf_sigma,
    level_image,
    mask_centre,
    object_mask,
    pyramid,
)
from trueshape.estimation._motion import RigidMotion
from trueshape.estimation._sides import Side
from trueshape.gnl._basis import HarmonicBasis

logger = logging.getLogger(__name__)

__all__ = ["MOTION_SMOOTHING_VOXELS", "FitOptions", "PairFit", "fit_pair"]


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
    free_form_spacing_mm : float or None
        Fit a free-form cubic B-spline field with control points this far apart instead of the harmonics
        (the fallback: it describes this position only).
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
    free_form_spacing_mm: float | None = None
    mask_fraction: float = 0.1
    seed: int = 0


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
    agreement_before, agreement_after : float
        Share of the other series' intensity variance the anchor explains (correlation ratio) at the
        sharpest level, before any correction and motion, and after the fit.
    sample_points_lps : ndarray, shape (P, 3)
        Points inside the object and both fields of view (a subset of the sharpest level's), mm LPS.
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
    agreement_before: float = float("nan")
    agreement_after: float = float("nan")
    sample_points_lps: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))


#: The motion is fitted at levels whose smoothing is at least this many of the other series' largest voxel size.
MOTION_SMOOTHING_VOXELS = 0.75
#: A Gauss-Newton level stops when no sample point's field moves by more than this, mm.
STEP_TOLERANCE_MM = 2e-3
#: ... and the motion by less than this (rad or mm).
MOTION_TOLERANCE = 1e-4
#: Fewer sample points than this in the object and both fields of view: the series do not overlap.
_MIN_POINTS = 200
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
    mask = object_mask(reference, options.mask_fraction)
    centre = mask_centre(reference.geometry, mask)
    motion = RigidMotion(centre_lps=np.asarray(centre))  # anchor anatomy -> other anatomy
    anchor_psf, other_psf = cross_psf_sigma(anchor, other), cross_psf_sigma(other, anchor)
    # One more image per series with the other's voxel box only (no smoothing): what a contrast map is fitted on.
    sharp = (*options.levels, Level(0.0, 0, 0))
    *anchor_levels, raw_anchor = pyramid(anchor, sharp, anchor_psf)
    *other_levels, raw_other = pyramid(other, sharp, other_psf)
    finest = int(np.argmin([level.smoothing_mm for level in options.levels]))
    remap = options.similarity is Similarity.CORRELATION_RATIO  # until the data show one contrast up to scale
    theta_by_term: dict[tuple[int, object], float] = {}
    iterations: list[int] = []
    outcome: _LevelOutcome | None = None
    free_form = _free_form_basis(options, reference, moving, mask)
    for number, level in enumerate(options.levels):
        order = min(options.order, level.max_order)
        basis = free_form or HarmonicBasis.up_to(order, r0_mm=options.r0_mm, lowest=options.lowest_order)
        model = FieldModel(basis, axes)
        theta = np.array([theta_by_term.get((a, t), 0.0) for a in axes for t in basis.terms])
        if progress is not None:
            progress(f"level {number + 1}/{len(options.levels)}: images smoothed {level.smoothing_mm:g} mm, "
                     f"harmonics up to order {order}", number / len(options.levels))
        to_reference = motion if anchor_is_moving else RigidMotion(centre_lps=motion.centre_lps)
        points = anchor_points(anchor_levels[number], reference, mask, to_reference,
                               min(options.max_points, level.max_points), rng)
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
        elif remap:
            # Another contrast: map one series into the other's contrast voxel by voxel at full resolution (a
            # map fitted to smoothed images would mix tissues), in the direction the data say is a function of
            # the other, then compare as one contrast. One contrast up to scale is decided once.
            fine_points = anchor_points(anchor_levels[finest], reference, mask, to_reference, MAP_POINTS, rng)
            to_anchor, to_other = contrast_maps(
                Side(raw_anchor, model, fine_points, anchor=True, moves=False),
                Side(raw_other, model, fine_points, anchor=False, moves=True), fine_points, theta, motion)
            if to_other is not None:
                anchor_level = level_image(remapped(anchor, to_other), level, anchor_psf)
            elif to_anchor is not None:
                other_level = level_image(remapped(other, to_anchor), level, other_psf)
            else:
                remap = False
        # The motion is fitted while the images are smooth: below about a voxel, noise interpolated at moving
        # points changes with the sub-voxel shift, and the motion would drift towards the smoothest sampling.
        moving_now = (options.motion and number != finest
                      and level.smoothing_mm >= MOTION_SMOOTHING_VOXELS * float(other.geometry.spacing.max()))
        outcome = _fit_level(Side(anchor_level, model, points, anchor=True, moves=False),
                             Side(other_level, model, points if moving_now else motion.apply(points), anchor=False,
                                   moves=moving_now),
                             points, theta, motion, level, options, nodes=nodes)
        theta, motion = outcome.theta, outcome.motion
        iterations.append(outcome.iterations)
        theta_by_term = {(a, t): float(v) for (a, t), v in
                         zip(((a, t) for a in axes for t in basis.terms), theta, strict=True)}
    assert outcome is not None
    samples = points[:: max(1, points.shape[0] // SAMPLE_POINTS)]
    before, after = (
        _agreement(Side(anchor_levels[finest], model, samples, anchor=True, moves=False),
                   Side(other_levels[finest], model, samples, anchor=False, moves=True), samples, values, moved)
        for values, moved in ((np.zeros(model.size), RigidMotion(centre_lps=motion.centre_lps)), (theta, motion)))
    if progress is not None:
        progress("done", 1.0)
    reported = motion.inverse() if anchor_is_moving else motion
    precision = 1.0 / model.prior_sd(symmetric=options.prior_sd, asymmetric=options.asymmetric_prior_sd) ** 2
    return PairFit(model, theta, reported, outcome.covariance, outcome.normal, precision,
                   outcome.residual_sd, outcome.cost_start, outcome.cost_end, tuple(iterations), outcome.points,
                   outcome.converged, time.perf_counter() - started, before, after, samples)


def _free_form_basis(options: FitOptions, reference: SeriesImage, moving: SeriesImage, mask: NDArray[np.bool_]
                     ) -> FreeFormBasis | None:
    """Return the free-form grid over the object, in the coefficient frame of every series that sees the field."""
    if options.free_form_spacing_mm is None:
        return None
    index = np.argwhere(mask)[:: max(1, int(mask.sum()) // 20_000)].astype(np.float64)
    points = reference.geometry.index_to_lps(index)
    frames = [s.view.coefficient_points(points) for s in (reference, moving) if s.view.axes_seen()]
    return FreeFormBasis.covering(np.concatenate(frames), spacing_mm=options.free_form_spacing_mm)


#: Points kept with a fit (agreement, and the object region a model was measured in).
SAMPLE_POINTS = 4000


def _agreement(anchor: Side, other: Side, points: NDArray[np.float64], theta: NDArray[np.float64],
               motion: RigidMotion) -> float:
    """Share of the other series' variance that the corrected anchor explains (any smooth intensity map)."""
    anchor_values, _, _, anchor_inside = anchor.corrected(theta, points, need_jacobian=False)
    other_values, _, _, other_inside = other.corrected(theta, motion.apply(points), need_jacobian=False)
    use = anchor_inside & other_inside
    if int(use.sum()) < 10:
        return float("nan")
    fit = IntensityMap.spanning(anchor_values[use], nodes=Similarity.CORRELATION_RATIO.nodes).fit(
        anchor_values[use], other_values[use])
    return 1.0 - float(np.var(fit.residual)) / max(float(np.var(other_values[use])), 1e-30)


def _fit_level(anchor: Side, other: Side, points: NDArray[np.float64], theta: NDArray[np.float64],
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
        logger.debug("iteration %d: cost %.6g -> %.6g, step %g, field change %.4f mm", done, cost_now, trial_cost,
                     scale, change)
        motion_still = not fit_motion or float(np.abs(scale * step[count:]).max()) < MOTION_TOLERANCE
        if change < STEP_TOLERANCE_MM and motion_still:
            converged = True
            break
    residual, jacobian, _ = evaluate(theta, motion, need_jacobian=True)
    assert jacobian is not None
    variance = float(np.mean(residual**2))
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
