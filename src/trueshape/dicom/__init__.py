"""DICOM files -> header-only Frame records (classic, enhanced multi-frame, Siemens mosaic) and pixels."""

from trueshape.dicom._diffusion import Diffusion, read_diffusion
from trueshape.dicom._frame import Frame, PixelLocation, PixelReadMode
from trueshape.dicom._pixels import read_pixels
from trueshape.dicom._scaling import MAX_RESCALE, PhilipsScaling, ValueScaling
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
    "MAX_RESCALE",
    "Diffusion",
    "DistortionState",
    "FileProblem",
    "Frame",
    "PatientPosition",
    "PhilipsScaling",
    "PixelLocation",
    "PixelReadMode",
    "ScanResult",
    "StudyFacts",
    "ValueScaling",
    "VendorInfo",
    "read_diffusion",
    "read_pixels",
    "read_vendor_info",
    "scan",
    "study_facts",
]
