"""The fast path (exact coarse grid + separable cubic splines) against exact evaluation, in mm."""

from __future__ import annotations

import numpy as np
import pytest

from trueshape.geometry import VolumeGeometry
from trueshape.gnl import (
    DEFAULT_COARSE_SPACING_MM,
    SYN_AS,
    GridInterpolant,
    ResidualField,
    coarse_nodes,
    cubic_interpolation_matrix,
    probe_lattices,
)

SPHERE_RADIUS_MM = 250.0


def wide_geometry() -> VolumeGeometry:
    """A 520 mm cube about the isocentre at 4 mm, tilted so index axes are not the magnet axes."""
    angle = np.deg2rad(10.0)
    direction = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]])
    shape = (131, 131, 131)
    spacing = np.array([4.0, 4.0, 4.0])
    origin = -direction @ (spacing * (np.array(shape) - 1) / 2)
    return VolumeGeometry.from_components(shape=shape, origin=origin, spacing=spacing, direction=direction)


def test_cubic_matrix_reproduces_cubics() -> None:
    nodes = np.linspace(-3.0, 17.0, 9)
    positions = np.random.default_rng(1).uniform(-3.0, 17.0, 50)
    weights = cubic_interpolation_matrix(nodes, positions)
    for power in range(4):
        np.testing.assert_allclose(weights @ nodes**power, positions**power, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_coarse_nodes_cover_padded_fov() -> None:
    nodes = coarse_nodes(200, 2.5, 20.0, padding_mm=12.0)
    step_mm = (nodes[1] - nodes[0]) * 2.5
    assert step_mm <= 20.0
    assert nodes[0] * 2.5 <= -40.0 and (nodes[-1] - 199) * 2.5 >= 40.0  # two nodes of padding each side


def test_fast_path_within_one_hundredth_mm_inside_250mm_sphere() -> None:
    geometry = wide_geometry()
    residual = ResidualField(SYN_AS)
    interpolant = residual.interpolant(geometry, coarse_spacing_mm=DEFAULT_COARSE_SPACING_MM)
    rng = np.random.default_rng(2)
    directions = rng.normal(size=(20_000, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    points = directions * SPHERE_RADIUS_MM * rng.uniform(0.0, 1.0, size=(20_000, 1)) ** (1 / 3)
    error = np.linalg.norm(interpolant.at_lps(points) - residual.displacement_lps(points), axis=1)
    assert error.max() <= 0.01
    # The worst probes (between nodes) agree with the random ones on the order of magnitude.
    worst = interpolant.max_error(
        residual.displacement_lps, inside=lambda p: np.linalg.norm(p, axis=1) <= SPHERE_RADIUS_MM
    )
    assert error.max() <= worst + 1e-9
    assert worst <= 0.01
    # Across the whole 520 mm cube (corners at r = 450 mm) the error grows but stays small.
    assert interpolant.max_error(residual.displacement_lps) < 0.05


def test_lattice_matches_scattered_evaluation() -> None:
    geometry = VolumeGeometry.from_components(shape=(20, 24, 16), origin=(-40, -50, -30), spacing=(4, 4, 4))
    interpolant = ResidualField(SYN_AS).interpolant(geometry, coarse_spacing_mm=30.0)
    positions = (np.array([0.0, 3.5, 19.0]), np.array([1.0, 2.25]), np.array([0.0, 7.0, 15.0]))
    lattice = interpolant.on_lattice(positions)
    grid = np.stack(np.meshgrid(*positions, indexing="ij"), axis=-1).reshape(-1, 3)
    np.testing.assert_allclose(lattice.reshape(-1, 3), interpolant.at_indices(grid), atol=1e-12)


def test_probe_lattices_skip_nodes_only() -> None:
    nodes = (np.arange(-2.0, 13.0, 3.0),) * 3  # nodes -2, 1, 4, 7, 10; midpoints -0.5, 2.5, 5.5, 8.5, 11.5
    lattices = probe_lattices(nodes, (10, 10, 10))
    assert len(lattices) == 7
    kinds = set()
    for lattice in lattices:
        kind = []
        for axis_positions in lattice:
            assert axis_positions.min() >= 0.0 and axis_positions.max() <= 9.0
            on_nodes = bool(np.all(np.isin(axis_positions, nodes[0])))
            on_midpoints = bool(np.all(np.isin(axis_positions, 0.5 * (nodes[0][1:] + nodes[0][:-1]))))
            assert on_nodes != on_midpoints  # each axis is all nodes or all midpoints
            kind.append(on_nodes)
        kinds.add(tuple(kind))
    assert (True, True, True) not in kinds  # nodes on all three axes are exact: never probed
    assert len(kinds) == 7  # every other combination is


def test_interpolant_validates_shapes() -> None:
    geometry = VolumeGeometry.from_components(shape=(4, 4, 4), origin=(0, 0, 0), spacing=(1, 1, 1))
    nodes = (np.arange(4.0), np.arange(4.0), np.arange(4.0))
    with pytest.raises(ValueError, match="does not match"):
        GridInterpolant(geometry, nodes, np.zeros((4, 4, 3, 1)))


def test_slab_upsampler_matches_the_lattice() -> None:
    geometry = VolumeGeometry.from_components(shape=(23, 17, 11), origin=(-60, -40, 10), spacing=(5, 5, 6))
    interpolant = ResidualField(SYN_AS).interpolant(geometry, with_jacobian_determinant=True)
    upsampler = interpolant.upsampler()
    lattice = interpolant.on_lattice(tuple(np.arange(size, dtype=np.float64) for size in geometry.shape))
    slabs = np.concatenate([upsampler.slab(start, min(start + 5, 23)) for start in range(0, 23, 5)], axis=1)
    assert slabs.dtype == np.float32
    np.testing.assert_allclose(np.moveaxis(slabs, 0, -1), lattice, atol=2e-5)


@pytest.mark.parametrize("count", [2, 3, 4, 7, 31])
def test_cubic_matrix_is_scipys_not_a_knot_spline(count: int) -> None:
    from scipy.interpolate import CubicSpline

    rng = np.random.default_rng(count)
    nodes = np.cumsum(rng.uniform(0.5, 2.0, count))
    positions = rng.uniform(nodes[0] - 1.0, nodes[-1] + 1.0, 100)  # extrapolation included
    expected = CubicSpline(nodes, np.eye(count), axis=0, bc_type="not-a-knot")(positions)
    np.testing.assert_allclose(cubic_interpolation_matrix(nodes, positions), expected, atol=1e-10)
