"""What a correction produced: the mode it used, its diagnostics, the corrected volume and its field."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the CLI reads CorrectionMode without loading the layers below
    from pathlib import Path

    from trueshape.dicom.vendor import DistortionState
    from trueshape.findings import Finding
    from trueshape.geometry import DisplacementField, Volume
    from trueshape.gnl import GridInterpolant

__all__ = ["REQUESTED_MODES", "CorrectOutput", "CorrectionDiagnostics", "CorrectionMode", "CorrectionResult"]


class CorrectionMode(enum.StrEnum):
    """How the residual is applied."""

    AUTO = "auto"  #: through-plane when possible, else full
    FULL = "full"  #: 3-D pull-back resampling
    THROUGH_PLANE = "through-plane"  #: 1-D resampling along the slice normal (k axis)
    NONE = "none"  #: nothing to correct (DIS3D on the input grid): the values are copied


#: The modes a user may ask for (``none`` is only ever a result).
REQUESTED_MODES = (CorrectionMode.AUTO, CorrectionMode.FULL, CorrectionMode.THROUGH_PLANE)


@dataclass(frozen=True)
class CorrectionDiagnostics:
    """What a correction did, with its accuracy.

    Parameters
    ----------
    mode : CorrectionMode
        The path used (never AUTO).
    distortion_state : DistortionState
        Correction state of the input series (ND, DIS2D, DIS3D).
    max_displacement_mm, mean_displacement_mm : float
        Largest and mean residual displacement length over the output voxels, mm.
    interpolation_error_mm : float
        Largest error of the cubic fast path against the exact field at coarse-cell centres in the field of
        view, mm.
    field_interpolation_error_mm : float
        Largest error of the exported field under trilinear interpolation (what ITK does) at its cell
        centres in the field of view, mm.
    jacobian_min, jacobian_max : float
        Range of ``det(I + grad d_res)`` over the output voxels (measured with or without intensity
        correction).
    folded_voxels : int
        Output voxels with determinant <= 0: the field folds there, whatever is done to intensities (their
        intensity factor is 0).
    coarse_spacing_mm : float
        Node spacing of the exact coarse grid, mm.
    field_spacing_mm : tuple of 3 float
        Node spacing of the exported field along i, j, k, mm.
    interpolation_order : int
        Image interpolation order (1 trilinear, 3 cubic B-spline).
    intensity_corrected : bool
        Whether intensities were multiplied by the determinant.
    threads : int
        Worker threads used.
    assumptions : tuple of str
        What was assumed behind the residual field because nothing recorded it (patient position, isocentre).
    outside_fraction : float
        Share of the output voxels within the input grid whose displaced sample lies beyond it (more than
        half a voxel outside its outer voxel centres), so that they are 0: on a lattice of at most 41 points
        per axis, edges included. A single slice moved through its plane by more than half its thickness
        loses voxels so.
    read_from_headers, given : tuple of str
        The facts behind the residual field read from the headers (or the sidecar), and those the caller gave.
    object_p95_displacement_mm, object_max_displacement_mm : float or None
        The residual displacement inside the imaged object (voxels brighter than a tenth of the bright ones, on
        a lattice): 95th percentile and largest, mm; None when not measured.
    """

    mode: CorrectionMode
    distortion_state: DistortionState
    max_displacement_mm: float
    mean_displacement_mm: float
    interpolation_error_mm: float
    field_interpolation_error_mm: float
    jacobian_min: float
    jacobian_max: float
    folded_voxels: int
    coarse_spacing_mm: float
    field_spacing_mm: tuple[float, float, float]
    interpolation_order: int
    intensity_corrected: bool
    threads: int
    assumptions: tuple[str, ...]
    outside_fraction: float = 0.0
    read_from_headers: tuple[str, ...] = ()
    given: tuple[str, ...] = ()
    object_p95_displacement_mm: float | None = None
    object_max_displacement_mm: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready values (the ``correction`` section of the sidecar)."""
        return {
            "mode": self.mode.value,
            "distortion_state": self.distortion_state.value,
            "max_displacement_mm": self.max_displacement_mm,
            "mean_displacement_mm": self.mean_displacement_mm,
            "interpolation_error_mm": self.interpolation_error_mm,
            "field_interpolation_error_mm": self.field_interpolation_error_mm,
            "jacobian_min": self.jacobian_min,
            "jacobian_max": self.jacobian_max,
            "folded_voxels": self.folded_voxels,
            "coarse_spacing_mm": self.coarse_spacing_mm,
            "field_spacing_mm": list(self.field_spacing_mm),
            "interpolation_order": self.interpolation_order,
            "intensity_corrected": self.intensity_corrected,
            "threads": self.threads,
            "assumptions": list(self.assumptions),
            "outside_fraction": self.outside_fraction,
            "read_from_headers": list(self.read_from_headers),
            "given": list(self.given),
            "object_p95_displacement_mm": self.object_p95_displacement_mm,
            "object_max_displacement_mm": self.object_max_displacement_mm,
        }


@dataclass(frozen=True, eq=False)
class CorrectionResult:
    """The corrected volume, the field that did it, and the diagnostics.

    Parameters
    ----------
    volume : Volume
        Corrected physical values (float32) on the output grid.
    field : DisplacementField
        Residual field in ITK's resampling convention (output point -> input point), mm, LPS, on a grid
        aligned with the output grid and padded beyond it; write it with ``trueshape.io.write_itk_transform``.
    diagnostics : CorrectionDiagnostics
        Accuracy and ranges.
    coarse_field : GridInterpolant
        The exact residual on the coarse grid aligned with the output grid (components 0-2: mm, LPS;
        component 3: ``det(I + grad d_res)`` when intensity-corrected). ``coarse_field.upsampler()``
        reproduces, slab by slab, the displacement and factor applied to every voxel.
    """

    volume: Volume
    field: DisplacementField
    diagnostics: CorrectionDiagnostics
    coarse_field: GridInterpolant


@dataclass
class CorrectOutput:
    """What ``correct`` produced: the files written, the corrected volume and its diagnostics."""

    volume: Volume
    written: list[Path]
    diagnostics: CorrectionDiagnostics
    #: What inspecting the source found that the correction does not remove (missing slices, duplicates, ...).
    findings: tuple[Finding, ...] = ()
