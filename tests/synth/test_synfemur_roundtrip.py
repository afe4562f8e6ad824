"""SYN-FEMUR round trip: distort with SYN-AS, write DICOM, read back, correct with SYN-AS.

Patient position and table offset travel through the DICOM headers (PatientPosition, ImaRelTablePosition),
so a frame or sign error anywhere in the chain shows up as residual displacement.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import trueshape
from trueshape.correction import correct_volume
from trueshape.dicom import DistortionState, PatientPosition
from trueshape.gnl import SYN_AS, ResidualField
from trueshape.reporting import measure_bright_sphere
from trueshape.synth import Acquisition, FemurPhantom, Plane, Tissue, inverse_map, residual_for, write_session

PHANTOM = FemurPhantom()


def _head_acquisition(state, position, table_offset_mm):
    centre, _ = PHANTOM.femoral_heads()[1]
    return Acquisition(
        plane=Plane.CORONAL,
        fov_mm=(72.0, 72.0),
        matrix=(72, 72),
        slices=72,
        slice_thickness_mm=1.0,
        centre_lps=tuple(centre),
        isocentre_lps=(0.0, 0.0, -150.0 - table_offset_mm),
        patient_position=position,
        distortion_state=state,
        in_plane_samples=2,
        slice_samples=2,
        series_number=5,
        description="head_roundtrip",
    )


@pytest.mark.parametrize("table_offset_mm", [0.0, 50.0])
@pytest.mark.parametrize("position", [PatientPosition.HFS, PatientPosition.FFS])
@pytest.mark.parametrize("state", [DistortionState.NONE, DistortionState.IN_PLANE_2D])
def test_distort_then_correct_restores_true_geometry(tmp_path, state, position, table_offset_mm):
    acquisition = _head_acquisition(state, position, table_offset_mm)
    write_session(tmp_path, PHANTOM, SYN_AS, (acquisition,))
    volume = trueshape.load(tmp_path / "dicom")
    assert volume.provenance.patient_position == position.value
    np.testing.assert_allclose(volume.provenance.isocentre_lps, acquisition.isocentre_lps, atol=1e-6)

    residual_from_headers = ResidualField.from_volume(SYN_AS, volume)
    result = correct_volume(volume, residual_from_headers)

    # Where does the corrected image at r really look? At x with x + d(x) = r + d_applied(r) (exact d).
    true_residual = residual_for(SYN_AS, acquisition)
    points = volume.geometry.voxel_centres().reshape(-1, 3)
    points = points[PHANTOM.labels(points) != Tissue.AIR]
    points = points[np.random.default_rng(0).choice(len(points), 20_000, replace=False)]  # exact inverse is costly
    seen = inverse_map(true_residual.displacement_lps, points + result.field.displacement_at(points))
    error = np.linalg.norm(seen - points, axis=1)
    distortion = np.linalg.norm(true_residual.displacement_lps(points), axis=1)
    assert distortion.max() > 2.0  # the case really is distorted (mm)
    assert np.sqrt(np.mean(error**2)) <= 0.1
    assert error.max() <= 0.2

    centre, _ = PHANTOM.femoral_heads()[1]
    levels = dict(
        inside_level=PHANTOM.signal_of(Tissue.MARROW),
        outside_level=PHANTOM.signal_of(Tissue.CORTEX),
        surround_level=PHANTOM.signal_of(Tissue.MUSCLE),
        psf_variance_mm2=acquisition.psf_variance_mm2,
    )
    before = measure_bright_sphere(volume, centre, PHANTOM.head_marrow_radius_mm(), **levels)
    after = measure_bright_sphere(result.volume, centre, PHANTOM.head_marrow_radius_mm(), **levels)
    assert abs(after.ap_lr_ratio - 1.0) <= 0.005
    assert np.all(np.abs(after.diameters_mm - 2 * PHANTOM.head_marrow_radius_mm()) <= 0.25)
    if state is DistortionState.IN_PLANE_2D:
        assert before.ap_lr_ratio < 0.97  # flattened front-to-back, the reported symptom


@pytest.mark.parametrize("state", [DistortionState.NONE, DistortionState.IN_PLANE_2D])
def test_enhanced_multiframe_acquisition_reads_and_corrects_like_classic(tmp_path, state):
    # A smaller, feet-first, table-moved head series written both ways from the same scan.
    centre, _ = PHANTOM.femoral_heads()[1]
    classic = Acquisition(
        plane=Plane.CORONAL,
        fov_mm=(72.0, 72.0),
        matrix=(36, 36),
        slices=24,
        slice_thickness_mm=3.0,
        centre_lps=tuple(centre),
        isocentre_lps=(0.0, 0.0, -200.0),
        patient_position=PatientPosition.FFS,
        distortion_state=state,
        in_plane_samples=1,
        slice_samples=1,
        series_number=5,
        description="classic",
    )
    enhanced = replace(classic, series_number=6, description="enhanced", enhanced=True)
    write_session(tmp_path, PHANTOM, SYN_AS, (classic, enhanced))
    assert len(list((tmp_path / "dicom" / "06_enhanced").iterdir())) == 1
    from_slices = trueshape.load(tmp_path / "dicom" / "05_classic")
    from_frames = trueshape.load(tmp_path / "dicom" / "06_enhanced")
    np.testing.assert_allclose(from_frames.geometry.lps_from_ijk, from_slices.geometry.lps_from_ijk, atol=1e-6)
    np.testing.assert_array_equal(from_frames.values(), from_slices.values())
    for name in ("distortion_state", "patient_position", "isocentre_lps"):
        assert getattr(from_frames.provenance, name) == getattr(from_slices.provenance, name), name
    assert from_frames.provenance.distortion_state == state.value
    # ... read from where Siemens XA keeps them, not from classic tags
    assert "ImageTypeText (0021,1175)" in from_frames.provenance.distortion_source
    assert "RelTablePosition (0021,1005)" in from_frames.provenance.isocentre_source
    a = correct_volume(from_slices, ResidualField.from_volume(SYN_AS, from_slices))
    b = correct_volume(from_frames, ResidualField.from_volume(SYN_AS, from_frames))
    assert a.diagnostics.max_displacement_mm > 2.0
    np.testing.assert_array_equal(b.volume.array, a.volume.array)


def test_double_oblique_dis2d_reads_back_and_corrects(tmp_path):
    acquisition = replace(
        _head_acquisition(DistortionState.IN_PLANE_2D, PatientPosition.HFS, 0.0),
        tilt_deg=(12.0, -8.0),
        matrix=(60, 60),
        slices=60,
        fov_mm=(72.0, 72.0),
        slice_thickness_mm=1.2,
    )
    write_session(tmp_path, PHANTOM, SYN_AS, (acquisition,))
    volume = trueshape.load(tmp_path / "dicom")
    np.testing.assert_allclose(volume.geometry.lps_from_ijk, acquisition.geometry().lps_from_ijk, atol=1e-3)
    normal = acquisition.directions[:, 2]
    assert abs(normal[1]) < 0.99  # really oblique, not coronal
    residual = ResidualField.from_volume(SYN_AS, volume)
    np.testing.assert_allclose(residual.slice_normal_lps, normal, atol=1e-6)
    result = correct_volume(volume, residual)
    true_residual = residual_for(SYN_AS, acquisition)
    points = volume.geometry.voxel_centres().reshape(-1, 3)
    points = points[PHANTOM.labels(points) != Tissue.AIR]
    points = points[np.random.default_rng(1).choice(len(points), 10_000, replace=False)]
    seen = inverse_map(true_residual.displacement_lps, points + result.field.displacement_at(points))
    error = np.linalg.norm(seen - points, axis=1)
    assert np.linalg.norm(true_residual.displacement_lps(points), axis=1).max() > 1.0
    assert np.sqrt(np.mean(error**2)) <= 0.1 and error.max() <= 0.2
