"""The SYN-AS reference coil reproduces the magnitudes DESIGN.md section 7 states."""

from __future__ import annotations

import numpy as np
import pytest

from trueshape.gnl import SYN_AS, CoefficientFrame


def fibonacci_sphere(count: int) -> np.ndarray:
    index = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / count)
    azimuth = np.pi * (1.0 + 5.0**0.5) * index
    return np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], axis=1)


@pytest.mark.parametrize(("radius_mm", "design_max_mm"), [(100.0, 1.35), (150.0, 4.9), (200.0, 13.2), (250.0, 29.9)])
def test_max_displacement_on_spheres(radius_mm: float, design_max_mm: float) -> None:
    directions = fibonacci_sphere(100_000)
    lengths = np.linalg.norm(SYN_AS.displacement_magnet(radius_mm * directions), axis=1)
    assert lengths.max() == pytest.approx(design_max_mm, rel=0.01)


def test_terms_and_conventions() -> None:
    assert SYN_AS.r0_mm == 250.0
    assert SYN_AS.frame is CoefficientFrame.LAI
    assert SYN_AS.coil_id == "SYN-AS"
    assert SYN_AS.max_order == 7
    assert len(list(SYN_AS.terms())) == 11
    # On the bore axis only the A(n,0) terms of z act: d_z = R0 sum A_n0 (z/R0)^n.
    z = 150.0
    expected = 250.0 * (-0.080 * (z / 250) ** 3 - 0.030 * (z / 250) ** 5 + 0.010 * (z / 250) ** 7)
    np.testing.assert_allclose(SYN_AS.displacement_magnet([0.0, 0.0, z]), [0.0, 0.0, expected], atol=1e-12)
    with pytest.raises(ValueError, match="read-only"):
        SYN_AS.alpha[0, 3, 1] = 1.0
