"""A series made ready for estimation: its voxels, how it sees the field, and every assumption behind that.

The facts come from the same place as for a correction (headers, or a volume file's sidecar): what the
scanner corrected, the patient position, the isocentre and the slice normal. A series is refused here, before
any work, for what an estimate cannot use: a localizer, unknown correction state, slices that disagree on
where the magnet was. :func:`check_pair` refuses a pair that cannot determine a field.

Examples
--------
>>> prepared = prepare_volume(volume, label="cor")                  # doctest: +SKIP
>>> prepared.image.view.axes_seen()                                 # doctest: +SKIP
(1,)
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import DistortionState, PatientPosition
from trueshape.errors import DicomInputError, EstimationError, GeometryError
from trueshape.estimation._field_model import SeriesView
from trueshape.estimation._levels import SeriesImage
from trueshape.findings import FindingCode
from trueshape.geometry import Inspection, Stack, Volume, VolumeGeometry
from trueshape.gnl import GradientCoefficients, ResidualField

__all__ = ["PreparedSeries", "check_pair", "prepare_argument", "prepare_stack", "prepare_volume"]

#: A coil with no field: builds a series' residual frame (state, position, isocentre, normal) from its facts.
_NO_FIELD = GradientCoefficients.from_terms(250.0, {("x", "A", 1, 1): 0.0})


@dataclass(frozen=True, eq=False)
class PreparedSeries:
    """One series ready for an estimate.

    Parameters
    ----------
    label : str
        Its name in outputs (the stack label, or the volume file's stem).
    volume : Volume
        Its voxels (the first volume of a time series).
    image : SeriesImage
        Physical values, grid, view of the field and voxel box, as the fit takes them.
    frame : ResidualField
        Its residual frame (with no field): state, patient position, isocentre, normal and assumptions.
    stack : Stack or None
        The DICOM stack it came from.
    path : Path or None
        The volume file it came from.
    """

    label: str
    volume: Volume
    image: SeriesImage
    frame: ResidualField
    stack: Stack | None = None
    path: Path | None = None

    @property
    def sees_field(self) -> bool:
        """Whether the series carries a residual (it is not corrected in 3-D)."""
        return bool(self.image.view.axes_seen())

    def to_json(self) -> dict[str, Any]:
        """Return what ``estimate.json`` records of the series."""
        provenance = self.volume.provenance
        frame = self.frame.magnet_frame
        return {
            "label": self.label,
            "source": str(self.path) if self.path is not None else (
                str(Path(self.stack.frames[0].path).parent) if self.stack is not None else None),
            "series_instance_uid": provenance.series_instance_uid,
            "series_number": provenance.series_number,
            "series_description": provenance.series_description,
            "frame_of_reference_uid": provenance.frame_of_reference_uid,
            "distortion_state": self.frame.distortion_state.value,
            "patient_position": frame.patient_position.value,
            "isocentre_lps": frame.isocentre_lps.tolist(),
            "table_offset_mm": None if provenance.table_offset_mm is None else list(provenance.table_offset_mm),
            "slice_normal_lps": None if self.frame.slice_normal_lps is None else self.frame.slice_normal_lps.tolist(),
            "gradient_coil": provenance.gradient_coil,
            "shape": list(self.volume.geometry.shape[:3]),
            "spacing_mm": self.volume.geometry.spacing.tolist(),
            "assumptions": list(self.frame.assumptions),
        }


def prepare_stack(stack: Stack, volume: Volume, *, distortion_state: DistortionState | None = None,
                  patient_position: PatientPosition | None = None,
                  isocentre_lps: tuple[float, float, float] | None = None, option: str = "--state") -> PreparedSeries:
    """Prepare an inspected DICOM stack (and its loaded volume) for an estimate.

    Raises
    ------
    DicomInputError
        A localizer, or a state the headers do not give and ``distortion_state`` does not either (``option``
        names the flag that gives it).
    GeometryError
        Slices that disagree on the patient or table position, unless ``patient_position`` or ``isocentre_lps``
        settles it; slices off a regular grid that were not resampled.
    """
    where = f"{Path(stack.frames[0].path).parent} ({stack.label})"
    if stack.is_localizer:
        raise DicomInputError(f"{where}: is a localizer (a few scout slices): estimate from the series of the "
                              "examination itself")
    if stack.layout.acquisition is not None and not stack.layout.resampled:
        raise GeometryError(f"{where}: its slices are off a regular grid by up to "
                            f"{stack.layout.acquisition.max_offset_mm:.2f} mm; resample them first")
    settled = {"patient_position": patient_position is not None, "table_position": isocentre_lps is not None}
    for finding in stack.findings:
        if finding.code is FindingCode.FRAMES_DISAGREE and not settled.get(str(finding.details.get("disagree_on"))):
            raise GeometryError(f"{where}: {finding.message}", findings=(finding,))
    return _prepare(volume, stack.label, where, distortion_state, patient_position, isocentre_lps, option,
                    stack=stack)


def prepare_volume(volume: Volume, *, label: str, path: str | os.PathLike[str] | None = None,
                   distortion_state: DistortionState | None = None, patient_position: PatientPosition | None = None,
                   isocentre_lps: tuple[float, float, float] | None = None, option: str = "--state"
                   ) -> PreparedSeries:
    """Prepare a volume (read from a NIfTI or NRRD file with its sidecar, or built in memory) for an estimate."""
    where = str(path) if path is not None else label
    for subject, message in volume.provenance.frames_disagree.items():
        if not {"patient_position": patient_position, "table_position": isocentre_lps}.get(subject):
            raise GeometryError(f"{where}: its sidecar says: {message}")
    return _prepare(volume, label, where, distortion_state, patient_position, isocentre_lps, option,
                    path=None if path is None else Path(path))


def prepare_argument(argument: str | os.PathLike[str], *, distortion_state: DistortionState | None = None,
                     patient_position: PatientPosition | None = None,
                     isocentre_lps: tuple[float, float, float] | None = None, option: str = "--state",
                     inspection: Inspection | None = None) -> PreparedSeries:
    """Prepare what a SERIES argument names: a DICOM folder or file (``FOLDER#<series>[:stack]``) or a volume file.

    Slices off a regular grid are resampled onto their true geometry first, as ``correct`` does; an
    ``inspection`` of the argument's folder already made is reused.

    Examples
    --------
    >>> prepare_argument("session/dicom#3").label                    # doctest: +SKIP
    '3_cor_t1'
    """
    from trueshape.dicom import scan
    from trueshape.geometry import IrregularPolicy, group_series, load_stack, one_stack, parse_series_argument
    from trueshape.io import is_volume_file, read_volume_file, volume_stem

    if is_volume_file(argument):
        return prepare_volume(read_volume_file(argument), label=volume_stem(argument), path=argument,
                              distortion_state=distortion_state, patient_position=patient_position,
                              isocentre_lps=isocentre_lps, option=option)
    path, series_key, stack_index = parse_series_argument(argument)
    inspected = inspection if inspection is not None else group_series(scan(path), policy=IrregularPolicy.RESAMPLE)
    stack = one_stack(inspected, path, series_key, stack_index)
    return prepare_stack(stack, load_stack(stack), distortion_state=distortion_state,
                         patient_position=patient_position, isocentre_lps=isocentre_lps, option=option)


def _prepare(volume: Volume, label: str, where: str, distortion_state: DistortionState | None,
             patient_position: PatientPosition | None, isocentre_lps: tuple[float, float, float] | None, option: str,
             *, stack: Stack | None = None, path: Path | None = None) -> PreparedSeries:
    provenance = volume.provenance
    if distortion_state is None and provenance.distortion_state is DistortionState.UNKNOWN:
        said = f" ({provenance.distortion_source})" if provenance.distortion_source else ""
        raise DicomInputError(f"{where}: the headers do not say what the scanner corrected{said}: give {option} "
                              "ND, DIS2D or DIS3D")
    frame = ResidualField.from_volume(_NO_FIELD, volume, distortion_state=distortion_state,
                                      patient_position=patient_position, isocentre_lps=isocentre_lps)
    view = SeriesView(frame.distortion_state, frame.magnet_frame, frame.projector)
    values = volume.values(np.float32)
    if values.ndim == 4:
        values = values[..., 0]  # a time series: its first volume (the field is the same in all)
    spacing = volume.geometry.spacing
    thickness = provenance.slice_thickness_mm
    widths = (float(spacing[0]), float(spacing[1]),
              float(thickness) if thickness and np.isfinite(thickness) and thickness > 0 else float(spacing[2]))
    image = SeriesImage(values, volume.geometry, view, label, widths)
    return PreparedSeries(label, volume, image, frame, stack, path)


def _box(geometry: VolumeGeometry) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    corners = np.array(list(itertools.product(*((-0.5, size - 0.5) for size in geometry.shape))))
    points = geometry.index_to_lps(corners)
    return points.min(axis=0), points.max(axis=0)


def check_pair(reference: PreparedSeries, moving: PreparedSeries, *, same_frame: bool = False) -> None:
    """Refuse a pair that cannot determine a field, before any work.

    Raises
    ------
    EstimationError
        Different frames of reference (unless ``same_frame``), fields of view that do not overlap, neither
        series carrying a residual, or both carrying only the same through-plane component.
    """
    ref_uid = reference.volume.provenance.frame_of_reference_uid
    mov_uid = moving.volume.provenance.frame_of_reference_uid
    if ref_uid and mov_uid and ref_uid != mov_uid and not same_frame:
        raise EstimationError(
            f"{reference.label} and {moving.label} are in different frames of reference ({ref_uid} and {mov_uid}): "
            "the patient was repositioned between them, so their coordinates do not match; if the patient did not "
            "move, say so with --same-frame")
    (low_a, high_a), (low_b, high_b) = _box(reference.volume.geometry), _box(moving.volume.geometry)
    if not (np.all(low_a < high_b) and np.all(low_b < high_a)):
        raise EstimationError(f"the fields of view of {reference.label} and {moving.label} do not overlap: they "
                              "must image the same anatomy")
    if not reference.sees_field and not moving.sees_field:
        raise EstimationError(f"both {reference.label} and {moving.label} were corrected in 3-D by the scanner "
                              "(DIS3D): there is nothing to estimate; the moving series must be DIS2D or ND")
    if reference.sees_field and moving.sees_field and np.allclose(reference.frame.projector, moving.frame.projector,
                                                                  atol=1e-3):
        same_place = np.allclose(reference.frame.magnet_frame.isocentre_lps, moving.frame.magnet_frame.isocentre_lps,
                                 atol=1.0) and (reference.frame.magnet_frame.patient_position
                                                is moving.frame.magnet_frame.patient_position)
        if reference.frame.distortion_state is DistortionState.IN_PLANE_2D or same_place:
            raise EstimationError(
                f"{reference.label} and {moving.label} keep the same part of the field "
                f"({moving.frame.distortion_state.value}, same slice orientation): the pair cannot tell it apart; "
                "use a reference in another orientation, or one the scanner corrected in 3-D")
