"""Synthetic acquisitions: what a scanner with a given residual distortion records of a phantom.

An image voxel centred at r shows the tissue at the true position x with x + d(x) = r (d: the residual
displacement the scanner left, DESIGN.md section 3). The inverse map x(r) is found by fixed-point
iteration with the exact d on a coarse grid (the field is smooth) and interpolated (cubic) to every
sample. Each voxel averages in-plane sub-samples and, across its slice profile, samples through the slice
thickness; the signal is scaled by det(dx/dr) (signal piles up where distortion compresses tissue).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import LPS_FROM_MAGNET, DistortionState, PatientPosition
from trueshape.errors import GeometryError
from trueshape.geometry import DisplacementField, Volume, VolumeGeometry
from trueshape.synth._phantom import Contrast
from trueshape.synth._stacks import AXIAL, CORONAL, SAGITTAL

__all__ = ["Acquisition", "DisplacementFunction", "Phantom", "Plane", "SyntheticScan", "acquire", "inverse_map"]

#: Residual displacement (mm, LPS) at true points (..., 3) (mm, LPS).
DisplacementFunction = Callable[[NDArray[np.float64]], NDArray[np.float64]]


class Phantom(Protocol):
    """Anything with a noise-free signal at patient points: SYN-FEMUR, or a real image placed in the scanner."""

    def signal(self, points: NDArray[np.float64], contrast: Contrast = ...) -> NDArray[np.float32]:
        """Signal at points (..., 3) (mm, LPS), shape (...)."""
        ...


#: Spacing of the grid on which the inverse map is solved exactly before cubic interpolation (mm).
INVERSE_GRID_MM = 6.0
#: Node spacing of the ground-truth field written beside a synthetic series (mm).
TRUTH_GRID_MM = 4.0
_FIXED_POINT_ITERATIONS = 30
_FIXED_POINT_TOLERANCE_MM = 1e-6
#: Largest |x + d(x) - r| (mm) an inverse may leave: beyond it the field folds there, and no image exists.
INVERSE_TOLERANCE_MM = 1e-3


class Plane(enum.StrEnum):
    """Slice orientation of an acquisition (ImageOrientationPatient as scanners write them)."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"

    @property
    def directions(self) -> NDArray[np.float64]:
        """Row direction, column direction and slice normal (row x column) as columns, LPS."""
        orientation = np.asarray({Plane.AXIAL: AXIAL, Plane.CORONAL: CORONAL, Plane.SAGITTAL: SAGITTAL}[self])
        row, column = orientation[:3], orientation[3:]
        return np.column_stack([row, column, np.cross(row, column)])


@dataclass(frozen=True)
class Acquisition:
    """One series of a synthetic session.

    Parameters
    ----------
    plane : Plane
        Slice orientation.
    fov_mm : tuple of 2 float
        Field of view along the row and column directions, mm.
    matrix : tuple of 2 int
        Columns and rows.
    slices : int
        Number of slices.
    slice_thickness_mm, slice_gap_mm : float
        Slice profile width and gap; spacing = thickness + gap.
    centre_lps : tuple of 3 float
        Centre of the field of view, mm LPS.
    isocentre_lps : tuple of 3 float
        Magnet isocentre in patient coordinates for this series (set by the table position), mm.
    patient_position : PatientPosition
        How the patient lies in the magnet.
    distortion_state : DistortionState
        What the emulated scanner corrected (sets the residual and the ImageType token).
    contrast : Contrast
        Tissue signal table.
    noise_sd : float
        Standard deviation of Gaussian noise (signal units).
    in_plane_samples, slice_samples : int
        Sub-samples per voxel per in-plane axis, and across the slice profile.
    series_number : int
        DICOM SeriesNumber.
    description : str
        DICOM SeriesDescription.
    enhanced : bool
        Write one Enhanced MR multi-frame file (per-frame functional groups) instead of one file per slice.
    tilt_deg : tuple of 2 float
        Oblique slices: the plane turned about its row direction, then about its column direction, degrees
        (as a scanner's oblique and double-oblique slice groups).
    three_d : bool or None
        MRAcquisitionType 3D (one slab) or 2D (slice by slice); default: 3D when the slices touch and the
        plane is not coronal (as the demo's reference axial), else 2D.
    extra : dict
        Further DICOM attributes by keyword, written to every file (override the defaults).
    """

    plane: Plane = Plane.CORONAL
    fov_mm: tuple[float, float] = (440.0, 440.0)
    matrix: tuple[int, int] = (256, 256)
    slices: int = 24
    slice_thickness_mm: float = 4.0
    slice_gap_mm: float = 0.0
    centre_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    isocentre_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    patient_position: PatientPosition = PatientPosition.HFS
    distortion_state: DistortionState = DistortionState.IN_PLANE_2D
    contrast: Contrast = Contrast.T1
    noise_sd: float = 0.0
    in_plane_samples: int = 2
    slice_samples: int = 4
    series_number: int = 1
    description: str = "synthetic"
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    enhanced: bool = False
    three_d: bool | None = None
    tilt_deg: tuple[float, float] = (0.0, 0.0)

    @property
    def slice_spacing_mm(self) -> float:
        """Distance between slice centres, mm."""
        return self.slice_thickness_mm + self.slice_gap_mm

    @property
    def table_position_mm(self) -> NDArray[np.float64]:
        """Table offset in magnet axes that puts the isocentre at ``isocentre_lps`` (mm)."""
        return np.asarray(LPS_FROM_MAGNET[self.patient_position].T @ np.asarray(self.isocentre_lps), dtype=float)

    @property
    def psf_variance_mm2(self) -> NDArray[np.float64]:
        """Variance of each voxel's sampling profile along i, j, k (mm^2).

        The average of ``s`` equally spaced sub-samples across a width ``w`` has variance
        ``w^2 / 12 * (1 - 1 / s^2)`` (a continuous box as ``s`` grows); measurements subtract it.
        """
        spacing = self.geometry().spacing
        widths = np.array([spacing[0], spacing[1], self.slice_thickness_mm])
        samples = np.array([self.in_plane_samples, self.in_plane_samples, self.slice_samples], dtype=np.float64)
        return np.asarray(widths**2 / 12.0 * (1.0 - 1.0 / samples**2), dtype=np.float64)

    @property
    def directions(self) -> NDArray[np.float64]:
        """Row direction, column direction and slice normal as columns (LPS), the tilts applied."""
        base = self.plane.directions
        about_row, about_column = (np.deg2rad(float(a)) for a in self.tilt_deg)
        # Rotations about the plane's own axes, so that the tilts mean the same for every plane.
        turn_row = _rotation(base[:, 0], about_row)
        turned = turn_row @ base
        return _rotation(turned[:, 1], about_column) @ turned

    def geometry(self) -> VolumeGeometry:
        """Return the image grid (voxel centres), centred on ``centre_lps``."""
        directions = self.directions
        spacing = np.array([self.fov_mm[0] / self.matrix[0], self.fov_mm[1] / self.matrix[1], self.slice_spacing_mm])
        shape = (self.matrix[0], self.matrix[1], self.slices)
        origin = np.asarray(self.centre_lps) - directions @ (spacing * (np.array(shape) - 1) / 2)
        return VolumeGeometry.from_components(shape=shape, origin=origin, spacing=spacing, direction=directions)


def _rotation(axis: NDArray[np.float64], angle: float) -> NDArray[np.float64]:
    """Rotation by ``angle`` (radians) about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = axis / np.linalg.norm(axis)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


@dataclass(frozen=True, eq=False)
class SyntheticScan:
    """A simulated series and its ground truth.

    ``truth`` is the residual displacement d (resampling convention: the corrected image at r is the recorded
    image at r + d(r)), mm LPS, exact at the nodes of a :data:`TRUTH_GRID_MM` grid covering the image.
    """

    acquisition: Acquisition
    volume: Volume
    truth: DisplacementField


def inverse_map(displacement: DisplacementFunction, points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Solve x + d(x) = r for x at each recorded point r (fixed point; d must be a contraction's step).

    Raises GeometryError where no solution is found (the field folds or grows too fast there: beyond the
    coil's useful volume), rather than returning a wrong or NaN position.

    Examples
    --------
    >>> shrink = lambda p: -0.1 * p
    >>> inverse_map(shrink, np.array([[9.0, 0.0, 0.0]])).round(6)
    array([[10.,  0.,  0.]])
    """
    recorded = np.asarray(points, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging point is reported below
        true = recorded - displacement(recorded)
        for _ in range(_FIXED_POINT_ITERATIONS):
            updated = recorded - displacement(true)
            change = float(np.max(np.abs(updated - true))) if updated.size else 0.0
            true = updated
            if change < _FIXED_POINT_TOLERANCE_MM:
                break
        miss = np.linalg.norm(true + displacement(true) - recorded, axis=-1) if true.size else np.zeros(0)
    if true.size:
        bad = ~(miss <= INVERSE_TOLERANCE_MM)  # NaN counts as bad
        if bad.any():
            worst = int(np.argmax(np.where(np.isfinite(miss), miss, np.inf)))
            raise GeometryError(
                f"the distortion cannot be inverted at {int(bad.sum())} of {miss.size} points, e.g. LPS "
                f"{np.round(recorded[worst], 1).tolist()} mm (off by {miss[worst]:.3g} mm): the field of view "
                "reaches beyond the coil's useful volume; make it smaller or move it towards the isocentre"
            )
    return true


def _coarse_inverse(
    displacement: DisplacementFunction, geometry: VolumeGeometry, margin_mm: float
) -> tuple[VolumeGeometry, NDArray[np.float64]]:
    """Solve the inverse offset x(r) - r exactly on a coarse grid covering the image (plus a margin)."""
    extent = (np.array(geometry.shape) - 1) * geometry.spacing + 2 * margin_mm
    counts = np.maximum(np.ceil(extent / INVERSE_GRID_MM).astype(int) + 1, 4)
    step = extent / (counts - 1)
    origin = geometry.origin - geometry.direction @ np.full(3, margin_mm)
    shape = (int(counts[0]), int(counts[1]), int(counts[2]))
    coarse = VolumeGeometry.from_components(shape=shape, origin=origin, spacing=step, direction=geometry.direction)
    nodes = coarse.voxel_centres()
    offsets = inverse_map(displacement, nodes.reshape(-1, 3)).reshape(nodes.shape) - nodes
    return coarse, offsets


def acquire(
    phantom: Phantom, acquisition: Acquisition, displacement: DisplacementFunction | None = None
) -> SyntheticScan:
    """Simulate one series of ``phantom`` with residual ``displacement`` (None: no distortion).

    Returns the volume (float32 signal) on ``acquisition.geometry()`` and the true residual field at its
    voxel centres.
    """
    from scipy import ndimage

    geometry = acquisition.geometry()
    residual = displacement or (lambda p: np.zeros_like(p))
    margin = 3 * max(acquisition.slice_thickness_mm, INVERSE_GRID_MM)
    coarse, inverse_offsets = _coarse_inverse(residual, geometry, margin)
    # det(dx/dr) of the inverse map: how much tissue one recorded voxel holds (signal pile-up)
    coarse_spacing = [float(v) for v in coarse.spacing]
    gradients = np.stack(
        [np.stack(list(np.gradient(inverse_offsets[..., c], *coarse_spacing)), axis=-1) for c in range(3)], axis=-2
    )  # [..., component, grid axis]
    # chain rule to patient axes: du_c/dr_b = sum_a du_c/da * direction[b, a]
    jacobian_grid = np.linalg.det(np.eye(3) + np.einsum("...ca,ba->...cb", gradients, coarse.direction))
    prefiltered = [ndimage.spline_filter(inverse_offsets[..., c], order=3) for c in range(3)]
    jacobian_prefiltered = ndimage.spline_filter(jacobian_grid, order=3)

    s, t = acquisition.in_plane_samples, acquisition.slice_samples
    in_plane = (np.arange(s) + 0.5) / s - 0.5  # sub-sample offsets in voxels
    through = ((np.arange(t) + 0.5) / t - 0.5) * acquisition.slice_thickness_mm / geometry.spacing[2]
    columns, rows = geometry.shape[0], geometry.shape[1]
    i, j = np.meshgrid(np.arange(columns, dtype=np.float64), np.arange(rows, dtype=np.float64), indexing="ij")
    out = np.zeros(geometry.shape, dtype=np.float32)
    rng = np.random.default_rng(acquisition.seed)
    to_coarse = coarse.ijk_from_lps
    for k in range(geometry.shape[2]):
        total = np.zeros((columns, rows), dtype=np.float64)
        for di in in_plane:
            for dj in in_plane:
                for dk in through:
                    ijk = np.stack([i + di, j + dj, np.full_like(i, k + dk)], axis=-1)
                    recorded = geometry.index_to_lps(ijk)
                    coords = (recorded @ to_coarse[:3, :3].T + to_coarse[:3, 3]).reshape(-1, 3).T
                    offset = np.stack(
                        [
                            ndimage.map_coordinates(p, coords, order=3, mode="nearest", prefilter=False)
                            for p in prefiltered
                        ],
                        axis=-1,
                    )
                    weight = ndimage.map_coordinates(
                        jacobian_prefiltered, coords, order=3, mode="nearest", prefilter=False
                    )
                    true = recorded.reshape(-1, 3) + offset
                    total += (phantom.signal(true, acquisition.contrast) * weight).reshape(columns, rows)
        out[:, :, k] = total / (s * s * t)
    if acquisition.noise_sd > 0:
        out += rng.normal(0.0, acquisition.noise_sd, size=out.shape).astype(np.float32)
    np.clip(out, 0.0, None, out=out)
    return SyntheticScan(acquisition, Volume(out, geometry), _truth_field(residual, geometry, acquisition))


def _truth_field(
    residual: DisplacementFunction, geometry: VolumeGeometry, acquisition: Acquisition
) -> DisplacementField:
    """Evaluate the exact residual on a ~:data:`TRUTH_GRID_MM` grid aligned with the image, one node beyond it.

    The field is smooth: trilinear interpolation between these nodes is what ITK does with the .h5 anyway,
    and a full-resolution float64 field would be ten times the size of the image.
    """
    extent = (np.array(geometry.shape) - 1) * geometry.spacing
    counts = np.maximum(np.ceil(extent / TRUTH_GRID_MM).astype(int), 1) + 3
    step = np.where(extent > 0, extent / (counts - 3), TRUTH_GRID_MM)  # a single slice has no extent along k
    origin = geometry.origin - geometry.direction @ step
    grid = VolumeGeometry.from_components(
        shape=(int(counts[0]), int(counts[1]), int(counts[2])),
        origin=origin,
        spacing=step,
        direction=geometry.direction,
    )
    return DisplacementField(
        grid, residual(grid.voxel_centres()), f"true residual displacement of series {acquisition.series_number}"
    )
