"""GradientCoefficients: one gradient coil's harmonic tables, R0 and frame, evaluated in the magnet frame."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trueshape.gnl._frames import COEFFICIENT_FROM_MAGNET, CoefficientFrame
from trueshape.gnl._harmonics import MAX_HARMONIC_ORDER, harmonic_displacement

__all__ = ["AXIS_NAMES", "FieldSource", "GradientCoefficients", "HarmonicTerm", "TermKind"]

#: Gradient axes in array order (index 0, 1, 2 of every per-axis table).
AXIS_NAMES: tuple[str, str, str] = ("x", "y", "z")


class TermKind(enum.StrEnum):
    """Cosine (A) or sine (B) part of a harmonic term."""

    A = "A"
    B = "B"


@dataclass(frozen=True)
class HarmonicTerm:
    """One non-zero coefficient: ``kind(n, m)`` of ``axis`` (dimensionless, Siemens normalisation)."""

    axis: str
    kind: TermKind
    n: int
    m: int
    value: float


class FieldSource(Protocol):
    """What a correction needs of a field: its displacement (and derivatives) in the magnet frame, and its facts.

    A coil's harmonic coefficients (:class:`GradientCoefficients`) are one; a free-form field learned from
    images is another (it describes one position only, and its ``fit_quality`` says so).
    """

    @property
    def coil_id(self) -> str:
        """Name of the gradient coil the field belongs to ("" if unknown)."""
        ...

    @property
    def source(self) -> str:
        """Where the numbers came from (a file, or a named constant)."""
        ...

    @property
    def provenance(self) -> Mapping[str, Any]:
        """Where the field came from."""
        ...

    @property
    def fit_quality(self) -> Mapping[str, Any]:
        """How well it was fitted (empty for a vendor file)."""
        ...

    def displacement_magnet(self, points_magnet: ArrayLike) -> NDArray[np.float64]:
        """Displacement (mm, magnet axes) at magnet-frame points (mm), both shape (..., 3)."""
        ...

    def displacement_and_jacobian_magnet(
        self, points_magnet: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Displacement (mm, shape (..., 3)) and its derivatives (shape (..., 3, 3)) in the magnet frame."""
        ...


def _empty_mapping() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, eq=False)
class GradientCoefficients:
    """Spherical-harmonic description of one gradient coil's non-linearity.

    Parameters
    ----------
    r0_mm : float
        Reference radius, mm.
    alpha, beta : ndarray, shape (3, N+1, N+1)
        ``alpha[axis, n, m]`` = A_nm and ``beta[axis, n, m]`` = B_nm for coefficient axes x, y, z; zero for
        m > n.
    frame : CoefficientFrame
        Axes the tables are written in (Siemens files: :attr:`CoefficientFrame.LAI`).
    coil_id : str
        Gradient coil identifier (e.g. ``"AS82"``, ``"SYN-AS"``).
    source : str
        Where the numbers came from (file path and format, or a named constant).
    provenance : dict
        Free-form facts kept with a scanner model (who, when, from which data).
    fit_quality : dict
        Fit diagnostics of an estimated model (residuals in mm, ...); empty for vendor files.

    Examples
    --------
    >>> coil = GradientCoefficients.from_terms(250.0, {("z", "A", 3, 0): -0.08})
    >>> coil.displacement_magnet(np.array([0.0, 0.0, 100.0])).round(4)  # 250 * -0.08 * 0.4**3
    array([ 0.  ,  0.  , -1.28])
    """

    r0_mm: float
    alpha: NDArray[np.float64]
    beta: NDArray[np.float64]
    frame: CoefficientFrame = CoefficientFrame.LAI
    coil_id: str = ""
    source: str = ""
    provenance: Mapping[str, Any] = field(default_factory=_empty_mapping)
    fit_quality: Mapping[str, Any] = field(default_factory=_empty_mapping)

    def __post_init__(self) -> None:
        alpha = np.array(self.alpha, dtype=np.float64)
        beta = np.array(self.beta, dtype=np.float64)
        if alpha.ndim != 3 or alpha.shape[0] != 3 or alpha.shape[1] != alpha.shape[2] or alpha.shape != beta.shape:
            raise ValueError(f"alpha and beta need equal shapes (3, N+1, N+1), got {alpha.shape} and {beta.shape}")
        if alpha.shape[1] - 1 > MAX_HARMONIC_ORDER:
            raise ValueError(f"harmonic order {alpha.shape[1] - 1} exceeds {MAX_HARMONIC_ORDER}")
        if not (np.all(np.isfinite(alpha)) and np.all(np.isfinite(beta))):
            raise ValueError("coefficients must be finite")
        upper = np.triu(np.ones(alpha.shape[1:], dtype=bool), k=1)  # m > n
        if np.any(alpha[:, upper] != 0.0) or np.any(beta[:, upper] != 0.0):
            raise ValueError("coefficients with m > n must be zero")
        if not (np.isfinite(self.r0_mm) and self.r0_mm > 0.0):
            raise ValueError(f"R0 must be a positive length in mm, got {self.r0_mm!r}")
        alpha.setflags(write=False)
        beta.setflags(write=False)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "r0_mm", float(self.r0_mm))
        object.__setattr__(self, "frame", CoefficientFrame(self.frame))

    @classmethod
    def from_terms(
        cls,
        r0_mm: float,
        terms: Mapping[tuple[str, str, int, int], float],
        *,
        frame: CoefficientFrame = CoefficientFrame.LAI,
        coil_id: str = "",
        source: str = "",
        provenance: Mapping[str, Any] | None = None,
        fit_quality: Mapping[str, Any] | None = None,
    ) -> Self:
        """Build from ``{(axis, kind, n, m): value}``, e.g. ``{("x", "A", 3, 1): -0.055}``."""
        order = max((n for (_, _, n, _) in terms), default=0)
        alpha = np.zeros((3, order + 1, order + 1))
        beta = np.zeros_like(alpha)
        for (axis, kind, n, m), value in terms.items():
            if axis not in AXIS_NAMES:
                raise ValueError(f"unknown gradient axis {axis!r} (expected one of {AXIS_NAMES})")
            if not 0 <= m <= n:
                raise ValueError(f"term {kind}({n},{m}) of axis {axis} needs 0 <= m <= n")
            table = alpha if TermKind(kind) is TermKind.A else beta
            table[AXIS_NAMES.index(axis), n, m] = float(value)
        return cls(
            r0_mm,
            alpha,
            beta,
            frame=frame,
            coil_id=coil_id,
            source=source,
            provenance=dict(provenance or {}),
            fit_quality=dict(fit_quality or {}),
        )

    @property
    def max_order(self) -> int:
        """Highest degree n held by the tables."""
        return int(self.alpha.shape[1] - 1)

    def terms(self) -> Iterator[HarmonicTerm]:
        """Yield the non-zero coefficients, axis by axis, A before B, by n then m."""
        for axis_index, axis in enumerate(AXIS_NAMES):
            for kind, table in ((TermKind.A, self.alpha), (TermKind.B, self.beta)):
                for n in range(table.shape[1]):
                    for m in range(n + 1):
                        value = float(table[axis_index, n, m])
                        if value != 0.0:
                            yield HarmonicTerm(axis, kind, n, m, value)

    def displacement_coefficient_frame(self, points: ArrayLike) -> NDArray[np.float64]:
        """Displacement (mm) at points of the coefficient frame (mm), both shape (..., 3), coefficient axes."""
        values, _ = harmonic_displacement(self.alpha, self.beta, self.r0_mm, np.asarray(points, dtype=np.float64))
        return values

    def displacement_magnet(self, points_magnet: ArrayLike) -> NDArray[np.float64]:
        """Displacement ``d(m)`` (mm, magnet axes) at magnet-frame points (mm), both shape (..., 3).

        The coefficient frame is handled here: positions go in as ``C m`` and displacements come out as
        ``C^T d`` with ``C = COEFFICIENT_FROM_MAGNET[frame]``.
        """
        rotation = COEFFICIENT_FROM_MAGNET[self.frame]
        points = np.asarray(points_magnet, dtype=np.float64) @ rotation.T
        values, _ = harmonic_displacement(self.alpha, self.beta, self.r0_mm, points)
        return np.asarray(values @ rotation, dtype=np.float64)

    def displacement_and_jacobian_magnet(
        self, points_magnet: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Displacement (mm, shape (..., 3)) and its derivatives (shape (..., 3, 3)) in the magnet frame.

        ``jacobian[..., a, b] = d d_a / d m_b`` (dimensionless).
        """
        rotation = COEFFICIENT_FROM_MAGNET[self.frame]
        points = np.asarray(points_magnet, dtype=np.float64) @ rotation.T
        values, jacobian = harmonic_displacement(self.alpha, self.beta, self.r0_mm, points, with_jacobian=True)
        assert jacobian is not None
        return (
            np.asarray(values @ rotation, dtype=np.float64),
            np.asarray(rotation.T @ jacobian @ rotation, dtype=np.float64),
        )
