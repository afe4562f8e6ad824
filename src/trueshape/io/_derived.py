r"""Derived DICOM series: a corrected volume handed back to PACS and viewers, next to its source series.

The new series keeps the source's patient, study, frame of reference and acquisition attributes, gets new
Series and SOP Instance UIDs, ImageType ``DERIVED\SECONDARY\...\DIS3D`` (what the scanner writes when it
corrected in 3-D, so that no tool corrects it again) and a DerivationDescription saying what was done.
Every slice carries the corrected volume's exact geometry. Values are stored as 16-bit integers with a
rescale slope chosen to keep the volume's range; the quantisation step is returned so reports can state it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from trueshape.errors import DicomInputError, OutputError, OutputExistsError
from trueshape.geometry import Volume
from trueshape.io._atomic import check_writable
from trueshape.io._dicom_write import SeriesMetadata, planes_from_volume, write_dicom_slices

__all__ = ["COPIED_KEYWORDS", "DERIVED_SERIES_NUMBER_OFFSET", "DerivedSeries", "write_derived_series"]

#: Attributes copied from the source series when present: patient, study, equipment, acquisition.
COPIED_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientSize", "PatientWeight",
    "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
    "ReferringPhysicianName", "FrameOfReferenceUID", "PositionReferenceIndicator", "Manufacturer",
    "ManufacturerModelName", "InstitutionName", "StationName", "DeviceSerialNumber", "MagneticFieldStrength",
    "BodyPartExamined", "PatientPosition", "ProtocolName", "ScanningSequence", "SequenceVariant", "ScanOptions",
    "MRAcquisitionType", "SequenceName", "EchoTime", "RepetitionTime", "InversionTime", "FlipAngle",
    "EchoTrainLength", "ImagingFrequency", "ImagedNucleus", "AcquisitionDate", "AcquisitionTime",
)
#: The derived series is numbered source + this (how scanners number their own derived series varies).
DERIVED_SERIES_NUMBER_OFFSET = 1000
_INT16 = np.iinfo(np.int16)
_UINT16 = np.iinfo(np.uint16)


@dataclass(frozen=True)
class DerivedSeries:
    """What :func:`write_derived_series` wrote."""

    folder: Path
    files: tuple[Path, ...]
    series_instance_uid: str
    series_number: int
    rescale_slope: float
    rescale_intercept: float

    @property
    def quantization_step(self) -> float:
        """Largest rounding error of a stored value is half of this (physical units)."""
        return self.rescale_slope


def quantize(values: NDArray[np.floating[Any]], *, integer_source: bool) -> tuple[NDArray[Any], float, float]:
    """Return 16-bit stored values, slope and intercept for physical ``values``.

    Integer-valued sources (slope 1) stay at slope 1 when their corrected range fits; otherwise the slope
    spreads the range over the 16-bit integers (unsigned when nothing is negative).

    Examples
    --------
    >>> stored, slope, intercept = quantize(np.array([0.0, 1.5, 1000.4]), integer_source=True)
    >>> stored.tolist(), slope, intercept
    ([0, 2, 1000], 1.0, 0.0)
    """
    finite = np.where(np.isfinite(values), values, 0.0)
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    signed = low < 0.0
    info = _INT16 if signed else _UINT16
    if integer_source and low >= info.min and high <= info.max:
        slope = 1.0
    else:
        largest = max(abs(low), abs(high))
        slope = largest / info.max if largest > 0.0 else 1.0
    stored = np.clip(np.rint(finite / slope), info.min, info.max).astype(np.int16 if signed else np.uint16)
    return stored, slope, 0.0


def write_derived_series(
    volume: Volume,
    folder: str | os.PathLike[str],
    *,
    template: str | os.PathLike[str],
    derivation: str,
    series_description: str | None = None,
    series_number: int | None = None,
    table_position_mm: tuple[float, float, float] | None = None,
    integer_source: bool = False,
    force: bool = False,
) -> DerivedSeries:
    """Write ``volume`` as a derived classic DICOM series in ``folder`` (one file per slice and volume).

    Parameters
    ----------
    volume : Volume
        The corrected volume (physical values; 3-D or 4-D).
    folder : str or PathLike
        The series folder; written beside it and renamed into place when every file is written.
    template : str or PathLike
        A DICOM file of the source series: patient, study and acquisition attributes come from it.
    derivation : str
        DerivationDescription (what was done, by which software and coil).
    series_description, series_number : optional
        Default: the source's description + " (trueshape corrected)" and its number +
        :data:`DERIVED_SERIES_NUMBER_OFFSET`.
    table_position_mm : tuple of 3 float, optional
        Written as Siemens ImaRelTablePosition (0019,1014), so the isocentre stays known.
    integer_source : bool
        The source stored integers at slope 1 (see :func:`quantize`).
    force : bool
        Replace an existing folder.

    Raises
    ------
    DicomInputError
        The template cannot be read as DICOM.
    OutputExistsError, OutputError
        The folder exists (without ``force``) or cannot be written.

    Examples
    --------
    >>> derived = write_derived_series(corrected, "out/cor_corrected", template="dicom/cor/IM0001.dcm",
    ...                                derivation="trueshape GNL correction")  # doctest: +SKIP
    """
    target = Path(folder)
    check_writable(target, force=force)
    try:
        source = pydicom.dcmread(template, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as error:
        raise DicomInputError(f"{template}: cannot read the source series' header ({error})") from None
    values = volume.values(np.float32) if volume.is_scaled else np.asarray(volume.array, dtype=np.float32)
    stored, slope, intercept = quantize(values, integer_source=integer_source)
    number = series_number if series_number is not None else int(source.get("SeriesNumber") or 0) + (
        DERIVED_SERIES_NUMBER_OFFSET)
    description = series_description or f"{source.get('SeriesDescription', '')} (trueshape corrected)".strip()
    image_type = [str(v) for v in (source.get("ImageType") or [])]
    now = datetime.datetime.now().replace(microsecond=0)
    extra: dict[str, Any] = {}
    for keyword in COPIED_KEYWORDS:
        element = source.data_element(keyword) if keyword in source else None
        if element is not None and element.value not in (None, ""):
            extra[keyword] = element.value
    extra["DerivationDescription"] = derivation[:1024]
    spacing_k = float(volume.geometry.spacing[2])
    metadata = SeriesMetadata(
        patient_name=str(source.get("PatientName", "")),
        patient_id=str(source.get("PatientID", "")),
        study_instance_uid=str(source.get("StudyInstanceUID") or generate_uid()),
        study_description=str(source.get("StudyDescription", "")),
        series_instance_uid=generate_uid(),
        series_number=number,
        series_description=description[:64],
        frame_of_reference_uid=str(source.get("FrameOfReferenceUID") or generate_uid()),
        modality=str(source.get("Modality") or "MR"),
        manufacturer=str(source.get("Manufacturer", "")),
        image_type=("DERIVED", "SECONDARY", image_type[2] if len(image_type) > 2 else "M", "DIS3D"),
        patient_position=str(source.get("PatientPosition", "")),
        slice_thickness_mm=float(source.SliceThickness) if source.get("SliceThickness") else spacing_k,
        spacing_between_slices_mm=spacing_k,
        table_position_mm=table_position_mm,
        rescale_slope=slope,
        rescale_intercept=intercept,
        acquired_at=now,
        extra=extra,
    )
    stored_volume = Volume(stored, volume.geometry, volume.provenance)
    count = stored.shape[3] if stored.ndim == 4 else 1
    planes = []
    for t in range(count):
        for plane in planes_from_volume(stored_volume, time_index=t):
            overrides = {"AcquisitionNumber": t + 1}
            if count > 1:
                overrides |= {"TemporalPositionIdentifier": t + 1, "NumberOfTemporalPositions": count}
            planes.append(replace(plane, overrides=overrides))
    with _atomic_folder(target, force=force) as temporary:
        written = write_dicom_slices(temporary, planes, metadata)
    files = tuple(target / path.name for path in written)
    return DerivedSeries(target, files, metadata.series_instance_uid, number, slope, intercept)


@contextlib.contextmanager
def _atomic_folder(target: Path, *, force: bool) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; it becomes ``target`` (replacing it with ``force``) on success."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    except OSError as error:
        raise OutputError(f"{target}: cannot write here ({error.strerror or error})") from None
    try:
        try:
            yield temporary
        except OSError as error:
            raise OutputError(f"{target}: writing failed ({error.strerror or error})") from None
        if target.exists():
            if not force:
                raise OutputExistsError(f"{target}: appeared while writing (use --force to overwrite)")
            # Move the old series aside first: a failure between the two renames loses nothing.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(temporary, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, target)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
