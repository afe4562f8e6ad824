"""Residual field per distortion-correction state, in patient LPS."""

from __future__ import annotations

import numpy as np
import pytest

from trueshape.dicom.vendor import LPS_FROM_MAGNET, DistortionState, PatientPosition
from trueshape.errors import GeometryError
from trueshape.geometry import Provenance, Volume, VolumeGeometry
from trueshape.gnl import SYN_AS, GradientCoefficients, MagnetFrame, ResidualField, residual_projector

OBLIQUE = np.array([0.0, 0.6, 0.8])
ASYMMETRIC = GradientCoefficients.from_terms(
    250.0, {**{(t.axis, t.kind.value, t.n, t.m): t.value for t in SYN_AS.terms()}, ("z", "A", 2, 0): 0.02}
)


@pytest.mark.parametrize(
    ("state", "normal", "expected"),
    [
        (DistortionState.NONE, None, np.eye(3)),
        (DistortionState.NONE, [0.0, 0.0, 1.0], np.eye(3)),
        (DistortionState.FULL_3D, [0.0, 0.0, 1.0], np.zeros((3, 3))),
        (DistortionState.IN_PLANE_2D, [0.0, 0.0, 1.0], np.diag([0.0, 0.0, 1.0])),  # axial
        (DistortionState.IN_PLANE_2D, [0.0, -1.0, 0.0], np.diag([0.0, 1.0, 0.0])),  # coronal
        (DistortionState.IN_PLANE_2D, [1.0, 0.0, 0.0], np.diag([1.0, 0.0, 0.0])),  # sagittal
        (DistortionState.IN_PLANE_2D, OBLIQUE, np.outer(OBLIQUE, OBLIQUE)),
    ],
)
def test_projector_table(state: DistortionState, normal: list[float] | None, expected: np.ndarray) -> None:
    np.testing.assert_allclose(residual_projector(state, normal), expected, atol=1e-15)


def test_projector_refusals() -> None:
    with pytest.raises(GeometryError, match="UNKNOWN"):
        residual_projector(DistortionState.UNKNOWN, [0.0, 0.0, 1.0])
    with pytest.raises(GeometryError, match="slice normal"):
        residual_projector(DistortionState.IN_PLANE_2D)
    with pytest.raises(GeometryError, match="not a unit vector"):
        residual_projector(DistortionState.IN_PLANE_2D, [0.0, 0.0, 2.0])


def points(count: int = 300, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-180.0, 180.0, size=(count, 3))


@pytest.mark.parametrize("position", [PatientPosition.HFS, PatientPosition.FFP, PatientPosition.HFDL])
def test_residual_per_state(position: PatientPosition) -> None:
    frame = MagnetFrame(position, np.array([5.0, -10.0, 40.0]))
    p = points()
    full = ResidualField(ASYMMETRIC, frame, DistortionState.NONE).displacement_lps(p)
    manual = ASYMMETRIC.displacement_magnet((p - frame.isocentre_lps) @ frame.lps_from_magnet) @ frame.lps_from_magnet.T
    np.testing.assert_allclose(full, manual, atol=1e-12)
    through = ResidualField(ASYMMETRIC, frame, DistortionState.IN_PLANE_2D, OBLIQUE).displacement_lps(p)
    np.testing.assert_allclose(through, (full @ OBLIQUE)[:, None] * OBLIQUE, atol=1e-12)
    in_plane_part = through - (through @ OBLIQUE)[:, None] * OBLIQUE
    assert np.abs(in_plane_part).max() < 1e-12
    assert np.abs(through).max() > 1.0  # a real residual, mm
    np.testing.assert_array_equal(ResidualField(ASYMMETRIC, frame, DistortionState.FULL_3D).displacement_lps(p), 0.0)


def test_jacobian_matches_finite_differences_in_lps() -> None:
    residual = ResidualField(
        ASYMMETRIC,
        MagnetFrame(PatientPosition.HFDR, np.array([0.0, 20.0, -30.0])),
        DistortionState.IN_PLANE_2D,
        OBLIQUE,
    )
    p = points(200, 2)
    _, jacobian = residual.displacement_and_jacobian_lps(p)
    step = 1e-3
    for coordinate in range(3):
        offset = np.zeros(3)
        offset[coordinate] = step
        numeric = (residual.displacement_lps(p + offset) - residual.displacement_lps(p - offset)) / (2 * step)
        np.testing.assert_allclose(jacobian[:, :, coordinate], numeric, atol=1e-8)
    # Through-plane only: det(I + n g^T) = 1 + d(d.n)/dn.
    along = (
        residual.displacement_lps(p + step * OBLIQUE) @ OBLIQUE
        - residual.displacement_lps(p - step * OBLIQUE) @ OBLIQUE
    ) / (2 * step)
    np.testing.assert_allclose(residual.jacobian_determinant(p), 1.0 + along, atol=1e-8)


def test_from_provenance_and_volume() -> None:
    provenance = Provenance(
        distortion_state="DIS2D",
        distortion_source="ImageType (0008,0008)",
        isocentre_lps=(0.0, 0.0, 20.0),
        isocentre_source="table offset (0, 0, 20) mm",
        patient_position="FFS",
    )
    geometry = VolumeGeometry.from_components(
        shape=(4, 4, 3), origin=(0, 0, 0), spacing=(1, 1, 2), direction=np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0.0]])
    )
    residual = ResidualField.from_volume(SYN_AS, Volume(np.zeros((4, 4, 3)), geometry, provenance))
    assert residual.distortion_state is DistortionState.IN_PLANE_2D
    assert residual.magnet_frame.patient_position is PatientPosition.FFS
    np.testing.assert_allclose(residual.slice_normal_lps, [0.0, 1.0, 0.0])  # the k axis (direction column 3)
    assert any("ImageType" in a for a in residual.read_from_headers)
    assert [a.split(":")[0] for a in residual.assumptions] == ["slice normal"]  # nothing recorded it
    p = points(50, 3)
    frame = MagnetFrame(PatientPosition.FFS, np.array([0.0, 0.0, 20.0]))
    full = ResidualField(SYN_AS, frame, DistortionState.NONE).displacement_lps(p)
    np.testing.assert_allclose(residual.displacement_lps(p), np.outer(full[:, 1], [0.0, 1.0, 0.0]), atol=1e-12)
    # Explicit keywords win; a missing patient position is an assumption said aloud.
    override = ResidualField.from_provenance(SYN_AS, Provenance(), slice_normal_lps=None, distortion_state="ND")
    assert override.distortion_state is DistortionState.NONE
    assert "patient position unknown: HFS assumed" in override.assumptions
    with pytest.raises(GeometryError, match="UNKNOWN"):
        ResidualField.from_provenance(SYN_AS, Provenance(), slice_normal_lps=[0.0, 0.0, 1.0])


def test_interpolant_carries_the_determinant() -> None:
    residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE)
    geometry = VolumeGeometry.from_components(shape=(30, 30, 30), origin=(-120, -120, -120), spacing=(8, 8, 8))
    interpolant = residual.interpolant(geometry, with_jacobian_determinant=True)
    p = points(500, 4) * 0.6
    values = interpolant.at_lps(p)
    np.testing.assert_allclose(values[:, :3], residual.displacement_lps(p), atol=1e-3)
    np.testing.assert_allclose(values[:, 3], residual.jacobian_determinant(p), atol=1e-5)


@pytest.mark.parametrize("position", ["FFS", "HFDR", "FFP"])
def test_a_given_patient_position_rotates_the_recorded_table_offset(position: str) -> None:
    # Headers without PatientPosition: the isocentre was computed for an assumed HFS.
    offset = (10.0, -5.0, -40.0)
    provenance = Provenance(
        distortion_state="ND",
        isocentre_lps=tuple(LPS_FROM_MAGNET[PatientPosition.HFS] @ offset),
        isocentre_source="table offset rotated for HFS (patient position unknown: HFS assumed)",
        table_offset_mm=offset,
        table_source="ImaRelTablePosition (0019,1014)",
    )
    residual = ResidualField.from_provenance(SYN_AS, provenance, slice_normal_lps=None, patient_position=position)
    expected = LPS_FROM_MAGNET[PatientPosition(position)] @ np.asarray(offset)
    np.testing.assert_allclose(residual.magnet_frame.isocentre_lps, expected, atol=1e-12)
    assert np.abs(expected - provenance.isocentre_lps).max() > 10.0  # the old isocentre was wrong for it
    # What was given, what was read (the offset, rotated for the given position) and what assumed, apart.
    assert residual.given == (f"patient position {position} given by the caller",)
    assert any(f"rotated for {position}" in a and "ImaRelTablePosition" in a for a in residual.read_from_headers)
    assert residual.assumptions == ()
    # An isocentre the caller gives wins over both.
    given = ResidualField.from_provenance(
        SYN_AS, provenance, slice_normal_lps=None, patient_position=position, isocentre_lps=[1.0, 2.0, 3.0]
    )
    np.testing.assert_allclose(given.magnet_frame.isocentre_lps, [1.0, 2.0, 3.0])
