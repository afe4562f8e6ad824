"""The fallback: a smooth free-form field (cubic B-spline) along the uncorrected axis, for one position only.

When the harmonic model does not explain a distortion (another cause than gradient non-linearity, a coil far
beyond degree 5), a tensor cubic B-spline on a coarse grid of control points, in the same coefficient frame
and seen through the same residual projectors, can still be fitted by the same machinery: it is linear in its
control values as the harmonics are in their coefficients. It has no physics to carry it elsewhere: it
describes the field where these images are, and says so (:attr:`FreeFormField.fit_quality`).

Examples
--------
>>> basis = FreeFormBasis.covering(np.array([[0.0, 0.0, 0.0], [100.0, 100.0, 100.0]]), spacing_mm=50.0)
>>> len(basis.terms)                      # 3 intervals + 3 per axis: 6^3 control points
216
>>> values, _ = basis.evaluate(np.array([[50.0, 50.0, 50.0]]))
>>> round(float(values.sum()), 6)         # B-splines add up to one
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trueshape.gnl import COEFFICIENT_FROM_MAGNET, CoefficientFrame

__all__ = ["FREE_FORM_PRIOR_SD_MM", "FreeFormBasis", "FreeFormField", "FreeFormTerm"]

#: Prior standard deviation of a control point's displacement, mm (a gradient coil's field reaches ~30 mm).
FREE_FORM_PRIOR_SD_MM = 10.0


@dataclass(frozen=True)
class FreeFormTerm:
    """One control point of the grid."""

    i: int
    j: int
    k: int

    @property
    def label(self) -> str:
        """``N(i,j,k)``: the control point's grid index."""
        return f"N({self.i},{self.j},{self.k})"

    def is_symmetric_for(self, axis: int) -> bool:
        """Every control point has the same prior (no coil symmetry applies)."""
        return True


def _cubic(t: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cubic B-spline weights (P, 4) of the control points at offsets -1..2 and their derivatives."""
    u = 1.0 - t
    weights = np.stack([u**3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], axis=1) / 6.0
    slopes = np.stack([-(u**2), 3 * t**2 - 4 * t, -3 * t**2 + 2 * t + 1, t**2], axis=1) / 2.0
    return weights, slopes


@dataclass(frozen=True, eq=False)
class FreeFormBasis:
    """Tensor cubic B-splines on a regular grid in the coefficient frame (mm).

    Parameters
    ----------
    origin_mm : ndarray, shape (3,)
        Position of control point (1, 1, 1)'s support start: the grid's first interval begins here.
    spacing_mm : float
        Control-point spacing, mm.
    counts : tuple of 3 int
        Control points along each axis (intervals + 3).
    """

    origin_mm: NDArray[np.float64]
    spacing_mm: float
    counts: tuple[int, int, int]
    r0_mm: float = 250.0
    terms: tuple[FreeFormTerm, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(FreeFormTerm(i, j, k) for i in range(self.counts[0])
                                                for j in range(self.counts[1]) for k in range(self.counts[2])))

    @classmethod
    def covering(cls, points: NDArray[np.float64], *, spacing_mm: float) -> FreeFormBasis:
        """Return a grid whose intervals cover ``points`` (coefficient frame, mm) with half a spacing to spare."""
        low = np.asarray(points, dtype=np.float64).min(axis=0) - spacing_mm / 2.0
        high = np.asarray(points, dtype=np.float64).max(axis=0) + spacing_mm / 2.0
        intervals = np.maximum(np.ceil((high - low) / spacing_mm).astype(int), 1)
        counts = intervals + 3
        return cls(low, float(spacing_mm), (int(counts[0]), int(counts[1]), int(counts[2])))

    @property
    def max_order(self) -> int:
        """Cubic."""
        return 3

    def evaluate(self, points: NDArray[np.float64], *, with_gradient: bool = False
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Each control point's B-spline (P, T) and, optionally, its gradient (P, T, 3) at points (mm).

        Points beyond the grid's intervals take the nearest interval's values (the grid covers the data).
        """
        flat = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        position = (flat - self.origin_mm) / self.spacing_mm
        intervals = np.asarray(self.counts) - 3
        base = np.clip(np.floor(position), 0, intervals - 1)
        fraction = np.clip(position - base, 0.0, 1.0)
        count = flat.shape[0]
        values = np.zeros((count, len(self.terms)))
        gradients = np.zeros((count, len(self.terms), 3)) if with_gradient else None
        per_axis = [_cubic(fraction[:, axis]) for axis in range(3)]
        stride = np.array([self.counts[1] * self.counts[2], self.counts[2], 1])
        rows = np.arange(count)
        for a in range(4):
            for b in range(4):
                for c in range(4):
                    column = (base.astype(np.intp) + np.array([a, b, c])) @ stride
                    (wi, di), (wj, dj), (wk, dk) = per_axis
                    values[rows, column] = wi[:, a] * wj[:, b] * wk[:, c]
                    if gradients is not None:
                        gradients[rows, column, 0] = di[:, a] * wj[:, b] * wk[:, c] / self.spacing_mm
                        gradients[rows, column, 1] = wi[:, a] * dj[:, b] * wk[:, c] / self.spacing_mm
                        gradients[rows, column, 2] = wi[:, a] * wj[:, b] * dk[:, c] / self.spacing_mm
        return values, gradients


def _empty() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, eq=False)
class FreeFormField:
    """A fitted free-form field, in the form a correction takes (see :class:`trueshape.gnl.FieldSource`).

    Parameters
    ----------
    basis : FreeFormBasis
        The grid.
    table : ndarray, shape (3, T)
        Control values of each coefficient axis, mm (zero rows for axes not fitted).
    frame : CoefficientFrame
        The coefficient frame the grid lives in.
    """

    basis: FreeFormBasis
    table: NDArray[np.float64]
    frame: CoefficientFrame = CoefficientFrame.LAI
    coil_id: str = ""
    source: str = "free-form field learned from images (describes this position only)"
    provenance: Mapping[str, Any] = field(default_factory=_empty)
    fit_quality: Mapping[str, Any] = field(default_factory=_empty)

    def displacement_magnet(self, points_magnet: ArrayLike) -> NDArray[np.float64]:
        """Displacement (mm, magnet axes) at magnet-frame points (mm), both shape (..., 3)."""
        values, _ = self.displacement_and_jacobian_magnet(points_magnet, with_jacobian=False)
        return values

    def displacement_and_jacobian_magnet(self, points_magnet: ArrayLike, *, with_jacobian: bool = True
                                         ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Displacement (mm, shape (..., 3)) and its derivatives (shape (..., 3, 3)) in the magnet frame."""
        rotation = COEFFICIENT_FROM_MAGNET[self.frame]
        points = np.asarray(points_magnet, dtype=np.float64)
        flat = points.reshape(-1, 3) @ rotation.T
        values, gradients = self.basis.evaluate(flat, with_gradient=with_jacobian)
        displacement = (values @ self.table.T) @ rotation
        jacobian = np.zeros((flat.shape[0], 3, 3))
        if gradients is not None:
            jacobian = rotation.T @ np.einsum("at,ptc->pac", self.table, gradients) @ rotation
        return displacement.reshape(points.shape), jacobian.reshape((*points.shape[:-1], 3, 3))
