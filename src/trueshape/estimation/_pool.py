"""One scanner model from several sessions, with leave-one-session-out cross-validation.

Each session's fit is a Gaussian in the coefficients: its data normal matrix ``N_s`` (motion marginalised)
and its estimate ``theta_s``, fitted with a prior of precision ``P_s``. The data's own information is
``b_s = (N_s + P_s) theta_s`` (the prior taken back out), so the sessions pool exactly as one linearised
joint fit would: ``theta = (sum N_s + P)^-1 sum b_s`` - without reading their images again. Sessions see the
field through different series (a coronal DIS2D series the y coil, an axial one z, an ND series all three),
at other table and patient positions; each adds what it determines.

Cross-validation: for each session, the model from the others predicts the field its series carry at its
object points; the RMS difference from its own estimate (mm) says how well the model carries over.

Examples
--------
>>> from trueshape.dicom import DistortionState
>>> view = SeriesView.build(DistortionState.IN_PLANE_2D, slice_normal_lps=(0.0, 1.0, 0.0))
>>> points = np.array([[0.0, 0.0, 150.0], [50.0, 20.0, 100.0]])
>>> one = SessionEstimate("a", ("y B(3,1)",), np.array([-0.05]), np.array([[1e6]]), np.array([100.0]), 250.0,
...                       ((view, points),))
>>> two = SessionEstimate("b", ("y B(3,1)",), np.array([-0.06]), np.array([[1e6]]), np.array([100.0]), 250.0,
...                       ((view, points),))
>>> round(float(pool_sessions([one, two], prior_sd=0.1).theta[0]), 4)
-0.055
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trueshape.errors import EstimationError
from trueshape.estimation._field_model import FieldModel, SeriesView
from trueshape.estimation._identify import Identifiability
from trueshape.gnl import AXIS_NAMES
from trueshape.gnl._basis import HarmonicBasis

__all__ = [
    "COVERAGE_MARGIN_MM",
    "DISAGREEMENT_MM",
    "CrossValidation",
    "PooledModel",
    "SessionEstimate",
    "coverage_box",
    "model_from_names",
    "pool_sessions",
]

#: Sessions whose fields differ from the others' prediction by more than this RMS (mm), and by more than
#: three times what their uncertainty allows, are reported as disagreeing (another scanner or coil?).
DISAGREEMENT_MM = 0.25

_NAME = re.compile(r"^([xyz]) ([AB])\((\d+),(\d+)\)$")


def model_from_names(names: Sequence[str], *, r0_mm: float) -> tuple[FieldModel, list[int]]:
    """Return a field model covering parameters named like ``"y B(3,1)"``, and each name's column in it.

    Every fitted axis gets the union of the terms (a term one axis lacks is a column the data never set).
    """
    parsed = []
    for name in names:
        match = _NAME.match(name)
        if match is None:
            raise EstimationError(f"{name!r} is not a coefficient name like 'y B(3,1)'")
        axis, kind, n, m = match.groups()
        parsed.append((AXIS_NAMES.index(axis), kind, int(n), int(m)))
    terms = sorted({(n, m, kind) for _, kind, n, m in parsed})
    basis = HarmonicBasis.of([(kind, n, m) for n, m, kind in terms], r0_mm=r0_mm)
    axes = tuple(sorted({axis for axis, _, _, _ in parsed}))
    model = FieldModel(basis, axes)
    columns = [axes.index(axis) * len(basis.terms) + basis.index(kind, n, m) for axis, kind, n, m in parsed]
    return model, columns


@dataclass(frozen=True, eq=False)
class SessionEstimate:
    """One session's fit as pooling needs it.

    Parameters
    ----------
    label : str
        Name of the session (its folder).
    names : tuple of str
        Parameter names (``"y B(3,1)"``), in the order of ``theta`` and ``normal``.
    theta : ndarray, shape (N,)
        The session's estimate (with its prior).
    normal : ndarray, shape (N, N)
        Its data normal matrix (motion marginalised).
    prior_precision : ndarray, shape (N,)
        The prior precision of each coefficient it was fitted with.
    r0_mm : float
        Reference radius of the coefficients.
    series : tuple of (SeriesView, ndarray (P, 3))
        Each series that carries a residual, with sample points in its object (mm, LPS).
    """

    label: str
    names: tuple[str, ...]
    theta: NDArray[np.float64]
    normal: NDArray[np.float64]
    prior_precision: NDArray[np.float64]
    r0_mm: float
    series: tuple[tuple[SeriesView, NDArray[np.float64]], ...]


@dataclass(frozen=True)
class CrossValidation:
    """How well the other sessions' model predicts one session's fields."""

    session: str
    rms_difference_mm: float  #: RMS over its object points of (model from the others - its own estimate)
    max_difference_mm: float
    rms_field_mm: float  #: RMS of its own estimated residual there (what there was to predict)
    overlap_fraction: float  #: share of its points inside the region the other sessions covered
    overlap_rms_difference_mm: float  #: the RMS difference there (where the others measured, not extrapolated)
    expected_mm: float  #: RMS difference the formal uncertainties of both allow there
    disagrees: bool  #: where both measured, they differ beyond DISAGREEMENT_MM up to a rigid motion
    #: The RMS difference there once the best small rigid motion of the series is taken out: one pair cannot
    #: tell the field's near-rigid part along its slice normal from the patient's motion; pooling can.
    rigid_adjusted_rms_mm: float = 0.0

    def to_json(self) -> dict[str, object]:
        """Plain values for the model file."""
        return {"session": self.session, "rms_difference_mm": self.rms_difference_mm,
                "max_difference_mm": self.max_difference_mm, "rms_field_mm": self.rms_field_mm,
                "overlap_fraction": self.overlap_fraction,
                "overlap_rms_difference_mm": self.overlap_rms_difference_mm, "expected_mm": self.expected_mm,
                "rigid_adjusted_rms_mm": self.rigid_adjusted_rms_mm, "disagrees": self.disagrees}


@dataclass(frozen=True, eq=False)
class PooledModel:
    """The pooled coefficients, their analysis and the cross-validation."""

    model: FieldModel
    theta: NDArray[np.float64]
    normal: NDArray[np.float64]
    identifiability: Identifiability
    cross_validation: tuple[CrossValidation, ...]
    #: Magnet-frame boxes (low, high corners, mm) each session's object covered: where the model was measured.
    coverage: tuple[tuple[NDArray[np.float64], NDArray[np.float64]], ...] = ()

    @property
    def names(self) -> list[str]:
        """Parameter names in order."""
        return self.model.labels()


def _embed(session: SessionEstimate, columns: list[int], size: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the session's normal matrix and information vector in the pooled parameter layout."""
    normal = np.zeros((size, size))
    index = np.asarray(columns)
    normal[np.ix_(index, index)] = session.normal
    information = (session.normal + np.diag(np.broadcast_to(session.prior_precision, (len(columns),)))) @ session.theta
    vector = np.zeros(size)
    vector[index] = information
    return normal, vector


def _solve(normals: list[NDArray[np.float64]], vectors: list[NDArray[np.float64]], precision: NDArray[np.float64]
           ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    total = np.sum(normals, axis=0)
    system = total + np.diag(precision)
    return np.linalg.solve(system, np.sum(vectors, axis=0)), total, np.linalg.inv(system)


def pool_sessions(sessions: Sequence[SessionEstimate], *, prior_sd: float = 0.1,
                  asymmetric_prior_sd: float = 0.02) -> PooledModel:
    """Pool session estimates into one model, and cross-validate it session by session.

    Raises
    ------
    EstimationError
        No sessions, or sessions with different reference radii.
    """
    if not sessions:
        raise EstimationError("no session estimates to pool")
    radii = {round(s.r0_mm, 6) for s in sessions}
    if len(radii) > 1:
        raise EstimationError(f"the sessions were fitted with different reference radii {sorted(radii)} mm")
    names = sorted({name for s in sessions for name in s.names}, key=_name_order)
    model, _ = model_from_names(names, r0_mm=sessions[0].r0_mm)
    order = {name: i for i, name in enumerate(model.labels())}
    size = model.size
    precision = 1.0 / model.prior_sd(symmetric=prior_sd, asymmetric=asymmetric_prior_sd) ** 2
    embedded = [_embed(s, [order[name] for name in s.names], size) for s in sessions]
    theta, total, _ = _solve([n for n, _ in embedded], [v for _, v in embedded], precision)
    identifiability = Identifiability.from_normal(model.labels(), theta, total, prior_precision=precision)
    checks = []
    boxes = [coverage_box(s) for s in sessions]
    if len(sessions) > 1:
        for index, session in enumerate(sessions):
            rest = [e for j, e in enumerate(embedded) if j != index]
            others, _, others_covariance = _solve([n for n, _ in rest], [v for _, v in rest], precision)
            own_theta = np.zeros(size)
            own_theta[[order[name] for name in session.names]] = session.theta
            own_normal, _ = embedded[index]
            own_covariance = np.linalg.inv(own_normal + np.diag(precision))
            covered = [box for j, box in enumerate(boxes) if j != index and box is not None]
            checks.append(_cross_validate(model, session, own_theta, others, own_covariance + others_covariance,
                                          covered))
    return PooledModel(model, theta, total, identifiability, tuple(checks),
                       tuple(box for box in boxes if box is not None))


def _name_order(name: str) -> tuple[int, int, int, str]:
    match = _NAME.match(name)
    if match is None:
        raise EstimationError(f"{name!r} is not a coefficient name like 'y B(3,1)'")
    axis, kind, n, m = match.groups()
    return AXIS_NAMES.index(axis), int(n), int(m), kind


#: Margin around a session's covered box within which another session's point counts as covered, mm.
COVERAGE_MARGIN_MM = 10.0


def coverage_box(session: SessionEstimate) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """Return the magnet-frame box (low, high corners, mm) of a session's object points (None: no points)."""
    magnet = [view.magnet_frame.magnet_from_lps(points) for view, points in session.series if points.size]
    if not magnet:
        return None
    stacked = np.concatenate(magnet)
    return np.asarray(stacked.min(axis=0)), np.asarray(stacked.max(axis=0))


def _covered(view: SeriesView, points: NDArray[np.float64],
             boxes: list[tuple[NDArray[np.float64], NDArray[np.float64]]]) -> NDArray[np.bool_]:
    magnet = view.magnet_frame.magnet_from_lps(points)
    inside = np.zeros(points.shape[0], dtype=bool)
    for low, high in boxes:
        inside |= np.all((magnet >= low - COVERAGE_MARGIN_MM) & (magnet <= high + COVERAGE_MARGIN_MM), axis=1)
    return inside


def _cross_validate(model: FieldModel, session: SessionEstimate, own: NDArray[np.float64],
                    others: NDArray[np.float64], covariance: NDArray[np.float64],
                    covered_by_others: list[tuple[NDArray[np.float64], NDArray[np.float64]]]) -> CrossValidation:
    differences, adjusted, fields, variances, covered = [], [], [], [], []
    for view, points in session.series:
        if points.size == 0:
            continue
        inside = _covered(view, points, covered_by_others)
        difference = model.residual(view, others, points) - model.residual(view, own, points)
        estimated = model.residual(view, own, points)
        differences.append(np.linalg.norm(difference, axis=1))
        adjusted.append(np.linalg.norm(_without_rigid_part(difference, points, view, inside), axis=1))
        fields.append(np.linalg.norm(estimated, axis=1))
        variances.append(model.residual_variance(view, covariance, points))
        covered.append(inside)
    if not differences:
        return CrossValidation(session.label, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False)
    difference = np.concatenate(differences)
    inside = np.concatenate(covered)
    rigid_free = np.concatenate(adjusted)
    rms = float(np.sqrt(np.mean(difference**2)))
    overlap = float(np.sqrt(np.mean(difference[inside] ** 2))) if inside.any() else 0.0
    free = float(np.sqrt(np.mean(rigid_free[inside] ** 2))) if inside.any() else 0.0
    expected = float(np.sqrt(np.mean(np.concatenate(variances)[inside]))) if inside.any() else 0.0
    return CrossValidation(session.label, rms, float(difference.max()),
                           float(np.sqrt(np.mean(np.concatenate(fields) ** 2))), float(inside.mean()), overlap,
                           expected, bool(inside.any()) and free > DISAGREEMENT_MM and free > 3.0 * expected, free)


def _without_rigid_part(difference: NDArray[np.float64], points: NDArray[np.float64], view: SeriesView,
                        where: NDArray[np.bool_]) -> NDArray[np.float64]:
    """``difference`` (P, 3) minus the best fit (over ``where``) of what a small rigid motion shows this series.

    A motion ``t + w x (p - c)`` appears in the residual's directions only: ``P (t + w x (p - c))``.
    """
    use = where if where.sum() >= 12 else np.ones(points.shape[0], dtype=bool)
    arm = points - points[use].mean(axis=0)
    design = np.zeros((points.shape[0], 3, 6))
    design[:, :, 3:] = np.eye(3)
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        design[:, :, axis] = np.cross(unit, arm)
    design = np.einsum("ab,pbk->pak", view.projector, design)
    solution, *_ = np.linalg.lstsq(design[use].reshape(-1, 6), difference[use].reshape(-1), rcond=None)
    return np.asarray(difference - design @ solution)
