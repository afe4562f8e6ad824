"""The compiled pull-back kernel against scipy's trilinear sampling, and against the numpy/scipy fallback."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage
from tests.conftest import in_ci

from trueshape.correction import MAX_JACOBIAN_DETERMINANT, _kernel, compiled_kernel_disabled, correct_volume
from trueshape.dicom.vendor import DistortionState
from trueshape.geometry import Provenance, Volume, VolumeGeometry
from trueshape.gnl import SYN_AS, MagnetFrame, ResidualField

KERNEL = _kernel.KERNEL


def test_kernel_is_built() -> None:
    # setup.py builds it as optional; without it corrections still work, 2-3x slower (benchmarks/gnl_correct.py).
    # A machine without a C compiler skips this; the CI (CI set) must have built it.
    if KERNEL is None and not in_ci():
        pytest.skip("trueshape._warp was not compiled (no C compiler at install): the numpy fallback runs")
    assert KERNEL is not None, "trueshape._warp was not compiled: is a C compiler installed?"


def test_without_the_kernel_the_fallback_runs_and_the_wrapper_says_why() -> None:
    with compiled_kernel_disabled():
        assert not _kernel.has_compiled_kernel()
        with pytest.raises(RuntimeError, match="numpy fallback"):
            _kernel.pull_back(
                source=np.zeros((2, 2, 2), np.float32),
                node_values=np.zeros((2, 3, 4), np.float32),
                node_moments=np.zeros((2, 3, 4), np.float32),
                row_interval=np.zeros(2, np.int64),
                row_weights=np.zeros((2, 4), np.float32),
                out=np.zeros((2, 2, 2), np.float32),
                start=0,
                stop=2,
                through_axis=None,
                base_map=tuple(np.eye(4)[:3].ravel()),
                spacing_squared=(1.0, 1.0, 1.0),
                intensity_correction=False,
                max_jacobian_determinant=MAX_JACOBIAN_DETERMINANT,
            )
    assert _kernel.has_compiled_kernel() is (KERNEL is not None)


def _pull_back(
    source: np.ndarray,
    shift: np.ndarray,
    det: np.ndarray | None,
    affine: np.ndarray,
    out_shape: tuple[int, int, int],
    axis: int = 0,
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Run the kernel with a field that is the same for every output row: node 0 holds it, weight 1."""
    components = [shift] if shift.ndim == 2 else list(shift)
    if det is not None:
        components.append(det)
    values = np.zeros((2, len(components), out_shape[1] * out_shape[2]), dtype=np.float32)
    for c, component in enumerate(components):
        values[0, c] = component.ravel()
    moments = np.zeros_like(values)
    interval = np.zeros(out_shape[0], dtype=np.int64)
    weights = np.tile(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), (out_shape[0], 1))
    out = np.full(out_shape, np.nan, dtype=np.float32)
    stats = KERNEL.pull_back(
        source,
        values,
        moments,
        interval,
        weights,
        out,
        0,
        out_shape[0],
        axis if shift.ndim == 2 else -1,
        tuple(float(a) for a in affine[:3].ravel()),
        (1.0, 4.0, 9.0),
        det is not None,
        MAX_JACOBIAN_DETERMINANT,
    )
    return out, stats


def _itk_linear(source: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Trilinear samples as ITK resamples: edge values within half a voxel of the grid, 0 beyond."""
    values = ndimage.map_coordinates(source, positions, order=1, mode="nearest")
    inside = np.all([(positions[a] >= -0.5) & (positions[a] < source.shape[a] - 0.5) for a in range(3)], axis=0)
    return np.where(inside, values, 0.0).astype(np.float32)


@pytest.mark.skipif(KERNEL is None, reason="trueshape._warp not compiled")
@pytest.mark.parametrize("source_shape", [(6, 7, 8), (1, 7, 8), (6, 1, 8), (6, 7, 1)])
def test_kernel_samples_like_scipy(source_shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(3)
    source = rng.uniform(1.0, 2.0, source_shape).astype(np.float32)
    out_shape = (5, 6, 7)
    shift = rng.uniform(-1.5, 1.5, (3, out_shape[1], out_shape[2])).astype(np.float32)
    # Samples exactly on the last index, just beyond it, just below 0, and either side of the half-voxel
    # border (index positions with the identity part of the affine at output (0, 0, 0) are 0.3, -0.2, 0.1).
    shift[0, 0, 0] = source_shape[0] - 1.0
    shift[1, 1, 1] = source_shape[1] - 1.0 + 1e-3
    shift[2, 2, 2] = -1e-3
    shift[0, 3, 3] = -0.5 - 0.3 + 1e-3
    shift[0, 4, 4] = -0.5 - 0.3 - 1e-3
    affine = np.eye(4)
    affine[:3, :3] = [[0.9, 0.1, 0.0], [0.0, 1.0, 0.05], [0.02, 0.0, 1.1]]
    affine[:3, 3] = [0.3, -0.2, 0.1]
    det = rng.uniform(-0.5, 12.0, (out_shape[1], out_shape[2])).astype(np.float32)
    out, stats = _pull_back(source, shift, det, affine, out_shape)

    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in out_shape], indexing="ij"))
    positions = np.einsum("ab,b...->a...", affine[:3, :3], index) + affine[:3, 3, None, None, None]
    positions = (positions + shift[:, None].astype(np.float64)).astype(np.float32)
    expected = _itk_linear(source, positions)
    expected *= np.clip(det, 0.0, MAX_JACOBIAN_DETERMINANT)[None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    norms = np.sqrt(shift[0] ** 2 + 4.0 * shift[1] ** 2 + 9.0 * shift[2] ** 2)
    max_norm_sq, sum_norm, det_min, det_max, folded = stats
    assert max_norm_sq == pytest.approx(float(norms.max()) ** 2, rel=1e-6)
    assert sum_norm == pytest.approx(out_shape[0] * float(norms.sum()), rel=1e-6)
    assert (det_min, det_max) == (pytest.approx(float(det.min())), pytest.approx(float(det.max())))
    assert folded == out_shape[0] * int(np.count_nonzero(det <= 0.0))


@pytest.mark.skipif(KERNEL is None, reason="trueshape._warp not compiled")
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_kernel_one_component_moves_along_its_axis(axis: int) -> None:
    rng = np.random.default_rng(4)
    source = rng.uniform(1.0, 2.0, (5, 6, 7)).astype(np.float32)
    shift = rng.uniform(-1.2, 1.2, (6, 7)).astype(np.float32)
    # At (j, k) = (0, 0) the sample of row 0 lands exactly on the last index; at (1, 1) and (2, 2) the
    # sample of row 0 lies just beyond half a voxel outside the axis (identity affine: position = index + shift).
    last = source.shape[axis] - 1
    shift[0, 0] = last
    shift[1, 1] = last + 0.5 + 1e-3 - (1 if axis == 1 else 0) - (1 if axis == 2 else 0)
    shift[2, 2] = -0.5 - 1e-3 - (2 if axis else 0)
    out, stats = _pull_back(source, shift, None, np.eye(4), source.shape, axis=axis)
    if axis == 0:
        assert out[0, 0, 0] == source[last, 0, 0]
    assert out[0, 1, 1] == 0.0 and out[0, 2, 2] == 0.0
    positions = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in source.shape], indexing="ij"))
    positions[axis] += shift[None]
    expected = _itk_linear(source, positions)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert stats[0] == pytest.approx(float(np.max(shift**2)) * (1.0, 4.0, 9.0)[axis], rel=1e-6)


@pytest.mark.skipif(KERNEL is None, reason="trueshape._warp not compiled")
def test_kernel_refuses_inconsistent_buffers() -> None:
    # Shapes and item types come from the buffers themselves: nothing stated separately can disagree with
    # the memory, so no argument reaches outside it (a size product could once overflow).
    source = np.zeros((4, 4, 4), dtype=np.float32)
    values = np.zeros((2, 3, 16), dtype=np.float32)
    interval = np.zeros(4, dtype=np.int64)
    weights = np.zeros((4, 4), dtype=np.float32)
    out = np.zeros((4, 4, 4), dtype=np.float32)
    arguments = [
        source,
        values,
        values,
        interval,
        weights,
        out,
        0,
        4,
        -1,
        tuple(np.eye(4)[:3].ravel()),
        (1.0, 1.0, 1.0),
        False,
        10.0,
    ]
    KERNEL.pull_back(*arguments)
    read_only = np.zeros((4, 4, 4), dtype=np.float32)
    read_only.flags.writeable = False
    for position, bad, message in [
        (0, np.zeros((4, 4, 2), dtype=np.float64), "source must be a 3-D float32 array"),
        (0, np.zeros((4, 16), dtype=np.float32), "source must be a 3-D float32 array"),
        (0, np.zeros((4, 4, 8), dtype=np.float32)[:, :, ::2], "source must be a C-contiguous array"),
        (1, np.zeros((2, 3, 15), dtype=np.float32), "node_values and node_moments must be"),
        (1, np.zeros((1, 3, 16), dtype=np.float32), "the spline 2 nodes"),
        (3, np.zeros(4, dtype=np.int32), "row_interval must be a 1-D int64 array"),
        (3, np.zeros(5, dtype=np.int64), "row_interval must be"),
        (4, np.zeros((4, 3), dtype=np.float32), "row_weights (4, 4)"),
        (5, np.zeros((4, 4, 4), dtype=np.float64), "out must be a 3-D float32 array"),
        (5, read_only, "out must be a C-contiguous, writable array"),
        (5, np.zeros((5, 4, 4), dtype=np.float32), "row_interval must be (5,)"),
        (6, -1, "rows start:stop"),
        (7, 5, "rows start:stop"),
        (8, 3, "axis is -1"),
        (8, 0, "node_values and node_moments must be (nodes, 1, 16)"),  # one component expected, three given
        (11, True, "node_values and node_moments must be (nodes, 4, 16)"),  # a determinant the buffers lack
        (12, float("nan"), "max_det must be finite"),
        (12, -1.0, "max_det must be finite"),
    ]:
        broken = list(arguments)
        broken[position] = bad
        with pytest.raises(ValueError, match=re.escape(message)):
            KERNEL.pull_back(*broken)
    broken = list(arguments)
    broken[3] = np.full(4, 1, dtype=np.int64)  # interval 1 of 2 nodes: no node 2 to interpolate towards
    with pytest.raises(ValueError, match="spline interval"):
        KERNEL.pull_back(*broken)


@pytest.mark.skipif(KERNEL is None, reason="trueshape._warp not compiled")
def test_kernel_leaves_memory_beyond_out_untouched() -> None:
    # Rows written are start:stop of a view inside a larger array; the guard rows around it stay put.
    rng = np.random.default_rng(6)
    source = rng.uniform(1.0, 2.0, (4, 4, 4)).astype(np.float32)
    values = rng.uniform(-3.0, 3.0, (2, 3, 16)).astype(np.float32)
    parent = np.full((8, 4, 4), 7.0, dtype=np.float32)
    out = parent[2:6]
    weights = np.tile(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), (4, 1))
    KERNEL.pull_back(
        source,
        values,
        np.zeros_like(values),
        np.zeros(4, dtype=np.int64),
        weights,
        out,
        1,
        3,
        -1,
        (1e7, 0, 0, 5e7, 0, 1, 0, 0, 0, 0, 1, 0),
        (1.0, 1.0, 1.0),
        False,
        10.0,
    )
    assert np.all(parent[:3] == 7.0) and np.all(parent[5:] == 7.0)
    assert np.all(parent[3:5] == 0.0)  # every sample lands far outside the source: 0


def _case(state: DistortionState, fortran: bool) -> tuple[Volume, ResidualField]:
    angle = np.deg2rad(10.0)
    direction = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    geometry = VolumeGeometry.from_components(
        shape=(40, 36, 24), origin=(-60.0, -80.0, 90.0), spacing=(4.0, 4.5, 5.0), direction=direction
    )
    rng = np.random.default_rng(5)
    array = ndimage.gaussian_filter(rng.uniform(0.0, 100.0, geometry.shape), 1.5).astype(np.float32)
    if fortran:
        array = np.asfortranarray(array)
    residual = ResidualField(SYN_AS, MagnetFrame(), state, geometry.direction[:, 2])
    return Volume(array, geometry, Provenance(distortion_state=state.value)), residual


@pytest.mark.skipif(KERNEL is None, reason="trueshape._warp not compiled")
@pytest.mark.parametrize("state", [DistortionState.NONE, DistortionState.IN_PLANE_2D])
@pytest.mark.parametrize("fortran", [False, True])
@pytest.mark.parametrize("intensity", [True, False])
def test_compiled_and_python_paths_agree(
    monkeypatch: pytest.MonkeyPatch, state: DistortionState, fortran: bool, intensity: bool
) -> None:
    volume, residual = _case(state, fortran)
    compiled = correct_volume(volume, residual, intensity_correction=intensity, threads=2)
    monkeypatch.setattr(_kernel, "KERNEL", None)
    python = correct_volume(volume, residual, intensity_correction=intensity, threads=2)
    assert compiled.diagnostics.mode is python.diagnostics.mode
    assert compiled.diagnostics.max_displacement_mm > 1.0
    scale = float(np.abs(python.volume.array).max())
    np.testing.assert_allclose(compiled.volume.array, python.volume.array, atol=2e-6 * scale)
    for name in ("max_displacement_mm", "mean_displacement_mm", "jacobian_min", "jacobian_max"):
        assert getattr(compiled.diagnostics, name) == pytest.approx(getattr(python.diagnostics, name), rel=1e-5)
    assert compiled.diagnostics.folded_voxels == python.diagnostics.folded_voxels


def _with_bad_voxels() -> tuple[np.ndarray, VolumeGeometry]:
    grid = VolumeGeometry.from_components(shape=(24, 20, 12), origin=(-100.0, -80.0, 30.0), spacing=(8.0, 8.0, 5.0))
    values = np.random.default_rng(5).uniform(0, 1000, grid.shape).astype(np.float32)
    values[12, 10, 6] = np.nan
    values[4, 15, 3] = np.inf
    return values, grid


@pytest.mark.parametrize("state", [DistortionState.IN_PLANE_2D, DistortionState.NONE])
def test_non_finite_voxels_reach_the_same_voxels_with_and_without_the_kernel(state) -> None:
    values, grid = _with_bad_voxels()
    residual = ResidualField(SYN_AS, MagnetFrame(isocentre_lps=np.array([0.0, 0.0, 90.0])), state, grid.direction[:, 2])
    compiled = correct_volume(Volume(values, grid), residual).volume.array
    with compiled_kernel_disabled():
        fallback = correct_volume(Volume(values, grid), residual).volume.array
    np.testing.assert_array_equal(np.isnan(compiled), np.isnan(fallback))
    np.testing.assert_array_equal(np.isinf(compiled), np.isinf(fallback))
    bad = ~np.isfinite(compiled)
    assert 2 <= bad.sum() <= 54  # the two voxels reach the output voxels sampled within a voxel of them
    np.testing.assert_allclose(compiled[~bad], fallback[~bad], atol=1e-3)


@pytest.mark.parametrize("state", [DistortionState.IN_PLANE_2D, DistortionState.NONE])
def test_cubic_resampling_keeps_non_finite_voxels_local(state) -> None:
    values, grid = _with_bad_voxels()
    residual = ResidualField(SYN_AS, MagnetFrame(isocentre_lps=np.array([0.0, 0.0, 90.0])), state, grid.direction[:, 2])
    out = correct_volume(Volume(values, grid), residual, order=3).volume.array
    bad = ~np.isfinite(out)
    # One voxel's cubic footprint is 4 wide per interpolated axis (5 with the field's own stretch): 2 x 5
    # along k (through-plane) or 2 x 125.
    assert 2 <= bad.sum() <= (10 if state is DistortionState.IN_PLANE_2D else 250)
    far = np.ones(grid.shape, dtype=bool)
    far[8:17, 6:15, 2:11] = False
    far[0:9, 11:20, 0:8] = False
    reference = correct_volume(Volume(np.where(np.isfinite(values), values, 500.0), grid), residual, order=3)
    # Away from the bad voxels the image is the one without them (to the prefilter's decay, 0.27 per voxel).
    assert np.abs(out[far] - reference.volume.array[far]).max() < 1.0


def test_a_constant_region_stays_exactly_constant() -> None:
    grid = VolumeGeometry.from_components(shape=(24, 20, 12), origin=(-100.0, -80.0, 30.0), spacing=(8.0, 8.0, 5.0))
    residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE)
    out = correct_volume(
        Volume(np.full(grid.shape, 4095.0, np.float32), grid), residual, intensity_correction=False
    ).volume.array
    assert set(np.unique(out)) <= {0.0, 4095.0} and np.count_nonzero(out) > out.size // 2


def test_cubic_two_slice_stack_is_mirrored_like_the_full_path() -> None:
    grid = VolumeGeometry.from_components(shape=(32, 32, 2), origin=(-124.0, -124.0, 120.0), spacing=(8.0, 8.0, 5.0))
    values = np.random.default_rng(2).uniform(0, 1000, grid.shape).astype(np.float32)
    residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.IN_PLANE_2D, grid.direction[:, 2])
    one_d = correct_volume(Volume(values, grid), residual, order=3, mode="through-plane", intensity_correction=False)
    full = correct_volume(Volume(values, grid), residual, order=3, mode="full", intensity_correction=False)
    assert one_d.diagnostics.max_displacement_mm > 3.0  # samples reach past the second slice
    np.testing.assert_allclose(one_d.volume.array, full.volume.array, atol=0.05)
