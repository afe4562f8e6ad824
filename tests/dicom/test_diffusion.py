"""Diffusion series: volumes told apart by b-value and direction, the derived isotropic image apart, FSL bvecs."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

import trueshape
from trueshape.dicom import read_diffusion
from trueshape.findings import FindingCode
from trueshape.io import SeriesMetadata, write_dicom_slices, write_enhanced_dicom
from trueshape.io._gradients import fsl_directions
from trueshape.synth import CORONAL, regular_planes

#: b-value and patient LPS direction of each volume, as acquired (b = 0 first, then three directions).
WEIGHTS = [(0.0, (0.0, 0.0, 0.0)), (1000.0, (1.0, 0.0, 0.0)), (1000.0, (0.0, 0.6, 0.8)), (1000.0, (0.0, 0.0, 1.0))]
SLICES = 3


def _planes(volume_count: int):
    """Planes slice-major (all volumes of slice 0 first), each volume's pixels filled with its index."""
    planes = []
    for plane in regular_planes(rows=4, columns=5, slices=SLICES, orientation=CORONAL):
        for volume in range(volume_count):
            planes.append(
                type(plane)(
                    np.full_like(plane.pixels, volume),
                    plane.image_position,
                    plane.image_orientation,
                    plane.pixel_spacing,
                )
            )
    return planes


def _siemens_classic(folder, *, scramble: bool = False, trace: bool = False):
    weights = WEIGHTS + ([(1000.0, None)] if trace else [])
    paths = write_dicom_slices(folder, _planes(len(weights)), SeriesMetadata())
    rng = np.random.default_rng(7)
    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        b_value, direction = weights[index % len(weights)]
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0C, "IS", int(b_value))
        if direction is not None:
            block.add_new(0x0E, "FD", list(direction))
            block.add_new(0x0D, "CS", "DIRECTIONAL" if b_value else "NONE")
        else:
            block.add_new(0x0D, "CS", "ISOTROPIC")
        if scramble:  # the instance numbers of each slice's volumes shuffled: only the diffusion tags tell
            ds.InstanceNumber = int(rng.integers(1, 10_000))
        ds.save_as(path)
    return folder


def test_siemens_volumes_are_told_apart_by_their_b_value_and_direction(tmp_path) -> None:
    folder = _siemens_classic(tmp_path / "dwi", scramble=True)
    (stack,) = trueshape.inspect(folder).stacks
    assert stack.shape == (5, 4, SLICES, 4)
    assert FindingCode.POSITIONS_DUPLICATED not in {f.code for f in stack.findings}
    # Volume t holds one weighting at every slice, whatever the shuffled instance numbers said.
    for position in stack.layout.slices:
        assert [f.diffusion.key for f in position] == [f.diffusion.key for f in stack.layout.slices[0]]
    keys = [f.diffusion.key for f in stack.layout.slices[0]]
    assert sorted(keys, key=str) == sorted(
        [(b, None if b == 0 else tuple(round(v, 4) for v in d)) for b, d in WEIGHTS], key=str
    )
    assert stack.layout.slices[0][0].diffusion.source == "Siemens B_value (0019,100C)"


def test_gradient_table_in_fsl_convention_and_the_trace_apart(tmp_path) -> None:
    folder = _siemens_classic(tmp_path / "dwi", trace=True)
    result = trueshape.convert(folder, tmp_path / "out")
    assert result.ok, result.errors
    assert sorted(p.name for p in result.written) == [
        "1_synthetic.bval",
        "1_synthetic.bvec",
        "1_synthetic.json",
        "1_synthetic.nii.gz",
        "1_synthetic_isotropic.json",
        "1_synthetic_isotropic.nii.gz",
    ]
    assert (tmp_path / "out" / "1_synthetic.bval").read_text() == "0\t1000\t1000\t1000\n"
    bvec = np.loadtxt(tmp_path / "out" / "1_synthetic.bvec")
    # Coronal slices: i along patient left (+x LPS), j along -z (DICOM column direction), k along +y: the
    # affine's determinant is +1, so FSL negates x: (1,0,0) -> (-1,0,0), (0,.6,.8) -> (0,-.8,.6), (0,0,1) -> (0,-1,0).
    np.testing.assert_allclose(bvec.T, [[0, 0, 0], [-1, 0, 0], [0, -0.8, 0.6], [0, -1, 0]], atol=1e-6)
    volume = trueshape.io.read_volume(tmp_path / "out" / "1_synthetic.nii.gz")
    assert volume.array.shape == (5, 4, SLICES, 4)
    assert [int(volume.array[0, 0, 0, t]) for t in range(4)] == [0, 1, 2, 3]  # each volume's own pixels
    trace = trueshape.io.read_volume(tmp_path / "out" / "1_synthetic_isotropic.nii.gz")
    assert trace.array.shape == (5, 4, SLICES) and np.all(trace.array == 4)
    sidecar = json.loads((tmp_path / "out" / "1_synthetic.json").read_text())
    assert sidecar["diffusion"]["b_values_s_per_mm2"] == [0.0, 1000.0, 1000.0, 1000.0]
    assert sidecar["diffusion"]["directions_lps"][2] == pytest.approx([0.0, 0.6, 0.8])
    split = [f for f in trueshape.inspect(folder).stacks[0].findings if f.code is FindingCode.SERIES_SPLIT]
    assert "derived isotropic diffusion (3 images)" in split[0].message


def test_fsl_bvecs_flip_x_for_a_positive_determinant() -> None:
    from trueshape.geometry import VolumeGeometry

    axial = VolumeGeometry.from_components(shape=(2, 2, 2), origin=(0, 0, 0), spacing=(2, 2, 3))  # det > 0
    np.testing.assert_allclose(fsl_directions(axial, [(0.6, 0.8, 0.0)]).ravel(), [-0.6, 0.8, 0.0])
    flipped = VolumeGeometry.from_components(
        shape=(2, 2, 2), origin=(0, 0, 0), spacing=(2, 2, 3), direction=np.diag([1.0, -1.0, 1.0])
    )
    np.testing.assert_allclose(fsl_directions(flipped, [(0.6, 0.8, 0.0)]).ravel(), [0.6, -0.8, 0.0])


def test_enhanced_frames_read_the_mr_diffusion_sequence(tmp_path) -> None:
    planes = _planes(len(WEIGHTS))
    path = write_enhanced_dicom(
        tmp_path / "xa.dcm",
        planes,
        SeriesMetadata(),
        temporal_indices=[1 + i % len(WEIGHTS) for i in range(len(planes))],
    )
    ds = pydicom.dcmread(path)
    for index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        b_value, direction = WEIGHTS[index % len(WEIGHTS)]
        diffusion = Dataset()
        diffusion.DiffusionBValue = b_value
        diffusion.DiffusionDirectionality = "DIRECTIONAL" if b_value else "NONE"
        gradient = Dataset()
        gradient.DiffusionGradientOrientation = list(direction)
        diffusion.DiffusionGradientDirectionSequence = DicomSequence([gradient])
        item.MRDiffusionSequence = DicomSequence([diffusion])
    ds.save_as(path)
    (stack,) = trueshape.inspect(tmp_path).stacks
    assert stack.shape == (5, 4, SLICES, 4)
    assert [f.diffusion.b_value for f in stack.layout.slices[1]] == [0.0, 1000.0, 1000.0, 1000.0]
    assert stack.layout.slices[1][2].diffusion.direction_lps == pytest.approx((0.0, 0.6, 0.8))
    assert stack.layout.slices[0][0].diffusion.source == "DiffusionBValue (0018,9087)"


def test_philips_private_tags_and_the_isotropic_label() -> None:
    ds = Dataset()
    ds.Manufacturer = "Philips Medical Systems"
    ds.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(0x03, "FL", 2000.0)
    ds.private_block(0x2001, "Philips Imaging DD 001").add_new(0x04, "CS", "I")
    block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
    for element in (0xB0, 0xB1, 0xB2):
        block.add_new(element, "FL", 0.0)
    weight = read_diffusion(ds)
    assert weight is not None and weight.isotropic and weight.b_value == 2000.0 and weight.direction_lps is None
    block[0xB1].value = -1.0
    assert read_diffusion(ds).direction_lps == (0.0, -1.0, 0.0)


def test_ge_private_b_value_bias_and_image_frame_direction() -> None:
    ds = Dataset()
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x39, "IS", [1_000_001_500, 8, 0, 0])
    block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    for element, value in ((0xBB, 1.0), (0xBC, 0.0), (0xBD, 0.0)):
        block.add_new(element, "DS", str(value))
    weight = read_diffusion(ds, orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    assert weight.b_value == 1500.0  # GE's bias of 1e9 (multi-b series) taken off
    assert weight.direction_lps == (-1.0, 0.0, 0.0)  # along the image's row, negated (as dcm2niix reads GE)
