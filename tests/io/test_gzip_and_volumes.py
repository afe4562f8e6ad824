"""Parallel gzip output is one standard gzip member; NIfTI/NRRD round trips keep geometry and values."""

from __future__ import annotations

import gzip
import io
import itertools
import zlib

import nibabel as nib
import numpy as np
import pytest

from trueshape.errors import VolumeInputError
from trueshape.geometry import Provenance, Volume, VolumeGeometry
from trueshape.io import lps_to_ras_affine, read_volume, read_volume_geometry, write_nifti, write_nrrd
from trueshape.io._gzip import _CHUNK_BYTES, ParallelGzipWriter


def test_parallel_gzip_single_member_any_write_sizes():
    rng = np.random.default_rng(3)
    payload = rng.integers(0, 40, 3 * _CHUNK_BYTES + 12345, dtype=np.uint8).tobytes()
    raw = io.BytesIO()
    with ParallelGzipWriter(raw, threads=2) as writer:
        cuts = [0, 1, 17, _CHUNK_BYTES - 3, _CHUNK_BYTES + 5, 2 * _CHUNK_BYTES + 999, len(payload)]
        for start, stop in itertools.pairwise(cuts):
            assert writer.write(payload[start:stop]) == stop - start
        assert writer.tell() == len(payload)
        writer.seek(len(payload) + 10)  # forward seek pads with zeros, as NIfTI writers expect
    data = raw.getvalue()
    assert gzip.decompress(data) == payload + bytes(10)
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decompressor.decompress(data) == payload + bytes(10)
    assert decompressor.eof and decompressor.unused_data == b""  # exactly one gzip member


def test_backward_seek_is_refused():
    with ParallelGzipWriter(io.BytesIO()) as writer:
        writer.write(b"abcd")
        with pytest.raises(OSError, match="backwards"):
            writer.seek(1)


def _volume(shape=(7, 5, 4), time_points=0):
    rng = np.random.default_rng(1)
    full = shape + ((time_points,) if time_points else ())
    array = rng.integers(0, 4000, full).astype(np.uint16)
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # coronal-like, det +1
    geometry = VolumeGeometry.from_components(
        shape=shape, origin=(10.0, -20.0, 30.0), spacing=(0.7, 0.9, 3.1), direction=direction
    )
    return Volume(array, geometry, Provenance(), 2.0, -4096.0)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("time_points", [0, 3])
def test_nifti_round_trip(tmp_path, suffix, time_points):
    volume = _volume(time_points=time_points)
    path = write_nifti(volume, tmp_path / f"v{suffix}")
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, lps_to_ras_affine(volume.geometry.lps_from_ijk), atol=1e-6)
    assert image.header.get_qform(coded=True)[1] == 1 and image.header.get_sform(coded=True)[1] == 1
    assert image.header.get_xyzt_units() == ("mm", "unknown" if time_points else "sec")
    np.testing.assert_array_equal(image.get_fdata(), volume.values(np.float64))
    back = read_volume(path)
    np.testing.assert_allclose(back.geometry.lps_from_ijk, volume.geometry.lps_from_ijk, atol=1e-6)
    np.testing.assert_array_equal(back.values(np.float64), volume.values(np.float64))


def test_nrrd_round_trip_lps(tmp_path):
    volume = _volume()
    back = read_volume(write_nrrd(volume, tmp_path / "v.nrrd"))
    np.testing.assert_allclose(back.geometry.lps_from_ijk, volume.geometry.lps_from_ijk, atol=1e-9)
    np.testing.assert_array_equal(back.values(np.float64), volume.values(np.float64))


def test_volume_geometry_comes_from_the_header_alone(tmp_path):
    geometry = VolumeGeometry.from_components(shape=(6, 5, 4), origin=(1.0, -2.0, 3.0), spacing=(1.5, 2.0, 2.5))
    volume = Volume(np.arange(120, dtype=np.int16).reshape(6, 5, 4), geometry)
    for name in ("v.nii", "v.nrrd"):
        path = tmp_path / name
        (write_nifti if name.endswith(".nii") else write_nrrd)(volume, path)
        np.testing.assert_allclose(read_volume_geometry(path).lps_from_ijk, geometry.lps_from_ijk, atol=1e-6)
        assert read_volume_geometry(path).shape == (6, 5, 4)
    # The voxels are not read: a NIfTI cut short after its header still has a grid, but no volume.
    truncated = tmp_path / "cut.nii"
    truncated.write_bytes((tmp_path / "v.nii").read_bytes()[:400])
    assert read_volume_geometry(truncated).shape == (6, 5, 4)
    with pytest.raises(VolumeInputError, match=r"cut\.nii: truncated: its header \(6 x 5 x 4 voxels\) needs 240 bytes"):
        read_volume(truncated)


def test_nifti_scanner_qform_wins_over_an_aligned_sform_and_codes_survive(tmp_path):
    # ITK and Slicer place such a file by its scanner qform; the field must be evaluated there too.
    scanner = np.diag([-2.0, -2.0, 3.0, 1.0])
    scanner[:3, 3] = (60.0, 40.0, 120.0)
    aligned = scanner.copy()
    aligned[2, 3] = 180.0
    image = nib.Nifti1Image(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), None)
    image.header.set_qform(scanner, code=1)
    image.header.set_sform(aligned, code=2)
    path = tmp_path / "mixed.nii"
    nib.save(image, path)
    volume = read_volume(path)
    np.testing.assert_allclose(lps_to_ras_affine(volume.geometry.lps_from_ijk), scanner, atol=1e-6)
    written = nib.load(write_nifti(volume, tmp_path / "back.nii"))
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 1)
    np.testing.assert_allclose(written.affine, scanner, atol=1e-6)
    # An aligned-only file stays aligned: trueshape never relabels it as scanner coordinates.
    image.header.set_qform(aligned, code=0)
    nib.save(image, path)
    written = nib.load(write_nifti(read_volume(path), tmp_path / "aligned.nii"))
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (2, 2)
    np.testing.assert_allclose(written.affine, aligned, atol=1e-6)


def test_nifti_4d_keeps_its_time_step(tmp_path):
    image = nib.Nifti1Image(np.zeros((3, 4, 5, 6), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    image.header.set_zooms((2.0, 2.0, 2.0, 2.5))
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, tmp_path / "bold.nii")
    back = nib.load(write_nifti(read_volume(tmp_path / "bold.nii"), tmp_path / "back.nii"))
    assert back.header.get_zooms()[3] == pytest.approx(2.5) and back.header.get_xyzt_units() == ("mm", "sec")
    # A 4-D volume from elsewhere (echoes or time, not known): step 1 and no time unit, not "1 s".
    geometry = VolumeGeometry.from_components(shape=(3, 4, 5), origin=(0, 0, 0), spacing=(2, 2, 2))
    fresh = nib.load(write_nifti(Volume(np.zeros((3, 4, 5, 2), np.float32), geometry), tmp_path / "fresh.nii"))
    assert fresh.header.get_xyzt_units() == ("mm", "unknown") and fresh.header.get_zooms()[3] == 1.0
