"""The acquisition transform written as an ITK .h5 puts every slice back where its header says (SimpleITK)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

import trueshape
from trueshape.io import read_itk_displacement_field
from trueshape.synth import regular_planes


def _resample_at_true_slices(volume_path, transform_path, planes):
    image = sitk.ReadImage(str(volume_path), sitk.sitkFloat64)
    transform = sitk.ReadTransform(str(transform_path))
    values = []
    for plane in planes:
        # a reference grid of one slice at the true (header) position of that slice
        reference = sitk.Image(plane.pixels.shape[1], plane.pixels.shape[0], 1, sitk.sitkFloat64)
        reference.SetOrigin(tuple(float(v) for v in plane.image_position))
        reference.SetSpacing((plane.pixel_spacing[1], plane.pixel_spacing[0], 1.0))
        row, column = np.array(plane.image_orientation[:3]), np.array(plane.image_orientation[3:])
        reference.SetDirection(tuple(np.column_stack([row, column, np.cross(row, column)]).ravel()))
        resampled = sitk.Resample(image, reference, transform, sitk.sitkLinear, -1.0)
        values.append(sitk.GetArrayFromImage(resampled)[0])
    return values


@pytest.mark.parametrize("case", ["missing", "tilt"])
def test_h5_transform_restores_true_slice_positions(write_series, tmp_path, case):
    planes = regular_planes(rows=12, columns=16, slices=14, slice_spacing=2.0, pixel_spacing=(1.0, 1.0))
    if case == "missing":
        del planes[5]
        del planes[9]
    else:
        shift = math.tan(math.radians(15)) * 2.0
        planes = [
            replace(p, image_position=(p.image_position[0], p.image_position[1] + k * shift, p.image_position[2]))
            for k, p in enumerate(planes)
        ]
    folder = write_series(planes)
    result = trueshape.convert(folder, tmp_path / "out")
    assert result.ok, result.errors
    volume_path = next(p for p in result.written if p.name.endswith(".nii.gz"))
    transform_path = next(p for p in result.written if p.name.endswith("_acquisition.h5"))
    sidecar = json.loads(next(p for p in result.written if p.suffix == ".json").read_text())
    assert sidecar["acquisition_transform_file"] == transform_path.name
    field = read_itk_displacement_field(transform_path)
    assert field.max_norm_mm() > 0.5
    for plane, resampled in zip(planes, _resample_at_true_slices(volume_path, transform_path, planes), strict=True):
        inner = (slice(1, -1), slice(1, -1))  # away from the in-plane border
        np.testing.assert_allclose(resampled[inner], plane.pixels[inner].astype(float), atol=1e-6)
