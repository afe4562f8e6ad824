"""Enhanced multi-frame geometry, distortion-state findings and the isocentre, on synthetic DICOM."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

import trueshape
from trueshape.dicom import DistortionState
from trueshape.findings import FindingCode, Severity
from trueshape.io import SeriesMetadata, write_enhanced_dicom
from trueshape.settings import TrueshapeWarning
from trueshape.synth import CORONAL, regular_planes


def test_enhanced_multiframe_missing_slice_is_found(tmp_path):
    planes = regular_planes(slices=10, slice_spacing=1.5)
    del planes[4]
    write_enhanced_dicom(tmp_path / "mf.dcm", planes, SeriesMetadata(slice_thickness_mm=1.5))
    (stack,) = trueshape.inspect(tmp_path).stacks
    found = next(f for f in stack.findings if f.code is FindingCode.SLICES_MISSING)
    assert found.measured == 1.0
    assert found.where[0].endswith("mf.dcm#frame4")
    with pytest.warns(TrueshapeWarning, match="SLICES_MISSING"):
        volume = trueshape.load(tmp_path)
    assert volume.array.shape == (10, 8, 9)
    assert volume.array[0, 0, 4] == 5000  # slice_pattern of original slice 5


def test_enhanced_multiframe_time_series(tmp_path):
    planes = regular_planes(slices=4) * 3
    temporal = [t + 1 for t in range(3) for _ in range(4)]
    write_enhanced_dicom(tmp_path / "mf4d.dcm", planes, SeriesMetadata(), temporal_indices=temporal)
    (stack,) = trueshape.inspect(tmp_path).stacks
    assert stack.shape == (10, 8, 4, 3)
    assert [[f.temporal_index for f in s] for s in stack.layout.slices] == [[1, 2, 3]] * 4


@pytest.mark.parametrize(
    ("image_type", "state", "code"),
    [
        (("ORIGINAL", "PRIMARY", "M", "ND"), DistortionState.NONE, FindingCode.DISTORTION_NOT_CORRECTED),
        (("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"), DistortionState.IN_PLANE_2D, FindingCode.DISTORTION_2D_ONLY),
        (("ORIGINAL", "PRIMARY", "M", "DIS3D"), DistortionState.FULL_3D, None),
        (("ORIGINAL", "PRIMARY", "M"), DistortionState.UNKNOWN, FindingCode.DISTORTION_STATE_UNKNOWN),
    ],
)
def test_distortion_state_findings(write_series, image_type, state, code):
    folder = write_series(regular_planes(slices=5, orientation=CORONAL), image_type=image_type)
    (stack,) = trueshape.inspect(folder).stacks
    assert stack.distortion_state is state
    distortion_codes = {f.code for f in stack.findings} & {
        FindingCode.DISTORTION_NOT_CORRECTED,
        FindingCode.DISTORTION_2D_ONLY,
        FindingCode.DISTORTION_STATE_UNKNOWN,
    }
    assert distortion_codes == ({code} if code else set())
    if code is FindingCode.DISTORTION_2D_ONLY:
        found = next(f for f in stack.findings if f.code is code)
        assert "front-to-back" in found.message  # a coronal stack's normal is anterior-posterior


@pytest.mark.parametrize(("position", "expected_z"), [("HFS", 50.0), ("FFS", -50.0)])  # 124 mm / 189 mm
def test_isocentre_and_far_from_isocentre(write_series, position, expected_z):
    # 200 x 100 mm plane (1 mm pixels), 21 slices 5 mm apart from z = 0: corners are known exactly.
    planes = regular_planes(rows=100, columns=200, slices=21, slice_spacing=5.0, origin=(-99.5, -49.5, 0.0))
    folder = write_series(
        planes,
        image_type=("ORIGINAL", "PRIMARY", "M", "DIS2D"),
        patient_position=position,
        table_position_mm=(0.0, 0.0, 50.0),
    )
    (stack,) = trueshape.inspect(folder).stacks
    np.testing.assert_allclose(stack.isocentre_lps, [0.0, 0.0, expected_z])
    corners = np.array(list(itertools.product([-100.0, 100.0], [-50.0, 50.0], [-2.5, 102.5])))
    expected = np.max(np.linalg.norm(corners - [0.0, 0.0, expected_z], axis=1))
    assert stack.max_distance_from_isocentre_mm == pytest.approx(expected, abs=1e-6)
    far = [f for f in stack.findings if f.code is FindingCode.FAR_FROM_ISOCENTRE]
    assert len(far) == (1 if expected > 150.0 else 0)
    if far:
        assert far[0].measured == pytest.approx(expected, abs=1e-6)
        assert far[0].tolerance == 150.0
        assert far[0].severity is Severity.WARNING
    assert FindingCode.ISOCENTRE_ASSUMED not in {f.code for f in stack.findings}


def test_isocentre_assumed_without_table_position(write_series):
    (stack,) = trueshape.inspect(write_series(regular_planes(slices=3))).stacks
    assert FindingCode.ISOCENTRE_ASSUMED in {f.code for f in stack.findings}
    np.testing.assert_allclose(stack.isocentre_lps, 0.0)
    assert FindingCode.FAR_FROM_ISOCENTRE not in {f.code for f in stack.findings}


def test_ct_has_no_distortion_findings(write_series):
    (stack,) = trueshape.inspect(
        write_series(regular_planes(slices=3), modality="CT", image_type=("ORIGINAL", "PRIMARY", "AXIAL"))
    ).stacks
    assert not {f.code for f in stack.findings} & {
        FindingCode.DISTORTION_STATE_UNKNOWN,
        FindingCode.DISTORTION_NOT_CORRECTED,
    }


def test_enhanced_frames_without_stack_id_stay_one_stack(tmp_path):
    # StackID is Type 1C: legacy-converted enhanced files lack it. The first frame must not be told apart
    # from the others by its echo time.
    import pydicom
    from pydicom.dataset import Dataset

    path = tmp_path / "enhanced.dcm"
    write_enhanced_dicom(path, regular_planes(slices=6), SeriesMetadata(series_number=3))
    ds = pydicom.dcmread(path)
    echo = Dataset()
    echo.EffectiveEchoTime = 2.5
    ds.SharedFunctionalGroupsSequence[0].MREchoSequence = [echo]
    for item in ds.PerFrameFunctionalGroupsSequence:
        content = item.FrameContentSequence[0]
        if "StackID" in content:
            del content.StackID
    ds.save_as(path)
    stacks = trueshape.inspect(path).stacks
    assert [stack.shape for stack in stacks] == [(10, 8, 6)]


def test_enhanced_multi_echo_time_series_is_split_by_echo(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    from trueshape.io import SeriesMetadata, write_enhanced_dicom

    base = regular_planes(slices=3)
    planes, times, echoes = [], [], []
    for t in range(2):
        for e in range(2):
            for plane in base:
                planes.append(replace(plane, pixels=np.full_like(plane.pixels, 100 * t + 10 * e + 1)))
                times.append(t + 1)
                echoes.append(10.0 * (e + 1))
    path = write_enhanced_dicom(tmp_path / "e" / "EN.dcm", planes, SeriesMetadata(), temporal_indices=times)
    ds = pydicom.dcmread(path)
    for item, echo in zip(ds.PerFrameFunctionalGroupsSequence, echoes, strict=True):
        entry = Dataset()
        entry.EffectiveEchoTime = echo
        item.MREchoSequence = DicomSequence([entry])
    ds.save_as(path)
    stacks = trueshape.inspect(tmp_path / "e").stacks
    assert [s.shape for s in stacks] == [(10, 8, 3, 2), (10, 8, 3, 2)]
    for stack, echo in zip(stacks, (0, 1), strict=True):
        values = trueshape.geometry.load_stack(stack).array
        assert [float(values[0, 0, 0, t]) for t in range(2)] == [1 + 10 * echo, 101 + 10 * echo]
