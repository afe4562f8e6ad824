"""Synthetic phantoms and acquisitions written as real DICOM (tests, demo, benchmarks)."""

from trueshape.synth._acquire import (
    Acquisition,
    DisplacementFunction,
    Phantom,
    Plane,
    SyntheticScan,
    acquire,
    inverse_map,
)
from trueshape.synth._markers import MarkerPhantom, write_marker_csv
from trueshape.synth._phantom import Contrast, FemurPhantom, Tissue
from trueshape.synth._session import (
    Session,
    SessionSeries,
    demo_acquisitions,
    residual_for,
    write_session,
)
from trueshape.synth._stacks import AXIAL, CORONAL, SAGITTAL, regular_planes, slice_pattern
from trueshape.synth._vendor_tags import Vendor, record_table_move
from trueshape.synth._volume_phantom import ContrastMap, VolumePhantom

__all__ = [
    "AXIAL",
    "CORONAL",
    "SAGITTAL",
    "Acquisition",
    "Contrast",
    "ContrastMap",
    "DisplacementFunction",
    "FemurPhantom",
    "MarkerPhantom",
    "Phantom",
    "Plane",
    "Session",
    "SessionSeries",
    "SyntheticScan",
    "Tissue",
    "Vendor",
    "VolumePhantom",
    "acquire",
    "demo_acquisitions",
    "inverse_map",
    "record_table_move",
    "regular_planes",
    "residual_for",
    "slice_pattern",
    "write_marker_csv",
    "write_session",
]
