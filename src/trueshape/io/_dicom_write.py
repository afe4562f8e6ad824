"""Write DICOM series: classic single-frame files or one enhanced multi-frame file per series.

Used for derived (corrected) series and by synth/ for synthetic acquisitions that tests and the demo read
back through the same loader as scanner data. Geometry is written exactly as given: every plane carries
its own ImagePositionPatient, ImageOrientationPatient and PixelSpacing, so irregular, sheared or mixed
stacks can be produced on purpose.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from trueshape._version import __version__
from trueshape.dicom.vendor import SIEMENS_MR_HEADER, SIEMENS_XA_SDI, SIEMENS_XA_SDS
from trueshape.geometry import Volume
from trueshape.io._transaction import OutputTransaction, atomic_path

__all__ = ["SeriesMetadata", "SlicePlane", "planes_from_volume", "write_dicom_slices", "write_enhanced_dicom"]

MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")
CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")


@dataclass(frozen=True)
class SeriesMetadata:
    """Patient, study and series attributes shared by every file of a written series.

    ``table_position_mm`` is written as Siemens ImaRelTablePosition (0019,1014) (magnet axes, mm).
    ``acquired_at`` is the one date and time written to every file of the series; ``study_at`` the study's
    (default: ``acquired_at``), shared by the series of one study.
    ``extra`` holds further top-level attributes by DICOM keyword.
    """

    patient_name: str = "TRUESHAPE^SYNTHETIC"
    patient_id: str = "TS0001"
    study_instance_uid: str = field(default_factory=generate_uid)
    study_description: str = "trueshape synthetic"
    series_instance_uid: str = field(default_factory=generate_uid)
    series_number: int = 1
    series_description: str = "synthetic"
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    modality: str = "MR"
    manufacturer: str = "SIEMENS"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND")
    patient_position: str = "HFS"
    slice_thickness_mm: float | None = None
    spacing_between_slices_mm: float | None = None
    table_position_mm: tuple[float, float, float] | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    acquired_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now().replace(microsecond=0))
    study_at: datetime.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class SlicePlane:
    """One image plane with its own geometry.

    Parameters
    ----------
    pixels : ndarray, shape (rows, columns)
        Stored values in DICOM order (row-major), uint16 or int16.
    image_position : sequence of 3 float
        ImagePositionPatient, mm LPS.
    image_orientation : sequence of 6 float
        ImageOrientationPatient (row direction, column direction).
    pixel_spacing : sequence of 2 float
        PixelSpacing (row spacing, column spacing), mm.
    overrides : dict
        Per-file attributes by keyword (InstanceNumber, ImageType, EchoNumbers, AcquisitionNumber, ...).
    """

    pixels: NDArray[Any]
    image_position: Sequence[float]
    image_orientation: Sequence[float]
    pixel_spacing: Sequence[float]
    overrides: dict[str, Any] = field(default_factory=dict)


def _ds_number(value: float) -> str:
    """Format a DS value within DICOM's 16 characters, keeping as much precision as fits."""
    for digits in range(12, 4, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.4g}"


def _base_dataset(metadata: SeriesMetadata, sop_class: UID) -> tuple[Dataset, FileMetaDataset]:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.10.1451.1")
    meta.ImplementationVersionName = f"TRUESHAPE_{__version__}"[:16]
    ds = Dataset()
    ds.file_meta = meta
    # One timestamp per series: tools split series whose files disagree on their times.
    when = metadata.acquired_at
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S")
    study = metadata.study_at or when
    ds.StudyDate, ds.StudyTime = study.strftime("%Y%m%d"), study.strftime("%H%M%S")
    ds.Modality = metadata.modality
    ds.Manufacturer = metadata.manufacturer
    ds.PatientName = metadata.patient_name
    ds.PatientID = metadata.patient_id
    ds.PatientPosition = metadata.patient_position
    ds.StudyInstanceUID = metadata.study_instance_uid
    ds.StudyDescription = metadata.study_description
    ds.SeriesInstanceUID = metadata.series_instance_uid
    ds.SeriesNumber = metadata.series_number
    ds.SeriesDescription = metadata.series_description
    ds.FrameOfReferenceUID = metadata.frame_of_reference_uid
    ds.ImageType = list(metadata.image_type)
    ds.SoftwareVersions = f"trueshape {__version__}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    # Type 2 attributes of the Patient, General Study, General Series and Frame of Reference modules (present,
    # empty when unknown), so that the files are valid instances (dciodvfy), as PACS imports expect.
    for keyword in (
        "PatientBirthDate",
        "PatientSex",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
        "Laterality",
        "PositionReferenceIndicator",
    ):
        setattr(ds, keyword, "")
    if sop_class == MR_IMAGE_STORAGE:  # MR Image module: Type 1 sequence facts, Type 2 timing (empty: unknown)
        ds.ScanningSequence, ds.SequenceVariant = "GR", "NONE"
        for keyword in (
            "ScanOptions",
            "MRAcquisitionType",
            "RepetitionTime",
            "EchoTime",
            "EchoTrainLength",
            "SliceThickness",
        ):
            setattr(ds, keyword, "")
    if metadata.table_position_mm is not None and sop_class != ENHANCED_MR_IMAGE_STORAGE:
        block = ds.private_block(0x0019, SIEMENS_MR_HEADER, create=True)
        block.add_new(0x14, "IS", [round(v) for v in metadata.table_position_mm])
    for keyword, value in metadata.extra.items():
        setattr(ds, keyword, value)
    return ds, meta


def _set_pixels(ds: Dataset, pixels: NDArray[Any]) -> None:
    if pixels.dtype not in (np.uint16, np.int16):
        raise ValueError(f"pixels must be uint16 or int16, got {pixels.dtype}")
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()


def write_dicom_slices(
    folder: str | os.PathLike[str],
    planes: Sequence[SlicePlane],
    metadata: SeriesMetadata,
    *,
    file_prefix: str = "IM",
    force: bool = False,
    transaction: OutputTransaction | None = None,
) -> list[Path]:
    """Write one classic DICOM file per plane (MR or CT Image Storage) and return the paths.

    Each file is written atomically; with ``transaction`` (``folder`` one of its folder targets) they move
    into place with its other outputs.

    Examples
    --------
    >>> import tempfile
    >>> plane = SlicePlane(np.zeros((4, 5), np.uint16), (0, 0, 0), (1, 0, 0, 0, 1, 0), (1.0, 1.0))
    >>> paths = write_dicom_slices(tempfile.mkdtemp(), [plane], SeriesMetadata())
    >>> pydicom.dcmread(paths[0]).Columns
    5
    """
    out = Path(folder)
    (out if transaction is None else transaction.staged(out)).mkdir(parents=True, exist_ok=True)
    sop_class = CT_IMAGE_STORAGE if metadata.modality == "CT" else MR_IMAGE_STORAGE
    paths: list[Path] = []
    for index, plane in enumerate(planes):
        ds, meta = _base_dataset(metadata, sop_class)
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        ds.AcquisitionNumber = 1
        ds.ImagePositionPatient = [_ds_number(v) for v in plane.image_position]
        ds.ImageOrientationPatient = [_ds_number(v) for v in plane.image_orientation]
        ds.PixelSpacing = [_ds_number(v) for v in plane.pixel_spacing]
        normal = np.cross(
            np.asarray(plane.image_orientation[:3], float), np.asarray(plane.image_orientation[3:], float)
        )
        ds.SliceLocation = _ds_number(float(np.dot(normal, np.asarray(plane.image_position, float))))
        if metadata.slice_thickness_mm is not None:
            ds.SliceThickness = _ds_number(metadata.slice_thickness_mm)
        if metadata.spacing_between_slices_mm is not None:
            ds.SpacingBetweenSlices = _ds_number(metadata.spacing_between_slices_mm)
        if metadata.rescale_slope != 1.0 or metadata.rescale_intercept != 0.0:
            ds.RescaleSlope = _ds_number(metadata.rescale_slope)
            ds.RescaleIntercept = _ds_number(metadata.rescale_intercept)
        ds.Rows, ds.Columns = int(plane.pixels.shape[0]), int(plane.pixels.shape[1])
        _set_pixels(ds, plane.pixels)
        for keyword, value in plane.overrides.items():
            setattr(ds, keyword, value)
        path = out / f"{file_prefix}{index + 1:05d}.dcm"
        with atomic_path(path, force=force, transaction=transaction) as temporary:
            pydicom.dcmwrite(temporary, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced_dicom(
    path: str | os.PathLike[str],
    planes: Sequence[SlicePlane],
    metadata: SeriesMetadata,
    *,
    temporal_indices: Sequence[int] | None = None,
    force: bool = False,
    transaction: OutputTransaction | None = None,
) -> Path:
    """Write all planes as one Enhanced MR Image Storage file with per-frame functional groups.

    Orientation and pixel spacing go into the shared functional groups when every plane agrees,
    otherwise per frame; positions, stack membership, rescale and frame type are always per frame.
    As Siemens XA writes them, the distortion-correction token of ``metadata.image_type`` (ND, DIS2D,
    DIS3D) is carried per frame in ImageTypeText (0021,1175) of the private sequence (0021,11FE), since
    the enhanced ImageType has four values, and the table position as RelTablePosition (0021,1005) in
    the shared group's private sequence. The multi-frame dimension module indexes frames by stack and
    in-stack position. The MR technique macros (echo, timing, coils, ...) are not written: the file
    exercises readers of enhanced geometry; it is not a complete Enhanced MR instance.
    """
    ds, meta = _base_dataset(metadata, ENHANCED_MR_IMAGE_STORAGE)
    frame_type = [*(list(metadata.image_type[:2]) or ["ORIGINAL", "PRIMARY"]), "VOLUME", "NONE"][:4]
    ds.ImageType = frame_type
    for keyword, value in (
        ("PixelPresentation", "MONOCHROME"),
        ("VolumeBasedCalculationTechnique", "NONE"),
        ("ComplexImageComponent", "MAGNITUDE"),
        ("AcquisitionContrast", "UNKNOWN"),
        ("PresentationLUTShape", "IDENTITY"),
        ("BurnedInAnnotation", "NO"),
        ("LossyImageCompression", "00"),
        ("ContentQualification", "RESEARCH"),
    ):
        setattr(ds, keyword, value)
    dimension_uid = generate_uid()
    organisation = Dataset()
    organisation.DimensionOrganizationUID = dimension_uid
    ds.DimensionOrganizationSequence = DicomSequence([organisation])
    indices = []
    for keyword in ("StackID", "InStackPositionNumber"):
        pointer = Dataset()
        pointer.DimensionOrganizationUID = dimension_uid
        pointer.DimensionIndexPointer = pydicom.datadict.tag_for_keyword(keyword)
        pointer.FunctionalGroupPointer = pydicom.datadict.tag_for_keyword("FrameContentSequence")
        indices.append(pointer)
    ds.DimensionIndexSequence = DicomSequence(indices)
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(planes)
    ds.Rows, ds.Columns = int(planes[0].pixels.shape[0]), int(planes[0].pixels.shape[1])
    ds.VolumetricProperties = "VOLUME"
    orientations = {tuple(p.image_orientation) for p in planes}
    spacings = {tuple(p.pixel_spacing) for p in planes}
    shared = Dataset()

    def orientation_item(plane: SlicePlane) -> DicomSequence:
        item = Dataset()
        item.ImageOrientationPatient = [_ds_number(v) for v in plane.image_orientation]
        return DicomSequence([item])

    def measures_item(plane: SlicePlane) -> DicomSequence:
        item = Dataset()
        item.PixelSpacing = [_ds_number(v) for v in plane.pixel_spacing]
        if metadata.slice_thickness_mm is not None:
            item.SliceThickness = _ds_number(metadata.slice_thickness_mm)
        if metadata.spacing_between_slices_mm is not None:
            item.SpacingBetweenSlices = _ds_number(metadata.spacing_between_slices_mm)
        return DicomSequence([item])

    if len(orientations) == 1:
        shared.PlaneOrientationSequence = orientation_item(planes[0])
    if len(spacings) == 1:
        shared.PixelMeasuresSequence = measures_item(planes[0])
    if metadata.table_position_mm is not None:
        table = Dataset()
        table.private_block(0x0021, SIEMENS_XA_SDS, create=True).add_new(
            0x05, "IS", [round(v) for v in metadata.table_position_mm]
        )
        shared.private_block(0x0021, SIEMENS_XA_SDS, create=True).add_new(0xFE, "SQ", DicomSequence([table]))
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for index, plane in enumerate(planes):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [_ds_number(v) for v in plane.image_position]
        item.PlanePositionSequence = DicomSequence([position])
        if len(orientations) > 1:
            item.PlaneOrientationSequence = orientation_item(plane)
        if len(spacings) > 1:
            item.PixelMeasuresSequence = measures_item(plane)
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = index + 1
        content.DimensionIndexValues = [1, index + 1]
        frame_kind = Dataset()
        frame_kind.FrameType = frame_type
        item.MRImageFrameTypeSequence = DicomSequence([frame_kind])
        text = Dataset()
        text.private_block(0x0021, SIEMENS_XA_SDI, create=True).add_new(0x75, "CS", list(metadata.image_type))
        item.private_block(0x0021, SIEMENS_XA_SDI, create=True).add_new(0xFE, "SQ", DicomSequence([text]))
        if temporal_indices is not None:
            content.TemporalPositionIndex = int(temporal_indices[index])
        item.FrameContentSequence = DicomSequence([content])
        transform = Dataset()
        transform.RescaleSlope = _ds_number(metadata.rescale_slope)
        transform.RescaleIntercept = _ds_number(metadata.rescale_intercept)
        transform.RescaleType = "US"
        item.PixelValueTransformationSequence = DicomSequence([transform])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    stacked = np.stack([p.pixels for p in planes])
    _set_pixels(ds, stacked)
    target = Path(path)
    with atomic_path(target, force=force, transaction=transaction) as temporary:
        pydicom.dcmwrite(temporary, ds, enforce_file_format=True)
    return target


def planes_from_volume(volume: Volume, *, time_index: int = 0) -> list[SlicePlane]:
    """Return one SlicePlane per slice k of ``volume`` (stored values, its exact geometry)."""
    geometry = volume.geometry
    direction, spacing = geometry.direction, geometry.spacing
    orientation = (*direction[:, 0], *direction[:, 1])
    array = volume.array if volume.array.ndim == 3 else volume.array[..., time_index]
    planes = []
    for k in range(geometry.shape[2]):
        position = geometry.index_to_lps(np.array([0.0, 0.0, float(k)]))
        planes.append(
            SlicePlane(
                np.ascontiguousarray(array[:, :, k].T),
                tuple(position),
                orientation,
                (float(spacing[1]), float(spacing[0])),
            )
        )
    return planes
