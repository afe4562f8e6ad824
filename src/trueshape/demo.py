"""The whole story on synthetic data: why the femoral head looks flattened, and the fix.

1. Write a synthetic session (SYN-FEMUR phantom, SYN-AS coil): a reference axial centred on the hips
   (3-D corrected) and a wide coronal series whose femoral heads sit 150 mm from the isocentre along the
   bore, 178 mm away in all (2-D corrected: DIS2D).
2. Inspect it: the coronal series is flagged DISTORTION_2D_ONLY and FAR_FROM_ISOCENTRE.
3. Predict, from the headers and the coil alone, the through-plane displacement at each femoral head.
4. Correct the coronal series with the coil's coefficients (through-plane mode).
5. Measure each femoral head (marrow sphere, 43.0 mm across) before and after.

``trueshape demo`` then writes ``report.html`` beside it: the story and every output as figures
(:mod:`trueshape.demo_report`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from trueshape.api import inspect
from trueshape.correction import CorrectionRequest, CorrectOutput, correct_stack
from trueshape.dicom import DistortionState
from trueshape.errors import OutputError
from trueshape.geometry import Inspection, Volume, diagnose, load_stack
from trueshape.gnl import SYN_AS, ResidualField, format_siemens_grad
from trueshape.io import atomic_path
from trueshape.reporting import SphereMeasurement, measure_bright_sphere
from trueshape.synth import Contrast, FemurPhantom, Tissue, demo_acquisitions, write_session

if TYPE_CHECKING:
    from trueshape.demo_learn import LearningResult

__all__ = ["DemoResult", "HeadPrediction", "run_demo"]


@dataclass(frozen=True)
class HeadPrediction:
    """What the coil and the headers predict for one femoral head in the coronal series."""

    centre_lps: NDArray[np.float64]
    distance_from_isocentre_mm: float
    front_shift_mm: float  #: how far the head's front (anterior) edge appears moved forward, mm (+ outward)
    back_shift_mm: float  #: how far its back (posterior) edge appears moved backward, mm (+ outward)
    true_ap_mm: float
    predicted_ap_mm: float


#: The coil file the demo writes beside the session.
COIL_FILE_NAME = "SYN-AS.grad"


@dataclass
class DemoResult:
    """Everything the demo computed (the CLI renders it)."""

    folder: Path
    inspection: Inspection
    predictions: list[HeadPrediction]
    measurements: dict[str, list[SphereMeasurement]]
    correction: CorrectOutput
    true_diameter_mm: float
    quick: bool = False
    written: list[Path] = field(default_factory=list)
    #: The second half: a model learned from two other subjects' images, and this coronal corrected with it.
    learning: LearningResult | None = None

    @property
    def coil_file(self) -> Path:
        """The coil's coefficient file the demo wrote (what a site physicist would hand over)."""
        return self.folder / COIL_FILE_NAME

    def diagnosis(self) -> str:
        """Return the coronal series' diagnosis (:func:`trueshape.geometry.diagnose`) and where its heads lie."""
        coronal = next(s for s in self.inspection.stacks if s.distortion_state is DistortionState.IN_PLANE_2D)
        far = max(p.distance_from_isocentre_mm for p in self.predictions)
        return (
            f"{diagnose(coronal).sentence} Its femoral heads lie {far:.0f} mm from the isocentre, so their "
            "front-to-back extent keeps the through-plane distortion."
        )


def _measure(volume: Volume, phantom: FemurPhantom, contrast: Contrast) -> list[SphereMeasurement]:
    return [
        measure_bright_sphere(
            volume,
            centre,
            phantom.head_marrow_radius_mm(),
            inside_level=phantom.signal_of(Tissue.MARROW, contrast),
            outside_level=phantom.signal_of(Tissue.CORTEX, contrast),
            surround_level=phantom.signal_of(Tissue.MUSCLE, contrast),
        )
        for centre, _ in phantom.femoral_heads()
    ]


def _predictions(phantom: FemurPhantom, coronal: Volume) -> list[HeadPrediction]:
    """Return what the coil and the coronal series' headers predict for each femoral head's front and back edge."""
    residual = ResidualField.from_volume(SYN_AS, coronal)
    marrow = phantom.head_marrow_radius_mm()
    predictions = []
    anterior = np.array([0.0, -1.0, 0.0])  # LPS: +y is posterior
    for centre, _ in phantom.femoral_heads():
        front, back = centre + marrow * anterior, centre - marrow * anterior
        along = residual.displacement_lps(np.stack([front, back])) @ anterior
        front_out, back_out = float(along[0]), -float(along[1])
        predictions.append(
            HeadPrediction(
                centre,
                float(np.linalg.norm(residual.magnet_frame.magnet_from_lps(centre))),
                front_out,
                back_out,
                2 * marrow,
                2 * marrow + front_out + back_out,
            )
        )
    return predictions


def run_demo(
    folder: str | os.PathLike[str] | None = None, *, quick: bool = False, force: bool = False, learn: bool = True
) -> DemoResult:
    """Run the demo in ``folder`` (default: a new temporary folder) and return what it found.

    With ``learn``, the second half learns a scanner model from two other subjects' images (no coefficient
    file) and corrects the same coronal series with it (:mod:`trueshape.demo_learn`).
    """
    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="trueshape-demo-"))
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root}: is a file, not a folder: give the demo a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{root}: cannot write here ({error.strerror or error})") from None
    phantom = FemurPhantom()
    reference_acquisition, coronal_acquisition = demo_acquisitions(phantom, quick=quick)
    session = write_session(
        root / "session", phantom, SYN_AS, (reference_acquisition, coronal_acquisition), force=force
    )
    coil_file = root / COIL_FILE_NAME
    with atomic_path(coil_file, force=force) as temporary:
        temporary.write_text(format_siemens_grad(SYN_AS))
    inspection = inspect(root / "session" / "dicom")
    reference_stack, coronal_stack = (
        next(s for s in inspection.stacks if s.series_number == a.series_number)
        for a in (reference_acquisition, coronal_acquisition)
    )
    coronal = load_stack(coronal_stack)
    predictions = _predictions(phantom, coronal)
    request = CorrectionRequest.build(SYN_AS, coefficient_file=coil_file, force=force)
    correction = correct_stack(coronal_stack, request, root / "corrected", volume=coronal)
    measurements = {
        "reference axial (DIS3D)": _measure(load_stack(reference_stack), phantom, reference_acquisition.contrast),
        "coronal as acquired (DIS2D)": _measure(coronal, phantom, coronal_acquisition.contrast),
        "coronal corrected": _measure(correction.volume, phantom, coronal_acquisition.contrast),
    }
    written = [s.dicom_folder for s in session.series] + [coil_file] + correction.written
    learning = None
    if learn:
        from trueshape.demo_learn import run_learning

        learning = run_learning(root, coronal_stack, coronal, quick=quick, force=force)
        measurements["coronal corrected, learned model"] = _measure(
            learning.correction.volume, phantom, coronal_acquisition.contrast
        )
        written += [learning.learned.model.path, *learning.correction.written]
    diameter = 2 * phantom.head_marrow_radius_mm()
    return DemoResult(root, inspection, predictions, measurements, correction, diameter, quick, written, learning)
