"""Synthetic phantoms and acquisitions written as real DICOM (tests, demo, benchmarks)."""

from trueshape.synth._stacks import AXIAL, CORONAL, SAGITTAL, regular_planes, slice_pattern

__all__ = ["AXIAL", "CORONAL", "SAGITTAL", "regular_planes", "slice_pattern"]
