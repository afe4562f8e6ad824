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


def _series_with_partial_copy(tmp_path, *, whole_copy: bool):
    """A six-slice series; slice 3 also sits beside it as a partial copy (cut inside its pixel data)."""
    paths = write_dicom_slices(tmp_path / "s", regular_planes(slices=6), SeriesMetadata())
    data = paths[2].read_bytes()
    partial = tmp_path / "s" / "IM00003 (copy).dcm"
    partial.write_bytes(data[: len(data) - 40])
    if not whole_copy:
        paths[2].unlink()
    return paths, partial


def test_a_partial_copy_beside_the_whole_file_does_not_block_the_series(tmp_path) -> None:
    from tests.conftest import tree_digest
    from typer.testing import CliRunner

    from trueshape.cli import app
    from trueshape.findings import FindingCode

    paths, partial = _series_with_partial_copy(tmp_path, whole_copy=True)
    before = tree_digest(tmp_path / "s")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "s"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warning.startswith(f"warning: {partial}: truncated: pixel data (7FE0,0010) should hold 160 bytes")
    assert f"which {paths[2]} holds whole" in " ".join(result.output.split())
    volume = trueshape.load(tmp_path / "s")  # load and correct accept it too
    assert volume.array.shape == (10, 8, 6)
    assert volume.provenance.slice_sources[2] == (paths[2].name,)
    (series,) = trueshape.inspect(tmp_path / "s").series
    (finding,) = series.findings
    assert finding.code is FindingCode.DAMAGED_COPY_SKIPPED and finding.where == (str(partial),)
    assert "names the slice at (0, 0, 4) mm" in finding.message
    inspected = CliRunner().invoke(app, ["inspect", str(tmp_path / "s")])
    assert inspected.exit_code == 0 and "error:" not in inspected.output
    assert tree_digest(tmp_path / "s") == before


def test_a_slice_only_a_damaged_file_holds_is_refused_with_its_position(tmp_path) -> None:
    from typer.testing import CliRunner

    from trueshape.cli import app
    from trueshape.errors import DicomInputError

    _, partial = _series_with_partial_copy(tmp_path, whole_copy=False)
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "s"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors[0].startswith(f"error: {partial}: truncated")
    assert errors[1] == (
        f"error: 1_synthetic: not written: the slice at (0, 0, 4) mm is in {partial}, which could not be read "
        "(named above) and no other file supplies"
    )
    with pytest.raises(DicomInputError, match=r"it may hold the slice at \(0, 0, 4\) mm of 1_synthetic, which no"):
        trueshape.load(tmp_path / "s")
