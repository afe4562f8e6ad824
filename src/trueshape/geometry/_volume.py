"""VolumeGeometry (frozen grid + affine) and Volume (an array on that grid, with provenance)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom._scaling import ValueScaling
from trueshape.dicom.vendor import DistortionState, PatientPosition
from trueshape.geometry._affine import apply_affine, check_affine

__all__ = ["Provenance", "Volume", "VolumeGeometry"]


@dataclass(frozen=True, eq=False)
class VolumeGeometry:
    """A regular 3-D grid in patient space.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid size (columns, rows, slices) = (i, j, k).
    lps_from_ijk : ndarray, shape (4, 4)
        Voxel index to patient LPS (mm); direction columns must be orthogonal.

    Examples
    --------
    >>> g = VolumeGeometry.from_components(shape=(2, 2, 2), origin=(0, 0, 0), spacing=(1, 1, 3))
    >>> g.spacing
    array([1., 1., 3.])
    """

    shape: tuple[int, int, int]
    lps_from_ijk: NDArray[np.float64]

    def __post_init__(self) -> None:
        object.__setattr__(self, "lps_from_ijk", check_affine(self.lps_from_ijk))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"a volume shape needs three positive sizes, got {self.shape}")

    @classmethod
    def from_components(
        cls,
        *,
        shape: tuple[int, int, int],
        origin: tuple[float, float, float] | NDArray[np.float64],
        spacing: tuple[float, float, float] | NDArray[np.float64],
        direction: NDArray[np.float64] | None = None,
    ) -> Self:
        """Build from origin (mm, LPS), spacing (mm) and a 3x3 direction matrix (columns = axes)."""
        matrix = np.eye(4)
        directions = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
        matrix[:3, :3] = directions * np.asarray(spacing, dtype=np.float64)
        matrix[:3, 3] = np.asarray(origin, dtype=np.float64)
        return cls(shape=shape, lps_from_ijk=matrix)

    @property
    def spacing(self) -> NDArray[np.float64]:
        """Voxel size along i, j, k (mm)."""
        return np.asarray(np.linalg.norm(self.lps_from_ijk[:3, :3], axis=0), dtype=np.float64)

    @property
    def direction(self) -> NDArray[np.float64]:
        """Unit axis directions as columns (3x3, LPS)."""
        return np.asarray(self.lps_from_ijk[:3, :3] / self.spacing, dtype=np.float64)

    @property
    def origin(self) -> NDArray[np.float64]:
        """Centre of voxel (0, 0, 0), mm, LPS."""
        return np.asarray(self.lps_from_ijk[:3, 3], dtype=np.float64)

    @property
    def ijk_from_lps(self) -> NDArray[np.float64]:
        """Patient LPS (mm) to continuous voxel index."""
        return np.asarray(np.linalg.inv(self.lps_from_ijk), dtype=np.float64)

    def index_to_lps(self, ijk: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map voxel indices, shape (..., 3), to LPS millimetres."""
        return apply_affine(self.lps_from_ijk, ijk)

    def lps_to_index(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map LPS millimetres, shape (..., 3), to continuous voxel indices."""
        return apply_affine(self.ijk_from_lps, points)

    def corner_points(self) -> NDArray[np.float64]:
        """Return the 8 outer corners of the field of view (voxel edges, not centres), shape (8, 3), mm LPS."""
        bounds = [(-0.5, size - 0.5) for size in self.shape]
        return self.index_to_lps(np.array(list(itertools.product(*bounds)), dtype=np.float64))

    def voxel_centres(self) -> NDArray[np.float64]:
        """LPS coordinates of every voxel centre, shape (I, J, K, 3) (memory: 24 bytes per voxel)."""
        grids = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in self.shape), indexing="ij")
        return self.index_to_lps(np.stack(grids, axis=-1))

    def to_json(self) -> dict[str, Any]:
        """Return shape, affine (LPS), spacing, origin and direction as plain lists."""
        return {
            "shape": list(self.shape),
            "affine_lps": self.lps_from_ijk.tolist(),
            "spacing": self.spacing.tolist(),
            "origin_lps": self.origin.tolist(),
            "direction_lps": self.direction.tolist(),
        }


@dataclass(frozen=True)
class Provenance:
    """Where a volume came from and what the scanner did to it.

    ``slice_sources[k][t]`` names the file (``file`` or ``file#frame``) that became slice k of volume t.
    The distortion state and the patient position may be given by their DICOM text (``"DIS2D"``, ``"HFS"``).

    Examples
    --------
    >>> Provenance(distortion_state="DIS2D").distortion_state
    <DistortionState.IN_PLANE_2D: 'DIS2D'>
    """

    series_instance_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    manufacturer: str = ""
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    slice_sources: tuple[tuple[str, ...], ...] = ()
    distortion_state: DistortionState = DistortionState.UNKNOWN
    distortion_source: str = ""
    isocentre_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    isocentre_source: str = ""
    #: The table offset (magnet axes, mm) the isocentre was computed from, and its tag: a caller who corrects
    #: the patient position gets the isocentre rotated for that position, not for the recorded one.
    table_offset_mm: tuple[float, float, float] | None = None
    table_source: str = ""
    patient_position: PatientPosition | None = None
    gradient_coil: str | None = None
    slice_thickness_mm: float | None = None
    spacing_between_slices_mm: float | None = None
    echo_time_ms: float | None = None
    #: Normal (LPS unit vector) of the slices as acquired, when known; a reoriented file's k axis may not be it.
    slice_normal_lps: tuple[float, float, float] | None = None
    #: The JSON sidecar the facts above were read from (a volume file's), if any.
    sidecar: str | None = None
    #: NIfTI qform/sform code of the affine read (1 scanner, 2 aligned, 3 Talairach, 4 MNI), written back.
    nifti_xform_code: int | None = None
    #: A 4-D NIfTI volume's 4th voxel size and its unit (e.g. the repetition time), written back so that FSL
    #: and AFNI keep it.
    nifti_time_step: tuple[float, str] | None = None
    #: How stored values became the volume's values (DICOM display or Philips precise), when read from DICOM;
    #: ``value_scaling_varies`` when the images of the stack were scaled differently (values then float32).
    value_scaling: ValueScaling | None = None
    value_scaling_varies: bool = False
    #: What the slices of a converted stack disagreed on (``patient_position`` or ``table_position``) -> the
    #: FRAMES_DISAGREE message of its sidecar; ``correct`` needs the option that settles each.
    frames_disagree: dict[str, str] = field(default_factory=dict)

    def values_json(self) -> dict[str, Any]:
        """Return what a sidecar says of the values: the scaling applied (display or Philips precise), its numbers."""
        if self.value_scaling is None:
            return {"from": "unknown (not read from DICOM)"}
        record = self.value_scaling.to_json()
        if self.value_scaling_varies:
            record["per_image"] = "the images of the stack are scaled differently: values computed per image (float32)"
        return record

    def __post_init__(self) -> None:
        object.__setattr__(self, "distortion_state", DistortionState(self.distortion_state))
        if self.patient_position is not None:
            object.__setattr__(self, "patient_position", PatientPosition(self.patient_position))


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxel values on a :class:`VolumeGeometry`.

    Parameters
    ----------
    array : ndarray, shape (I, J, K) or (I, J, K, T)
        Stored values indexed ``[i, j, k(, t)]``; physical value = stored * slope + intercept.
    geometry : VolumeGeometry
        The grid (the first three axes of ``array``).
    provenance : Provenance
        Source files per slice, series identifiers, distortion state, isocentre.
    rescale_slope, rescale_intercept : float
        Linear map from stored to physical values (DICOM RescaleSlope/Intercept, uniform over the volume).
    """

    array: NDArray[Any]
    geometry: VolumeGeometry
    provenance: Provenance = field(default_factory=Provenance)
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0

    def __post_init__(self) -> None:
        if tuple(self.array.shape[:3]) != self.geometry.shape or self.array.ndim not in (3, 4):
            raise ValueError(
                f"array shape {self.array.shape} does not match the geometry {self.geometry.shape} (+ optional T)"
            )

    @property
    def is_scaled(self) -> bool:
        """Whether stored values differ from physical values."""
        return self.rescale_slope != 1.0 or self.rescale_intercept != 0.0

    def values(self, dtype: type[np.floating[Any]] = np.float32) -> NDArray[Any]:
        """Physical values (stored * slope + intercept) as floating point."""
        data = self.array.astype(dtype, copy=True)
        if self.is_scaled:
            data *= dtype(self.rescale_slope)
            data += dtype(self.rescale_intercept)
        return data

    def with_array(self, array: NDArray[Any], *, scaled: bool = False) -> Volume:
        """Return a Volume on the same grid holding ``array`` (physical values unless ``scaled``)."""
        if scaled:
            return replace(self, array=array)
        return replace(self, array=array, rescale_slope=1.0, rescale_intercept=0.0)
