"""`trueshape correct` and `trueshape demo` through the command line."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from trueshape.cli import app
from trueshape.dicom import DistortionState
from trueshape.gnl import SYN_AS, format_siemens_grad
from trueshape.synth import Acquisition, FemurPhantom, Plane, write_session

runner = CliRunner()


def test_correct_writes_volume_field_transform_and_sidecar(tmp_path):
    phantom = FemurPhantom()
    acquisition = Acquisition(plane=Plane.CORONAL, fov_mm=(120.0, 120.0), matrix=(40, 40), slices=12,
                              slice_thickness_mm=4.0, centre_lps=(95.0, 0.0, 0.0), isocentre_lps=(0.0, 0.0, -150.0),
                              distortion_state=DistortionState.IN_PLANE_2D, in_plane_samples=1, slice_samples=1,
                              series_number=7, description="cor")
    write_session(tmp_path / "s", phantom, SYN_AS, (acquisition,))
    coil = tmp_path / "SYN-AS.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    result = runner.invoke(app, ["correct", f"{tmp_path / 's' / 'dicom'}#7", "--coef", str(coil),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["7_cor_corrected.json", "7_cor_corrected.nii.gz", "7_cor_residual.h5",
                     "7_cor_residual_field.nii.gz"]
    sidecar = json.loads((tmp_path / "out" / "7_cor_corrected.json").read_text())
    assert sidecar["correction"]["mode"] == "through-plane"
    assert sidecar["coil"] == "SYN-AS"
    assert any("ImaRelTablePosition (0019,1014)" in a for a in sidecar["correction"]["assumptions"])
    field = nib.load(tmp_path / "out" / "7_cor_residual_field.nii.gz").get_fdata()
    # DIS2D coronal: only the through-plane (AP) component remains: RAS components x, z are zero
    assert np.abs(field[..., 0, 1]).max() > 0.5
    assert np.abs(field[..., 0, [0, 2]]).max() < 1e-6
    again = runner.invoke(app, ["correct", f"{tmp_path / 's' / 'dicom'}#7", "--coef", str(coil),
                                "--out", str(tmp_path / "out")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_correct_refuses_unknown_state_with_advice(tmp_path, write_series):
    from trueshape.synth import regular_planes

    folder = write_series(regular_planes(slices=4), image_type=("ORIGINAL", "PRIMARY", "M"))
    coil = tmp_path / "coil.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    result = runner.invoke(app, ["correct", str(folder), "--coef", str(coil), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "UNKNOWN" in result.output and "Traceback" not in result.output
    forced = runner.invoke(app, ["correct", str(folder), "--coef", str(coil), "--out", str(tmp_path / "o"),
                                 "--state", "ND"])
    assert forced.exit_code == 0, forced.output


def test_demo_quick_tells_the_story(tmp_path):
    result = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--quick"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "DISTORTION_2D_ONLY" in text and "FAR_FROM_ISOCENTRE" in text
    assert "178 mm from the isocentre" in text
    assert "appears as 40.3 mm (-6.2%)" in text
    assert "Not the loader" in text and "Cause 2" in text
    assert (tmp_path / "demo" / "corrected" / "3_cor_t1_widefov_dis2d_residual.h5").exists()
