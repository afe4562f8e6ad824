"""Vendor metadata: distortion-correction state, gradient coil, patient position, table position, isocentre.

Everything here reads headers only and never guesses silently: an unknown state is ``UNKNOWN``, and
every value comes with the tag it was read from (``source``) so reports can say where it came from.

The magnet frame has its origin at the isocentre and axes X (horizontal), Y (vertical), Z (along the bore);
it equals DICOM patient LPS for a head-first-supine patient at the landmark table position (DESIGN.md
section 3). :data:`LPS_FROM_MAGNET` holds the rotation for each DICOM PatientPosition.

Examples
--------
>>> import numpy as np
>>> LPS_FROM_MAGNET[PatientPosition.FFS] @ np.array([0.0, 0.0, 20.0])
array([  0.,   0., -20.])
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from trueshape.dicom._csa import phoenix_protocol, siemens_csa_series_tags

__all__ = [
    "LPS_FROM_MAGNET",
    "DistortionState",
    "PatientPosition",
    "VendorInfo",
    "read_vendor_info",
]


class DistortionState(enum.StrEnum):
    """What the scanner did about gradient non-linearity before writing the images."""

    NONE = "ND"  #: not corrected (full residual)
    IN_PLANE_2D = "DIS2D"  #: corrected in-plane only (through-plane residual remains)
    FULL_3D = "DIS3D"  #: corrected in 3D
    UNKNOWN = "UNKNOWN"  #: the headers do not say


class PatientPosition(enum.StrEnum):
    """DICOM PatientPosition (0018,5100), PS3.3 C.7.3.1.1.2."""

    HFS = "HFS"
    HFP = "HFP"
    FFS = "FFS"
    FFP = "FFP"
    HFDR = "HFDR"
    HFDL = "HFDL"
    FFDR = "FFDR"
    FFDL = "FFDL"


def _rows(*rows: tuple[float, float, float]) -> NDArray[np.float64]:
    return np.array(rows, dtype=np.float64)


#: Rotation taking magnet-frame vectors to patient LPS vectors, per patient position. Rows are the patient
#: L, P, S axes written in magnet axes. Derived by rolling the head-first-supine frame about the bore
#: (decubitus: right or left side down, i.e. towards +Y) and turning it end for end (feet first).
LPS_FROM_MAGNET: dict[PatientPosition, NDArray[np.float64]] = {
    PatientPosition.HFS: _rows((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    PatientPosition.HFP: _rows((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
    PatientPosition.FFS: _rows((-1, 0, 0), (0, 1, 0), (0, 0, -1)),
    PatientPosition.FFP: _rows((1, 0, 0), (0, -1, 0), (0, 0, -1)),
    PatientPosition.HFDR: _rows((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    PatientPosition.HFDL: _rows((0, 1, 0), (-1, 0, 0), (0, 0, 1)),
    PatientPosition.FFDR: _rows((0, -1, 0), (-1, 0, 0), (0, 0, -1)),
    PatientPosition.FFDL: _rows((0, 1, 0), (1, 0, 0), (0, 0, -1)),
}

SIEMENS_MR_HEADER = "SIEMENS MR HEADER"
SIEMENS_XA_SDS = "SIEMENS MR SDS 01"  # shared functional group private sequence (0021,10FE)
SIEMENS_XA_SDI = "SIEMENS MR SDI 02"  # per-frame private sequence (0021,11FE)
GE_PRIVATE_ACQU = "GEMS_ACQU_01"
GE_PRIVATE_PARM = "GEMS_PARM_01"
PHILIPS_IMAGING = "Philips MR Imaging DD 005"
PHILIPS_MR_IMAGING_001 = "Philips MR Imaging DD 001"  # holds the precise scale slope (2005,100E)
PHILIPS_IMAGING_001 = "Philips Imaging DD 001"  # holds the per-stack sequence (2001,105F)

_STATE_TOKENS = {"ND": DistortionState.NONE, "DIS2D": DistortionState.IN_PLANE_2D, "DIS3D": DistortionState.FULL_3D}
#: Phoenix sDistortionCorrFilter.ucMode values (research/vendor-gnl.md).
_PHOENIX_MODES = {1: DistortionState.NONE, 2: DistortionState.IN_PLANE_2D, 4: DistortionState.FULL_3D}


@dataclass(frozen=True)
class VendorInfo:
    """Vendor facts of one image or frame.

    Parameters
    ----------
    distortion_state : DistortionState
        What the scanner did about gradient non-linearity.
    distortion_source : str
        Tag the state was read from, e.g. ``"ImageType (0008,0008)"``.
    gradient_coil : str or None
        Gradient coil identifier (e.g. ``"AS82"``).
    patient_position : PatientPosition or None
        From PatientPosition (0018,5100).
    table_position_mm : tuple of 3 float or None
        Table offset from the landmark position in magnet axes, mm.
    table_source : str
        Tag the table position came from (empty when unknown).
    """

    distortion_state: DistortionState = DistortionState.UNKNOWN
    distortion_source: str = ""
    gradient_coil: str | None = None
    patient_position: PatientPosition | None = None
    table_position_mm: tuple[float, float, float] | None = None
    table_source: str = ""

    def isocentre_lps(self) -> tuple[NDArray[np.float64], str]:
        """Return the magnet isocentre in patient LPS (mm) and the assumption made.

        The patient-coordinate origin is the isocentre at the landmark table position; a table move
        shifts it by the table offset rotated into the patient frame (DESIGN.md section 4).

        Examples
        --------
        >>> info = VendorInfo(patient_position=PatientPosition.HFS, table_position_mm=(0.0, 0.0, 20.0),
        ...                   table_source="ImaRelTablePosition (0019,1014)")
        >>> info.isocentre_lps()[0]
        array([ 0.,  0., 20.])
        """
        position = self.patient_position or PatientPosition.HFS
        assumed_position = "" if self.patient_position else " (patient position unknown: HFS assumed)"
        if self.table_position_mm is None:
            return np.zeros(3), "no table position in the headers: isocentre assumed at the patient origin"
        offset = np.asarray(self.table_position_mm, dtype=np.float64)
        return (
            LPS_FROM_MAGNET[position] @ offset,
            f"table offset {_fmt3(offset)} mm from {self.table_source}, rotated for {position.value}"
            + assumed_position,
        )


def _fmt3(values: Sequence[float] | NDArray[np.float64]) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def text_values(value: Any) -> list[str]:
    """Normalise a CS/LO multi-value (or raw bytes from an unknown private tag) into tokens."""
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace").strip("\x00 ")
        return [token.strip() for token in value.split("\\") if token.strip()]
    if isinstance(value, str):
        return [token.strip() for token in value.split("\\") if token.strip()]
    return [str(token).strip() for token in value]


def _as_float_list(value: Any) -> list[float] | None:
    """Normalise a numeric multi-value (DS/IS/FD or raw bytes of text) into finite floats (None if any is not)."""
    if value is None:
        return None
    try:
        if isinstance(value, bytes):
            text = value.decode("latin-1").strip("\x00 ")
            numbers = [float(token) for token in text.split("\\") if token.strip()]
        elif isinstance(value, (str, int, float)):
            numbers = [float(token) for token in str(value).split("\\")]
        else:
            numbers = [float(token) for token in value]
    except (ValueError, TypeError, OverflowError):
        return None
    return numbers if all(math.isfinite(number) for number in numbers) else None


def private_value(ds: Dataset, group: int, creator: str, element: int) -> Any:
    """Return a private element's value by creator name, or None when absent.

    Creators are found by walking the data set's own tags (a dict) instead of ``Dataset.private_block``,
    which slices the whole data set on every call and dominated the header pass of large series.
    """
    for tag in ds.keys():
        if tag >> 16 != group or not 0x10 <= (tag & 0xFFFF) <= 0xFF:
            continue
        value = ds[tag].value
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if str(value).strip() == creator:
            element_tag = (group << 16) | ((tag & 0xFF) << 8) | element
            return ds[element_tag].value if element_tag in ds else None
    return None


def _private_item(ds: Dataset, group: int, creator: str, element: int) -> Dataset | None:
    """Return the first item of a private sequence, or None."""
    value = private_value(ds, group, creator, element)
    if isinstance(value, (list, tuple)) or hasattr(value, "__getitem__"):
        try:
            item = value[0]
        except (IndexError, TypeError, KeyError):
            return None
        return item if isinstance(item, Dataset) else None
    return None


def distortion_state_from_image_type(image_type: Sequence[str]) -> DistortionState | None:
    """Return the state named by an ImageType value (``ND``, ``DIS2D``, ``DIS3D``), else None.

    Examples
    --------
    >>> distortion_state_from_image_type(["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"])
    <DistortionState.IN_PLANE_2D: 'DIS2D'>
    """
    for token in image_type:
        state = _STATE_TOKENS.get(token.upper())
        if state is not None:
            return state
    return None


def _phoenix_distortion_state(protocol: str | None) -> DistortionState | None:
    if not protocol:
        return None
    match = re.search(r"sDistortionCorrFilter\.ucMode\s*=\s*(0x[0-9a-fA-F]+|\d+)", protocol)
    if match is None:
        return None
    return _PHOENIX_MODES.get(int(match.group(1), 0))


def read_per_frame_distortion_state(per_frame_item: Dataset) -> tuple[DistortionState, str] | None:
    """Read the state a Siemens XA per-frame item carries (ImageTypeText (0021,1175)), or None.

    Only this can differ between frames of one file; everything else :func:`read_distortion_state` reads
    is file-level.
    """
    sdi = _private_item(per_frame_item, 0x0021, SIEMENS_XA_SDI, 0xFE)
    if sdi is None:
        return None
    state = distortion_state_from_image_type(text_values(private_value(sdi, 0x0021, SIEMENS_XA_SDI, 0x75)))
    if state is None:
        return None
    return state, "ImageTypeText (0021,1175) in the Siemens per-frame sequence (0021,11FE)"


def read_distortion_state(ds: Dataset, *, per_frame_item: Dataset | None = None) -> tuple[DistortionState, str]:
    """Read the gradient-distortion correction state and the tag it came from.

    Order: Siemens XA per-frame ImageTypeText (0021,1175), classic ImageType (0008,0008) and its private
    copy (0051,1016), the Phoenix protocol's ``sDistortionCorrFilter.ucMode``, GE's gradwarp flag, else
    UNKNOWN.
    """
    if per_frame_item is not None:
        per_frame = read_per_frame_distortion_state(per_frame_item)
        if per_frame is not None:
            return per_frame
    state = distortion_state_from_image_type(text_values(ds.get("ImageType")))
    if state is not None:
        return state, "ImageType (0008,0008)"
    private_type = private_value(ds, 0x0051, SIEMENS_MR_HEADER, 0x16)
    state = distortion_state_from_image_type(
        [t for chunk in text_values(private_type) for t in re.split(r"[/\s]", chunk)]
    )
    if state is not None:
        return state, "Siemens private image type (0051,1016)"
    state = _phoenix_distortion_state(phoenix_protocol(ds))
    if state is not None:
        return state, "Phoenix protocol sDistortionCorrFilter.ucMode"
    return DistortionState.UNKNOWN, ""


def _gradient_coil(ds: Dataset) -> str | None:
    shared = _shared_item(ds)
    if shared is not None:
        sds = _private_item(shared, 0x0021, SIEMENS_XA_SDS, 0xFE)
        if sds is not None:
            coil = private_value(sds, 0x0021, SIEMENS_XA_SDS, 0x33)
            if coil:
                return text_values(coil)[0]
    coil = private_value(ds, 0x0021, SIEMENS_XA_SDS, 0x33)
    if coil:
        return text_values(coil)[0]
    tags = siemens_csa_series_tags(ds)
    for name in ("CoilForGradient2", "CoilForGradient"):
        items = tags.get(name)
        if items and items[0] and items[0] != "void":
            return str(items[0])
    return None


def _shared_item(ds: Dataset) -> Dataset | None:
    seq = ds.get("SharedFunctionalGroupsSequence")
    return seq[0] if seq else None


def _table_position(ds: Dataset) -> tuple[tuple[float, float, float] | None, str]:
    """Return the isocentre's offset from the landmark in magnet axes (mm) and the tag it came from.

    Siemens ImaRelTablePosition is used as is: in the real pair siemens-table-baseline / -moved-h20
    (ImaRelTablePosition 0 and +20) the phantom stays at the same patient coordinates while the field of view
    moves 20 mm superior with the isocentre (tests/corpus/test_real_corpus.py).
    """
    rel = _as_float_list(private_value(ds, 0x0019, SIEMENS_MR_HEADER, 0x14))
    if rel is not None and len(rel) == 3:
        return (rel[0], rel[1], rel[2]), "ImaRelTablePosition (0019,1014)"
    shared = _shared_item(ds)
    for holder in (shared, ds):
        if holder is None:
            continue
        sds = _private_item(holder, 0x0021, SIEMENS_XA_SDS, 0xFE)
        for item in (sds, holder):
            if item is None:
                continue
            rel = _as_float_list(private_value(item, 0x0021, SIEMENS_XA_SDS, 0x05))
            if rel is not None and len(rel) == 3:
                return (rel[0], rel[1], rel[2]), "RelTablePosition (0021,1005)"
    csa_rel = siemens_csa_series_tags(ds).get("RelTablePosition")
    if csa_rel and len(csa_rel) == 3:
        values = _as_float_list(csa_rel)
        if values is not None:
            return (values[0], values[1], values[2]), "CSA series RelTablePosition"
    # GE and Philips follow BIDS TablePosition (3rd value grows as the table moves into the bore; the isocentre
    # in HFS patient coordinates is its negative). GE: TablePosition = (0043,10B2)[2] - (0019,107F)
    # (dcm2niix PR #850). Philips MRStackTablePosLong (2005,143C) holds minus TablePosition (dcm2niix #726).
    ge_position = _as_float_list(private_value(ds, 0x0043, GE_PRIVATE_PARM, 0xB2))
    ge_landmark = _as_float_list(private_value(ds, 0x0019, GE_PRIVATE_ACQU, 0x7F))
    if ge_position and len(ge_position) >= 3 and ge_landmark:
        return (0.0, 0.0, -(ge_position[2] - ge_landmark[0])), "GE TablePosition -((0043,10B2)[2] - (0019,107F))"
    return _philips_table_position(ds)


def _philips_table_position(ds: Dataset) -> tuple[tuple[float, float, float] | None, str]:
    """Philips MRStackTablePosLong (2005,143C): top level, or in the per-stack sequence (2001,105F) (classic files).

    dcm2niix v1.0.20260724 writes TablePosition ``[0, 0, -(2005,143C)]`` wherever the tag sits, whatever the patient
    position, and reads no other Philips table tag ((2005,143D), (2005,143E) and the rounded request (2005,1079)
    are left alone): ``benchmarks/dcm2niix_sidecars.py --probe-table`` shows it.
    """
    value = _as_float_list(private_value(ds, 0x2005, PHILIPS_IMAGING, 0x3C))
    source = "Philips MRStackTablePosLong (2005,143C)"
    if not value:
        stack = _private_item(ds, 0x2001, PHILIPS_IMAGING_001, 0x5F)
        value = _as_float_list(private_value(stack, 0x2005, PHILIPS_IMAGING, 0x3C)) if stack is not None else None
        source = "Philips MRStackTablePosLong (2005,143C) in the stack sequence (2001,105F)"
    if not value:
        return None, ""
    return (0.0, 0.0, value[0]), source


def read_vendor_info(ds: Dataset, *, per_frame_item: Dataset | None = None) -> VendorInfo:
    """Read every vendor fact trueshape uses from one header (and optional per-frame item)."""
    state, source = read_distortion_state(ds, per_frame_item=per_frame_item)
    position_text = str(ds.get("PatientPosition", "") or "").strip().upper()
    try:
        position: PatientPosition | None = PatientPosition(position_text)
    except ValueError:
        position = None
    table, table_source = _table_position(ds)
    return VendorInfo(
        distortion_state=state,
        distortion_source=source,
        gradient_coil=_gradient_coil(ds),
        patient_position=position,
        table_position_mm=table,
        table_source=table_source,
    )
