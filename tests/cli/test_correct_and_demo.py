"""`trueshape correct` and `trueshape demo` through the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from tests.conftest import write_coronal_session
from typer.testing import CliRunner

import trueshape
from trueshape.cli import app
from trueshape.dicom import DistortionState
from trueshape.gnl import SYN_AS, format_siemens_grad
from trueshape.synth import Acquisition, FemurPhantom, Plane, write_session

runner = CliRunner()


def test_correct_writes_volume_field_transform_and_sidecar(tmp_path):
    phantom = FemurPhantom()
    acquisition = Acquisition(
        plane=Plane.CORONAL,
        fov_mm=(120.0, 120.0),
        matrix=(40, 40),
        slices=12,
        slice_thickness_mm=4.0,
        centre_lps=(95.0, 0.0, 0.0),
        isocentre_lps=(0.0, 0.0, -150.0),
        distortion_state=DistortionState.IN_PLANE_2D,
        in_plane_samples=1,
        slice_samples=1,
        series_number=7,
        description="cor",
    )
    write_session(tmp_path / "s", phantom, SYN_AS, (acquisition,))
    coil = tmp_path / "SYN-AS.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    result = runner.invoke(
        app, ["correct", f"{tmp_path / 's' / 'dicom'}#7", "--coef", str(coil), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "7_cor_corrected.json",
        "7_cor_corrected.nii.gz",
        "7_cor_residual.h5",
        "7_cor_residual_field.nii.gz",
    ]
    sidecar = json.loads((tmp_path / "out" / "7_cor_corrected.json").read_text())
    assert sidecar["correction"]["mode"] == "through-plane"
    assert sidecar["coil"] == "SYN-AS"
    # The isocentre was read from the headers, not assumed; the output says which is which.
    assert any("ImaRelTablePosition (0019,1014)" in a for a in sidecar["correction"]["read_from_headers"])
    assert sidecar["correction"]["assumptions"] == []
    text = " ".join(result.output.split())
    assert "read from headers: isocentre: table offset (0, 0, -150) mm from ImaRelTablePosition (0019,1014)" in text
    assert "assumed:" not in text
    field = nib.load(tmp_path / "out" / "7_cor_residual_field.nii.gz").get_fdata()
    # DIS2D coronal: only the through-plane (AP) component remains: LPS components x, z are zero
    assert np.abs(field[..., 0, 1]).max() > 0.5
    assert np.abs(field[..., 0, [0, 2]]).max() < 1e-6
    again = runner.invoke(
        app, ["correct", f"{tmp_path / 's' / 'dicom'}#7", "--coef", str(coil), "--out", str(tmp_path / "out")]
    )
    assert again.exit_code == 2 and "already exists" in again.output


def test_correct_refuses_unknown_state_with_advice(tmp_path, write_series):
    from trueshape.synth import regular_planes

    folder = write_series(regular_planes(slices=4), image_type=("ORIGINAL", "PRIMARY", "M"))
    coil = tmp_path / "coil.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    result = runner.invoke(app, ["correct", str(folder), "--coef", str(coil), "--out", str(tmp_path / "o")])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"error: {folder} (" in message and "the headers do not say what the scanner corrected" in message
    assert "give --state ND, DIS2D or DIS3D" in message
    forced = runner.invoke(
        app, ["correct", str(folder), "--coef", str(coil), "--out", str(tmp_path / "o"), "--state", "ND"]
    )
    assert forced.exit_code == 0, forced.output


def test_demo_quick_tells_the_story(tmp_path):
    result = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--quick"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "DISTORTION_2D_ONLY" in text and "FAR_FROM_ISOCENTRE" in text
    assert "178 mm from the isocentre" in text
    assert "appears as 40.3 mm (-6.2%)" in text
    # Flattened: the front edge appears moved back and the back edge forward, each by half the loss.
    assert "front edge moves 1.33 mm inward, back edge 1.33 mm inward" in text
    assert "Not the loader" in text and "Cause 2" in text
    # The next command, ready to paste, names the demo's own coil file.
    assert (
        f"Next: trueshape correct {tmp_path / 'demo' / 'session' / 'dicom'}#3 --coef {tmp_path / 'demo'}/SYN-AS.grad"
        in text
    )
    # Front-back / left-right of each head, row by row: the reference, as acquired, corrected, learned model. The
    # quick demo's corrected ratio is the full demo's (1.002) within 0.5%.
    ratios = [float(r) for r in re.findall(r"│ (\d\.\d{3})\s+│\s*$", result.output, flags=re.MULTILINE)]
    assert len(ratios) == 8, result.output
    assert all(abs(r - 1.002) <= 0.005 for r in ratios[4:6]), ratios
    assert all(0.935 <= r <= 0.945 for r in ratios[2:4]), ratios
    # The second half: no coefficient file, a model learned from two other subjects' images, which flattens
    # the heads as the coil does to within 0.2 mm of their 43 mm.
    assert "4. No coefficient file?" in text and "reference: 2_ax_t1_hips_dis3d (DIS3D" in text
    learned = re.findall(
        r"the learned model moves its back edge against its front by ([-+]\d+\.\d+) mm, the coil "
        r"by ([-+]\d+\.\d+) mm",
        text,
    )
    assert len(learned) == 2 and all(abs(float(a) - float(b)) < 0.2 for a, b in learned), learned
    assert (tmp_path / "demo" / "learned" / "model.json").is_file()
    # It ends with the page that shows it all (tests/reporting/test_browser.py opens one in a browser).
    assert text.endswith(f"Report (open it in a browser): {tmp_path / 'demo' / 'report.html'}")
    assert "femoral head" in (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert (tmp_path / "demo" / "corrected" / "3_cor_t1_widefov_dis2d_residual.h5").exists()
    # The manifest's largest true residual is the one over the image (as the correction measured it).
    manifest = json.loads((tmp_path / "demo" / "session" / "session.json").read_text())
    done = json.loads((tmp_path / "demo" / "corrected" / "3_cor_t1_widefov_dis2d_corrected.json").read_text())
    assert manifest["series"][1]["max_residual_mm"] == pytest.approx(
        done["correction"]["max_displacement_mm"], abs=0.05
    )
    # A rerun with --force replaces the session whole (the earlier run's slices and study do not linger).
    again = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--quick", "--force"])
    assert again.exit_code == 0, again.output
    assert "appears as 40.3 mm (-6.2%)" in " ".join(again.output.split())
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "session").write_text("a file where the session folder goes")
    refused = runner.invoke(app, ["demo", str(blocked), "--quick"])
    assert refused.exit_code == 2 and "session: is a file, not a folder" in refused.output, refused.output


def _coronal_session(root):
    """A 6-slice DIS2D coronal series (table moved) and the SYN-AS coil; return (series folder, coil file)."""
    dicom, coil = write_coronal_session(root, matrix=(16, 16), slices=6)
    return dicom / "04_cor", coil


def _edit_first_file(folder, change):
    path = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)
    return path


def _run(*arguments):
    result = runner.invoke(app, [str(a) for a in arguments])
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def _table(values):
    return lambda ds: ds.__setitem__((0x0019, 0x1014), pydicom.DataElement((0x0019, 0x1014), "DS", values))


def test_slices_that_disagree_on_the_scanner_frame_are_refused_unless_settled(tmp_path):
    for name, change, said, settle in (
        (
            "position",
            lambda ds: setattr(ds, "PatientPosition", "FFS"),
            "5 slices say PatientPosition HFS, 1 slice says PatientPosition FFS (IM00001.dcm), but the slices of one "
            "stack must share one patient position; give --patient-position",
            ["--patient-position", "HFS"],
        ),
        (
            "no_position",
            lambda ds: delattr(ds, "PatientPosition"),
            "1 slice says PatientPosition (none) (IM00001.dcm)",
            ["--patient-position", "HFS"],
        ),
        (
            "table",
            _table([0, 0, -60]),
            "1 slice(s) give another table position than the other 5 ([0.0, 0.0, -120.0] mm), e.g. IM00001.dcm: "
            "[0.0, 0.0, -60.0] mm; the stack's isocentre is not known: give --isocentre",
            ["--isocentre", "0,0,-120"],
        ),
    ):
        folder, coil = _coronal_session(tmp_path / name)
        _edit_first_file(folder, change)
        code, output = _run("correct", folder, "--coef", coil, "--out", tmp_path / name / "o")
        assert code == 2 and f"error: {folder} (4_cor): " in output and said in output, output
        assert not (tmp_path / name / "o").exists()
        code, output = _run("inspect", folder)
        assert "FRAMES_DISAGREE" in output
        (stack,) = trueshape.inspect(folder).stacks
        (disagree,) = [f for f in stack.findings if f.code.value == "FRAMES_DISAGREE"]
        assert [Path(p).name for p in disagree.where] == ["IM00001.dcm"]  # the file that differs
        code, output = _run("correct", folder, "--coef", coil, "--out", tmp_path / name / "o", *settle)
        assert code == 0, output
        # The same stack converted first: its sidecar carries the finding, and correct asks the same.
        assert _run("convert", folder, "--out", tmp_path / name / "nii")[0] == 0
        volume = tmp_path / name / "nii" / "4_cor.nii.gz"
        code, output = _run("correct", volume, "--coef", coil, "--out", tmp_path / name / "v")
        assert code == 2 and "its sidecar says" in output and said in output, output
        code, output = _run("correct", volume, "--coef", coil, "--out", tmp_path / name / "v", *settle)
        assert code == 0, output


def test_table_positions_agree_within_the_tolerance(tmp_path):
    folder, coil = _coronal_session(tmp_path)
    _edit_first_file(folder, _table([0, 0, -120.04]))  # written with other rounding: the same position
    code, output = _run("correct", folder, "--coef", coil, "--out", tmp_path / "o")
    assert code == 0 and "FRAMES_DISAGREE" not in output, output


def test_slices_that_disagree_on_the_distortion_state_are_counted(tmp_path):
    folder, coil = _coronal_session(tmp_path)
    _edit_first_file(folder, lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "M", "ND"]))
    code, output = _run("correct", folder, "--coef", coil, "--out", tmp_path / "o")
    assert code == 2 and "the headers do not say what the scanner corrected (frames disagree)" in output, output
    code, output = _run("inspect", folder)
    assert "5 slices say DIS2D, 1 slice says ND (IM00001.dcm)" in output, output


def test_correct_reports_what_the_loader_found(tmp_path):
    folder, coil = _coronal_session(tmp_path)
    sorted(folder.iterdir())[2].unlink()
    code, output = _run("correct", folder, "--coef", coil, "--out", tmp_path / "o")
    assert code == 0 and "SLICES_MISSING" in output and "STACK_RESAMPLED" in output, output
    assert "ISOCENTRE_ASSUMED" not in output and "LOCALIZER" not in output
    assert "DISTORTION_2D_ONLY" not in output  # what the correction removed is not repeated


def test_out_inside_the_like_series_folder_is_refused(tmp_path):
    series, coil = _coronal_session(tmp_path)
    reference = tmp_path / "reference"
    reference.mkdir()
    for path in series.iterdir():
        (reference / path.name).write_bytes(path.read_bytes())
    result = runner.invoke(
        app,
        [
            "correct",
            str(series),
            "--coef",
            str(coil),
            "--like",
            str(reference),
            "--out",
            str(reference / "corrected"),
            "--format",
            "dicom",
        ],
    )
    assert result.exit_code == 2 and "is inside the DICOM folder" in " ".join(result.output.split()), result.output
    assert sorted(p.name for p in reference.iterdir()) == sorted(p.name for p in series.iterdir())
