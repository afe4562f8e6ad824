"""Real-anatomy sessions with a known field, written as DICOM (cached under benchmarks/_work/anatomy).

The truth is the corpus' 3D T1 head (``../shared/corpus/real/siemens-xa30-t1-3d-enhanced``), placed with
its centre ``centre_mm`` above the isocentre (head-first supine) and acquired twice through trueshape's
physics core: a reference axial series (1.2 mm isotropic, DIS3D unless ``reference_state`` says otherwise)
and a moving coronal series (0.9 x 0.9 mm, 1 mm slices along A/P, DIS2D), each with its own Gaussian noise
(2% of the bright level). Options remap the reference to a proton-density-like contrast, move the head
between the two series (2 mm, 1 degree), or use a coil with asymmetric (even-degree) terms. Every peer in
the benchmarks reads these same files and is scored against the same truth.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import trueshape
from trueshape.dicom import DistortionState
from trueshape.geometry import VolumeGeometry
from trueshape.gnl import SYN_AS, GradientCoefficients, MagnetFrame, ResidualField
from trueshape.synth import Acquisition, Contrast, Plane, VolumePhantom, write_session

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "anatomy"
HEAD = HERE.parents[1] / "shared" / "corpus" / "real" / "siemens-xa30-t1-3d-enhanced" / "dicom"

#: A coil with asymmetric (even-degree) terms on every axis, besides SYN-AS's symmetric ones.
ASYMMETRIC = GradientCoefficients.from_terms(250.0, {
    ("y", "B", 3, 1): -0.055, ("y", "B", 5, 1): -0.035, ("y", "B", 3, 3): 0.006, ("y", "B", 5, 3): 0.004,
    ("y", "A", 2, 0): 0.012, ("y", "B", 2, 1): -0.008, ("y", "A", 4, 1): 0.006,
    ("z", "A", 3, 0): -0.08, ("z", "A", 5, 0): -0.03, ("z", "A", 2, 0): 0.01, ("z", "A", 2, 1): -0.006,
    ("z", "B", 4, 2): 0.004,
    ("x", "A", 3, 1): -0.055, ("x", "A", 5, 1): -0.035, ("x", "A", 2, 1): 0.007,
}, coil_id="SYN-ASYM")


@dataclass(frozen=True)
class PairSpec:
    """What a benchmark pair is made of (the cache key)."""

    centre_mm: float = 90.0
    voxel_scale: float = 1.0  #: 1 = the stated voxel sizes; 2 = twice as coarse (quick runs)
    reference_contrast: str = "T1"  #: or "PD" (remapped)
    motion: bool = False  #: the head moves 2 mm and turns 1 degree between the series
    reference_state: str = "DIS3D"
    coil: str = "SYN-AS"  #: or "SYN-ASYM"
    scale: float = 1.0  #: anatomy size

    def key(self) -> str:
        """Folder name under :data:`WORK`."""
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"head_{self.centre_mm:g}mm_{digest}"

    @property
    def coefficients(self) -> GradientCoefficients:
        """The coil that distorts the series."""
        return ASYMMETRIC if self.coil == "SYN-ASYM" else SYN_AS


@dataclass(frozen=True)
class Pair:
    """A written pair: DICOM folders, the truth and an object mask to score in."""

    spec: PairSpec
    reference: Path
    moving: Path
    phantom: VolumePhantom

    def truth_residual(self, state: DistortionState, normal_lps: NDArray[np.float64]) -> ResidualField:
        """The exact residual field a series of this session carries (isocentre at the origin, HFS)."""
        return ResidualField(self.spec.coefficients, MagnetFrame(), state, normal_lps)

    def object_points(self, geometry: VolumeGeometry, *, step: int = 2) -> NDArray[np.float64]:
        """Voxel centres of ``geometry`` (every ``step``-th) inside the head (true anatomy above 10%)."""
        centres = geometry.voxel_centres()[::step, ::step, ::step].reshape(-1, 3)
        return centres[self.phantom.inside(centres)]


def _rotation(axis: tuple[float, float, float], degrees: float) -> NDArray[np.float64]:
    angle = np.deg2rad(degrees)
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.asarray(np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross)


#: The head's motion between the series when ``motion`` is asked for: 2.0 mm and 1 degree.
MOTION_SHIFT_MM = (1.2, -1.0, 1.2)
MOTION_AXIS = (1.0, 1.0, 0.0)
MOTION_DEGREES = 1.0


def head_pair(spec: PairSpec = PairSpec()) -> Pair:
    """Write (once) and return the pair ``spec`` describes."""
    if not HEAD.is_dir():
        raise SystemExit(f"the real T1 head is not at {HEAD} (../shared/corpus is absent)")
    head = trueshape.load(HEAD)
    centre = (0.0, 0.0, spec.centre_mm)
    phantom = VolumePhantom.from_volume(head, centre_lps=centre, scale=spec.scale)
    folder = WORK / spec.key()
    reference_dir = folder / "dicom" / "02_ax_reference"
    moving_dir = folder / "dicom" / "03_cor_moving"
    if (folder / "session.json").is_file():
        return Pair(spec, reference_dir, moving_dir, phantom)
    s = spec.voxel_scale
    level = phantom.level
    reference = Acquisition(
        plane=Plane.AXIAL, fov_mm=(216.0, 252.0), matrix=(round(180 / s), round(210 / s)), slices=round(200 / s),
        slice_thickness_mm=1.2 * s, centre_lps=centre, isocentre_lps=(0.0, 0.0, 0.0),
        distortion_state=DistortionState(spec.reference_state),
        contrast=Contrast.PD if spec.reference_contrast == "PD" else Contrast.T1, noise_sd=0.02 * level,
        in_plane_samples=1, slice_samples=2, series_number=2, description="ax_reference", seed=2, three_d=True)
    moving = Acquisition(
        plane=Plane.CORONAL, fov_mm=(201.6, 241.2), matrix=(round(224 / s), round(268 / s)), slices=round(240 / s),
        slice_thickness_mm=1.0 * s, centre_lps=centre, isocentre_lps=(0.0, 0.0, 0.0),
        distortion_state=DistortionState.IN_PLANE_2D, contrast=Contrast.T1, noise_sd=0.02 * level,
        in_plane_samples=1, slice_samples=3, series_number=3, description="cor_moving", seed=3, three_d=True)
    phantoms = [phantom, phantom]
    if spec.motion:
        moved_centre = tuple(float(c + d) for c, d in zip(centre, MOTION_SHIFT_MM, strict=True))
        phantoms[1] = VolumePhantom.from_volume(head, centre_lps=moved_centre, scale=spec.scale,
                                                rotation=_rotation(MOTION_AXIS, MOTION_DEGREES))
    write_session(folder, phantoms, spec.coefficients, (reference, moving), force=True)
    return Pair(spec, reference_dir, moving_dir, phantom)
