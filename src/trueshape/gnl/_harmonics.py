"""Real solid spherical harmonics in the Siemens normalisation, with exact spatial derivatives.

The displacement along one gradient axis, in the coefficient frame, is (DESIGN.md section 4; gradunwarp's
``siemens_B``)::

    d(r) = R0 * sum_n sum_m (r/R0)^n P~_nm(cos theta) (A_nm cos(m phi) + B_nm sin(m phi))

with ``P~_nm = (-1)^m sqrt((2n+1)(n-m)! / (2 (n+m)!)) P_nm`` for m > 0 (``P_nm`` carrying the
Condon-Shortley phase, as ``scipy.special.lpmv`` does, so ``P~_nm`` carries none) and the plain Legendre
polynomial ``P_n`` for m = 0.

The terms are evaluated as polynomials in Cartesian coordinates, without angles: with ``u = r / R0`` and
``w = u_x + i u_y``, the complex solid harmonic ``S_nm(u) = |u|^n P_nm(cos theta) e^{i m phi}`` (no phase)
obeys ``S_mm = (2m-1)!! w^m``, ``S_{m+1,m} = (2m+1) u_z S_mm`` and
``(n-m) S_nm = (2n-1) u_z S_{n-1,m} - (n+m-1) |u|^2 S_{n-2,m}``, so ``cos``/``sin`` terms are its real
and imaginary parts. This is exact at the origin (no ``x + 1e-4`` offset) and gives the gradient by the
product rule through the same recursion.

References
----------
Janke D., et al. gradunwarp, ``core/unwarp_resample.py`` (HCP 1.2.3), https://github.com/Washington-University/gradunwarp
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EVALUATION_CHUNK_POINTS",
    "MAX_HARMONIC_ORDER",
    "degree_recursion",
    "harmonic_displacement",
    "siemens_normalisation",
]

#: Highest harmonic order trueshape accepts (a guard against malformed files, not a physical limit).
MAX_HARMONIC_ORDER = 40

#: Points evaluated together; bounds the temporary memory of one evaluation.
EVALUATION_CHUNK_POINTS = 1 << 15


def siemens_normalisation(n: int, m: int) -> float:
    """Return the Siemens factor multiplying the phase-free associated Legendre function.

    Parameters
    ----------
    n, m : int
        Degree and order, ``0 <= m <= n``.

    Returns
    -------
    float
        ``sqrt((2n+1)(n-m)! / (2 (n+m)!))`` for m > 0, 1 for m = 0.

    Examples
    --------
    >>> round(siemens_normalisation(3, 1), 6)
    0.540062
    """
    if not 0 <= m <= n:
        raise ValueError(f"harmonic order m={m} must lie in [0, n={n}]")
    if m == 0:
        return 1.0
    return math.sqrt((2 * n + 1) / 2.0 * math.exp(math.lgamma(n - m + 1) - math.lgamma(n + m + 1)))


def _double_factorial_odd(m: int) -> float:
    """(2m-1)!!, with (-1)!! = 1."""
    return float(math.prod(range(1, 2 * m, 2))) if m > 0 else 1.0


def harmonic_displacement(
    alpha: NDArray[np.float64],
    beta: NDArray[np.float64],
    r0_mm: float,
    points: NDArray[np.float64],
    *,
    with_jacobian: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Evaluate the three displacement components and, optionally, their spatial derivatives.

    Parameters
    ----------
    alpha, beta : ndarray, shape (3, N+1, N+1)
        ``alpha[axis, n, m]`` = A_nm and ``beta[axis, n, m]`` = B_nm of coefficient axes x, y, z
        (dimensionless, Siemens normalisation).
    r0_mm : float
        Reference radius, mm.
    points : ndarray, shape (..., 3)
        Positions in the coefficient frame, mm.
    with_jacobian : bool
        Also return the derivatives.

    Returns
    -------
    displacement : ndarray, shape (..., 3)
        Displacement along the coefficient axes, mm.
    jacobian : ndarray, shape (..., 3, 3), or None
        ``jacobian[..., a, b] = d displacement_a / d x_b`` (dimensionless), when requested.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"points need shape (..., 3), got {pts.shape}")
    flat = pts.reshape(-1, 3)
    displacement = np.zeros_like(flat)
    jacobian = np.zeros((flat.shape[0], 3, 3)) if with_jacobian else None
    terms = _active_terms(alpha, beta)
    for start in range(0, flat.shape[0], EVALUATION_CHUNK_POINTS):
        stop = min(start + EVALUATION_CHUNK_POINTS, flat.shape[0])
        part_jacobian = None if jacobian is None else jacobian[start:stop]
        _accumulate(terms, flat[start:stop] / r0_mm, r0_mm, displacement[start:stop], part_jacobian)
    shaped_jacobian = None if jacobian is None else jacobian.reshape((*pts.shape[:-1], 3, 3))
    return displacement.reshape(pts.shape), shaped_jacobian


def _active_terms(
    alpha: NDArray[np.float64], beta: NDArray[np.float64]
) -> dict[int, list[tuple[int, NDArray[np.float64], NDArray[np.float64]]]]:
    """Group the non-zero terms by order m: ``{m: [(n, A[:, n, m] * N_nm, B[:, n, m] * N_nm), ...]}``."""
    terms: dict[int, list[tuple[int, NDArray[np.float64], NDArray[np.float64]]]] = {}
    size = alpha.shape[1]
    for m in range(size):
        for n in range(m, size):
            a = alpha[:, n, m]
            b = beta[:, n, m] if m > 0 else np.zeros(3)
            if np.any(a != 0.0) or np.any(b != 0.0):
                norm = siemens_normalisation(n, m)
                terms.setdefault(m, []).append((n, a * norm, b * norm))
    return terms


def _accumulate(
    terms: dict[int, list[tuple[int, NDArray[np.float64], NDArray[np.float64]]]],
    u: NDArray[np.float64],
    r0_mm: float,
    displacement: NDArray[np.float64],
    jacobian: NDArray[np.float64] | None,
) -> None:
    """Add every term at scaled points ``u`` (shape (P, 3)) into ``displacement`` and ``jacobian``."""
    for m, entries in terms.items():
        wanted = {n: (a, b) for n, a, b in entries}
        for n, current, current_gradient in degree_recursion(m, max(wanted), u, with_gradient=jacobian is not None):
            if n in wanted:
                a, b = wanted[n]
                real, imag = current.real, current.imag
                displacement += r0_mm * (real[:, None] * a[None, :] + imag[:, None] * b[None, :])
                if jacobian is not None and current_gradient is not None:
                    # jacobian[p, axis, coord] += A[axis] Re dS[coord] + B[axis] Im dS[coord]; the R0 and 1/R0
                    # of the scaled coordinates cancel.
                    jacobian += np.einsum("a,cp->pac", a, current_gradient.real) + np.einsum(
                        "a,cp->pac", b, current_gradient.imag
                    )


def degree_recursion(
    m: int, n_max: int, u: NDArray[np.float64], *, with_gradient: bool
) -> Iterator[tuple[int, NDArray[np.complex128], NDArray[np.complex128] | None]]:
    """Yield ``(n, S_nm, dS_nm)`` for n = m .. ``n_max`` at scaled points ``u`` (P, 3), unnormalised.

    ``S_nm`` is complex (its real part goes with A_nm, its imaginary part with B_nm); ``dS_nm`` its gradient,
    shape (3, P), when ``with_gradient``. One recursion over the degree serves every term of order m, for the
    coil's field and for the estimator's basis alike.

    >>> u = np.array([[0.1, 0.2, 0.3]])
    >>> [(n, complex(s[0]).real.__round__(4)) for n, s, _ in degree_recursion(0, 2, u, with_gradient=False)]
    [(0, 1.0), (1, 0.3), (2, 0.065)]
    """
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    w: NDArray[np.complex128] = x + 1j * y
    rho2 = x * x + y * y + z * z
    # Sectoral start S_mm = c w^m and its gradient (c m w^(m-1), i c m w^(m-1), 0).
    c = _double_factorial_odd(m)
    previous: NDArray[np.complex128] = c * w**m
    previous_gradient: NDArray[np.complex128] | None = None
    if with_gradient:
        dw: NDArray[np.complex128] = c * m * w ** (m - 1) if m > 0 else np.zeros_like(w)
        previous_gradient = np.stack([dw, 1j * dw, np.zeros_like(w)])
    yield m, previous, previous_gradient
    older: NDArray[np.complex128] | None = None
    older_gradient: NDArray[np.complex128] | None = None
    for n in range(m + 1, n_max + 1):
        current, current_gradient = _next_degree(n, m, z, rho2, u, previous, previous_gradient, older, older_gradient)
        older, older_gradient = previous, previous_gradient
        previous, previous_gradient = current, current_gradient
        yield n, current, current_gradient


def _next_degree(
    n: int,
    m: int,
    z: NDArray[np.float64],
    rho2: NDArray[np.float64],
    u: NDArray[np.float64],
    previous: NDArray[np.complex128],
    previous_gradient: NDArray[np.complex128] | None,
    older: NDArray[np.complex128] | None,
    older_gradient: NDArray[np.complex128] | None,
) -> tuple[NDArray[np.complex128], NDArray[np.complex128] | None]:
    """One step of the degree recursion (value and, when carried, gradient of shape (3, P))."""
    if older is None:  # n == m + 1
        value = (2 * m + 1) * z * previous
        gradient = None
        if previous_gradient is not None:
            gradient = (2 * m + 1) * z * previous_gradient
            gradient[2] += (2 * m + 1) * previous
        return value, gradient
    k1 = (2 * n - 1) / (n - m)
    k2 = (n + m - 1) / (n - m)
    value = k1 * z * previous - k2 * rho2 * older
    gradient = None
    if previous_gradient is not None and older_gradient is not None:
        gradient = k1 * z * previous_gradient - k2 * rho2 * older_gradient
        gradient[2] += k1 * previous
        gradient -= (2.0 * k2) * u.T * older
    return value, gradient
