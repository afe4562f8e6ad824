"""Stored pixel values as DICOM defines them, whichever reading path a file takes."""

from __future__ import annotations

import numpy as np
import pydicom

import trueshape
from trueshape.synth import regular_planes


def test_bits_above_bits_stored_are_not_part_of_the_value(write_series):
    # Older scanners kept overlays in the unused high bits of 12-bit data (PS3.5 8.1.1: they are not value).
    folder = write_series(regular_planes(slices=3))
    expected = []
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        values = ds.pixel_array.astype(np.uint16) & 0x0FFF
        expected.append(values)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = (values | 0xF000).tobytes()
        ds.save_as(path, enforce_file_format=True)
    volume = trueshape.load(folder)
    loaded = np.moveaxis(np.asarray(volume.array), 2, 0)  # (k, i, j): DICOM rows are j
    truth = np.stack([plane.T for plane in expected])
    assert truth.max() > 100
    np.testing.assert_array_equal(np.sort(loaded.ravel()), np.sort(truth.ravel()))
    np.testing.assert_array_equal(loaded, truth)
