"""One DICOM file's header -> :class:`Frame` records: classic images, Siemens mosaics, enhanced multi-frame.

Classic single-frame images, enhanced multi-frame images (per-frame and shared functional groups) and
Siemens mosaics (one tile per slice, placed with the CSA header and the Phoenix protocol) all become the
same Frame records, so grouping and geometry never care where a plane came from. Values are read
leniently (a malformed number is None) and never guessed.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from trueshape.dicom._csa import phoenix_protocol, phoenix_slice_positions, siemens_csa_image_tags
from trueshape.dicom._diffusion import read_diffusion
from trueshape.dicom._frame import Frame, PixelLocation, PixelReadMode
from trueshape.dicom._scaling import MAX_RESCALE
from trueshape.dicom.vendor import (
    GE_PRIVATE_PARM,
    PHILIPS_MR_IMAGING_001,
    private_value,
    read_per_frame_distortion_state,
    read_vendor_info,
    text_values,
)
from trueshape.errors import DicomInputError

__all__ = ["classic_frames", "enhanced_frames", "integer", "pixel_value_offset"]

_NATIVE_SYNTAXES = {ImplicitVRLittleEndian, ExplicitVRLittleEndian}
_LOCALIZER_TOKENS = {"LOCALIZER", "SCOUT", "LOCALISER"}


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def integer(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        return None
    return values


def _seconds(time_text: Any, date_text: Any = None) -> float | None:
    """DICOM TM (with its DA when given) or DT to seconds, counted from year 1 when the date is known.

    The date matters: a series acquired across midnight would otherwise sort its last volumes first.
    """
    if not time_text:
        return None
    text = str(time_text).strip()
    date = str(date_text).strip() if date_text else ""
    offset = 0.0
    zone = re.search(r"([+-])(\d{2})(\d{2})$", text)
    if zone and len(text) > 5:  # DT may end in a UTC offset &ZZXX: count from UTC
        offset = (1 if zone.group(1) == "+" else -1) * (int(zone.group(2)) * 3600 + int(zone.group(3)) * 60)
        text = text[: zone.start()]
    if len(text) >= 14 and text[:8].isdigit():  # DT: YYYYMMDDHHMMSS.ffffff
        date, text = text[:8], text[8:]
    day = 0
    if len(date) == 8 and date.isdigit():
        try:
            day = datetime.date(int(date[:4]), int(date[4:6]), int(date[6:8])).toordinal()
        except ValueError:
            day = 0
    text = text.replace(":", "")
    try:
        hours = int(text[0:2])
        minutes = int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return day * 86400 + hours * 3600 + minutes * 60 + seconds - offset


def _first(item: Dataset | None, sequence: str) -> Dataset | None:
    if item is None:
        return None
    seq = item.get(sequence)
    return seq[0] if seq else None


def _complex_component(image_type: Sequence[str], ds: Dataset | None = None) -> str:
    """M, P, R or I (magnitude, phase, real, imaginary), or "" when nothing says.

    ComplexImageComponent when present; else ImageType from its third value on, as vendors write it: Siemens
    ``M``/``P`` third, Philips ``M``/``P`` fourth (``M_FFE``, ``PHASE MAP`` third); else GE's private image
    type (0043,102F): 0 magnitude, 1 phase, 2 real, 3 imaginary.
    """
    mapping = {"MAGNITUDE": "M", "PHASE": "P", "REAL": "R", "IMAGINARY": "I", "PHASE MAP": "P"}
    if ds is not None and ds.get("ComplexImageComponent"):
        return mapping.get(str(ds.ComplexImageComponent).upper(), "")
    for token in image_type[2:]:
        if token in ("M", "P", "R", "I"):
            return token
        if token in mapping:
            return mapping[token]
        if len(token) > 2 and token[1] == "_" and token[0] in "MPRI":  # Philips M_FFE, P_SE, ...
            return token[0]
    for token in image_type[:2]:
        if token in mapping:
            return mapping[token]
    ge = private_value(ds, 0x0043, GE_PRIVATE_PARM, 0x2F) if ds is not None else None
    ge_kind = integer(ge[0] if isinstance(ge, (list, tuple)) and ge else ge)
    return {0: "M", 1: "P", 2: "R", 3: "I"}.get(ge_kind, "") if ge_kind is not None else ""


def pixel_value_offset(ds: Dataset) -> int | None:
    """Byte offset of the PixelData value: ``value_tell`` when read inline, ``file_tell`` when deferred."""
    element = ds.get_item(0x7FE00010, keep_deferred=True)
    for attribute in ("value_tell", "file_tell"):
        offset = getattr(element, attribute, None)
        if isinstance(offset, int):
            return offset
    return None


def _native_location(ds: Dataset) -> PixelLocation:
    """Choose the fastest faithful way to read this file's pixels."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    bits = integer(ds.get("BitsAllocated"))
    stored = integer(ds.get("BitsStored"))
    signed = integer(ds.get("PixelRepresentation")) == 1
    rows, columns = int(ds.Rows), int(ds.Columns)
    offset = pixel_value_offset(ds)
    high_bit = integer(ds.get("HighBit"))
    narrow = stored is not None and bits is not None and stored < bits
    native = (
        syntax in _NATIVE_SYNTAXES
        and bits in (8, 16, 32)
        and integer(ds.get("SamplesPerPixel", 1)) == 1
        and (not signed or not narrow)  # sign extension of short stored values is left to pydicom
        and (not narrow or high_bit in (None, (stored or 0) - 1))  # values shifted up in their words: pydicom
        and isinstance(offset, int)
    )
    if not native:
        return PixelLocation(PixelReadMode.PYDICOM, stored_rows=rows, stored_columns=columns)
    assert bits is not None and offset is not None
    dtype = f"<{'i' if signed else 'u'}{bits // 8}"
    return PixelLocation(
        PixelReadMode.NATIVE,
        offset=offset,
        dtype=dtype,
        stored_rows=rows,
        stored_columns=columns,
        stored_bits=stored if narrow and stored else 0,
    )


def _common(ds: Dataset, path: Path) -> dict[str, Any]:
    # One value comes back as a plain string: never iterate it character by character.
    image_type = tuple(token.upper() for token in text_values(ds.get("ImageType")))
    return {
        "path": str(path),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "sop_class_uid": str(
            ds.get("SOPClassUID", "")
            or (ds.file_meta.get("MediaStorageSOPClassUID", "") if hasattr(ds, "file_meta") else "")
        ),
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
        "series_number": integer(ds.get("SeriesNumber")),
        "series_description": str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or ""),
        "modality": str(ds.get("Modality", "")),
        "manufacturer": str(ds.get("Manufacturer", "")),
        "image_type": image_type,
        "is_localizer": bool(_LOCALIZER_TOKENS.intersection(image_type)),
        "instance_number": integer(ds.get("InstanceNumber")),
        "acquisition_number": integer(ds.get("AcquisitionNumber")),
        "gantry_tilt_deg": _float(ds.get("GantryDetectorTilt")),
        "philips_scale_slope": _float(private_value(ds, 0x2005, PHILIPS_MR_IMAGING_001, 0x0E)),
    }


def _rescale(holder: Dataset | None, path: Path) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept (1 and 0 when absent, empty or a zero slope).

    Raises
    ------
    DicomInputError
        A value that is not a finite number within :data:`MAX_RESCALE` (the values would not fit float32).
    """
    found = {"rescale_slope": 1.0, "rescale_intercept": 0.0}
    for key, keyword, tag in (
        ("rescale_slope", "RescaleSlope", "(0028,1053)"),
        ("rescale_intercept", "RescaleIntercept", "(0028,1052)"),
    ):
        raw = holder.get(keyword) if holder is not None else None
        if raw is None or raw == "":
            continue
        value = _float(raw)
        if value is None or not math.isfinite(value) or abs(value) > MAX_RESCALE:
            raise DicomInputError(
                f"{path}: {keyword} {tag} is {str(raw)[:40]!r}, not a finite number within +-{MAX_RESCALE:g}"
            )
        found[key] = value if value != 0 or key == "rescale_intercept" else 1.0
    return found["rescale_slope"], found["rescale_intercept"]


def classic_frames(ds: Dataset, path: Path) -> list[Frame]:
    common = _common(ds, path)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    slope, intercept = _rescale(ds, path)
    frame = Frame(
        label=path.name,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        image_position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        image_orientation=_floats(ds.get("ImageOrientationPatient"), 6),  # type: ignore[arg-type]
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slice_thickness=_float(ds.get("SliceThickness")),
        spacing_between_slices=_float(ds.get("SpacingBetweenSlices")),
        slice_location=_float(ds.get("SliceLocation")),
        echo_number=integer(ds.get("EchoNumbers")),
        echo_time=_float(ds.get("EchoTime")),
        temporal_index=integer(ds.get("TemporalPositionIdentifier")),
        acquisition_time_s=(
            _seconds(ds.get("AcquisitionTime"), ds.get("AcquisitionDate"))
            if ds.get("AcquisitionTime")
            else _seconds(ds.get("ContentTime"), ds.get("ContentDate"))
        ),
        trigger_time_ms=_float(ds.get("TriggerTime")),
        stack_id="",
        complex_component=_complex_component(common["image_type"], ds),
        rescale_slope=slope,
        rescale_intercept=intercept,
        pixels=_native_location(ds),
        vendor=read_vendor_info(ds),
        diffusion=read_diffusion(ds, orientation=_floats(ds.get("ImageOrientationPatient"), 6)),
        **common,
    )
    if "MOSAIC" in common["image_type"]:
        return _mosaic_tiles(ds, frame)
    return [frame]


def _mosaic_tiles(ds: Dataset, mosaic: Frame) -> list[Frame]:
    """Split a Siemens mosaic into one Frame per slice.

    The slice count and normal come from the CSA image header; the tile grid is ceil(sqrt(N)) square;
    ImagePositionPatient refers to the whole tiled image, so the first tile is shifted by half the
    difference in size (as dcm2niix and nibabel do). Slice offsets along the normal come from the Phoenix
    protocol's slice centres when present, else from SpacingBetweenSlices.
    """
    csa = siemens_csa_image_tags(ds)
    count_items = csa.get("NumberOfImagesInMosaic")
    if not count_items:
        raise DicomInputError(
            f"{mosaic.path}: Siemens mosaic without NumberOfImagesInMosaic in the CSA image "
            f"header (0029,1010); cannot split it into slices"
        )
    count = integer(count_items[0]) or 0
    grid = math.ceil(math.sqrt(count)) if count > 0 else 0
    if count < 1 or grid > min(mosaic.rows, mosaic.columns):
        raise DicomInputError(
            f"{mosaic.path}: Siemens mosaic of {count_items[0]!r} slices (NumberOfImagesInMosaic in the CSA image "
            f"header (0029,1010)) does not fit its {mosaic.columns} x {mosaic.rows} pixels"
        )
    tile_rows, tile_columns = mosaic.rows // grid, mosaic.columns // grid
    if mosaic.image_position is None or mosaic.image_orientation is None or mosaic.pixel_spacing is None:
        return [replace(mosaic, rows=tile_rows, columns=tile_columns, mosaic_slice_count=count)]
    orientation = np.asarray(mosaic.image_orientation).reshape(2, 3)
    row_spacing, column_spacing = mosaic.pixel_spacing
    normal_items = csa.get("SliceNormalVector")
    with np.errstate(all="ignore"):  # damaged geometry overflows: its tiles are left unplaced, and named later
        first = (
            np.asarray(mosaic.image_position)
            + orientation[0] * column_spacing * (mosaic.columns - tile_columns) / 2
            + orientation[1] * row_spacing * (mosaic.rows - tile_rows) / 2
        )
        normal = (
            np.asarray([float(v) for v in normal_items[:3]])
            if normal_items and len(normal_items) >= 3
            else np.cross(orientation[0], orientation[1])
        )
        normal = normal / np.linalg.norm(normal)
        offsets, source = _mosaic_offsets(ds, normal, count, mosaic)
        positions = first + np.outer(offsets, normal)
    placed = bool(np.all(np.isfinite(positions)))
    tiles: list[Frame] = []
    assert mosaic.pixels is not None
    for index in range(count):
        position = positions[index]
        tiles.append(
            replace(
                mosaic,
                label=f"{Path(mosaic.path).name}#tile{index}",
                rows=tile_rows,
                columns=tile_columns,
                image_position=(float(position[0]), float(position[1]), float(position[2])) if placed else None,
                pixels=replace(mosaic.pixels, tile=(index // grid, index % grid)),
                geometry_source=source,
                mosaic_slice_count=count,
            )
        )
    return tiles


def _mosaic_offsets(ds: Dataset, normal: np.ndarray, count: int, mosaic: Frame) -> tuple[list[float], str]:
    centres = phoenix_slice_positions(phoenix_protocol(ds))
    if centres is not None and len(centres) == count and count > 1:
        along = sorted(float(np.dot(normal, c)) for c in centres)
        return [a - along[0] for a in along], "mosaic tiles placed from Phoenix sSliceArray slice centres"
    spacing = mosaic.spacing_between_slices or mosaic.slice_thickness or 1.0
    tag = "SpacingBetweenSlices (0018,0088)" if mosaic.spacing_between_slices else "SliceThickness (0018,0050)"
    return [index * spacing for index in range(count)], f"mosaic tiles placed {spacing:g} mm apart from {tag}"


def enhanced_frames(ds: Dataset, path: Path) -> list[Frame]:
    common = _common(ds, path)
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    frame_count = integer(ds.get("NumberOfFrames")) or len(per_frame)
    if len(per_frame) != frame_count:
        raise DicomInputError(
            f"{path}: NumberOfFrames (0028,0008) is {frame_count} but the per-frame functional "
            f"groups sequence (5200,9230) has {len(per_frame)} items"
        )
    base_location = _native_location(ds)
    frame_bytes = 0
    if base_location.mode is PixelReadMode.NATIVE:
        frame_bytes = int(ds.Rows) * int(ds.Columns) * np.dtype(base_location.dtype).itemsize
    file_vendor = read_vendor_info(ds)
    frames: list[Frame] = []
    for index, item in enumerate(per_frame):

        def group(name: str, item: Dataset = item) -> Dataset | None:
            return _first(item, name) or _first(shared, name)

        position_item = group("PlanePositionSequence")
        orientation_item = group("PlaneOrientationSequence")
        measures = group("PixelMeasuresSequence")
        content = _first(item, "FrameContentSequence")
        echo = group("MREchoSequence")
        cardiac = group("CardiacSynchronizationSequence")
        transform = group("PixelValueTransformationSequence")
        slope, intercept = _rescale(transform, path)
        frame_type = group("MRImageFrameTypeSequence") or group("CTImageFrameTypeSequence")
        image_type = common["image_type"]
        if frame_type is not None and frame_type.get("FrameType"):
            image_type = tuple(str(t).strip().upper() for t in frame_type.FrameType)
        # file-level fallbacks (ImageType, private tags, Phoenix text) were read once into file_vendor
        state, state_source = read_per_frame_distortion_state(item) or (
            file_vendor.distortion_state,
            file_vendor.distortion_source,
        )
        frames.append(
            Frame(
                label=f"{path.name}#frame{index + 1}",
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                image_position=_floats(position_item.get("ImagePositionPatient") if position_item else None, 3),  # type: ignore[arg-type]
                image_orientation=_floats(  # type: ignore[arg-type]
                    orientation_item.get("ImageOrientationPatient") if orientation_item else None, 6
                ),
                pixel_spacing=_floats(measures.get("PixelSpacing") if measures else None, 2),  # type: ignore[arg-type]
                slice_thickness=_float(measures.get("SliceThickness")) if measures else None,
                spacing_between_slices=_float(measures.get("SpacingBetweenSlices")) if measures else None,
                slice_location=None,
                echo_number=None,
                echo_time=_float(echo.get("EffectiveEchoTime")) if echo else None,
                temporal_index=integer(content.get("TemporalPositionIndex")) if content else None,
                acquisition_time_s=_seconds(content.get("FrameAcquisitionDateTime")) if content else None,
                trigger_time_ms=_float(cardiac.get("NominalCardiacTriggerDelayTime")) if cardiac else None,
                stack_id=str(content.get("StackID", "")) if content else "",
                complex_component=_complex_component(image_type, frame_type),
                rescale_slope=slope,
                rescale_intercept=intercept,
                pixels=replace(base_location, frame_index=index, offset=base_location.offset + index * frame_bytes),
                vendor=replace(file_vendor, distortion_state=state, distortion_source=state_source),
                diffusion=read_diffusion(ds, per_frame_item=item),
                geometry_source="PlanePositionSequence (0020,9113) per frame",
                **{
                    **common,
                    "image_type": image_type,
                    "is_localizer": bool(_LOCALIZER_TOKENS.intersection(image_type)),
                    "acquisition_number": (integer(content.get("FrameAcquisitionNumber")) if content else None)
                    or common["acquisition_number"],
                },
            )
        )
    return frames
