"""Solid-harmonic evaluation against an independent formula-G2 implementation (scipy.special.lpmv)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import lpmv

from trueshape.gnl import GradientCoefficients, harmonic_displacement, siemens_normalisation

R0_MM = 250.0


def reference_displacement(alpha: np.ndarray, beta: np.ndarray, r0_mm: float, points: np.ndarray) -> np.ndarray:
    """Formula G2-G3 term by term in spherical coordinates, as gradunwarp's siemens_B writes it."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    r = np.sqrt(x * x + y * y + z * z)
    cos_theta = z / r
    phi = np.arctan2(y, x)
    out = np.zeros_like(points)
    for axis in range(3):
        for n in range(alpha.shape[1]):
            for m in range(n + 1):
                legendre = lpmv(m, n, cos_theta)  # carries the Condon-Shortley phase
                if m > 0:
                    legendre = (
                        legendre
                        * (-1) ** m
                        * math.sqrt((2 * n + 1) * math.factorial(n - m) / (2 * math.factorial(n + m)))
                    )
                angular = alpha[axis, n, m] * np.cos(m * phi) + beta[axis, n, m] * np.sin(m * phi)
                out[:, axis] += r0_mm * (r / r0_mm) ** n * legendre * angular
    return out


def random_tables(order: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    alpha = np.tril(rng.normal(scale=0.02, size=(3, order + 1, order + 1)))
    beta = np.tril(rng.normal(scale=0.02, size=(3, order + 1, order + 1)))
    beta[:, :, 0] = 0.0
    return alpha, beta


@pytest.mark.parametrize(("order", "seed"), [(3, 1), (7, 2), (10, 3)])
def test_matches_formula_g2_reference(order: int, seed: int) -> None:
    alpha, beta = random_tables(order, seed)
    points = np.random.default_rng(seed + 10).uniform(-300.0, 300.0, size=(4000, 3))
    expected = reference_displacement(alpha, beta, R0_MM, points)
    got, _ = harmonic_displacement(alpha, beta, R0_MM, points)
    assert np.max(np.abs(got - expected)) < 1e-6  # mm; requirement is 1e-4 mm
    assert np.max(np.abs(expected)) > 1.0  # the comparison is not between zeros


def test_siemens_normalisation_values() -> None:
    assert siemens_normalisation(3, 0) == 1.0
    assert siemens_normalisation(3, 1) == pytest.approx(math.sqrt(7 * 2 / (2 * 24)))
    assert siemens_normalisation(5, 3) == pytest.approx(math.sqrt(11 * 2 / (2 * math.factorial(8))))
    with pytest.raises(ValueError, match="order"):
        siemens_normalisation(2, 3)


def test_first_order_terms_are_linear_gradients() -> None:
    # A(1,1) on x: P~_11 = sqrt(3/4) sin(theta), so d_x = sqrt(3/4) x; A(1,0) on z: d_z = z.
    coil = GradientCoefficients.from_terms(R0_MM, {("x", "A", 1, 1): 1.0, ("z", "A", 1, 0): 0.5, ("y", "B", 1, 1): 2.0})
    points = np.array([[10.0, -20.0, 30.0], [-100.0, 50.0, 0.0]])
    got = coil.displacement_coefficient_frame(points)
    expected = np.stack(
        [math.sqrt(0.75) * points[:, 0], 2.0 * math.sqrt(0.75) * points[:, 1], 0.5 * points[:, 2]], axis=1
    )
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_origin_is_regular() -> None:
    alpha, beta = random_tables(7, 5)
    alpha[:, 0, 0] = 0.0
    values, jacobian = harmonic_displacement(alpha, beta, R0_MM, np.zeros((1, 3)), with_jacobian=True)
    assert np.all(values == 0.0)
    assert jacobian is not None and np.all(np.isfinite(jacobian))
    # Only first-order terms contribute to the derivative at the origin.
    assert jacobian[0, 2, 2] == pytest.approx(alpha[2, 1, 0])


def test_jacobian_matches_finite_differences() -> None:
    alpha, beta = random_tables(7, 6)
    points = np.random.default_rng(7).uniform(-250.0, 250.0, size=(500, 3))
    _, jacobian = harmonic_displacement(alpha, beta, R0_MM, points, with_jacobian=True)
    assert jacobian is not None
    step = 1e-3
    for coordinate in range(3):
        offset = np.zeros(3)
        offset[coordinate] = step
        plus, _ = harmonic_displacement(alpha, beta, R0_MM, points + offset)
        minus, _ = harmonic_displacement(alpha, beta, R0_MM, points - offset)
        np.testing.assert_allclose(jacobian[:, :, coordinate], (plus - minus) / (2 * step), atol=1e-7)


def test_shapes_and_chunking() -> None:
    alpha, beta = random_tables(5, 8)
    points = np.random.default_rng(9).uniform(-200.0, 200.0, size=(7, 11, 3))
    got, jacobian = harmonic_displacement(alpha, beta, R0_MM, points, with_jacobian=True)
    assert got.shape == (7, 11, 3)
    assert jacobian is not None and jacobian.shape == (7, 11, 3, 3)
    flat, _ = harmonic_displacement(alpha, beta, R0_MM, points.reshape(-1, 3))
    np.testing.assert_array_equal(got.reshape(-1, 3), flat)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        harmonic_displacement(alpha, beta, R0_MM, np.zeros((4, 2)))
