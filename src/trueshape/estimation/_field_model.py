"""The unknown: one scanner field, linear in its harmonic coefficients, seen by each series its own way.

The scanner's displacement along coefficient axis ``a`` is ``d_a(q) = sum_t theta[a, t] h_t(q)`` with
``h_t`` the solid harmonics of :class:`~trueshape.gnl.HarmonicBasis` in the coefficient frame (the
convention of ``--coef`` files). A series s sees it at its own isocentre and patient position (rotation
``R_s``), through its residual projector ``P_s`` (DESIGN.md section 3)::

    q_s(r) = C R_s^T (r - iso_s)                    (coefficient-frame point of patient point r)
    u_s(r) = W_s d(q_s(r)),   W_s = P_s R_s C^T     (residual displacement, mm LPS)

so the residual of every series is linear in ``theta`` and each coefficient axis reaches a series only
through the column ``W_s[:, a]``: a DIS3D series sees nothing, a coronal DIS2D series only the axis along
its slice normal, an ND series all three.

Examples
--------
>>> from trueshape.dicom import DistortionState
>>> coronal = SeriesView.build(DistortionState.IN_PLANE_2D, slice_normal_lps=(0.0, 1.0, 0.0))
>>> coronal.axes_seen()
(1,)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import DistortionState, PatientPosition
from trueshape.gnl import (
    AXIS_NAMES,
    COEFFICIENT_FROM_MAGNET,
    CoefficientFrame,
    GradientCoefficients,
    MagnetFrame,
    residual_projector,
)
from trueshape.gnl._basis import HarmonicBasis

if TYPE_CHECKING:
    from trueshape.estimation._freeform import FreeFormBasis

__all__ = ["AXIS_WEIGHT_TOLERANCE", "FieldModel", "SeriesView"]

#: A coefficient axis whose residual weight in a series is below this is not seen by it.
AXIS_WEIGHT_TOLERANCE = 1e-6


def _origin() -> NDArray[np.float64]:
    return np.zeros(3)


@dataclass(frozen=True, eq=False)
class SeriesView:
    """How one series sees the scanner's field: its magnet frame and residual projector.

    Parameters
    ----------
    distortion_state : DistortionState
        What the scanner corrected (not UNKNOWN).
    magnet_frame : MagnetFrame
        Patient position and isocentre (mm, LPS).
    projector : ndarray, shape (3, 3)
        ``P_s``: residual = ``P_s d`` (LPS).
    coefficient_frame : CoefficientFrame
        Axes the coefficients are written in.
    """

    distortion_state: DistortionState
    magnet_frame: MagnetFrame = field(default_factory=MagnetFrame)
    projector: NDArray[np.float64] = field(default_factory=lambda: np.eye(3))
    coefficient_frame: CoefficientFrame = CoefficientFrame.LAI

    @classmethod
    def build(cls, distortion_state: DistortionState, *, slice_normal_lps: tuple[float, float, float] | NDArray[
              np.float64] | None = None, patient_position: PatientPosition = PatientPosition.HFS,
              isocentre_lps: tuple[float, float, float] | NDArray[np.float64] = (0.0, 0.0, 0.0),
              coefficient_frame: CoefficientFrame = CoefficientFrame.LAI) -> SeriesView:
        """Build from the facts a series' headers give."""
        return cls(DistortionState(distortion_state), MagnetFrame(patient_position, np.asarray(isocentre_lps)),
                   residual_projector(distortion_state, slice_normal_lps), coefficient_frame)

    @property
    def coefficient_rotation(self) -> NDArray[np.float64]:
        """``C R^T``: patient (LPS) vectors to coefficient-frame vectors, shape (3, 3)."""
        return np.asarray(COEFFICIENT_FROM_MAGNET[self.coefficient_frame] @ self.magnet_frame.lps_from_magnet.T)

    @property
    def weights(self) -> NDArray[np.float64]:
        """``W = P R C^T``: column a is the LPS residual per mm of displacement along coefficient axis a."""
        return np.asarray(self.projector @ self.coefficient_rotation.T)

    def coefficient_points(self, points_lps: NDArray[np.float64]) -> NDArray[np.float64]:
        """Coefficient-frame positions (mm) of patient points (mm, LPS), shape (..., 3)."""
        return np.asarray((np.asarray(points_lps) - self.magnet_frame.isocentre_lps) @ self.coefficient_rotation.T)

    def axes_seen(self) -> tuple[int, ...]:
        """Coefficient axes (0 x, 1 y, 2 z) whose displacement reaches this series' residual."""
        norms = np.linalg.norm(self.weights, axis=0)
        return tuple(int(a) for a in np.nonzero(norms > AXIS_WEIGHT_TOLERANCE)[0])

    def projector_basis(self) -> NDArray[np.float64]:
        """Orthonormal columns ``V`` (3, r) with ``V V^T`` the projector in the coefficient frame (r = its rank)."""
        values, vectors = np.linalg.eigh(self.projector_in_coefficient_frame)
        return np.asarray(vectors[:, values > 0.5])

    @property
    def projector_in_coefficient_frame(self) -> NDArray[np.float64]:
        """``C R^T P R C^T``: the projector acting on coefficient-frame vectors (for the Jacobian factor)."""
        rotation = self.coefficient_rotation
        return np.asarray(rotation @ self.projector @ rotation.T)


@dataclass(frozen=True, eq=False)
class FieldModel:
    """The parameters: harmonic coefficients of some coefficient axes, in one basis.

    ``theta`` vectors are laid out axis by axis: ``theta.reshape(len(axes), len(basis.terms))``.

    Parameters
    ----------
    basis : HarmonicBasis
        The harmonics (shared by every axis).
    axes : tuple of int
        Coefficient axes fitted (0 x, 1 y, 2 z).
    """

    basis: HarmonicBasis | FreeFormBasis
    axes: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of coefficients."""
        return len(self.axes) * len(self.basis.terms)

    def table(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Coefficients as (3, T): zero rows for axes not fitted."""
        full = np.zeros((3, len(self.basis.terms)))
        full[list(self.axes)] = np.asarray(theta).reshape(len(self.axes), -1)
        return full

    def prior_sd(self, *, symmetric: float, asymmetric: float) -> NDArray[np.float64]:
        """Return the prior standard deviation of each parameter.

        ``symmetric`` for the terms a symmetric coil of that axis has, ``asymmetric`` for the rest (a real
        coil's asymmetries are small).
        """
        return np.array([symmetric if term.is_symmetric_for(axis) else asymmetric
                         for axis in self.axes for term in self.basis.terms])

    def labels(self) -> list[str]:
        """``y B(3,1)``-style name of each parameter."""
        return [f"{AXIS_NAMES[a]} {t.label}" for a in self.axes for t in self.basis.terms]

    def residual(self, view: SeriesView, theta: NDArray[np.float64], points_lps: NDArray[np.float64]
                 ) -> NDArray[np.float64]:
        """Residual displacement ``u_s`` (mm, LPS) of series ``view`` at patient points, shape (P, 3)."""
        values, _ = self.basis.evaluate(view.coefficient_points(points_lps).reshape(-1, 3))
        along_axes = values @ self.table(theta).T  # (P, 3) coefficient-frame displacement
        return np.asarray(along_axes @ view.weights.T)

    def residual_variance(self, view: SeriesView, covariance: NDArray[np.float64], points_lps: NDArray[np.float64]
                          ) -> NDArray[np.float64]:
        """Variance (mm^2) of the residual at points: the three components' variances from a coefficient covariance.

        Linear propagation: ``d u_c / d theta[a, t] = W[c, a] h_t``, so ``var u_c = g_c^T C g_c``.
        """
        values, _ = self.basis.evaluate(view.coefficient_points(points_lps).reshape(-1, 3))
        weights = view.weights[:, list(self.axes)]  # (3, A)
        variance = np.zeros(values.shape[0])
        for component in range(3):
            design = np.concatenate([weights[component, a] * values for a in range(len(self.axes))], axis=1)
            variance += np.einsum("pi,ij,pj->p", design, covariance, design)
        return np.asarray(np.maximum(variance, 0.0))

    def coefficients(self, theta: NDArray[np.float64], *, coil_id: str = "", source: str = "",
                     provenance: dict[str, object] | None = None, fit_quality: dict[str, object] | None = None
                     ) -> GradientCoefficients:
        """Return the fitted field as a coil description (the same convention as a vendor ``.grad`` file).

        Raises
        ------
        TypeError
            For a free-form field (it has no harmonic coefficients: see :class:`FreeFormField`).
        """
        basis = self.basis
        if not isinstance(basis, HarmonicBasis):
            raise TypeError("a free-form field has no harmonic coefficients")
        table = self.table(theta)
        terms: dict[tuple[str, str, int, int], float] = {}
        for axis in self.axes:
            for column, term in enumerate(basis.terms):
                value = float(table[axis, column])
                if value != 0.0:
                    terms[(AXIS_NAMES[axis], term.kind.value, term.n, term.m)] = value
        if not terms:  # nothing fitted: an all-zero coil of the basis' order
            terms[(AXIS_NAMES[self.axes[0] if self.axes else 0], "A", max(basis.max_order, 1), 0)] = 0.0
        return GradientCoefficients.from_terms(basis.r0_mm, terms, frame=CoefficientFrame.LAI, coil_id=coil_id,
                                               source=source, provenance=provenance, fit_quality=fit_quality)
