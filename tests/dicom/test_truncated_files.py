"""A DICOM file cut at any byte is named as a problem: never skipped as "not an image", never a crash."""

from __future__ import annotations

import copy
import warnings

import pytest

import trueshape
from trueshape.io import SeriesMetadata, write_dicom_slices
from trueshape.synth import regular_planes


@pytest.mark.parametrize("phase", range(4))
def test_every_cut_is_named(tmp_path, phase: int) -> None:
    paths = write_dicom_slices(tmp_path / "s", regular_planes(slices=5), SeriesMetadata())
    data = paths[2].read_bytes()
    silent = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cut in range(phase, len(data), 4 * 9):  # 4 phases x every 9th byte: a cut inside every element
            paths[2].write_bytes(data[:cut])
            inspection = trueshape.inspect(tmp_path / "s")
            if not any("IM00003.dcm" in problem.message for problem in inspection.problems):
                silent.append(cut)
    assert not silent, f"cuts at bytes {silent} of {len(data)} were skipped silently"


def test_objects_that_are_not_slices_do_not_stop_their_series(tmp_path) -> None:
    import numpy as np
    import pydicom

    paths = write_dicom_slices(tmp_path / "s", regular_planes(slices=4), SeriesMetadata())
    template = pydicom.dcmread(paths[0])
    spectroscopy = copy.deepcopy(template)
    spectroscopy.SOPClassUID = spectroscopy.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.2"
    spectroscopy.SOPInstanceUID = spectroscopy.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    del spectroscopy.PixelData
    spectroscopy.save_as(tmp_path / "s" / "spectroscopy.dcm")
    colour = copy.deepcopy(template)
    colour.SOPInstanceUID = colour.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    colour.SamplesPerPixel, colour.PhotometricInterpretation, colour.PlanarConfiguration = 3, "RGB", 0
    colour.BitsAllocated, colour.BitsStored, colour.HighBit = 8, 8, 7
    colour.PixelData = bytes(colour.Rows * colour.Columns * 3)
    colour["PixelData"].VR = "OB"
    colour.save_as(tmp_path / "s" / "colour.dcm")
    # A data set without preamble that starts with another tag than the usual ones is still DICOM.
    bare = copy.deepcopy(template)
    bare.InstanceCreationDate = "20240101"  # (0008,0012): its first tag
    del bare.SpecificCharacterSet, bare.ImageType, bare.file_meta
    bare.preamble = None
    pydicom.dcmwrite(tmp_path / "bare.dcm", bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert (tmp_path / "bare.dcm").read_bytes()[:4] == b"\x08\x00\x12\x00"
    result = trueshape.convert(tmp_path / "s", tmp_path / "out")
    assert [p.name for p in result.written] == ["1_synthetic.nii.gz", "1_synthetic.json"]
    assert [problem.path.endswith("colour.dcm") for problem in result.inspection.problems] == [True]
    assert np.asarray(trueshape.load(tmp_path / "s").array).shape == (10, 8, 4)
    assert not [p for p in trueshape.inspect(tmp_path / "bare.dcm").problems]


@pytest.mark.parametrize("sop_class", ["1.2.840.10008.5.1.4.1.1.30", "1.2.840.113619.4.2"])
def test_images_of_other_or_private_classes_still_load(tmp_path, sop_class: str) -> None:
    import pydicom

    paths = write_dicom_slices(tmp_path / "s", regular_planes(slices=4), SeriesMetadata())
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class  # Parametric Map, GE private
        ds.save_as(path)
    assert [s.shape for s in trueshape.inspect(tmp_path / "s").stacks] == [(10, 8, 4)]
