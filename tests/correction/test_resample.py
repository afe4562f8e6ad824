"""GNL correction on a synthetic phantom distorted by an exact forward model, assessed in millimetres."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from trueshape.correction import CorrectionMode, correct_volume, sampled_normal_range
from trueshape.dicom.vendor import DistortionState, PatientPosition
from trueshape.errors import GeometryError
from trueshape.geometry import Provenance, Volume, VolumeGeometry
from trueshape.gnl import SYN_AS, GradientCoefficients, MagnetFrame, ResidualField
from trueshape.io import read_itk_displacement_field, write_itk_transform

BLOB_SIGMA_MM = 6.0
BLOB_PITCH_MM = 40.0
CENTROID_RADIUS_MM = 14.0

# SYN-AS plus an asymmetric term, so that frame mistakes cannot cancel.
COIL = GradientCoefficients.from_terms(
    250.0, {**{(t.axis, t.kind.value, t.n, t.m): t.value for t in SYN_AS.terms()}, ("z", "A", 2, 0): 0.01}
)


def oblique_geometry(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], centre: np.ndarray
) -> VolumeGeometry:
    angle = np.deg2rad(12.0)
    direction = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    origin = centre - direction @ (np.array(spacing) * (np.array(shape) - 1) / 2)
    return VolumeGeometry.from_components(shape=shape, origin=origin, spacing=spacing, direction=direction)


def blob_centres(geometry: VolumeGeometry, margin_mm: float = 25.0) -> np.ndarray:
    corners = geometry.corner_points()
    low, high = corners.min(axis=0), corners.max(axis=0)
    axes = [
        np.arange(np.ceil(lo / BLOB_PITCH_MM), np.floor(hi / BLOB_PITCH_MM) + 1) * BLOB_PITCH_MM
        for lo, hi in zip(low, high, strict=True)
    ]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    index = geometry.lps_to_index(grid)
    margin = margin_mm / geometry.spacing
    inside = np.all((index >= margin) & (index <= np.array(geometry.shape) - 1 - margin), axis=1)
    return grid[inside]


def phantom(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Sum of Gaussian blobs (peak 1) at LPS points, shape (..., 3) -> (...)."""
    flat = points.reshape(-1, 3)
    out = np.zeros(flat.shape[0])
    for centre in centres:
        out += np.exp(-np.sum((flat - centre) ** 2, axis=1) / (2 * BLOB_SIGMA_MM**2))
    return out.reshape(points.shape[:-1])


def distort(residual: ResidualField, geometry: VolumeGeometry, centres: np.ndarray) -> np.ndarray:
    """Exact forward model: the image at y holds truth(x) / J(x) where x + d(x) = y (fixed point)."""
    y = geometry.voxel_centres().reshape(-1, 3)
    x = y.copy()
    for _ in range(60):
        previous = x
        x = y - residual.displacement_lps(x)
        if np.max(np.abs(x - previous)) < 1e-7:
            break
    assert np.max(np.abs(x + residual.displacement_lps(x) - y)) < 1e-6
    values = phantom(x, centres) / residual.jacobian_determinant(x)
    return values.reshape(geometry.shape).astype(np.float32)


def centroids(image: np.ndarray, geometry: VolumeGeometry, centres: np.ndarray) -> np.ndarray:
    points = geometry.voxel_centres().reshape(-1, 3)
    values = image.reshape(-1).astype(np.float64)
    out = []
    for centre in centres:
        near = np.linalg.norm(points - centre, axis=1) <= CENTROID_RADIUS_MM
        weights = values[near]
        out.append(weights @ points[near] / weights.sum())
    return np.array(out)


@dataclass
class Case:
    geometry: VolumeGeometry
    residual: ResidualField
    centres: np.ndarray
    truth: np.ndarray
    distorted: Volume


@pytest.fixture(scope="module")
def full_case() -> Case:
    """Uncorrected (ND) oblique series off-centre, feet-first prone with a table offset."""
    frame = MagnetFrame(PatientPosition.FFP, np.array([0.0, 0.0, -30.0]))
    geometry = oblique_geometry((64, 60, 44), (3.0, 3.2, 4.0), centre=np.array([40.0, -20.0, 60.0]))
    residual = ResidualField(COIL, frame, DistortionState.NONE)
    centres = blob_centres(geometry)
    truth = phantom(geometry.voxel_centres(), centres).astype(np.float32)
    distorted = Volume(distort(residual, geometry, centres), geometry, Provenance(distortion_state="ND"))
    return Case(geometry, residual, centres, truth, distorted)


@pytest.fixture(scope="module")
def through_plane_case() -> Case:
    """In-plane corrected (DIS2D) axial series: the residual is along the slice normal (the k axis)."""
    geometry = VolumeGeometry.from_components(
        shape=(56, 56, 40), origin=(-110.0, -110.0, 20.0), spacing=(4.0, 4.0, 4.5)
    )
    residual = ResidualField(COIL, MagnetFrame(), DistortionState.IN_PLANE_2D, geometry.direction[:, 2])
    centres = blob_centres(geometry)
    truth = phantom(geometry.voxel_centres(), centres).astype(np.float32)
    distorted = Volume(distort(residual, geometry, centres), geometry, Provenance(distortion_state="DIS2D"))
    return Case(geometry, residual, centres, truth, distorted)


def test_round_trip_puts_blobs_back(full_case: Case) -> None:
    case = full_case
    # Centroids are measured identically in the true image, so the mask's own bias cancels.
    reference = centroids(case.truth, case.geometry, case.centres)
    before = np.linalg.norm(centroids(case.distorted.array, case.geometry, case.centres) - reference, axis=1)
    assert before.max() > 3.0  # mm: the distortion is material
    cubic = correct_volume(case.distorted, case.residual, mode="full", order=3)
    after = np.linalg.norm(centroids(cubic.volume.array, case.geometry, case.centres) - reference, axis=1)
    assert after.max() < 0.01  # mm
    assert np.abs(cubic.volume.array - case.truth).max() < 0.01  # peak 1
    linear = correct_volume(case.distorted, case.residual, mode="full")
    after_linear = np.linalg.norm(centroids(linear.volume.array, case.geometry, case.centres) - reference, axis=1)
    assert after_linear.max() < 0.1  # mm: trilinear sampling of 6 mm blobs on 3-4 mm voxels
    assert linear.diagnostics.mode is CorrectionMode.FULL
    assert linear.diagnostics.interpolation_error_mm <= 0.01
    assert linear.volume.provenance.distortion_state == "DIS3D"


def test_diagnostics_are_exact(full_case: Case) -> None:
    case = full_case
    result = correct_volume(case.distorted, case.residual)
    points = case.geometry.voxel_centres().reshape(-1, 3)
    lengths = np.linalg.norm(case.residual.displacement_lps(points), axis=1)
    determinant = case.residual.jacobian_determinant(points)
    assert result.diagnostics.max_displacement_mm == pytest.approx(lengths.max(), abs=1e-3)
    assert result.diagnostics.mean_displacement_mm == pytest.approx(lengths.mean(), abs=1e-3)
    assert result.diagnostics.jacobian_min == pytest.approx(determinant.min(), abs=1e-5)
    assert result.diagnostics.jacobian_max == pytest.approx(determinant.max(), abs=1e-5)
    assert result.diagnostics.folded_voxels == 0
    # The exported field, trilinear between 4 mm nodes, stays within its stated error of the exact field.
    exported = result.field.displacement_at(points)
    assert np.linalg.norm(exported - case.residual.displacement_lps(points), axis=1).max() <= (
        result.diagnostics.field_interpolation_error_mm + 1e-6
    )
    assert result.diagnostics.field_interpolation_error_mm < 0.02


def test_jacobian_restores_intensity(full_case: Case) -> None:
    case = full_case
    with_jacobian = correct_volume(case.distorted, case.residual, order=3).volume.array
    without = correct_volume(case.distorted, case.residual, order=3, intensity_correction=False).volume.array
    points = case.geometry.voxel_centres()
    determinant = case.residual.jacobian_determinant(points.reshape(-1, 3)).reshape(case.geometry.shape)
    assert np.abs(determinant - 1).max() > 0.1  # the field compresses and stretches by > 10 %
    np.testing.assert_allclose(without * determinant, with_jacobian, atol=1e-5)
    assert np.abs(without - case.truth).max() > 5 * np.abs(with_jacobian - case.truth).max()


def test_cubic_interpolation_is_closer(full_case: Case) -> None:
    case = full_case
    linear = correct_volume(case.distorted, case.residual, order=1).volume.array
    cubic = correct_volume(case.distorted, case.residual, order=3).volume.array
    interior = (slice(4, -4),) * 3
    assert np.abs(cubic - case.truth)[interior].max() < np.abs(linear - case.truth)[interior].max()


def test_itk_transform_gives_the_same_image(full_case: Case, tmp_path: Path) -> None:
    case = full_case
    # A background of 1 gives the edge voxels values, so the half-voxel border rule is really compared.
    distorted = Volume(np.asarray(case.distorted.array) + np.float32(1.0), case.geometry, case.distorted.provenance)
    result = correct_volume(distorted, case.residual, intensity_correction=False)
    path = write_itk_transform(result.field, tmp_path / "gnl.h5")
    np.testing.assert_allclose(read_itk_displacement_field(path).vectors, result.field.vectors, atol=1e-12)
    image = sitk.GetImageFromArray(np.ascontiguousarray(distorted.array.transpose(2, 1, 0)))
    image.SetOrigin(tuple(case.geometry.origin))
    image.SetSpacing(tuple(case.geometry.spacing))
    image.SetDirection(tuple(case.geometry.direction.ravel()))
    resampled = sitk.Resample(image, image, sitk.ReadTransform(str(path)), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    itk_array = sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)
    # Compare everywhere, the half-voxel border included (both keep edge values there and 0 beyond), except
    # samples within 1e-3 voxel of that border, which rounding may put on either side.
    points = case.geometry.voxel_centres().reshape(-1, 3)
    source_index = case.geometry.lps_to_index(points + case.residual.displacement_lps(points))
    borders = np.concatenate([source_index + 0.5, np.array(case.geometry.shape) - 0.5 - source_index], axis=1)
    decided = np.all(np.abs(borders) > 1e-3, axis=1)
    beyond_edge_centres = np.any((source_index < 0) | (source_index > np.array(case.geometry.shape) - 1), axis=1)
    difference = np.abs(itk_array.reshape(-1) - result.volume.array.reshape(-1))[decided]
    within_half = np.all(borders > 1e-3, axis=1)
    in_border_band = beyond_edge_centres & within_half
    assert decided.mean() > 0.99 and in_border_band.sum() > 100  # the border is tested
    assert result.volume.array.reshape(-1)[in_border_band].min() >= 1.0  # edge values there, not 0
    assert difference.max() < 5e-3  # image peak 2
    assert difference.mean() < 1e-4


def test_output_grid_can_differ(full_case: Case) -> None:
    case = full_case
    whole = correct_volume(case.distorted, case.residual).volume.array
    crop = VolumeGeometry(shape=(20, 25, 30), lps_from_ijk=case.geometry.lps_from_ijk @ _shift(5, 7, 9))
    part = correct_volume(case.distorted, case.residual, output_geometry=crop)
    assert part.volume.geometry is crop
    np.testing.assert_allclose(part.volume.array, whole[5:25, 7:32, 9:39], atol=1e-4)


def _shift(i: int, j: int, k: int) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = (i, j, k)
    return matrix


def test_four_dimensional_volume(full_case: Case) -> None:
    case = full_case
    stacked = Volume(
        np.stack([case.distorted.array, 2 * case.distorted.array], axis=-1), case.geometry, case.distorted.provenance
    )
    result = correct_volume(stacked, case.residual, threads=2)
    single = correct_volume(case.distorted, case.residual, threads=1).volume.array
    np.testing.assert_allclose(result.volume.array[..., 0], single, atol=1e-6)
    np.testing.assert_allclose(result.volume.array[..., 1], 2 * single, atol=1e-6)


def test_through_plane_round_trip_and_agreement(through_plane_case: Case) -> None:
    case = through_plane_case
    fast = correct_volume(case.distorted, case.residual)
    assert fast.diagnostics.mode is CorrectionMode.THROUGH_PLANE
    full = correct_volume(case.distorted, case.residual, mode="full")
    np.testing.assert_allclose(fast.volume.array, full.volume.array, atol=2e-5)
    np.testing.assert_allclose(fast.field.vectors, full.field.vectors, atol=1e-9)
    # Residual displacement is along z only; blobs return to their centres.
    reference = centroids(case.truth, case.geometry, case.centres)
    before = centroids(case.distorted.array, case.geometry, case.centres) - reference
    assert np.abs(before[:, 2]).max() > 2.0
    cubic_fast = correct_volume(case.distorted, case.residual, order=3).volume.array
    cubic_full = correct_volume(case.distorted, case.residual, order=3, mode="full").volume.array
    np.testing.assert_allclose(cubic_fast, cubic_full, atol=2e-5)
    after = centroids(cubic_fast, case.geometry, case.centres) - reference
    assert np.abs(after).max() < 0.01


def test_mode_rules(through_plane_case: Case, full_case: Case) -> None:
    with pytest.raises(GeometryError, match="through-plane"):
        correct_volume(full_case.distorted, full_case.residual, mode="through-plane")
    # DIS2D whose slice normal is not the grid's k axis: auto falls back to the full path.
    tilted = ResidualField(COIL, MagnetFrame(), DistortionState.IN_PLANE_2D, np.array([0.0, 0.6, 0.8]))
    assert correct_volume(through_plane_case.distorted, tilted).diagnostics.mode is CorrectionMode.FULL
    with pytest.raises(ValueError, match="order"):
        correct_volume(full_case.distorted, full_case.residual, order=2)


def test_nothing_left_to_correct(through_plane_case: Case) -> None:
    case = through_plane_case
    residual = ResidualField(COIL, MagnetFrame(), DistortionState.FULL_3D)
    result = correct_volume(case.distorted, residual)
    assert result.diagnostics.mode is CorrectionMode.NONE
    np.testing.assert_array_equal(result.volume.array, case.distorted.array)
    assert result.field.max_norm_mm() == 0.0
    assert result.diagnostics.max_displacement_mm == 0.0


def test_coefficients_and_provenance_are_enough(through_plane_case: Case) -> None:
    case = through_plane_case
    from_coefficients = correct_volume(case.distorted, COIL)
    explicit = correct_volume(case.distorted, case.residual)
    assert from_coefficients.diagnostics.mode is CorrectionMode.THROUGH_PLANE
    assert "patient position unknown: HFS assumed" in from_coefficients.diagnostics.assumptions
    np.testing.assert_array_equal(from_coefficients.volume.array, explicit.volume.array)


@pytest.mark.parametrize(("mode", "order"), [("full", 1), ("full", 3), ("through-plane", 1), ("through-plane", 3)])
def test_fortran_ordered_input_gives_the_same_result(through_plane_case: Case, mode: str, order: int) -> None:
    # NIfTI arrays load in Fortran order; they are processed as their transpose, without a copy.
    case = through_plane_case
    fortran = Volume(np.asfortranarray(case.distorted.array), case.geometry, case.distorted.provenance)
    expected = correct_volume(case.distorted, case.residual, mode=mode, order=order)
    got = correct_volume(fortran, case.residual, mode=mode, order=order)
    assert got.volume.array.flags.f_contiguous
    np.testing.assert_allclose(got.volume.array, expected.volume.array, atol=2e-5)
    assert got.diagnostics.max_displacement_mm == pytest.approx(expected.diagnostics.max_displacement_mm, rel=1e-5)
    assert got.diagnostics.jacobian_min == pytest.approx(expected.diagnostics.jacobian_min, rel=1e-5)


def test_fortran_ordered_input_on_another_grid(full_case: Case) -> None:
    case = full_case
    fortran = Volume(np.asfortranarray(case.distorted.array), case.geometry, case.distorted.provenance)
    crop = VolumeGeometry(shape=(20, 25, 30), lps_from_ijk=case.geometry.lps_from_ijk @ _shift(5, 7, 9))
    expected = correct_volume(case.distorted, case.residual, output_geometry=crop).volume.array
    np.testing.assert_allclose(
        correct_volume(fortran, case.residual, output_geometry=crop).volume.array, expected, atol=2e-5
    )


def test_sampled_normal_range_matches_every_voxel_within_0_01_mm():
    # A wide coronal field of view, oblique to nothing, ND: the full 3-D residual reaches about 15 mm.
    shape, spacing = (256, 256, 40), (1.5, 1.5, 4.0)
    direction = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # columns: i, j, k (k along A-P)
    origin = -(np.array(shape) * np.array(spacing) / 2) @ direction.T
    grid = VolumeGeometry.from_components(shape=shape, origin=origin, spacing=spacing, direction=direction)
    result = correct_volume(
        Volume(np.ones(shape, np.float32), grid), ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE)
    )
    fast = sampled_normal_range(result, grid)
    axes = tuple(np.arange(n, dtype=np.float64) for n in shape)
    every = result.coarse_field.on_lattice(axes)[..., :3]
    lattice = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    along = (grid.index_to_lps(lattice).reshape(every.shape) + every) @ grid.direction[:, 2]
    exact = np.stack([along.min(axis=(0, 1)), along.max(axis=(0, 1))], axis=1)
    assert np.abs(every).max() > 10.0
    assert np.abs(fast - exact).max() <= 0.01


@pytest.mark.parametrize("state", [DistortionState.NONE, DistortionState.IN_PLANE_2D])
def test_a_single_slice_is_corrected_not_blanked(state: DistortionState) -> None:
    # One 5 mm slice 60 mm from the isocentre: the through-plane residual moves samples a fraction of the slice,
    # which is still the slice (ITK's half-voxel rule), not outside the data.
    grid = VolumeGeometry.from_components(shape=(40, 40, 1), origin=(-100.0, -100.0, 60.0), spacing=(5.0, 5.0, 5.0))
    volume = Volume(np.full((40, 40, 1), 100.0, np.float32), grid, Provenance(distortion_state=state.value))
    result = correct_volume(
        volume,
        ResidualField(SYN_AS, MagnetFrame(), state, slice_normal_lps=np.array([0, 0, 1.0])),
        intensity_correction=False,
    )
    corrected = np.asarray(result.volume.array)
    assert np.count_nonzero(corrected[5:-5, 5:-5]) == 30 * 30  # away from the in-plane edges
    assert np.abs(corrected[5:-5, 5:-5] - 100.0).max() < 1e-4


def test_folding_is_reported_with_and_without_intensity_correction() -> None:
    terms = {(t.axis, t.kind.value, t.n, t.m): t.value for t in SYN_AS.terms()}
    folding = GradientCoefficients.from_terms(250.0, {**terms, ("z", "A", 2, 0): 2.0})
    grid = VolumeGeometry.from_components(shape=(24, 24, 24), origin=(-115.0,) * 3, spacing=(10.0,) * 3)
    residual = ResidualField(folding, MagnetFrame(), DistortionState.NONE)
    volume = Volume(np.ones(grid.shape, np.float32), grid)
    on = correct_volume(volume, residual).diagnostics
    off = correct_volume(volume, residual, intensity_correction=False).diagnostics
    assert on.folded_voxels > 100 and on.jacobian_min < 0.0
    assert (off.folded_voxels, off.jacobian_min, off.jacobian_max) == (
        on.folded_voxels,
        on.jacobian_min,
        on.jacobian_max,
    )


def test_reported_interpolation_error_bounds_the_applied_field_everywhere() -> None:
    grid = VolumeGeometry.from_components(shape=(48, 48, 48), origin=(-235.0,) * 3, spacing=(10.0,) * 3)
    residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE)
    result = correct_volume(Volume(np.zeros(grid.shape, np.float32), grid), residual, intensity_correction=False)
    coarse = result.coarse_field
    applied = np.moveaxis(coarse.with_values(coarse.values[..., :3]).upsampler().slab(0, 48), 0, -1).reshape(-1, 3)
    points = grid.voxel_centres().reshape(-1, 3)
    actual = float(np.linalg.norm(applied - residual.displacement_lps(points), axis=1).max())
    assert 0.0 < actual <= result.diagnostics.interpolation_error_mm <= 0.01


def test_outside_fraction_measures_what_a_single_slice_loses() -> None:
    # A 400 mm coronal slice, 5 mm thick, 40 mm behind the isocentre: the through-plane residual exceeds half
    # the thickness over a fifth of it, and those voxels have no data.
    grid = VolumeGeometry.from_components(
        shape=(80, 80, 1),
        origin=(-197.5, 40.0, 197.5),
        spacing=(5.0, 5.0, 5.0),
        direction=np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
    )
    volume = Volume(np.full(grid.shape, 100.0, np.float32), grid)
    residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.IN_PLANE_2D, slice_normal_lps=grid.direction[:, 2])
    result = correct_volume(volume, residual, intensity_correction=False)
    lost = float(np.mean(np.asarray(result.volume.array) == 0.0))
    assert 0.1 < lost < 0.4
    assert result.diagnostics.outside_fraction == pytest.approx(lost, abs=0.02)


def test_an_output_grid_beyond_the_input_is_not_counted_as_lost() -> None:
    grid = VolumeGeometry.from_components(shape=(32, 32, 12), origin=(-62.0, -62.0, -22.0), spacing=(4.0, 4.0, 4.0))
    wider = VolumeGeometry.from_components(shape=(64, 64, 24), origin=(-126.0, -126.0, -46.0), spacing=(4.0, 4.0, 4.0))
    residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE)
    result = correct_volume(Volume(np.ones(grid.shape, np.float32), grid), residual, output_geometry=wider)
    assert np.mean(np.asarray(result.volume.array) == 0.0) > 0.7  # most of the wider grid has no data
    assert result.diagnostics.outside_fraction < 0.05  # but the correction moved little of it out


def test_a_single_slice_on_a_fine_like_grid_still_reports_what_it_loses() -> None:
    grid = VolumeGeometry.from_components(
        shape=(80, 80, 1),
        origin=(-197.5, 40.0, 197.5),
        spacing=(5.0, 5.0, 2.0),
        direction=np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
    )
    fine = VolumeGeometry.from_components(
        shape=(80, 80, 256), origin=(-197.5, 40.0 - 129.5, 197.5), spacing=(5.0, 5.0, 1.0), direction=grid.direction
    )
    residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.IN_PLANE_2D, slice_normal_lps=grid.direction[:, 2])
    result = correct_volume(
        Volume(np.full(grid.shape, 100.0, np.float32), grid), residual, output_geometry=fine, intensity_correction=False
    )
    out = np.asarray(result.volume.array)
    covered = out[:, :, 129:131]  # the output slices within the 2 mm slab (y 39.5 and 40.5 mm)
    lost = float(np.mean(covered == 0.0))
    assert 0.2 < lost < 0.8
    assert result.diagnostics.outside_fraction == pytest.approx(lost, abs=0.1)
