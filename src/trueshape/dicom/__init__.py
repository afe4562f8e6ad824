"""DICOM files -> header-only Frame records (classic, enhanced multi-frame, Siemens mosaic) and pixels."""

from trueshape.dicom._frame import Frame, PixelLocation, PixelReadMode
from trueshape.dicom._pixels import read_pixels
from trueshape.dicom._scan import FileProblem, ScanResult, scan
from trueshape.dicom._study import StudyFacts, study_facts
from trueshape.dicom.vendor import (
    LPS_FROM_MAGNET,
    DistortionState,
    PatientPosition,
    VendorInfo,
    read_vendor_info,
)

__all__ = [
    "LPS_FROM_MAGNET",
    "DistortionState",
    "FileProblem",
    "Frame",
    "PatientPosition",
    "PixelLocation",
    "PixelReadMode",
    "ScanResult",
    "StudyFacts",
    "VendorInfo",
    "read_pixels",
    "read_vendor_info",
    "scan",
    "study_facts",
]
