"""The fitted field means what a coefficient file means: the same frames, the same residual per series."""

from __future__ import annotations

import numpy as np
import pytest

from trueshape.dicom import DistortionState, PatientPosition
from trueshape.estimation import FieldModel, SeriesView
from trueshape.gnl import SYN_AS, GradientCoefficients, MagnetFrame, ResidualField
from trueshape.gnl._basis import HarmonicBasis
from trueshape.gnl._harmonics import harmonic_displacement

ASYMMETRIC = GradientCoefficients.from_terms(250.0, {
    ("x", "A", 3, 1): -0.05, ("x", "B", 2, 2): 0.01, ("y", "B", 3, 1): -0.05, ("y", "A", 2, 0): 0.012,
    ("y", "B", 2, 1): -0.008, ("z", "A", 3, 0): -0.08, ("z", "A", 2, 1): -0.006, ("z", "B", 4, 2): 0.004})


def _theta(model: FieldModel, coil: GradientCoefficients) -> np.ndarray:
    values = []
    for axis in model.axes:
        for term in model.basis.terms:
            table = coil.alpha if term.kind.value == "A" else coil.beta
            values.append(table[axis, term.n, term.m] if term.n < table.shape[1] else 0.0)
    return np.array(values)


@pytest.mark.parametrize("coil", [SYN_AS, ASYMMETRIC], ids=["symmetric", "asymmetric"])
def test_basis_reproduces_the_coil_evaluation(coil: GradientCoefficients) -> None:
    basis = HarmonicBasis.up_to(7, r0_mm=250.0, lowest=0)
    points = np.random.default_rng(0).uniform(-220, 220, (500, 3))
    values, gradients = basis.evaluate(points, with_gradient=True)
    model = FieldModel(basis, (0, 1, 2))
    table = model.table(_theta(model, coil))
    expected, jacobian = harmonic_displacement(coil.alpha, coil.beta, 250.0, points, with_jacobian=True)
    assert np.abs(values @ table.T - expected).max() < 1e-10
    assert np.abs(np.einsum("ptc,at->pac", gradients, table) - jacobian).max() < 1e-12


@pytest.mark.parametrize("state, normal, seen", [
    (DistortionState.IN_PLANE_2D, (0.0, 1.0, 0.0), (1,)),   # coronal: the y coil
    (DistortionState.IN_PLANE_2D, (0.0, 0.0, 1.0), (2,)),   # axial: the z coil
    (DistortionState.IN_PLANE_2D, (1.0, 0.0, 0.0), (0,)),   # sagittal: the x coil
    (DistortionState.NONE, None, (0, 1, 2)),
    (DistortionState.FULL_3D, None, ()),
])
def test_each_series_sees_the_axes_its_residual_keeps(state: DistortionState, normal: tuple[float, ...] | None,
                                                       seen: tuple[int, ...]) -> None:
    assert SeriesView.build(state, slice_normal_lps=normal).axes_seen() == seen


@pytest.mark.parametrize("position", list(PatientPosition))
@pytest.mark.parametrize("state, normal", [
    (DistortionState.IN_PLANE_2D, (0.0, 0.6, 0.8)),   # oblique: two coils at once
    (DistortionState.NONE, None),
])
def test_model_residual_equals_the_physics_core(position: PatientPosition, state: DistortionState,
                                                normal: tuple[float, ...] | None) -> None:
    isocentre = np.array([12.0, -30.0, 85.0])
    view = SeriesView.build(state, slice_normal_lps=normal, patient_position=position, isocentre_lps=isocentre)
    model = FieldModel(HarmonicBasis.up_to(4, r0_mm=250.0, lowest=2), (0, 1, 2))
    points = np.random.default_rng(1).uniform(-150, 150, (200, 3))
    truth = ResidualField(ASYMMETRIC, MagnetFrame(position, isocentre), state, normal)
    assert np.abs(model.residual(view, _theta(model, ASYMMETRIC), points) - truth.displacement_lps(points)).max() < 1e-9


def test_fitted_coefficients_round_trip_as_a_coil() -> None:
    model = FieldModel(HarmonicBasis.up_to(5, r0_mm=250.0, lowest=2), (1,))
    theta = _theta(model, SYN_AS)
    coil = model.coefficients(theta, coil_id="LEARNED")
    points = np.random.default_rng(2).uniform(-150, 150, (100, 3))
    view = SeriesView.build(DistortionState.IN_PLANE_2D, slice_normal_lps=(0.0, 1.0, 0.0))
    truth = ResidualField(coil, MagnetFrame(), DistortionState.IN_PLANE_2D, (0.0, 1.0, 0.0))
    assert coil.coil_id == "LEARNED"
    assert np.abs(model.residual(view, theta, points) - truth.displacement_lps(points)).max() < 1e-9
