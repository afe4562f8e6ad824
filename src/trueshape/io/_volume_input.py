"""Volumes that arrive as files (NIfTI, NRRD), with what their JSON sidecar says about the acquisition.

Correcting a volume needs facts that a NIfTI header cannot hold: what the scanner already corrected
(ND / DIS2D / DIS3D), the patient position and where the isocentre was. They come from the JSON sidecar
beside the file, which may be

* trueshape's own (``trueshape convert``): every fact, checked against the volume's grid;
* trueshape's correction sidecar (``<label>_corrected.json``): the volume is already corrected (DIS3D);
* dcm2niix's BIDS sidecar: ``ImageType``, ``PatientPosition`` and ``TablePosition``: dcm2niix writes the
  vendor's table offset with its bore axis negated (the corpus pair siemens-table-baseline / -moved-h20,
  ImaRelTablePosition 0 and +20, gets TablePosition 0 and -20 from dcm2niix v1.0.20260724), the same for
  every patient position and vendor (``benchmarks/dcm2niix_sidecars.py --probe-table`` writes Siemens, GE
  and Philips series in HFS, FFS and decubitus positions and prints what dcm2niix makes of each), so the
  isocentre is ``LPS_FROM_MAGNET[position] @ (x, y, -z)``, as for the DICOM headers.

Without a sidecar every fact is unknown, and the caller must state what correction needs.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from trueshape.dicom.vendor import (
    LPS_FROM_MAGNET,
    DistortionState,
    PatientPosition,
    distortion_state_from_image_type,
)
from trueshape.errors import VolumeInputError
from trueshape.geometry import Provenance, Volume
from trueshape.io._volumes import read_volume

__all__ = [
    "SIDECAR_AFFINE_TOLERANCE_MM",
    "VOLUME_SUFFIXES",
    "is_volume_file",
    "read_volume_file",
    "sidecar_path",
    "volume_stem",
]

#: File name endings read as volumes (longest first, so ``.nii.gz`` wins over ``.gz``).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd")
#: A trueshape sidecar describes the volume only if its affine agrees to this (mm, any entry).
SIDECAR_AFFINE_TOLERANCE_MM = 1e-3


def is_volume_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a NIfTI or NRRD file (by its ending).

    Examples
    --------
    >>> is_volume_file("sub-01_T1w.nii.gz"), is_volume_file("dicom_folder")
    (True, False)
    """
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def volume_stem(path: str | os.PathLike[str]) -> str:
    """Return the file name without its volume ending.

    Examples
    --------
    >>> volume_stem("out/cor_t1.nii.gz")
    'cor_t1'
    """
    name = Path(path).name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Return the JSON sidecar's path beside a volume file (``x.nii.gz`` -> ``x.json``)."""
    return Path(path).with_name(volume_stem(path) + ".json")


def read_volume_file(path: str | os.PathLike[str], *, sidecar: str | os.PathLike[str] | None = None) -> Volume:
    """Read a NIfTI or NRRD volume with the acquisition facts of its JSON sidecar in the provenance.

    Parameters
    ----------
    path : str or PathLike
        ``.nii``, ``.nii.gz`` or ``.nrrd`` file.
    sidecar : str or PathLike, optional
        The JSON sidecar (default: :func:`sidecar_path`, used when it exists).

    Returns
    -------
    Volume
        Provenance: distortion state (UNKNOWN without a sidecar), patient position, isocentre and their
        sources; ``sidecar`` names the sidecar read.

    Raises
    ------
    VolumeInputError
        The volume or the sidecar cannot be read, or a trueshape sidecar describes another grid.

    Examples
    --------
    >>> volume = read_volume_file("cor_t1.nii.gz")  # doctest: +SKIP
    >>> volume.provenance.distortion_state           # doctest: +SKIP
    <DistortionState.IN_PLANE_2D: 'DIS2D'>
    """
    volume = read_volume(path)
    json_path = Path(sidecar) if sidecar is not None else sidecar_path(path)
    if sidecar is None and not json_path.is_file():
        return volume
    try:
        data = json.loads(json_path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise VolumeInputError(f"{json_path}: sidecar not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VolumeInputError(f"{json_path}: cannot read the JSON sidecar ({error})") from None
    if not isinstance(data, dict):
        raise VolumeInputError(f"{json_path}: a sidecar must be a JSON object")
    provenance = _provenance(data, json_path, volume)
    return replace(volume, provenance=provenance)


def _provenance(data: dict[str, Any], json_path: Path, volume: Volume) -> Provenance:
    if isinstance(data.get("correction"), dict) and isinstance(data.get("source"), dict):
        source = data["source"]
        grid = data.get("output_grid")
        if isinstance(grid, dict):  # written on another series' grid (--like): the volume has that grid
            source = {**source, "shape": grid.get("shape"), "affine_lps": grid.get("affine_lps")}
        base = _from_trueshape(source, json_path, volume)
        return replace(
            base,
            distortion_state=DistortionState.FULL_3D,
            distortion_source=f"corrected by trueshape ({json_path.name})",
            sidecar=str(json_path),
        )
    if "distortion_state" in data and "affine_lps" in data:
        return _from_trueshape(data, json_path, volume)
    return _from_bids(data, json_path, volume)


def _numbers(value: Any, count: int | None, what: str, json_path: Path) -> list[float]:
    """Return a JSON list of finite numbers (``count`` of them when given), else raise naming the file."""
    if (
        not isinstance(value, list)
        or (count is not None and len(value) != count)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(np.isfinite(v) for v in value)
    ):
        size = f"{count} " if count is not None else ""
        raise VolumeInputError(f"{json_path}: {what} must be a list of {size}finite numbers, got {value!r}")
    return [float(v) for v in value]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _from_trueshape(data: dict[str, Any], json_path: Path, volume: Volume) -> Provenance:
    shape = _numbers(data.get("shape"), None, "shape", json_path)
    if len(shape) not in (3, 4):
        raise VolumeInputError(f"{json_path}: shape must list 3 sizes, or 4 for a series of volumes, got {shape}")
    # trueshape convert writes a 4-D stack's shape with its volume count last.
    volumes = data.get("volume_count", int(shape[3]) if len(shape) == 4 else 1)
    if len(shape) == 4 and shape[3] != volumes:
        raise VolumeInputError(f"{json_path}: shape {shape} and volume_count {volumes} disagree")
    shape = shape[:3]
    actual_volumes = volume.array.shape[3] if volume.array.ndim == 4 else 1
    if shape != [float(n) for n in volume.geometry.shape] or volumes != actual_volumes:
        raise VolumeInputError(
            f"{json_path}: the sidecar describes a {[int(n) for n in shape]} x {volumes} grid, the volume is "
            f"{list(volume.geometry.shape)} x {actual_volumes}"
        )
    if data.get("has_acquisition_transform") is True and data.get("resampled") is not True:
        transform = data.get("acquisition_transform")
        largest = transform.get("max_slice_offset_mm") if isinstance(transform, dict) else None
        by = f" by up to {float(largest):.2f} mm" if isinstance(largest, int | float) else ""
        raise VolumeInputError(
            f"{json_path}: the slices of this volume are off its regular grid{by} (their true positions are in "
            f"{data.get('acquisition_transform_file') or 'the acquisition transform'}); correcting it would put "
            "anatomy in the wrong place: convert the series again with --irregular resample"
        )
    rows = data.get("affine_lps")
    if not isinstance(rows, list) or len(rows) != 4:
        raise VolumeInputError(f"{json_path}: affine_lps must be 4 rows of 4 finite numbers")
    affine = np.array([_numbers(row, 4, "each row of affine_lps", json_path) for row in rows])
    difference = float(np.max(np.abs(affine - volume.geometry.lps_from_ijk)))
    if not difference <= SIDECAR_AFFINE_TOLERANCE_MM:
        raise VolumeInputError(
            f"{json_path}: the sidecar's affine differs from the volume's by {difference:.3g} mm: "
            "it describes another volume"
        )
    try:
        state = DistortionState(str(data["distortion_state"]))
        position_text = data.get("patient_position")
        position = PatientPosition(str(position_text)) if position_text else None
    except ValueError as error:
        raise VolumeInputError(f"{json_path}: malformed trueshape sidecar ({error})") from None
    if data.get("isocentre_lps") is None:
        isocentre, isocentre_source = (0.0, 0.0, 0.0), ""  # not recorded: the correction says it assumed this
    else:
        x, y, z = _numbers(data["isocentre_lps"], 3, "isocentre_lps", json_path)
        recorded = _text(data.get("isocentre_source")) or "recorded without its source"
        isocentre, isocentre_source = (x, y, z), f"{recorded} (trueshape sidecar {json_path.name})"
    table = data.get("table_position_mm")
    offset: tuple[float, float, float] | None = None
    if table is not None:
        tx, ty, tz = _numbers(table, 3, "table_position_mm", json_path)
        offset = (tx, ty, tz)
    source = _text(data.get("distortion_source"))
    number = data.get("series_number")
    return replace(
        volume.provenance,
        series_instance_uid=_text(data.get("series_instance_uid")) or "",
        series_number=number if isinstance(number, int) and not isinstance(number, bool) else None,
        series_description=_text(data.get("series_description")) or "",
        modality=_text(data.get("modality")) or "",
        distortion_state=state,
        distortion_source=f"{source} (trueshape sidecar {json_path.name})" if source else json_path.name,
        isocentre_lps=isocentre,
        isocentre_source=isocentre_source,
        table_offset_mm=offset,
        table_source=""
        if offset is None
        else f"{_text(data.get('table_source')) or 'a table tag'} (trueshape sidecar {json_path.name})",
        patient_position=position,
        gradient_coil=_text(data.get("gradient_coil")),
        # The sidecar's affine matched the volume's, so its k axis is the acquisition's slice axis.
        slice_normal_lps=tuple(float(v) for v in volume.geometry.direction[:, 2]),  # type: ignore[arg-type]
        sidecar=str(json_path),
        frames_disagree=_disagreements(data.get("findings")),
    )


def _disagreements(findings: Any) -> dict[str, str]:
    """Return what the converted stack's slices disagreed on (subject -> message): its FRAMES_DISAGREE findings."""
    said: dict[str, str] = {}
    for finding in findings if isinstance(findings, list) else []:
        if isinstance(finding, dict) and finding.get("code") == "FRAMES_DISAGREE":
            details = finding.get("details")
            subject = details.get("disagree_on", "") if isinstance(details, dict) else ""
            said[str(subject)] = str(finding.get("message", ""))
    return said


#: dcm2niix's NIfTI axes follow the DICOM row and column directions, reversed or (``-x``) reordered; both
#: directions of the sidecar's ImageOrientationPatientDICOM must be volume axes to this (|cosine|).
BIDS_ORIENTATION_TOLERANCE = 1e-3


def _from_bids(data: dict[str, Any], json_path: Path, volume: Volume) -> Provenance:
    image_type = data.get("ImageType")
    if image_type is not None and not (isinstance(image_type, list) and all(isinstance(t, str) for t in image_type)):
        raise VolumeInputError(f"{json_path}: ImageType must be a list of strings, got {image_type!r}")
    orientation = data.get("ImageOrientationPatientDICOM")
    if orientation is not None:
        cosines = np.array(_numbers(orientation, 6, "ImageOrientationPatientDICOM", json_path)).reshape(2, 3)
        unit = cosines / np.maximum(np.linalg.norm(cosines, axis=1, keepdims=True), 1e-12)
        agreement = np.max(np.abs(unit @ volume.geometry.direction), axis=1)
        if not np.all(agreement >= 1.0 - BIDS_ORIENTATION_TOLERANCE):
            raise VolumeInputError(
                f"{json_path}: ImageOrientationPatientDICOM {[round(float(v), 4) for v in cosines.ravel()]} is not "
                "along the volume's axes: the sidecar belongs to another volume"
            )
        # The slices' normal, whichever array axis a reorienting tool (dcm2niix -x, fslreorient2std) put it on.
        normal = np.cross(unit[0], unit[1])
        slice_normal: tuple[float, float, float] | None = (float(normal[0]), float(normal[1]), float(normal[2]))
    else:
        slice_normal = None
    state = distortion_state_from_image_type(image_type or [])
    source = f"ImageType in {json_path.name}" if state is not None else ""
    if state is None and data.get("NonlinearGradientCorrection") is False:
        state, source = DistortionState.NONE, f"NonlinearGradientCorrection false in {json_path.name}"
    elif state is None and data.get("NonlinearGradientCorrection") is True:
        source = "NonlinearGradientCorrection true: corrected, but in 2-D or 3-D is not recorded"
    position_text = data.get("PatientPosition")
    try:
        position = PatientPosition(str(position_text).strip().upper()) if position_text else None
    except ValueError:
        raise VolumeInputError(f"{json_path}: unknown PatientPosition {position_text!r}") from None
    isocentre, isocentre_source = volume.provenance.isocentre_lps, volume.provenance.isocentre_source
    table_offset, table_source = volume.provenance.table_offset_mm, volume.provenance.table_source
    if "TablePosition" in data:
        table = _numbers(data["TablePosition"], 3, "TablePosition", json_path)
        # dcm2niix writes the vendor's table offset with its bore axis negated, whatever the patient position.
        magnet = np.array([table[0], table[1], -table[2]])
        rotation = position or PatientPosition.HFS
        offset = LPS_FROM_MAGNET[rotation] @ magnet
        isocentre = (float(offset[0]), float(offset[1]), float(offset[2]))
        said = f"TablePosition {table} in {json_path.name} (dcm2niix: the table offset with its bore axis negated)"
        isocentre_source = f"{said}, rotated for {rotation.value}" + ("" if position else " (HFS assumed)")
        table_offset = (float(magnet[0]), float(magnet[1]), float(magnet[2]))
        table_source = said
    number = data.get("SeriesNumber")
    return replace(
        volume.provenance,
        series_description=_text(data.get("SeriesDescription")) or "",
        series_number=number if isinstance(number, int) and not isinstance(number, bool) else None,
        manufacturer=_text(data.get("Manufacturer")) or "",
        modality=_text(data.get("Modality")) or "",
        distortion_state=state or DistortionState.UNKNOWN,
        distortion_source=source,
        patient_position=position,
        isocentre_lps=isocentre,
        isocentre_source=isocentre_source,
        table_offset_mm=table_offset,
        table_source=table_source,
        slice_normal_lps=slice_normal,
        sidecar=str(json_path),
    )
