"""Bad input: one line naming the file and the problem, exit code 2, no traceback; the rest still loads."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless
from tests.conftest import tree_digest
from typer.testing import CliRunner

import trueshape
from trueshape.cli import app
from trueshape.errors import DicomInputError
from trueshape.gnl import SYN_AS, format_siemens_grad
from trueshape.synth import regular_planes

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.fixture
def good_series(write_series, tmp_path):
    return write_series(regular_planes(slices=6), folder=tmp_path / "input" / "good", series_number=1)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("inspect", tmp_path / "empty")
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: {tmp_path / 'empty'}: no DICOM images found"]


def test_missing_path(tmp_path):
    result = run("convert", tmp_path / "nope", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: {tmp_path / 'nope'}: no such file or folder"]


def test_non_dicom_files_only(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not an image")
    (folder / "data.bin").write_bytes(bytes(range(256)) * 4)
    result = run("inspect", folder)
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: {folder}: no DICOM images found (2 other file(s) skipped)"]


def test_non_dicom_files_beside_a_series_are_skipped_quietly(good_series):
    (good_series / "notes.txt").write_text("hello")
    result = run("inspect", good_series)
    assert result.exit_code == 0
    assert "1 non-DICOM file(s)" in result.output


def _bad_file_cases(folder, template):
    """Write one broken file of each kind into ``folder`` (each its own series); return {kind: path}."""
    folder.mkdir(parents=True)
    cases = {}
    truncated = folder / "truncated.dcm"
    own = pydicom.dcmread(template)
    own.SeriesInstanceUID = pydicom.uid.generate_uid()
    own.SeriesNumber = 10
    own.save_as(truncated)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) - 50])
    cases["truncated"] = truncated
    no_pixels = pydicom.dcmread(template)
    del no_pixels.PixelData
    no_pixels.SeriesInstanceUID = pydicom.uid.generate_uid()
    no_pixels.SeriesNumber = 20
    no_pixels.save_as(folder / "no_pixels.dcm")
    cases["no_pixels"] = folder / "no_pixels.dcm"
    no_geometry = pydicom.dcmread(template)
    del no_geometry.ImageOrientationPatient
    no_geometry.SeriesInstanceUID = pydicom.uid.generate_uid()
    no_geometry.SeriesNumber = 30
    no_geometry.save_as(folder / "no_geometry.dcm")
    cases["no_geometry"] = folder / "no_geometry.dcm"
    corrupt = pydicom.dcmread(template)
    corrupt.SeriesInstanceUID = pydicom.uid.generate_uid()
    corrupt.SeriesNumber = 40
    corrupt.compress(RLELossless)
    frame = bytearray(corrupt.PixelData)
    # Point the RLE header's second segment far beyond the end of the fragment.
    header_at = frame.index(b"\x02\x00\x00\x00")
    frame[header_at + 8 : header_at + 12] = (0x7FFF).to_bytes(4, "little")
    corrupt.PixelData = bytes(frame)
    corrupt.save_as(folder / "corrupt_pixels.dcm")
    cases["corrupt"] = folder / "corrupt_pixels.dcm"
    return cases


def test_every_bad_file_named_once_and_good_series_still_converts(good_series, tmp_path):
    root = good_series.parent
    cases = _bad_file_cases(root / "bad", sorted(good_series.iterdir())[0])
    before = tree_digest(root)
    result = run("convert", root, "--out", tmp_path / "out")
    assert result.exit_code == 2
    lines = error_lines(result)
    expected = {
        "truncated": "truncated: pixel data (7FE0,0010) should hold 160 bytes but the file ends after 110",
        "no_pixels": "DICOM image header without pixel data (7FE0,0010)",
        "no_geometry": "1 lacks ImageOrientationPatient (0020,0037), e.g.",
        "corrupt": "pixel data cannot be decoded",
    }
    for kind, text in expected.items():
        matching = [line for line in lines if str(cases[kind]) in line and text in line]
        assert len(matching) == 1, (kind, lines)
    assert len(lines) == 4
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["1_synthetic.json", "1_synthetic.nii.gz"]
    assert tree_digest(root) == before  # inputs never modified


def test_inspect_json_keeps_going_past_bad_files(good_series):
    cases = _bad_file_cases(good_series.parent / "bad", sorted(good_series.iterdir())[0])
    result = run("inspect", good_series.parent, "--json")
    assert result.exit_code == 2
    document = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert str(cases["truncated"]) in {p["file"] for p in document["problems"]}
    shapes = [s["shape"] for series in document["series"] for s in series["stacks"]]
    assert [10, 8, 6] in shapes


def test_convert_refuses_to_overwrite(good_series, tmp_path):
    out = tmp_path / "out"
    assert run("convert", good_series, "--out", out).exit_code == 0
    before = tree_digest(out)
    again = run("convert", good_series, "--out", out)
    assert again.exit_code == 2
    assert any("already exists (use --force to overwrite)" in line for line in error_lines(again))
    assert tree_digest(out) == before
    assert run("convert", good_series, "--out", out, "--force").exit_code == 0
    assert not [p for p in out.iterdir() if ".part" in p.name]


@pytest.mark.parametrize("name", ["a.txt", "x.nii.gz"])
def test_single_non_dicom_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"x" * 400)
    result = run("inspect", path)
    assert result.exit_code == 2
    # Said once, in one line (no "files skipped" note before it).
    assert result.output.splitlines() == [
        f"error: {path}: not a DICOM file (inspect and convert read DICOM; correct also takes NIfTI and NRRD volumes)"
    ]


def test_corrupt_pixels_via_api(good_series, tmp_path):
    import trueshape
    from trueshape.errors import DicomInputError

    cases = _bad_file_cases(tmp_path / "only_bad", sorted(good_series.iterdir())[0])
    with pytest.raises(DicomInputError, match="pixel data cannot be decoded"):
        trueshape.load(f"{cases['corrupt'].parent}#40")
    np.testing.assert_equal(trueshape.load(good_series).array.shape, (10, 8, 6))


def test_convert_prints_geometry_warnings_and_raise_mode_refuses(write_series, tmp_path):
    planes = regular_planes(slices=8)
    del planes[2]
    folder = write_series(planes)
    shown = run("convert", folder, "--out", tmp_path / "a")
    assert shown.exit_code == 0
    assert "SLICES_MISSING" in shown.output and "wrote" in shown.output
    refused = run("convert", folder, "--out", tmp_path / "b", "--validation", "raise")
    assert refused.exit_code == 2
    assert any("SLICES_MISSING" in line for line in error_lines(refused))
    assert not (tmp_path / "b").exists()


def test_an_unreadable_slice_is_named_not_interpolated(good_series, tmp_path, monkeypatch):
    victim = sorted(good_series.glob("*.dcm"))[2]
    real_open = Path.open

    def guarded_open(self, *args, **kwargs):
        if self == victim:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded_open)
    with pytest.raises(DicomInputError, match=re.escape(f"{victim}: cannot be read (Permission denied)")):
        trueshape.load(good_series)
    (tmp_path / "c.grad").write_text(format_siemens_grad(SYN_AS))
    result = run("correct", good_series, "--coef", tmp_path / "c.grad", "--state", "ND", "--out", tmp_path / "o")
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    assert error_lines(result)[0].startswith(f"error: {victim}: cannot be read (Permission denied)")


def test_a_dangling_slice_link_and_an_unreadable_subfolder_are_named(good_series, tmp_path, monkeypatch):
    (good_series / "IM_moved.dcm").symlink_to(tmp_path / "gone.dcm")
    with pytest.raises(DicomInputError, match=re.escape(f"{good_series / 'IM_moved.dcm'}: cannot be read (No such")):
        trueshape.load(good_series)
    (good_series / "IM_moved.dcm").unlink()
    locked = good_series / "more"
    locked.mkdir()
    real_scandir = os.scandir

    def guarded_scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded_scandir)
    # inspect names the folder; the series beside it still loads (a data disk's lost+found is unreadable too)
    result = run("inspect", good_series)
    assert result.exit_code == 2
    assert f"error: {locked}: folder cannot be read (Permission denied)" in " ".join(result.output.split())
    assert trueshape.load(good_series).array.shape[2] == 6


def test_odd_paths_get_one_line(good_series, tmp_path):
    for argument in ("", "   "):
        result = run("inspect", argument)
        assert result.exit_code == 2 and "an empty path was given" in result.output, result.output
        result = run("convert", good_series, "--out", argument)
        assert result.exit_code == 2 and "an empty --out was given" in result.output, result.output
    result = run("convert", f"{'a' * 300}#2", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "File name too long" in result.output, result.output
    result = run("inspect", "b" * 300)
    assert result.exit_code == 2 and "File name too long" in result.output, result.output
    # A FIFO beside the slices is not read (reading it would wait forever).
    os.mkfifo(good_series / "pipe")
    result = run("inspect", good_series)
    assert result.exit_code == 0 and "10 x 8 x 6" in " ".join(result.output.split()), result.output


def test_file_names_are_printed_as_they_are(good_series, tmp_path):
    out = tmp_path / "out :ok: [x]"
    result = run("convert", good_series, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output  # no emoji for ":ok:", no markup eaten, no line break in the path


def test_api_option_values_are_checked_with_the_valid_ones(good_series, tmp_path):
    from trueshape.errors import TrueshapeError

    for keyword, value, listed in (
        ("fmt", "bogus", "nifti, nii, nrrd, dicom"),
        ("irregular", "bogus", "warn"),
        ("validation", "bogus", "raise"),
    ):
        with pytest.raises(
            TrueshapeError,
            match=rf"--{'format' if keyword == 'fmt' else keyword} 'bogus' is not "
            rf"one of: .*{listed}",
        ):
            trueshape.convert(good_series, tmp_path / "o", **{keyword: value})
    assert trueshape.convert(good_series, tmp_path / "o", fmt="NRRD").written[0].suffix == ".nrrd"
    coil = tmp_path / "c.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    with pytest.raises(TrueshapeError, match=r"--mode 'bogus' is not one of: auto, full, through-plane$"):
        trueshape.api.correct(good_series, tmp_path / "c", coefficients=coil, mode="bogus")


def test_convert_leaves_out_a_series_with_an_unreadable_file(write_series, tmp_path):
    good = write_series(regular_planes(slices=6), folder=tmp_path / "in" / "good", series_number=1)
    damaged = write_series(regular_planes(slices=6), folder=tmp_path / "in" / "damaged", series_number=2)
    victim = sorted(damaged.glob("*.dcm"))[2]
    victim.write_bytes(victim.read_bytes()[:600])
    result = run("convert", tmp_path / "in", "--out", tmp_path / "out")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert victim.name in text, text
    # The file is cut before its position: "a slice".
    assert f"2_synthetic: not written: a slice is in {victim}, which could not be read" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1_synthetic.json", "1_synthetic.nii.gz"]
    assert good.is_dir()


def test_inspect_exits_2_when_images_cannot_be_placed(write_series, tmp_path):
    folder = write_series(regular_planes(slices=3))
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    result = run("inspect", folder)
    assert result.exit_code == 2 and "GEOMETRY_MISSING" in result.output, result.output


def test_an_out_that_is_a_file_is_said_once(write_series, tmp_path):
    root = tmp_path / "in"
    write_series(regular_planes(slices=3), root / "a", series_number=1)
    write_series(regular_planes(slices=3), root / "b", series_number=2)
    (tmp_path / "afile").write_text("x")
    result = run("convert", root, "--out", tmp_path / "afile")
    assert result.exit_code == 2 and error_lines(result) == [
        f"error: {tmp_path / 'afile'}: is a file, not a folder: choose another --out"
    ], result.output
