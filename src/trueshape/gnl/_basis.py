"""The solid-harmonic basis one term at a time: what an estimator needs to fit coefficients linearly.

:func:`~trueshape.gnl._harmonics.harmonic_displacement` sums the terms of a coil; fitting needs each term's
own scalar function ``h_t(q) = R0 (|q|/R0)^n P~_nm(cos theta) {cos, sin}(m phi)`` (Siemens normalisation,
coefficient frame) and its gradient, so that a displacement along coefficient axis ``a`` is
``sum_t theta[a, t] h_t(q)``: linear in the coefficients. The same recursion as the coil evaluation is used
(Cartesian, exact at the origin), so a fitted coefficient means exactly what a ``.grad`` file's does.

Examples
--------
>>> basis = HarmonicBasis.up_to(3, r0_mm=250.0)
>>> len(basis.terms)          # A(n, m) for m <= n and B(n, m) for m >= 1, n = 1..3
15
>>> values, _ = basis.evaluate(np.array([[0.0, 0.0, 100.0]]))
>>> round(float(values[0, basis.index("A", 3, 0)]), 3)   # 250 * 0.4**3
16.0
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trueshape.gnl._coefficients import TermKind
from trueshape.gnl._harmonics import EVALUATION_CHUNK_POINTS, degree_recursion, siemens_normalisation

__all__ = ["BasisTerm", "HarmonicBasis"]


@dataclass(frozen=True, order=True)
class BasisTerm:
    """One solid harmonic: cosine (A) or sine (B) part of degree ``n`` and order ``m``."""

    n: int
    m: int
    kind: TermKind

    @property
    def label(self) -> str:
        """``A(3,1)``-style name, as coefficient files write it."""
        return f"{self.kind.value}({self.n},{self.m})"

    @property
    def is_odd_degree(self) -> bool:
        """Odd n: the degrees a left-right and front-back symmetric coil uses."""
        return self.n % 2 == 1

    def is_symmetric_for(self, axis: int) -> bool:
        """Whether a symmetric gradient coil of ``axis`` (0 x, 1 y, 2 z) has this term.

        Siemens convention (vendor coefficient files): x uses A(n, odd m), y B(n, odd m), z A(n, 0), all of
        odd degree n; every other term comes from asymmetries of a real coil (small).
        """
        if not self.is_odd_degree:
            return False
        if axis == 2:
            return self.kind is TermKind.A and self.m == 0
        wanted = TermKind.A if axis == 0 else TermKind.B
        return self.kind is wanted and self.m % 2 == 1


@dataclass(frozen=True)
class HarmonicBasis:
    """An ordered set of solid harmonics with a reference radius (coefficient frame, mm).

    Parameters
    ----------
    terms : tuple of BasisTerm
        The harmonics, in column order of :meth:`evaluate`.
    r0_mm : float
        Reference radius, mm.
    """

    terms: tuple[BasisTerm, ...]
    r0_mm: float

    @classmethod
    def up_to(cls, order: int, *, r0_mm: float, lowest: int = 1) -> HarmonicBasis:
        """All A(n, m) (0 <= m <= n) and B(n, m) (1 <= m <= n) with ``lowest <= n <= order``."""
        terms = [
            BasisTerm(n, m, kind)
            for n in range(lowest, order + 1)
            for m in range(n + 1)
            for kind in (TermKind.A, TermKind.B)
            if not (kind is TermKind.B and m == 0)
        ]
        return cls(tuple(terms), float(r0_mm))

    @classmethod
    def of(cls, terms: Iterable[tuple[str, int, int]], *, r0_mm: float) -> HarmonicBasis:
        """Build from ``(kind, n, m)`` triples, e.g. ``[("B", 3, 1), ("B", 5, 1)]``."""
        built = tuple(BasisTerm(int(n), int(m), TermKind(kind)) for kind, n, m in terms)
        for term in built:
            if not 0 <= term.m <= term.n or (term.kind is TermKind.B and term.m == 0):
                raise ValueError(f"no harmonic {term.label}: needs 0 <= m <= n, and m >= 1 for B")
        return cls(built, float(r0_mm))

    @property
    def max_order(self) -> int:
        """Highest degree n."""
        return max((t.n for t in self.terms), default=0)

    def index(self, kind: str, n: int, m: int) -> int:
        """Column of the term ``kind(n, m)``."""
        return self.terms.index(BasisTerm(n, m, TermKind(kind)))

    def evaluate(
        self, points: NDArray[np.float64], *, with_gradient: bool = False
    ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Every term's value (mm) and, optionally, gradient at coefficient-frame points (mm).

        Parameters
        ----------
        points : ndarray, shape (P, 3)
            Positions in the coefficient frame, mm.
        with_gradient : bool
            Also return the spatial derivatives.

        Returns
        -------
        values : ndarray, shape (P, T)
            ``h_t`` at each point, mm per unit coefficient.
        gradients : ndarray, shape (P, T, 3), or None
            ``d h_t / d q`` (dimensionless).
        """
        flat = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        count = len(self.terms)
        values = np.zeros((flat.shape[0], count))
        gradients = np.zeros((flat.shape[0], count, 3)) if with_gradient else None
        by_order: dict[int, dict[int, list[tuple[int, TermKind]]]] = {}
        for column, term in enumerate(self.terms):
            by_order.setdefault(term.m, {}).setdefault(term.n, []).append((column, term.kind))
        for start in range(0, flat.shape[0], EVALUATION_CHUNK_POINTS):
            stop = min(start + EVALUATION_CHUNK_POINTS, flat.shape[0])
            self._fill(
                by_order,
                flat[start:stop] / self.r0_mm,
                values[start:stop],
                None if gradients is None else gradients[start:stop],
            )
        return values, gradients

    def _fill(
        self,
        by_order: dict[int, dict[int, list[tuple[int, TermKind]]]],
        u: NDArray[np.float64],
        values: NDArray[np.float64],
        gradients: NDArray[np.float64] | None,
    ) -> None:
        """Run the degree recursion once per order m and store the wanted degrees' real/imaginary parts."""
        carry = gradients is not None
        for m, wanted in by_order.items():
            for n, current, current_gradient in degree_recursion(m, max(wanted), u, with_gradient=carry):
                norm = siemens_normalisation(n, m)
                for column, kind in wanted.get(n, ()):
                    part = current.real if kind is TermKind.A else current.imag
                    values[:, column] = self.r0_mm * norm * part
                    if gradients is not None and current_gradient is not None:
                        grad = current_gradient.real if kind is TermKind.A else current_gradient.imag
                        gradients[:, column, :] = norm * grad.T
