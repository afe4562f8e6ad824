r"""Derived DICOM series: a corrected volume handed back to PACS and viewers, next to its source series.

The new series keeps the source's patient, study, frame of reference and acquisition attributes, gets new
Series and SOP Instance UIDs, ImageType ``DERIVED\SECONDARY\...\DIS3D`` (what the scanner writes when it
corrected in 3-D, so that no tool corrects it again) and a DerivationDescription saying what was done.
Each slice cites the source images it was computed from (SourceImageSequence) when the caller names them,
and carries the corrected volume's exact geometry. Values are stored as 16-bit integers with a rescale
slope chosen to keep the volume's range; the quantisation step is returned so reports can state it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from trueshape.errors import DicomInputError
from trueshape.geometry import Volume
from trueshape.io._dicom_write import SeriesMetadata, SlicePlane, planes_from_volume, write_dicom_slices
from trueshape.io._transaction import OutputTransaction, atomic_folder, check_writable

__all__ = ["COPIED_KEYWORDS", "DERIVED_SERIES_NUMBER_OFFSET", "DerivedSeries", "SourceImage", "write_derived_series"]

#: Attributes copied from the source series, empty values included (Type 2 attributes stay present).
COPIED_KEYWORDS = (
    "SpecificCharacterSet",  # first: the names below are encoded in it
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Manufacturer",
    "ManufacturerModelName",
    "InstitutionName",
    "StationName",
    "DeviceSerialNumber",
    "MagneticFieldStrength",
    "BodyPartExamined",
    "Laterality",
    "PatientPosition",
    "ProtocolName",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "SequenceName",
    "RepetitionTime",
    "FlipAngle",
    "EchoTrainLength",
    "ImagingFrequency",
    "ImagedNucleus",
    "WindowCenter",
    "WindowWidth",
)
#: Attributes that may differ between the volumes of a 4-D series: taken from each volume's own source file.
PER_VOLUME_KEYWORDS = (
    "EchoTime",
    "InversionTime",
    "TriggerTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "DiffusionBValue",
    "DiffusionGradientOrientation",
)
#: Type 2 attributes of the modules written (present, empty when unknown) and Type 1 ones with a neutral value.
REQUIRED_DEFAULTS: dict[str, Any] = {
    "PatientBirthDate": "",
    "PatientSex": "",
    "ReferringPhysicianName": "",
    "StudyID": "",
    "AccessionNumber": "",
    "StudyDate": "",
    "StudyTime": "",
    "PositionReferenceIndicator": "",
    "ScanOptions": "",
    "MRAcquisitionType": "",
    "EchoTime": "",
    "EchoTrainLength": "",
    "ScanningSequence": "RM",
    "SequenceVariant": "NONE",
    "AcquisitionDate": "",
    "AcquisitionTime": "",
}
#: The derived series is numbered source + this (how scanners number their own derived series varies).
DERIVED_SERIES_NUMBER_OFFSET = 1000
_DESCRIPTION_SUFFIX = " (trueshape corrected)"
_INT16 = np.iinfo(np.int16)
_UINT16 = np.iinfo(np.uint16)


@dataclass(frozen=True)
class SourceImage:
    """A source instance (and frame, for multi-frame instances) that a derived slice was computed from."""

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None = None  #: 1-based, for a frame of a multi-frame instance


#: PurposeOfReferenceCodeSequence of each SourceImageSequence item (DICOM CID 7202).
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


def source_image_sequence(sources: Sequence[SourceImage]) -> DicomSequence:
    """SourceImageSequence (0008,2112) items for ``sources``, in order, without repeats.

    Examples
    --------
    >>> items = source_image_sequence([SourceImage("1.2.840.10008.5.1.4.1.1.4", "1.2.3")] * 2)
    >>> len(items), items[0].ReferencedSOPInstanceUID
    (1, '1.2.3')
    """
    items = []
    for source in dict.fromkeys(sources):
        item = Dataset()
        item.ReferencedSOPClassUID = source.sop_class_uid
        item.ReferencedSOPInstanceUID = source.sop_instance_uid
        if source.frame_number is not None:
            item.ReferencedFrameNumber = source.frame_number
        purpose = Dataset()
        purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _SOURCE_PURPOSE
        item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
        items.append(item)
    return DicomSequence(items)


@dataclass(frozen=True)
class DerivedSeries:
    """What :func:`write_derived_series` wrote."""

    folder: Path
    files: tuple[Path, ...]
    series_instance_uid: str
    series_number: int
    rescale_slope: float
    rescale_intercept: float
    nonfinite_voxels: int = 0

    @property
    def quantization_step(self) -> float:
        """Largest rounding error of a stored value is half of this (physical units)."""
        return self.rescale_slope


def quantize(values: NDArray[np.floating[Any]], *, integer_source: bool) -> tuple[NDArray[Any], float, float]:
    """Return 16-bit stored values, slope and intercept for physical ``values`` (non-finite voxels store 0).

    Integer-valued sources (slope 1) stay at slope 1 when their corrected range fits; otherwise the range
    [min, max] is spread over the unsigned 16-bit integers (intercept = min).

    Examples
    --------
    >>> stored, slope, intercept = quantize(np.array([0.0, 1.5, 1000.4]), integer_source=True)
    >>> stored.tolist(), slope, intercept
    ([0, 2, 1000], 1.0, 0.0)
    """
    finite = np.isfinite(values)
    clean = np.where(finite, values, 0.0).astype(np.float64)
    low, high = (float(clean[finite].min()), float(clean[finite].max())) if finite.any() else (0.0, 0.0)
    if integer_source:
        info = _INT16 if low < 0.0 else _UINT16
        if low >= info.min and high <= info.max:
            stored = np.clip(np.rint(clean), info.min, info.max).astype(np.int16 if low < 0.0 else np.uint16)
            return stored, 1.0, 0.0
    slope = (high - low) / _UINT16.max if high > low else 1.0
    stored = np.clip(np.rint((clean - low) / slope), 0, _UINT16.max).astype(np.uint16)
    stored[~finite] = 0
    return stored, slope, low


def write_derived_series(
    volume: Volume,
    folder: str | os.PathLike[str],
    *,
    template: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    derivation: str,
    series_description: str | None = None,
    series_number: int | None = None,
    table_position_mm: tuple[float, float, float] | None = None,
    integer_source: bool = False,
    source_images: Sequence[Sequence[Sequence[SourceImage]]] | None = None,
    force: bool = False,
    transaction: OutputTransaction | None = None,
) -> DerivedSeries:
    """Write ``volume`` as a derived classic DICOM series in ``folder`` (one file per slice and volume).

    Parameters
    ----------
    volume : Volume
        The corrected volume (physical values; 3-D or 4-D).
    folder : str or PathLike
        The series folder; written beside it and renamed into place when every file is written.
    template : str or PathLike, or a sequence of them
        A DICOM file of the source series: patient, study and acquisition attributes come from it. For a
        4-D volume, one file per volume: echo, inversion and trigger times and diffusion come from each.
    derivation : str
        DerivationDescription (what was done, by which software and coil).
    series_description, series_number : optional
        Default: the source's description + " (trueshape corrected)" and its number +
        :data:`DERIVED_SERIES_NUMBER_OFFSET`.
    table_position_mm : tuple of 3 float, optional
        Written as Siemens ImaRelTablePosition (0019,1014), so the isocentre stays known.
    integer_source : bool
        The source stored integers at slope 1 (see :func:`quantize`).
    source_images : optional
        ``source_images[t][k]``: the source images slice k of volume t was computed from, written as its
        SourceImageSequence (omitted for a slice with none).
    force : bool
        Replace an existing folder (only if it holds nothing but a series trueshape wrote).
    transaction : OutputTransaction, optional
        Write the folder as one output of this transaction (``folder`` must be one of its targets).

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
    if transaction is None:  # refuse before the work (a transaction checks its own targets)
        check_writable(target, force=force)
    templates = [template] if isinstance(template, str | os.PathLike) else list(template)
    sources = [_read_header(path) for path in templates]
    source = sources[0]
    values = volume.values(np.float32) if volume.is_scaled else np.asarray(volume.array)
    with np.errstate(over="ignore", invalid="ignore"):
        stored, slope, intercept = quantize(values, integer_source=integer_source)
    number = (
        series_number
        if series_number is not None
        else _int(source.get("SeriesNumber")) + (DERIVED_SERIES_NUMBER_OFFSET)
    )
    number = number if 0 <= number <= 2**31 - 1 else 0
    original = str(source.get("SeriesDescription", ""))
    description = series_description or (original[: 64 - len(_DESCRIPTION_SUFFIX)] + _DESCRIPTION_SUFFIX).strip()
    image_type = [str(v) for v in (source.get("ImageType") or [])]
    extra: dict[str, Any] = dict(REQUIRED_DEFAULTS)
    for keyword in COPIED_KEYWORDS:
        if keyword in source:
            extra[keyword] = source.data_element(keyword).value  # type: ignore[union-attr]
    grouped = _functional_group_values(source)
    extra |= {keyword: value for keyword, value in grouped.items() if keyword not in source}
    extra["DerivationDescription"] = derivation[:1024]
    spacing_k = float(volume.geometry.spacing[2])
    thickness = _positive_float(source.get("SliceThickness", grouped.get("SliceThickness")))
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
        slice_thickness_mm=thickness if thickness is not None else spacing_k,
        spacing_between_slices_mm=spacing_k,
        table_position_mm=table_position_mm,
        rescale_slope=slope,
        rescale_intercept=intercept,
        acquired_at=datetime.datetime.now().replace(microsecond=0),  # series and content: made now
        extra=extra,
    )
    stored_volume = Volume(stored, volume.geometry, volume.provenance)
    count = stored.shape[3] if stored.ndim == 4 else 1
    if len(sources) not in (1, count):
        raise ValueError(f"give one template, or one per volume ({count}); got {len(sources)}")
    slices = stored.shape[2]
    if source_images is not None and (len(source_images) != count or any(len(v) != slices for v in source_images)):
        raise ValueError(f"source_images must list {count} volume(s) of {slices} slices each")
    planes: list[SlicePlane] = []
    for t in range(count):
        own = sources[t] if len(sources) == count else source
        overrides: dict[str, Any] = {"AcquisitionNumber": t + 1}
        overrides |= {
            keyword: own.data_element(keyword).value  # type: ignore[union-attr]
            for keyword in PER_VOLUME_KEYWORDS
            if keyword in own
        }
        if count > 1:
            overrides |= {"TemporalPositionIdentifier": t + 1, "NumberOfTemporalPositions": count}
        cited = source_images[t] if source_images is not None else None
        for k, plane in enumerate(planes_from_volume(stored_volume, time_index=t)):
            own_overrides = dict(overrides)
            if cited is not None and cited[k]:
                own_overrides["SourceImageSequence"] = source_image_sequence(cited[k])
            planes.append(replace(plane, overrides=own_overrides))
    with OutputTransaction.join(transaction, target, force=force) as joined, atomic_folder(target, transaction=joined):
        written = write_dicom_slices(target, planes, metadata, transaction=joined)
    files = tuple(target / path.name for path in written)
    return DerivedSeries(
        target,
        files,
        metadata.series_instance_uid,
        number,
        slope,
        intercept,
        int(np.count_nonzero(~np.isfinite(values))),
    )


#: Where an enhanced (multi-frame) source keeps what a classic one has at the top: macro -> {attribute: keyword}.
_FUNCTIONAL_GROUP_MACROS = {
    "MRTimingAndRelatedParametersSequence": {
        "RepetitionTime": "RepetitionTime",
        "FlipAngle": "FlipAngle",
        "EchoTrainLength": "EchoTrainLength",
    },
    "MREchoSequence": {"EffectiveEchoTime": "EchoTime"},
    "PixelMeasuresSequence": {"SliceThickness": "SliceThickness"},
    "FrameVOILUTSequence": {"WindowCenter": "WindowCenter", "WindowWidth": "WindowWidth"},
}


def _functional_group_values(source: pydicom.Dataset) -> dict[str, Any]:
    """Classic attributes of an enhanced source, from its shared then first per-frame functional groups."""
    values: dict[str, Any] = {}
    for groups_keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = source.get(groups_keyword)
        if not groups:
            continue
        for macro, attributes in _FUNCTIONAL_GROUP_MACROS.items():
            items = groups[0].get(macro)
            if not items:
                continue
            for attribute, keyword in attributes.items():
                if attribute in items[0] and keyword not in values:
                    values[keyword] = items[0].data_element(attribute).value
    return values


def _read_header(path: str | os.PathLike[str]) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as error:
        raise DicomInputError(f"{path}: cannot read the source series' header ({error})") from None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _positive_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None
