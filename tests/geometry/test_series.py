"""Series grouping: stacks by orientation, grid and kind, localizers kept apart, images that cannot be placed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tests.conftest import codes, finding, only_stack

import trueshape
from trueshape.findings import FindingCode, Severity
from trueshape.synth import AXIAL, CORONAL, SAGITTAL, regular_planes


def test_mixed_orientations_become_stacks(write_series):
    axial = regular_planes(slices=8, orientation=AXIAL)
    coronal = regular_planes(slices=6, orientation=CORONAL, origin=(0.0, -10.0, 20.0))
    inspection = trueshape.inspect(write_series(axial + coronal))
    stacks = inspection.stacks
    assert sorted(s.shape[2] for s in stacks) == [6, 8]
    for stack in stacks:
        found = finding(stack, FindingCode.ORIENTATION_MIXED)
        assert found.measured == 2.0
        assert not stack.is_localizer
    coronal_stack = next(s for s in stacks if s.shape[2] == 6)
    np.testing.assert_allclose(coronal_stack.geometry.direction[:, 2], [0, 1, 0], atol=1e-9)  # row x column
    np.testing.assert_allclose(coronal_stack.geometry.origin, [0.0, -10.0, 20.0], atol=1e-6)


@pytest.mark.parametrize("tagged", [True, False])
def test_localizer_never_inflates_the_stack(write_series, tagged):
    axial = regular_planes(slices=20, slice_spacing=0.7)
    overrides = {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]} if tagged else {}
    localizer = replace(regular_planes(slices=1, orientation=SAGITTAL, origin=(5.0, -50, 50))[0], overrides=overrides)
    inspection = trueshape.inspect(write_series([*axial, localizer]))
    main = [s for s in inspection.stacks if not s.is_localizer]
    assert len(main) == 1 and len(inspection.stacks) == 2
    assert main[0].geometry.spacing[2] == pytest.approx(0.7, abs=1e-6)
    assert main[0].shape == (10, 8, 20)
    assert finding(main[0], FindingCode.LOCALIZER_EXCLUDED).measured == 1.0
    assert FindingCode.ORIENTATION_MIXED not in codes(main[0])


def test_missing_geometry_is_reported_and_the_rest_loads(write_series):
    planes = regular_planes(slices=6)
    folder = write_series(planes)
    import pydicom

    victim = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(victim)
    del ds.ImagePositionPatient
    ds.save_as(victim)
    inspection = trueshape.inspect(folder)
    (series,) = inspection.series
    (missing,) = [f for f in series.findings if f.code is FindingCode.GEOMETRY_MISSING]
    assert missing.measured == 1.0 and missing.severity is Severity.ERROR
    assert "ImagePositionPatient (0020,0032)" in missing.message
    assert str(victim) in missing.where
    stack = only_stack(folder)
    assert stack.shape[2] == 5
    assert FindingCode.SLICES_MISSING in codes(stack)


def test_a_slice_written_with_a_slightly_other_orientation_is_not_lost_silently(write_series):
    planes = regular_planes(slices=8)
    row = np.array([np.cos(3e-4), np.sin(3e-4), 0.0])  # rotated 0.017 degrees in-plane: beyond the split tolerance
    planes[7] = replace(planes[7], image_orientation=(*row, *planes[7].image_orientation[3:]))
    inspection = trueshape.inspect(write_series(planes))
    main = max(inspection.stacks, key=lambda stack: stack.shape[2])
    assert main.shape[2] == 7
    excluded = [f for f in main.findings if f.code is FindingCode.LOCALIZER_EXCLUDED]
    assert excluded and excluded[0].severity is Severity.WARNING
    message = excluded[0].message
    assert "differs by only 0.017 degrees" in message and "which the volume now lacks" in message
    # An extra copy beside a slice the stack has is not a lost slice.
    planes = regular_planes(slices=8)
    planes.append(replace(planes[3], image_orientation=(*row, *planes[3].image_orientation[3:])))
    main = max(trueshape.inspect(write_series(planes)).stacks, key=lambda stack: stack.shape[2])
    assert main.shape[2] == 8
    (excluded,) = [f for f in main.findings if f.code is FindingCode.LOCALIZER_EXCLUDED]
    assert "an extra image at a position the stack already has" in excluded.message


def test_image_type_of_one_value_and_vendor_magnitude_phase_tokens(write_series, tmp_path):
    planes = regular_planes(slices=4)
    # One value: pydicom returns a plain string, which must not be read letter by letter.
    localizer = write_series(planes, image_type=("LOCALIZER",))
    inspection = trueshape.inspect(localizer)
    assert [s.is_localizer for s in inspection.stacks] == [True]
    # Philips writes M or P in the fourth value: magnitude and phase are two stacks, not one 4-D volume.
    root = tmp_path / "philips"
    write_series(
        planes,
        root / "m",
        series_number=5,
        image_type=("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"),
        series_instance_uid="1.2.826.0.1.3680043.8.1.5",
    )
    write_series(
        planes,
        root / "p",
        series_number=5,
        image_type=("ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"),
        series_instance_uid="1.2.826.0.1.3680043.8.1.5",
    )
    stacks = trueshape.inspect(root).stacks
    assert sorted(s.shape for s in stacks) == [(10, 8, 4), (10, 8, 4)]


def test_splits_are_explained_and_derived_images_are_not_time_points(write_series, tmp_path):
    import pydicom

    folder = write_series(regular_planes(slices=10))
    odd = sorted(folder.iterdir())[4]
    ds = pydicom.dcmread(odd)
    ds.PixelSpacing = [1.1, 1.1]
    ds.save_as(odd)
    inspection = trueshape.inspect(folder)
    split = [f for s in inspection.stacks for f in s.findings if f.code is FindingCode.SERIES_SPLIT]
    assert split and split[0].severity is Severity.WARNING
    assert "differ in pixel spacing: pixel spacing 1 x 1 mm (9 images); pixel spacing 1.1 x 1.1 mm (1 image)" in (
        split[0].message
    )
    # An MPR written at the acquisition's positions is its own stack, not time point 2.
    root = tmp_path / "derived"
    uid = "1.2.826.0.1.3680043.8.1.77"
    write_series(regular_planes(slices=6), root / "a", series_instance_uid=uid, series_number=3)
    write_series(
        regular_planes(slices=6),
        root / "b",
        series_instance_uid=uid,
        series_number=3,
        image_type=("DERIVED", "SECONDARY", "M", "MPR"),
    )
    assert sorted(s.shape for s in trueshape.inspect(root).stacks) == [(10, 8, 6), (10, 8, 6)]


def test_colour_images_are_named_not_loaded(write_series):
    import pydicom

    folder = write_series(regular_planes(slices=3))
    path = sorted(folder.iterdir())[1]
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = bytes(ds.Rows * ds.Columns * 3)
    ds.save_as(path)
    problems = trueshape.inspect(folder).problems
    assert [p.path for p in problems] == [str(path)]
    assert "colour image (3 samples per pixel, RGB)" in problems[0].message


def test_geometry_missing_gives_each_image_its_own_reason(write_series):
    import pydicom

    folder = write_series(regular_planes(slices=8))
    paths = sorted(folder.iterdir())
    ds = pydicom.dcmread(paths[2])
    del ds.PixelSpacing
    ds.save_as(paths[2])
    ds = pydicom.dcmread(paths[5])
    ds.PixelSpacing = [-1, -1]
    ds.save_as(paths[5])
    (series,) = trueshape.inspect(folder).series
    (missing,) = [f for f in series.findings if f.code is FindingCode.GEOMETRY_MISSING]
    assert f"1 lacks PixelSpacing (0028,0030), e.g. {paths[2]}" in missing.message
    assert f"1 lacks a positive PixelSpacing (0028,0030) (found [-1.0, -1.0]), e.g. {paths[5]}" in missing.message
