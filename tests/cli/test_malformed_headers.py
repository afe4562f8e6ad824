"""Damaged headers found by fuzzing: each ends in one line naming the file and the problem (exit 2), never a bug."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.config import disable_value_validation
from pydicom.dataelem import DataElement
from pydicom.uid import RLELossless
from tests.conftest import tree_digest
from typer.testing import CliRunner

import trueshape
from trueshape.cli import app
from trueshape.findings import FindingCode
from trueshape.io import SeriesMetadata, write_dicom_slices, write_enhanced_dicom
from trueshape.synth import regular_planes

runner = CliRunner()


def run(*args: object):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "trueshape bug" not in result.output, result.output
    return result


def _series(folder: Path, slices: int = 6, **metadata) -> list[Path]:
    return write_dicom_slices(folder, regular_planes(slices=slices), SeriesMetadata(**metadata))


def _set(path: Path, keyword: str, vr: str, value: object) -> None:
    with disable_value_validation():
        ds = pydicom.dcmread(path)
        tag = pydicom.datadict.tag_for_keyword(keyword)
        ds[tag] = DataElement(tag, vr, value)
        ds.save_as(path)


@pytest.mark.parametrize(
    ("keyword", "value", "said"),
    [
        ("Rows", 0, "Rows (0028,0010) 0 x Columns (0028,0011) 10: an image needs rows and columns"),
        ("Columns", 0, "Rows (0028,0010) 8 x Columns (0028,0011) 0: an image needs rows and columns"),
        ("HighBit", 40, "HighBit (0028,0102) is 40, outside BitsStored - 1 (15)..15"),
        ("BitsAllocated", 12, "BitsAllocated (0028,0100) is 12, not 1, 8, 16 or 32 (integer pixel data up to 32 bits)"),
    ],
)
def test_an_impossible_pixel_module_is_named(tmp_path, keyword, value, said) -> None:
    paths = _series(tmp_path / "s")
    _set(paths[2], keyword, "US", value)
    result = run("convert", tmp_path / "s", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert f"error: {paths[2]}: {said}" in result.output


@pytest.mark.parametrize("compressed", [False, True])
def test_64_bit_pixel_data_is_named_not_a_crash(tmp_path, compressed) -> None:
    """Fuzz cases 3475 and 4716 (seed 20261201): BitsAllocated 64 decoded into uint64, which nibabel refuses."""
    paths = _series(tmp_path / "s", slices=4)
    for path in paths:
        ds = pydicom.dcmread(path)
        if compressed:  # a 16-bit stream whose header says 64 bits
            ds.compress(RLELossless, encoding_plugin="pydicom")
        else:  # a consistent 64-bit image: still refused by name
            ds.PixelData = ds.pixel_array.astype(np.uint64).tobytes()
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 64, 64, 63
        ds.save_as(path)
    before = tree_digest(tmp_path / "s")
    result = run("convert", tmp_path / "s", "--out", tmp_path / "out")
    assert result.exit_code == 2
    said = "BitsAllocated (0028,0100) is 64, not 1, 8, 16 or 32 (integer pixel data up to 32 bits)"
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
        f"error: {path}: {said}" for path in paths
    ]
    assert tree_digest(tmp_path / "s") == before


@pytest.mark.parametrize("value", ["1e308\\0\\0", "nan\\0\\0"])
def test_images_whose_position_cannot_be_right_are_left_out_by_name(tmp_path, value) -> None:
    paths = _series(tmp_path / "s", slices=6)
    before = tree_digest(tmp_path / "s")
    _set(paths[0], "ImagePositionPatient", "DS", value)  # the first slice: the rest stay a regular stack
    digest = tree_digest(tmp_path / "s")
    (series,) = trueshape.inspect(tmp_path / "s").series
    (missing,) = [f for f in series.findings if f.code is FindingCode.GEOMETRY_MISSING]
    assert missing.where == (str(paths[0]),)
    reason = "within 100000 mm of the origin" if value.startswith("1e308") else "ImagePositionPatient (0020,0032)"
    assert reason in missing.message
    (stack,) = series.stacks
    assert stack.shape == (10, 8, 5)
    result = run("inspect", "--json", tmp_path / "s")
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
        f"error: {paths[0]}: {missing.message}"
    ]
    assert tree_digest(tmp_path / "s") == digest != before


def test_one_stray_position_refuses_the_stack_naming_it(tmp_path) -> None:
    paths = _series(tmp_path / "s", slices=6)
    _set(paths[3], "ImagePositionPatient", "DS", "0\\0\\60000")  # within reach of a table, not of this stack
    inspection = trueshape.inspect(tmp_path / "s")
    assert not inspection.stacks
    (error,) = inspection.errors
    assert error.startswith(f"{paths[3]}: ImagePositionPatient (0020,0032) (0, 0, 60000) lies 5.999e+04 mm")
    assert "the stack would span 3e+04 slices" in error
    result = run("convert", tmp_path / "s", "--out", tmp_path / "out")
    assert result.exit_code == 2 and f"error: {paths[3]}: ImagePositionPatient" in result.output


def test_a_corrupt_rle_frame_is_named_without_a_decoder_backtrace(tmp_path, capfd) -> None:
    paths = _series(tmp_path / "s", slices=3)
    ds = pydicom.dcmread(paths[1])
    ds.compress(RLELossless)
    frame = bytearray(ds.PixelData)
    frame[-40:] = bytes(range(200, 240))  # the last segment's runs promise more bytes than a frame holds
    ds.PixelData = bytes(frame)
    ds.save_as(paths[1])
    result = run("convert", tmp_path / "s", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert f"error: {paths[1]}: pixel data cannot be decoded" in result.output
    assert "panicked" not in capfd.readouterr().err


def test_a_corrupted_value_representation_is_named(tmp_path) -> None:
    paths = _series(tmp_path / "s", slices=3)
    data = bytearray(paths[1].read_bytes())
    place = data.index(b"\x20\x00\x32\x00DS")  # ImagePositionPatient's explicit VR
    data[place + 4 : place + 6] = b"ZZ"
    paths[1].write_bytes(bytes(data))
    (problem,) = trueshape.inspect(tmp_path / "s").problems
    assert problem.path == str(paths[1]) and problem.message.startswith(f"{paths[1]}: malformed DICOM header")


def test_non_finite_enhanced_frame_positions_are_left_out(tmp_path) -> None:
    path = write_enhanced_dicom(tmp_path / "e" / "x.dcm", regular_planes(slices=5), SeriesMetadata())
    with disable_value_validation():
        ds = pydicom.dcmread(path)
        item = ds.PerFrameFunctionalGroupsSequence[4].PlanePositionSequence[0]
        item["ImagePositionPatient"] = DataElement(0x00200032, "DS", "inf\\0\\8")
        ds.save_as(path)
    (series,) = trueshape.inspect(tmp_path / "e").series
    (stack,) = series.stacks
    assert stack.shape == (10, 8, 4)
    assert [f.code for f in series.findings] == [FindingCode.GEOMETRY_MISSING]
    assert series.findings[0].where == (f"{path}#frame5",)


def test_series_that_would_share_an_output_name_get_their_own(tmp_path) -> None:
    for folder, description in (("a", "T1 (ax)"), ("b", "t1 [ax]"), ("c", "T1 ax?")):
        _series(tmp_path / "in" / folder, slices=3, series_description=description)
    long = "Q" * 5000
    with warnings.catch_warnings():  # pydicom warns that the description is longer than LO allows: the case
        warnings.simplefilter("ignore", UserWarning)
        _series(tmp_path / "in" / "d", slices=3, series_description=long, series_number=2)
        result = run("convert", tmp_path / "in", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    volumes = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
    assert len(volumes) == 4 and len({name.casefold() for name in volumes}) == 4
    (long_name,) = [name for name in volumes if name.startswith("2_")]
    assert len(long_name) == len("2_") + 64 + len(".nii.gz")
    sidecar = json.loads((tmp_path / "out" / long_name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["series_description"] == long


def test_no_warning_from_the_libraries_reaches_the_user(tmp_path) -> None:
    import subprocess
    import sys

    paths = _series(tmp_path / "s", slices=3)
    for path in paths:  # values pydicom warns about: a description too long for LO, an odd UID
        _set(path, "SeriesDescription", "LO", "x" * 300)
        _set(path, "FrameOfReferenceUID", "UI", "1.2.3.abc")
    command = [str(Path(sys.executable).with_name("trueshape")), "convert", str(tmp_path / "s"), "--out"]
    done = subprocess.run([*command, str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the library itself leaves pydicom's warnings alone
        assert np.isfinite(trueshape.load(tmp_path / "s").values()).all()
