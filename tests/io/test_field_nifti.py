"""The field NIfTI is an ITK/ANTs displacement field: ITK reads it as the same transform as the .h5."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from trueshape.correction import correction_interpolant, residual_displacement_field
from trueshape.dicom import DistortionState
from trueshape.geometry import VolumeGeometry
from trueshape.gnl import SYN_AS, MagnetFrame, ResidualField
from trueshape.io import write_field_nifti, write_itk_transform


def test_itk_reads_the_field_nifti_as_the_h5_transform(tmp_path) -> None:
    # An oblique grid, so that a sign or axis mix-up cannot hide in a symmetric direction matrix.
    angle = np.deg2rad(20.0)
    direction = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    grid = VolumeGeometry.from_components(
        shape=(20, 16, 12), origin=(-150.0, -60.0, -100.0), spacing=(12.0, 9.0, 15.0), direction=direction
    )
    residual = ResidualField(SYN_AS, MagnetFrame(isocentre_lps=np.array([5.0, -10.0, 20.0])), DistortionState.NONE)
    field = residual_displacement_field(correction_interpolant(residual, grid, intensity_correction=False))
    nifti = write_field_nifti(field, tmp_path / "field.nii.gz")
    h5 = write_itk_transform(field, tmp_path / "field.h5")

    image = sitk.ReadImage(str(nifti), sitk.sitkVectorFloat64)
    from_nifti = sitk.DisplacementFieldTransform(image)
    from_h5 = sitk.ReadTransform(str(h5))
    rng = np.random.default_rng(3)
    points = grid.index_to_lps(rng.uniform(2, 9, size=(50, 3)))
    a = np.array([from_nifti.TransformPoint(p.tolist()) for p in points])
    b = np.array([from_h5.TransformPoint(p.tolist()) for p in points])
    moved = np.linalg.norm(b - points, axis=1)
    assert moved.max() > 1.0  # the field is not trivially zero here
    assert np.abs(a - b).max() < 1e-4  # mm: the same transform, components LPS
    # and both move points by the exact residual (trilinear between 9-15 mm nodes: within 0.05 mm)
    exact = points + residual.displacement_lps(points)
    assert np.abs(b - exact).max() < 0.05


def test_a_failing_transform_write_is_one_line(tmp_path, monkeypatch, capfd) -> None:
    import os

    import pytest
    import SimpleITK

    from trueshape.errors import OutputError
    from trueshape.geometry import DisplacementField

    def failing(_transform: object, _path: str) -> None:
        os.write(2, b"HDF5-DIAG: Error detected in HDF5 (1.12.1) thread 0:\n  #000: H5Dio.c line 291\n" * 50)
        raise RuntimeError("ITK ERROR: HDF5TransformIOTemplate: H5Dwrite failed")

    monkeypatch.setattr(SimpleITK, "WriteTransform", failing)
    grid = VolumeGeometry.from_components(shape=(4, 4, 4), origin=(0, 0, 0), spacing=(1, 1, 1))
    field = DisplacementField(grid, np.zeros((4, 4, 4, 3)), "zero")
    with pytest.raises(OutputError) as caught:
        write_itk_transform(field, tmp_path / "t.h5")
    assert str(caught.value) == f"{tmp_path / 't.h5'}: writing the transform failed (H5Dwrite failed)"
    assert "HDF5-DIAG" not in capfd.readouterr().err
    assert not list(tmp_path.iterdir())


def test_transforms_are_written_with_stderr_closed(tmp_path) -> None:
    import subprocess
    import sys

    script = (
        "import os, sys; os.close(2); sys.stderr = None\n"
        "import numpy as np\n"
        "from trueshape.geometry import DisplacementField, VolumeGeometry\n"
        "from trueshape.io import write_itk_transform\n"
        "g = VolumeGeometry.from_components(shape=(4, 4, 4), origin=(0, 0, 0), spacing=(1, 1, 1))\n"
        f"write_itk_transform(DisplacementField(g, np.zeros((4, 4, 4, 3)), 'zero'), {str(tmp_path / 't.h5')!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=False, check=False)
    assert done.returncode == 0 and (tmp_path / "t.h5").is_file()
