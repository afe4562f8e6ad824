"""One stack: slices sorted along the normal, spacing, duplicates, tilt, tags and corners checked, policies."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
from tests.conftest import GEOMETRY_CODES, codes, finding, only_stack

import trueshape
from trueshape.errors import GeometryError
from trueshape.findings import FindingCode, Severity
from trueshape.synth import regular_planes


def test_regular_stack_sorted_by_position_not_instance_number(write_series):
    planes = regular_planes(slices=12, origin=(-5.0, 3.0, 40.0), slice_spacing=2.5, pixel_spacing=(0.8, 0.6))
    reversed_numbers = [replace(p, overrides={"InstanceNumber": 100 - k}) for k, p in enumerate(planes)]
    rng = np.random.default_rng(7)
    shuffled = [reversed_numbers[i] for i in rng.permutation(len(planes))]
    stack = only_stack(write_series(shuffled, slice_thickness_mm=2.5))
    assert stack.shape == (10, 8, 12)
    np.testing.assert_allclose(stack.geometry.spacing, [0.6, 0.8, 2.5], atol=1e-6)
    np.testing.assert_allclose(stack.geometry.origin, [-5.0, 3.0, 40.0], atol=1e-6)
    np.testing.assert_allclose(stack.geometry.lps_from_ijk[:3, 2], [0, 0, 2.5], atol=1e-6)
    assert not codes(stack) & GEOMETRY_CODES
    volume = trueshape.load(stack.layout.slices[0][0].path.rsplit("/", 1)[0])
    # slice_pattern encodes index * 1000 + row * 100 + column: voxel [i=3, j=2, k=5] holds 5203
    assert volume.array[3, 2, 5] == 5203


def test_missing_slice_is_named_with_count_and_files(write_series):
    planes = regular_planes(slices=20, slice_spacing=2.0)
    del planes[7]
    stack = only_stack(write_series(planes))
    found = finding(stack, FindingCode.SLICES_MISSING)
    assert found.measured == 1.0
    assert found.severity is Severity.WARNING
    assert found.details["holes"][0]["after_slice"] == 6
    assert found.details["holes"][0]["gap_mm"] == pytest.approx(4.0, abs=1e-4)
    assert len(found.where) == 2
    # warn policy: regular grid at the mean spacing (first and last slice exact), acquisition transform exact
    assert stack.shape == (10, 8, 19)
    assert stack.geometry.spacing[2] == pytest.approx(38.0 / 18.0, abs=1e-6)
    acquisition = stack.layout.acquisition
    assert acquisition is not None
    true_z = np.array([p.image_position[2] for p in planes])
    ijk = np.column_stack([np.zeros(19), np.zeros(19), np.arange(19.0)])
    np.testing.assert_allclose(acquisition.true_points(ijk)[:, 2], true_z, atol=1e-6)
    expected_offset = np.max(np.abs(true_z - np.arange(19) * 38.0 / 18.0))
    assert expected_offset == pytest.approx(16.0 - 7 * 38.0 / 18.0)  # slice 7 is the one after the hole
    assert acquisition.max_offset_mm == pytest.approx(expected_offset, abs=1e-6)
    assert found.details["max_corner_error_without_transform_mm"] == pytest.approx(acquisition.max_offset_mm, abs=1e-4)


def test_missing_slice_policies_resample_split_fail(write_series):
    planes = regular_planes(slices=20, slice_spacing=2.0)
    del planes[7]
    folder = write_series(planes)
    resampled = only_stack(folder, irregular="resample")
    assert resampled.shape == (10, 8, 20)
    assert resampled.geometry.spacing[2] == pytest.approx(2.0, abs=1e-6)
    assert FindingCode.STACK_RESAMPLED in codes(resampled)
    volume = trueshape.load(folder, irregular="resample")
    # the missing slice 7 is interpolated halfway between slices 6 and 8 (pattern values 6000.. and 8000..)
    np.testing.assert_allclose(volume.array[:, :, 7], (volume.array[:, :, 6] + volume.array[:, :, 8]) / 2)
    np.testing.assert_allclose(volume.array[:, :, 8] - volume.array[:, :, 6], 2000.0)
    parts = [s for s in trueshape.inspect(folder, irregular="split").stacks]
    assert [s.shape[2] for s in parts] == [7, 12]
    assert all(s.geometry.spacing[2] == pytest.approx(2.0, abs=1e-6) for s in parts)
    assert all(s.layout.acquisition is None for s in parts)
    np.testing.assert_allclose(parts[1].geometry.origin, [0, 0, 16.0], atol=1e-6)
    with pytest.raises(GeometryError, match="missing"):
        trueshape.load(folder, irregular="fail")


def test_spacing_zones(write_series):
    planes = regular_planes(slices=10, slice_spacing=1.0) + regular_planes(
        slices=10, slice_spacing=2.0, origin=(0, 0, 11.0)
    )
    stack = only_stack(write_series(planes))
    found = finding(stack, FindingCode.SPACING_IRREGULAR)
    assert found.measured == pytest.approx(1.0, abs=1e-4)  # the 2 mm gap at the seam vs the 1 mm dominant gap
    zones = found.details["zones"]
    assert zones[0] == {"slices": [0, 9], "spacing_mm": 1.0}
    assert zones[-1] == {"slices": [10, 19], "spacing_mm": 2.0}
    assert stack.geometry.spacing[2] == pytest.approx(29.0 / 19.0, abs=1e-6)


def test_duplicated_position_without_time_axis(write_series):
    planes = regular_planes(slices=10)
    stack = only_stack(write_series([*planes, replace(planes[4], overrides={"InstanceNumber": 50})]))
    found = finding(stack, FindingCode.POSITIONS_DUPLICATED)
    assert found.measured == 1.0
    assert stack.shape == (10, 8, 10)
    assert found.details["images_per_position"].count(2) == 1


def test_copied_file_is_a_duplicate(write_series, tmp_path):
    folder = write_series(regular_planes(slices=6))
    first = sorted(folder.iterdir())[0]
    shutil.copy(first, folder / "copy_of_first.dcm")
    stack = only_stack(folder)
    assert finding(stack, FindingCode.POSITIONS_DUPLICATED).measured == 1.0
    assert stack.shape == (10, 8, 6)


def test_repeated_positions_form_a_time_axis(write_series):
    planes = [
        replace(p, overrides={"AcquisitionNumber": t + 1, "InstanceNumber": t * 10 + k + 1})
        for t in range(3)
        for k, p in enumerate(regular_planes(slices=5))
    ]
    stack = only_stack(write_series(planes))
    assert stack.shape == (10, 8, 5, 3)
    assert not codes(stack) & GEOMETRY_CODES
    times = [[f.acquisition_number for f in slice_frames] for slice_frames in stack.layout.slices]
    assert times == [[1, 2, 3]] * 5


@pytest.mark.parametrize("tilt_deg", [12.0, -20.0])
def test_gantry_tilt_measured_from_positions(write_series, tilt_deg):
    spacing = 3.0
    shift = math.tan(math.radians(tilt_deg)) * spacing
    planes = [
        replace(
            p,
            image_position=(p.image_position[0], p.image_position[1] + k * shift, p.image_position[2]),
            overrides={"GantryDetectorTilt": tilt_deg},
        )
        for k, p in enumerate(regular_planes(slices=15, slice_spacing=spacing))
    ]
    stack = only_stack(write_series(planes, modality="CT"))
    found = finding(stack, FindingCode.GANTRY_TILT)
    assert found.measured == pytest.approx(abs(tilt_deg), abs=1e-3)
    assert found.details["max_in_plane_shift_mm"] == pytest.approx(abs(14 * shift), abs=1e-3)
    # stored on an orthogonal grid along the normal; the shear lives in the acquisition transform
    np.testing.assert_allclose(stack.geometry.lps_from_ijk[:3, 2], [0, 0, spacing], atol=1e-6)
    assert stack.layout.acquisition is not None
    ijk = np.array([[0.0, 0.0, 14.0]])
    np.testing.assert_allclose(stack.layout.acquisition.true_points(ijk), [[0.0, 14 * shift, 14 * spacing]], atol=1e-4)


def test_orientation_not_orthonormal(write_series):
    skewed = (1.0, 0.0, 0.0, 0.01, 1.0, 0.0)  # row . column = 0.01
    stack = only_stack(write_series(regular_planes(slices=4, orientation=skewed)))
    found = finding(stack, FindingCode.ORIENTATION_NOT_ORTHONORMAL)
    assert found.measured == pytest.approx(0.01, abs=1e-6)
    assert abs(stack.geometry.direction[:, 0] @ stack.geometry.direction[:, 1]) < 1e-12


@pytest.mark.parametrize(("thickness", "measured"), [(4.0, 0.8), (6.0, -1.2)])
def test_thickness_differs_from_spacing(write_series, thickness, measured):
    stack = only_stack(write_series(regular_planes(slices=6, slice_spacing=4.8), slice_thickness_mm=thickness))
    found = finding(stack, FindingCode.THICKNESS_NE_SPACING)
    assert found.measured == pytest.approx(measured, abs=1e-6)
    assert found.severity is Severity.INFO
    assert stack.geometry.spacing[2] == pytest.approx(4.8, abs=1e-6)
    assert ("gap" in found.message) == (measured > 0)


def test_spacing_tag_mismatch(write_series):
    stack = only_stack(write_series(regular_planes(slices=6, slice_spacing=4.8), spacing_between_slices_mm=4.0))
    found = finding(stack, FindingCode.SPACING_TAG_MISMATCH)
    assert found.measured == pytest.approx(0.8, abs=1e-6)
    assert stack.geometry.spacing[2] == pytest.approx(4.8, abs=1e-6)


def test_corner_check_catches_pixel_spacing_drift(write_series):
    planes = regular_planes(slices=6, rows=64, columns=64)
    planes[3] = replace(planes[3], pixel_spacing=(1.0, 1.00004))  # same group (rounded), corners 2.5 um apart
    stack = only_stack(write_series(planes))
    found = finding(stack, FindingCode.CORNERS_MISMATCH)
    assert found.measured == pytest.approx(63 * 0.00004, rel=1e-3)
    assert found.tolerance == 1e-3


def test_single_slice_spacing_from_tag(write_series):
    stack = only_stack(write_series(regular_planes(slices=1), slice_thickness_mm=5.0))
    assert finding(stack, FindingCode.SINGLE_SLICE).measured == 5.0
    assert stack.geometry.spacing[2] == 5.0


def test_oblique_stack_geometry_and_corners(write_series):
    angle = math.radians(17.0)
    oblique = (1.0, 0.0, 0.0, 0.0, math.cos(angle), -math.sin(angle))
    stack = only_stack(
        write_series(regular_planes(slices=9, orientation=oblique, slice_spacing=3.3, origin=(1.0, 2.0, 3.0)))
    )
    normal = np.cross(oblique[:3], oblique[3:])
    np.testing.assert_allclose(stack.geometry.lps_from_ijk[:3, 2], 3.3 * normal, atol=1e-6)
    assert not codes(stack) & GEOMETRY_CODES


def test_resampling_a_tilted_stack_moves_each_slice_in_plane(write_series):
    spacing, shift = 3.0, 0.4  # each slice sits 0.4 mm further along +y (the column direction)
    planes = [
        replace(p, image_position=(p.image_position[0], p.image_position[1] + k * shift, p.image_position[2]))
        for k, p in enumerate(regular_planes(rows=12, columns=6, slices=6, slice_spacing=spacing))
    ]
    folder = write_series(planes, modality="CT")
    stack = only_stack(folder, irregular="resample")
    assert FindingCode.STACK_RESAMPLED in codes(stack)
    volume = trueshape.load(folder, irregular="resample")
    # true slice k holds k*1000 + row*100 + column with row = y - k*shift: linear, so interpolation is exact
    i, j, k = np.meshgrid(np.arange(6), np.arange(12), np.arange(6), indexing="ij")
    expected = k * 1000 + (j - k * shift) * 100 + i
    inside = (j - k * shift) >= 0  # rows pulled from beyond the first row are clamped at the border
    np.testing.assert_allclose(volume.array[inside], expected[inside], atol=1e-3)


def test_a_time_series_across_midnight_keeps_its_order(write_series):
    planes = []
    for t, date, time in ((1, "20240101", "235958"), (2, "20240102", "000003"), (3, "20240102", "000008")):
        for plane in regular_planes(slices=4):
            stamps = {"AcquisitionDate": date, "AcquisitionTime": time, "ContentDate": date, "ContentTime": time}
            planes.append(replace(plane, pixels=(plane.pixels + 10000 * t).astype(np.uint16), overrides=stamps))
    volume = trueshape.load(write_series(planes))
    assert volume.array.shape[3] == 3
    assert [int(volume.array[0, 0, 0, t]) // 10000 for t in range(3)] == [1, 2, 3]


def test_resampling_a_tilted_stack_leaves_never_acquired_voxels_empty(write_series):
    # Slice k is shifted by k whole rows (1 mm) along the column direction: the resampled grid holds, at
    # slice k, rows that slice k never acquired (they must be 0, as ITK resamples, not copies of its edge).
    planes = [
        replace(
            plane,
            image_position=tuple(np.asarray(plane.image_position) + np.array([0.0, k, 0.0])),
            pixels=(plane.pixels * 0 + 100 * (k + 1) + np.arange(plane.pixels.shape[0])[:, None]).astype(np.uint16),
        )
        for k, plane in enumerate(regular_planes(rows=8, slices=4))
    ]
    volume = trueshape.load(write_series(planes), irregular="resample", validation="ignore")
    values = np.asarray(volume.array)
    j0 = round(float(volume.geometry.lps_to_index(np.array([[0.0, 0.0, 0.0]]))[0, 1]))
    for k in range(4):
        row_of = {j0 + k + r: 100 * (k + 1) + r for r in range(8)}  # grid row -> source row value
        for j in range(values.shape[1]):
            expected = row_of.get(j, 0)
            assert np.allclose(values[:, j, k], expected), (k, j, values[0, j, k], expected)


def test_repeats_that_no_tag_tells_apart_are_a_warned_time_axis(write_series):
    planes = regular_planes(slices=4)
    stamps = {"AcquisitionNumber": 1, "AcquisitionTime": "101010", "AcquisitionDate": "20240101"}
    repeated = [replace(p, overrides=stamps) for p in planes] + [replace(p, overrides=stamps) for p in planes]
    stack = trueshape.inspect(write_series(repeated)).stacks[0]
    assert stack.shape[3] == 2
    warned = [f for f in stack.findings if f.code is FindingCode.POSITIONS_DUPLICATED]
    assert warned and warned[0].severity is Severity.WARNING and "no time, echo or acquisition tag" in warned[0].message
    timed = [replace(p, overrides={**stamps, "AcquisitionNumber": t + 1}) for t in range(2) for p in planes]
    clean = trueshape.inspect(write_series(timed)).stacks[0]
    assert clean.shape[3] == 2 and not [f for f in clean.findings if f.code is FindingCode.POSITIONS_DUPLICATED]


def test_a_slow_drift_of_slice_positions_is_named_as_such(write_series):
    planes = regular_planes(slices=41)
    gaps = [0.015] * 20 + [-0.015] * 20  # every gap within tolerance of 2 mm; positions drift by up to 0.3 mm
    shifts = np.concatenate([[0.0], np.cumsum(gaps)])
    drifted = [
        replace(p, image_position=tuple(np.asarray(p.image_position) + np.array([0.0, 0.0, s])))
        for p, s in zip(planes, shifts, strict=True)
    ]
    stack = trueshape.inspect(write_series(drifted)).stacks[0]
    mismatch = [f for f in stack.findings if f.code is FindingCode.CORNERS_MISMATCH]
    assert mismatch and "slice positions drift from the regular spacing by up to 0.3" in mismatch[0].message


def test_a_reused_uid_at_another_position_is_not_a_copy(write_series):
    import pydicom

    folder = write_series(regular_planes(slices=10, slice_spacing=3.0))
    for path in sorted(folder.iterdir())[5:]:  # an anonymiser gave the last five slices one UID
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
        ds.save_as(path)
    stack = only_stack(folder)
    assert stack.shape == (10, 8, 10)  # not 6 slices ending at 15 mm
    assert finding(stack, FindingCode.UID_REUSED).measured == 4.0
    assert FindingCode.POSITIONS_DUPLICATED not in codes(stack)


def test_cardiac_phases_are_ordered_by_trigger_time_and_dates_may_carry_a_utc_offset(write_series):
    from trueshape.dicom._headers import _seconds

    planes = [
        replace(p, overrides={"TriggerTime": 100.0 * phase, "InstanceNumber": 100 - (phase * 5 + k)})
        for phase in range(3)
        for k, p in enumerate(regular_planes(slices=5))
    ]
    stack = only_stack(write_series(planes))
    assert stack.shape == (10, 8, 5, 3)
    assert FindingCode.POSITIONS_DUPLICATED not in codes(stack)
    assert [f.trigger_time_ms for f in stack.layout.slices[0]] == [0.0, 100.0, 200.0]
    assert _seconds("20181022083634.295000+0100") == pytest.approx(_seconds("20181022073634.295000"))


def test_jittering_trigger_times_do_not_reorder_numbered_volumes(write_series):
    rng = np.random.default_rng(4)
    planes = [
        replace(
            p,
            pixels=np.full_like(p.pixels, 100 * volume + k),
            overrides={"AcquisitionNumber": volume + 1, "TriggerTime": float(rng.uniform(200, 400))},
        )
        for volume in range(3)
        for k, p in enumerate(regular_planes(slices=4))
    ]
    stack = only_stack(write_series(planes))
    values = trueshape.geometry.load_stack(stack).array
    assert [[int(values[0, 0, k, t]) for t in range(3)] for k in range(4)] == [[k, 100 + k, 200 + k] for k in range(4)]


def test_a_re_exported_copy_with_rounded_positions_is_still_a_copy(write_series, tmp_path):
    import pydicom

    folder = write_series(regular_planes(slices=4, origin=(0.123456, -7.654321, 3.333333)))
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [round(float(v), 2) for v in ds.ImagePositionPatient]
        ds.save_as(folder / f"copy_{path.name}")
    stack = only_stack(folder)
    assert stack.shape == (10, 8, 4)
    assert finding(stack, FindingCode.POSITIONS_DUPLICATED).measured == 4.0
    assert FindingCode.UID_REUSED not in codes(stack)
