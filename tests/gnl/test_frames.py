"""Patient LPS <-> magnet frame for all eight patient positions, and the LAI coefficient frame."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trueshape.dicom.vendor import PatientPosition
from trueshape.gnl import COEFFICIENT_FROM_MAGNET, SYN_AS, CoefficientFrame, GradientCoefficients, MagnetFrame

X, Y, Z = np.eye(3)

# Where the patient's Left, Posterior and Superior axes point in the magnet frame (+Y = towards the floor,
# +Z = into the bore for a head-first patient). Decubitus right = right side down, so Left points up (-Y).
PATIENT_AXES_IN_MAGNET = {
    PatientPosition.HFS: (X, Y, Z),
    PatientPosition.HFP: (-X, -Y, Z),
    PatientPosition.FFS: (-X, Y, -Z),
    PatientPosition.FFP: (X, -Y, -Z),
    PatientPosition.HFDR: (-Y, X, Z),
    PatientPosition.HFDL: (Y, -X, Z),
    PatientPosition.FFDR: (-Y, -X, -Z),
    PatientPosition.FFDL: (Y, X, -Z),
}


@pytest.mark.parametrize("position", list(PatientPosition))
def test_rotation_per_patient_position(position: PatientPosition) -> None:
    left, posterior, superior = PATIENT_AXES_IN_MAGNET[position]
    frame = MagnetFrame(position)
    # A unit step towards the patient's left is the magnet vector `left`.
    np.testing.assert_allclose(frame.magnet_vectors_from_lps([1.0, 0.0, 0.0]), left, atol=1e-12)
    np.testing.assert_allclose(frame.magnet_vectors_from_lps([0.0, 1.0, 0.0]), posterior, atol=1e-12)
    np.testing.assert_allclose(frame.magnet_vectors_from_lps([0.0, 0.0, 1.0]), superior, atol=1e-12)
    assert np.linalg.det(frame.lps_from_magnet) == pytest.approx(1.0)


@pytest.mark.parametrize("position", list(PatientPosition))
def test_points_and_vectors_round_trip_with_isocentre(position: PatientPosition) -> None:
    isocentre = np.array([12.0, -30.0, 45.0])
    frame = MagnetFrame(position, isocentre)
    points = np.random.default_rng(3).uniform(-200.0, 200.0, size=(50, 3))
    magnet = frame.magnet_from_lps(points)
    np.testing.assert_allclose(magnet, (points - isocentre) @ frame.lps_from_magnet, atol=1e-12)
    np.testing.assert_allclose(frame.lps_from_magnet_points(magnet), points, atol=1e-12)
    # The isocentre itself is the magnet origin; distances are preserved.
    np.testing.assert_allclose(frame.magnet_from_lps(isocentre), np.zeros(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(magnet, axis=1), np.linalg.norm(points - isocentre, axis=1))
    vectors = np.random.default_rng(4).normal(size=(50, 3))
    np.testing.assert_allclose(frame.lps_vectors_from_magnet(frame.magnet_vectors_from_lps(vectors)), vectors)


def test_table_move_example() -> None:
    # Feet first supine, table moved so that the isocentre sits at z = +20 mm (LPS).
    frame = MagnetFrame(PatientPosition.FFS, np.array([0.0, 0.0, 20.0]))
    np.testing.assert_allclose(frame.magnet_from_lps([10.0, 0.0, 50.0]), [-10.0, 0.0, -30.0])
    np.testing.assert_allclose(frame.lps_vectors_from_magnet([0.0, 0.0, 2.0]), [0.0, 0.0, -2.0])


def test_magnet_frame_rejects_bad_isocentre() -> None:
    with pytest.raises(ValueError, match="isocentre"):
        MagnetFrame(PatientPosition.HFS, np.array([0.0, np.nan, 0.0]))


def test_lai_matrix() -> None:
    np.testing.assert_array_equal(COEFFICIENT_FROM_MAGNET[CoefficientFrame.LAI], np.diag([1.0, -1.0, -1.0]))
    np.testing.assert_array_equal(COEFFICIENT_FROM_MAGNET[CoefficientFrame.MAGNET], np.eye(3))


def _both_frames(terms: dict[tuple[str, str, int, int], float]) -> tuple[GradientCoefficients, GradientCoefficients]:
    return (
        GradientCoefficients.from_terms(250.0, terms, frame=CoefficientFrame.LAI),
        GradientCoefficients.from_terms(250.0, terms, frame=CoefficientFrame.MAGNET),
    )


def test_lai_conversion_of_a20() -> None:
    # z: A(2,0) = a gives d_z = a (1.5 z^2 - 0.5 r^2) / R0 in the coefficient frame, even in position.
    # In LAI the magnet Z axis is reversed, so the magnet-frame z displacement changes sign.
    a = 0.02
    lai, magnet = _both_frames({("z", "A", 2, 0): a})
    point = np.array([30.0, -60.0, 120.0])
    r2 = float(point @ point)
    expected = a * (1.5 * point[2] ** 2 - 0.5 * r2) / 250.0
    np.testing.assert_allclose(magnet.displacement_magnet(point), [0.0, 0.0, expected], atol=1e-12)
    np.testing.assert_allclose(lai.displacement_magnet(point), [0.0, 0.0, -expected], atol=1e-12)
    assert abs(expected) > 0.5  # mm: the frames disagree by more than a millimetre here


def test_lai_conversion_of_b21() -> None:
    # y: B(2,1) = b gives d_y = 3 N21 b y z / R0 with N21 = sqrt(5/12). Under LAI, y z is unchanged but
    # the y axis is reversed.
    b = 0.03
    lai, magnet = _both_frames({("y", "B", 2, 1): b})
    point = np.array([-40.0, 90.0, 150.0])
    expected = 3.0 * math.sqrt(5.0 / 12.0) * b * point[1] * point[2] / 250.0
    np.testing.assert_allclose(magnet.displacement_magnet(point), [0.0, expected, 0.0], atol=1e-12)
    np.testing.assert_allclose(lai.displacement_magnet(point), [0.0, -expected, 0.0], atol=1e-12)


def test_lai_jacobian_follows_the_frame() -> None:
    lai, _ = _both_frames({("y", "B", 2, 1): 0.03, ("z", "A", 2, 0): 0.02, ("x", "A", 3, 2): 0.01})
    points = np.random.default_rng(5).uniform(-200.0, 200.0, size=(100, 3))
    _, jacobian = lai.displacement_and_jacobian_magnet(points)
    step = 1e-3
    for coordinate in range(3):
        offset = np.zeros(3)
        offset[coordinate] = step
        numeric = (lai.displacement_magnet(points + offset) - lai.displacement_magnet(points - offset)) / (2 * step)
        np.testing.assert_allclose(jacobian[:, :, coordinate], numeric, atol=1e-8)


def test_symmetric_odd_coil_is_frame_independent() -> None:
    magnet_frame_copy = GradientCoefficients(SYN_AS.r0_mm, SYN_AS.alpha, SYN_AS.beta, frame=CoefficientFrame.MAGNET)
    points = np.random.default_rng(6).uniform(-250.0, 250.0, size=(2000, 3))
    np.testing.assert_allclose(
        SYN_AS.displacement_magnet(points), magnet_frame_copy.displacement_magnet(points), atol=1e-10
    )
