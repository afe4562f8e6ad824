"""The demo's second half: no coefficient file, a scanner model learned from two subjects' images instead.

Two synthetic subjects (SYN-FEMUR, other sizes and table positions) have both scans: the axial series the
scanner corrected in 3-D and the wide coronal one it corrected in 2-D. ``trueshape learn`` picks each pair,
estimates the field and pools a scanner model; the demo's own coronal series (a third subject, never seen by
the model) is then corrected with the learned model, and its femoral heads measured, beside the correction
from the coil's coefficients. The learned field is compared with the true one (SYN-AS) at the heads.

Examples
--------
>>> learned = run_learning(Path("demo-out"), correct_stack_of=coronal_stack)    # doctest: +SKIP
>>> learned.field_error_at_heads_mm                                             # doctest: +SKIP
[0.01, 0.02]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from trueshape.correction import CorrectionRequest, CorrectOutput, correct_stack
from trueshape.estimation import EstimateOptions, LearnOutput, learn_sessions
from trueshape.geometry import Stack, Volume
from trueshape.gnl import SYN_AS, ResidualField, read_scanner_model
from trueshape.synth import Acquisition, Contrast, FemurPhantom, demo_acquisitions, write_session

__all__ = ["LEARNING_SUBJECTS", "LearningResult", "learning_subject", "run_learning"]

#: The two subjects with both scans: anatomy scale, and where the table put the isocentre below the hips (mm).
LEARNING_SUBJECTS = ((0.95, 130.0), (1.05, 170.0))
#: Soft-tissue texture of the learning subjects (real muscle and fat are not flat; see FemurPhantom).
TEXTURE = 0.15
#: Width of their tissue boundaries, mm: a scanner images a band-limited object (see FemurPhantom.edge_mm).
EDGE_MM = 1.5


@dataclass(frozen=True, eq=False)
class LearningResult:
    """What the learning half of the demo found."""

    learned: LearnOutput
    correction: CorrectOutput
    #: How much the through-plane field stretches each femoral head front to back (right head first), mm of
    #: its diameter: as the learned model says, and as the coil does (the truth).
    learned_ap_change_mm: list[float]
    true_ap_change_mm: list[float]


def learning_subject(scale: float, drop_mm: float, *, quick: bool = False
                     ) -> tuple[FemurPhantom, tuple[Acquisition, Acquisition]]:
    """Return a learning subject (anatomy ``scale``, isocentre ``drop_mm`` below the hips) and its two scans.

    The reference is a T1 axial series of the hips corrected in 3-D, the moving one the wide T1 coronal
    series corrected in 2-D; textured soft tissue and band-limited boundaries, as a scanner images them.

    >>> phantom, (reference, coronal) = learning_subject(1.0, 150.0)
    >>> reference.description, coronal.isocentre_lps[2] - phantom.hip_centre_lps[2]
    ('ax_t1_hips_dis3d', -150.0)
    """
    phantom = FemurPhantom(scale=scale, texture=TEXTURE, edge_mm=EDGE_MM)
    reference, coronal = demo_acquisitions(phantom, quick=quick)
    hips = np.asarray(phantom.hip_centre_lps)
    x, y, z = (float(v) for v in hips + np.array([0.0, 0.0, -drop_mm]))
    pixel, axial_slice, coronal_slice = (3.0, 4.0, 3.0) if quick else (2.0, 3.0, 2.0)
    # A T1 axial series of the hips (corrected in 3-D) and the wide T1 coronal one (in 2-D), as a hip
    # protocol acquires them.
    reference = replace(reference, matrix=(round(400 / pixel), round(280 / pixel)),
                        slices=round(160 / axial_slice), slice_thickness_mm=axial_slice, slice_samples=2,
                        contrast=Contrast.T1, description="ax_t1_hips_dis3d")
    coronal = replace(coronal, matrix=(round(440 / pixel), round(440 / pixel)), slices=round(120 / coronal_slice),
                      slice_thickness_mm=coronal_slice, slice_samples=2, isocentre_lps=(x, y, z),
                      centre_lps=(x, y, z))
    return phantom, (reference, coronal)


def run_learning(root: Path, coronal_stack: Stack, coronal: Volume, *, quick: bool = False,
                 force: bool = False) -> LearningResult:
    """Write two subjects' sessions under ``root/learning``, learn a model, correct ``coronal_stack`` with it."""
    sessions: list[str | os.PathLike[str]] = []
    for number, (scale, drop) in enumerate(LEARNING_SUBJECTS, start=1):
        phantom, acquisitions = learning_subject(scale, drop, quick=quick)
        folder = root / "learning" / f"subject{number}"
        write_session(folder, phantom, SYN_AS, acquisitions, patient_id=f"SYNFEMUR0{number + 1}", force=force)
        sessions.append(folder)
    learned = learn_sessions(sessions, root / "learned", options=EstimateOptions(force=force))
    model = learned.model.path
    request = CorrectionRequest.build(read_scanner_model(model), coefficient_file=model, force=force)
    correction = correct_stack(coronal_stack, request, root / "corrected_with_learned_model", volume=coronal)
    # The heads' front-to-back stretch: the back edge's through-plane displacement minus the front edge's
    # (a shift common to both moves the head, and does not flatten it).
    phantom = FemurPhantom()
    back = np.array([0.0, phantom.head_marrow_radius_mm(), 0.0])  # LPS: +y is posterior
    changes = []
    for coil in (read_scanner_model(model), SYN_AS):
        field = ResidualField.from_volume(coil, coronal)
        changes.append([float((field.displacement_lps(centre + back) - field.displacement_lps(centre - back))[1])
                        for centre, _ in phantom.femoral_heads()])
    return LearningResult(learned, correction, changes[0], changes[1])
