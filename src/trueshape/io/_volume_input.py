"""Volumes that arrive as files (NIfTI, NRRD), with what their JSON sidecar says about the acquisition.

Correcting a volume needs facts that a NIfTI header cannot hold: what the scanner already corrected
(ND / DIS2D / DIS3D), the patient position and where the isocentre was. They come from the JSON sidecar
beside the file, which may be

* trueshape's own (``trueshape convert``): every fact, checked against the volume's grid;
* trueshape's correction sidecar (``<label>_corrected.json``): the volume is already corrected (DIS3D);
* dcm2niix's BIDS sidecar: ``ImageType`` and ``PatientPosition``. Its ``TablePosition`` is kept aside
  (:data:`UNVERIFIED_TABLE_POSITION`), not used: no sample here pins its sign convention.

Without a sidecar every fact is unknown, and the caller must state what correction needs.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from trueshape.dicom.vendor import DistortionState, PatientPosition, distortion_state_from_image_type
from trueshape.errors import VolumeInputError
from trueshape.geometry import Provenance, Volume
from trueshape.io._volumes import read_volume

__all__ = [
    "SIDECAR_AFFINE_TOLERANCE_MM",
    "UNVERIFIED_TABLE_POSITION",
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
#: Key in :attr:`Provenance.extra` holding a dcm2niix ``TablePosition`` that was not applied.
UNVERIFIED_TABLE_POSITION = "unverified_table_position"


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
        sources; ``extra["sidecar"]`` names the sidecar read.

    Raises
    ------
    VolumeInputError
        The volume or the sidecar cannot be read, or a trueshape sidecar describes another grid.

    Examples
    --------
    >>> volume = read_volume_file("cor_t1.nii.gz")  # doctest: +SKIP
    >>> volume.provenance.distortion_state           # doctest: +SKIP
    'DIS2D'
    """
    volume = read_volume(path)
    json_path = Path(sidecar) if sidecar is not None else sidecar_path(path)
    if sidecar is None and not json_path.is_file():
        return volume
    try:
        data = json.loads(json_path.read_text())
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
        base = _from_trueshape(data["source"], json_path, volume)
        return replace(
            base,
            distortion_state=DistortionState.FULL_3D.value,
            distortion_source=f"corrected by trueshape ({json_path.name})",
            extra={**base.extra, "sidecar": str(json_path)},
        )
    if "distortion_state" in data and "affine_lps" in data:
        return _from_trueshape(data, json_path, volume)
    return _from_bids(data, json_path, volume)


def _from_trueshape(data: dict[str, Any], json_path: Path, volume: Volume) -> Provenance:
    shape = [int(v) for v in data.get("shape", [])][:3]
    if shape != list(volume.geometry.shape):
        raise VolumeInputError(
            f"{json_path}: the sidecar describes a {shape} grid, the volume is {list(volume.geometry.shape)}"
        )
    try:
        affine = np.asarray(data["affine_lps"], dtype=np.float64)
        state = DistortionState(str(data["distortion_state"]))
        position = data.get("patient_position")
        position = PatientPosition(str(position)).value if position else None
        isocentre = tuple(float(v) for v in data.get("isocentre_lps", (0.0, 0.0, 0.0)))
    except (TypeError, ValueError, KeyError) as error:
        raise VolumeInputError(f"{json_path}: malformed trueshape sidecar ({error})") from None
    difference = float(np.max(np.abs(affine - volume.geometry.lps_from_ijk))) if affine.shape == (4, 4) else np.inf
    if difference > SIDECAR_AFFINE_TOLERANCE_MM:
        raise VolumeInputError(
            f"{json_path}: the sidecar's affine differs from the volume's by {difference:.3g} mm: "
            "it describes another volume"
        )
    if len(isocentre) != 3:
        raise VolumeInputError(f"{json_path}: isocentre_lps must hold 3 numbers")
    source = str(data.get("distortion_source") or "")
    return replace(
        volume.provenance,
        series_instance_uid=str(data.get("series_instance_uid") or ""),
        series_number=data.get("series_number"),
        series_description=str(data.get("series_description") or ""),
        modality=str(data.get("modality") or ""),
        distortion_state=state.value,
        distortion_source=f"{source} (trueshape sidecar {json_path.name})" if source else f"{json_path.name}",
        isocentre_lps=(isocentre[0], isocentre[1], isocentre[2]),
        isocentre_source=f"{data.get('isocentre_source') or 'as recorded'} (trueshape sidecar {json_path.name})",
        patient_position=position,
        gradient_coil=data.get("gradient_coil"),
        extra={**volume.provenance.extra, "sidecar": str(json_path)},
    )


def _from_bids(data: dict[str, Any], json_path: Path, volume: Volume) -> Provenance:
    image_type = data.get("ImageType")
    tokens = [str(t) for t in image_type] if isinstance(image_type, list) else []
    state = distortion_state_from_image_type(tokens)
    source = f"ImageType in {json_path.name}" if state is not None else ""
    if state is None and data.get("NonlinearGradientCorrection") is False:
        state, source = DistortionState.NONE, f"NonlinearGradientCorrection false in {json_path.name}"
    elif state is None and data.get("NonlinearGradientCorrection") is True:
        source = "NonlinearGradientCorrection true: corrected, but in 2-D or 3-D is not recorded"
    position_text = data.get("PatientPosition")
    try:
        position = PatientPosition(str(position_text).strip().upper()).value if position_text else None
    except ValueError:
        raise VolumeInputError(f"{json_path}: unknown PatientPosition {position_text!r}") from None
    extra: dict[str, Any] = {**volume.provenance.extra, "sidecar": str(json_path)}
    table = data.get("TablePosition")
    if isinstance(table, list) and any(float(v) != 0.0 for v in table):
        extra[UNVERIFIED_TABLE_POSITION] = [float(v) for v in table]
    return replace(
        volume.provenance,
        series_description=str(data.get("SeriesDescription") or ""),
        series_number=data.get("SeriesNumber"),
        manufacturer=str(data.get("Manufacturer") or ""),
        modality=str(data.get("Modality") or ""),
        distortion_state=(state or DistortionState.UNKNOWN).value,
        distortion_source=source,
        patient_position=position,
        extra=extra,
    )
