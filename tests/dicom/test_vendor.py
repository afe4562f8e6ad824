"""Vendor metadata: patient-position rotations, distortion-state parsing, Phoenix protocol text."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from trueshape.dicom import LPS_FROM_MAGNET, DistortionState, PatientPosition, VendorInfo
from trueshape.dicom._csa import phoenix_slice_positions
from trueshape.dicom.vendor import _phoenix_distortion_state, distortion_state_from_image_type, read_vendor_info

# Where the magnet's +X axis points in the patient (LPS) for each position: rolling about the bore and turning
# end for end, derived independently of the table in vendor.py.
EXPECTED_PATIENT_AXES_OF_MAGNET = {
    # position: (magnet +X, magnet +Y, magnet +Z) as patient LPS vectors
    "HFS": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "HFP": ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
    "FFS": ((-1, 0, 0), (0, 1, 0), (0, 0, -1)),
    "FFP": ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
    "HFDR": ((0, 1, 0), (-1, 0, 0), (0, 0, 1)),  # right side down: magnet +Y (down) is the patient's right
    "HFDL": ((0, -1, 0), (1, 0, 0), (0, 0, 1)),  # left side down: magnet +Y is the patient's left
    "FFDR": ((0, -1, 0), (-1, 0, 0), (0, 0, -1)),
    "FFDL": ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
}


@pytest.mark.parametrize("position", list(PatientPosition))
def test_patient_position_rotations(position):
    rotation = LPS_FROM_MAGNET[position]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3))
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    for axis, expected in zip(np.eye(3), EXPECTED_PATIENT_AXES_OF_MAGNET[position.value], strict=True):
        np.testing.assert_allclose(rotation @ axis, expected)


def test_decubitus_right_side_down_puts_patient_right_towards_floor():
    patient_right_lps = np.array([-1.0, 0.0, 0.0])
    magnet = LPS_FROM_MAGNET[PatientPosition.HFDR].T @ patient_right_lps
    np.testing.assert_allclose(magnet, [0, 1, 0])  # +Y: vertical, down (posterior for a supine patient)


@pytest.mark.parametrize(
    ("tokens", "state"),
    [
        (["ORIGINAL", "PRIMARY", "M", "ND"], DistortionState.NONE),
        (["DERIVED", "SECONDARY", "DIS2D"], DistortionState.IN_PLANE_2D),
        (["ORIGINAL", "PRIMARY", "M", "NORM", "DIS3D"], DistortionState.FULL_3D),
        (["ORIGINAL", "PRIMARY", "M", "NORM"], None),
    ],
)
def test_image_type_tokens(tokens, state):
    assert distortion_state_from_image_type(tokens) is state


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("sDistortionCorrFilter.ucMode = 0x1", DistortionState.NONE),
        ("sDistortionCorrFilter.ucMode\t= 0x2", DistortionState.IN_PLANE_2D),
        ("sDistortionCorrFilter.ucMode = 4", DistortionState.FULL_3D),
        ("sGRADSPEC.ucMode = 0x1", None),
    ],
)
def test_phoenix_distortion_mode(text, state):
    assert _phoenix_distortion_state(text) is state


def test_phoenix_slice_positions_fill_omitted_zeros():
    text = "\n".join(
        [
            "sSliceArray.asSlice[0].sPosition.dCor    = -41.5",
            "sSliceArray.asSlice[0].sPosition.dTra    = -73.9",
            "sSliceArray.asSlice[1].sPosition.dSag    = 1.25",
            "sSliceArray.asSlice[1].sPosition.dTra    = -70.3",
            "sSliceArray.lSize                        = 2",
        ]
    )
    assert phoenix_slice_positions(text) == [(0.0, -41.5, -73.9), (1.25, 0.0, -70.3)]


def test_isocentre_from_table_position_is_rotated_by_patient_position():
    info = VendorInfo(patient_position=PatientPosition.HFDL, table_position_mm=(0.0, 0.0, 30.0), table_source="test")
    np.testing.assert_allclose(info.isocentre_lps()[0], [0.0, 0.0, 30.0])  # Z is shared by head-first positions
    info = VendorInfo(patient_position=PatientPosition.FFP, table_position_mm=(10.0, 0.0, 30.0), table_source="t")
    np.testing.assert_allclose(info.isocentre_lps()[0], [10.0, 0.0, -30.0])


def test_unknown_patient_position_is_stated():
    ds = Dataset()
    ds.PatientPosition = "SITTING"
    info = read_vendor_info(ds)
    assert info.patient_position is None
    assert "HFS assumed" not in info.isocentre_lps()[1]  # no table: nothing is rotated
    ds2 = Dataset()
    ds2.PatientPosition = ""
    ds2.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x14, "IS", [0, 0, 5])
    info2 = read_vendor_info(ds2)
    vector, assumption = info2.isocentre_lps()
    np.testing.assert_allclose(vector, [0, 0, 5])
    assert "HFS assumed" in assumption


def test_ge_table_position_follows_bids_sign():
    ds = Dataset()
    ds.PatientPosition = "HFS"
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0xB2, "LO", "956.1\\320.1\\-17.3125\\0")
    ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0x7F, "DS", "-40.0")
    info = read_vendor_info(ds)
    # BIDS TablePosition = -17.3125 - (-40) = 22.6875 (table 22.7 mm further into the bore); isocentre = minus it
    np.testing.assert_allclose(info.isocentre_lps()[0], [0.0, 0.0, -22.6875])
    assert "(0043,10B2)" in info.table_source


def test_philips_table_position_is_minus_bids():
    ds = Dataset()
    ds.PatientPosition = "FFS"
    ds.private_block(0x2005, "Philips MR Imaging DD 005", create=True).add_new(0x3C, "FL", -60.3)
    info = read_vendor_info(ds)
    # raw -60.3 = BIDS TablePosition +60.3 (moved into the bore); HFS isocentre would be z = -60.3, FFS flips z
    np.testing.assert_allclose(info.isocentre_lps()[0], [0.0, 0.0, 60.3], atol=1e-5)
    assert "MRStackTablePosLong" in info.table_source


# A table moved d mm into the bore carries the patient d mm deeper: the isocentre lands d mm towards the feet of
# a head-first patient and towards the head of a feet-first one, whatever the roll (trueshape.synth._vendor_tags).
HEAD_FIRST = ("HFS", "HFP", "HFDR", "HFDL")


@pytest.mark.parametrize("vendor", ["SIEMENS", "GE", "PHILIPS"])
@pytest.mark.parametrize("position", ["HFS", "FFS", "HFP", "FFP", "HFDR", "FFDL"])
def test_table_move_puts_the_isocentre_where_the_physics_does(tmp_path, vendor, position):
    import pydicom

    import trueshape
    from trueshape.findings import FindingCode
    from trueshape.io import SeriesMetadata, write_dicom_slices
    from trueshape.synth import Vendor, record_table_move, regular_planes

    into_bore_mm = 60.3
    paths = write_dicom_slices(
        tmp_path,
        regular_planes(rows=20, columns=20, slices=5, origin=(-100.0, -100.0, -190.0), pixel_spacing=(10.0, 10.0)),
        SeriesMetadata(patient_position=position),
    )
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds[0x00190010:0x00191100]  # the writer's own table tags: this vendor's alone remain
        record_table_move(ds, Vendor[vendor], into_bore_mm)
        ds.save_as(path)
    (stack,) = trueshape.inspect(tmp_path).stacks
    physics_z = -into_bore_mm if position in HEAD_FIRST else into_bore_mm
    recorded = round(into_bore_mm) if vendor == "SIEMENS" else into_bore_mm  # Siemens records whole mm (IS)
    assert abs(stack.isocentre_lps[2] - physics_z) <= 1.0
    np.testing.assert_allclose(stack.isocentre_lps, [0.0, 0.0, np.sign(physics_z) * recorded], atol=1e-4)
    assert f"rotated for {position}" in stack.isocentre_source
    if vendor == "PHILIPS":
        assert stack.isocentre_source.startswith("table offset (0, 0, -60.3) mm from Philips MRStackTablePosLong")
        assert "in the stack sequence (2001,105F)" in stack.isocentre_source
    # The reach is measured from that isocentre: the farthest corner of the 200 x 200 x 40 mm field of view.
    corners = stack.geometry.corner_points()
    reach = float(np.max(np.linalg.norm(corners - stack.isocentre_lps, axis=1)))
    assert stack.max_distance_from_isocentre_mm == pytest.approx(reach, abs=1e-9)
    far = [f for f in stack.findings if f.code is FindingCode.FAR_FROM_ISOCENTRE]
    assert [f.measured for f in far] == [pytest.approx(reach, abs=1e-9)]
    assert FindingCode.ISOCENTRE_ASSUMED not in {f.code for f in stack.findings}


def test_philips_table_position_at_the_top_level_and_not_the_rounded_request():
    ds = Dataset()
    ds.PatientPosition = "HFS"
    ds.Manufacturer = "Philips Medical Systems"
    block = ds.private_block(0x2005, "Philips MR Imaging DD 005", create=True)
    block.add_new(0x79, "FL", 60.0)  # (2005,1079): the rounded request, not the table (dcm2niix ignores it too)
    assert read_vendor_info(ds).table_position_mm is None
    block.add_new(0x3C, "FL", -60.3)
    info = read_vendor_info(ds)
    np.testing.assert_allclose(info.isocentre_lps()[0], [0.0, 0.0, -60.3], atol=1e-5)
    assert info.table_source == "Philips MRStackTablePosLong (2005,143C)"


@pytest.mark.parametrize("value", ["nan", "inf", "1e999"])
def test_non_finite_table_positions_are_unknown(value):
    ds = Dataset()
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x14, "LO", f"0\\0\\{value}")
    info = read_vendor_info(ds)
    assert info.table_position_mm is None
    assert info.isocentre_lps()[1] == "no table position in the headers: isocentre assumed at the patient origin"
