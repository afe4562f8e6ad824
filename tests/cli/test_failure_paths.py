"""Failure paths a user can hit: each ends in one line naming the problem, exit code 2, nothing half-written."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from tests.conftest import tree_digest
from typer.testing import CliRunner

import trueshape
from trueshape.cli import app
from trueshape.errors import TrueshapeError
from trueshape.findings import FindingCode
from trueshape.gnl import SYN_AS, format_siemens_grad
from trueshape.synth import regular_planes

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def coil(tmp_path):
    path = tmp_path / "SYN-AS.grad"
    path.write_text(format_siemens_grad(SYN_AS))
    return path


def test_bad_choices_are_refused_with_the_valid_ones(write_series, coil, tmp_path):
    folder = write_series(regular_planes(slices=4), image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    for option, value in (("--mode", "sideways"), ("--state", "DIS4D"), ("--patient-position", "SITTING")):
        result = run("correct", folder, "--coef", coil, "--out", tmp_path / "o", option, value)
        assert result.exit_code == 2, option
        assert "Invalid value" in result.output and value in result.output
    assert run("correct", folder, "--coef", coil, "--out", tmp_path / "o", "--state", "dis2d").exit_code == 0
    with pytest.raises(TrueshapeError, match="--mode 'sideways' is not one of: auto, full, through-plane"):
        trueshape.api.correct(folder, tmp_path / "o2", coefficients=coil, mode="sideways")


def test_unwritable_output_is_one_line(write_series, tmp_path):
    folder = write_series(regular_planes(slices=3))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run("convert", folder, "--out", blocker)
    assert result.exit_code == 2
    assert f"error: {blocker}: is a file, not a folder: choose another --out" in " ".join(result.output.split())


def test_series_sharing_number_and_description_get_distinct_outputs(write_series, tmp_path):
    first = write_series(regular_planes(slices=3), folder=tmp_path / "in" / "a", series_number=5)
    write_series(regular_planes(slices=4), folder=tmp_path / "in" / "b", series_number=5)
    result = trueshape.convert(first.parent, tmp_path / "out")
    assert result.ok, result.errors
    volumes = sorted(p.name for p in result.written if p.name.endswith(".nii.gz"))
    assert len(volumes) == 2 and len(set(volumes)) == 2
    assert all(name.startswith("5_synthetic_") for name in volumes)
    selectors = {s.selector for s in result.stacks}
    assert len(selectors) == 2 and all(":" in s and not s.startswith("5:") for s in selectors)
    assert trueshape.load(f"{first.parent}#{result.stacks[0].selector}").array.shape[2] in (3, 4)


def test_no_output_is_written_unless_all_can_be(write_series, tmp_path):
    folder = write_series(regular_planes(slices=3))
    out = tmp_path / "out"
    out.mkdir()
    (out / "1_synthetic.json").write_text("{}")  # an earlier sidecar without its volume
    result = trueshape.convert(folder, out)
    assert not result.ok and "1_synthetic.json: already exists" in result.errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["1_synthetic.json"]


def test_correct_refuses_off_grid_slices_unless_resampled(write_series, coil, tmp_path):
    planes = regular_planes(slices=8, slice_spacing=3.0)
    del planes[3]
    folder = write_series(planes, image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    before = tree_digest(folder)
    refused = run("correct", folder, "--coef", coil, "--out", tmp_path / "a", "--irregular", "fail")
    assert refused.exit_code == 2 and "1 slice(s) missing" in refused.output, refused.output
    with pytest.raises(TrueshapeError, match=r"off a regular grid by up to .*--irregular resample"):
        trueshape.api.correct(folder, tmp_path / "a", coefficients=coil, irregular="warn")
    assert not (tmp_path / "a").exists()
    resampled = run("correct", folder, "--coef", coil, "--out", tmp_path / "b")
    assert resampled.exit_code == 0, resampled.output
    assert tree_digest(folder) == before
    # The same stack converted with --irregular warn: its NIfTI is off-grid too, and says so.
    assert run("convert", folder, "--out", tmp_path / "nii", "--irregular", "warn").exit_code == 0
    (converted,) = (tmp_path / "nii").glob("*.nii.gz")
    refused = run("correct", converted, "--coef", coil, "--out", tmp_path / "c")
    assert refused.exit_code == 2 and "off its regular grid by up to 1.50 mm" in refused.output, refused.output
    assert "--irregular resample" in refused.output and not (tmp_path / "c").exists()
    assert run("convert", folder, "--out", tmp_path / "nii2", "--irregular", "resample").exit_code == 0
    (converted,) = (tmp_path / "nii2").glob("*.nii.gz")
    sidecar = json.loads(converted.with_name(converted.name[:-7] + ".json").read_text())
    assert sidecar["has_acquisition_transform"] is False
    corrected = run("correct", converted, "--coef", coil, "--out", tmp_path / "d")
    assert corrected.exit_code == 0, corrected.output


def test_policy_failure_keeps_the_real_code(write_series):
    shift = math.tan(math.radians(10)) * 2.0
    planes = [
        replace(p, image_position=(p.image_position[0], p.image_position[1] + k * shift, p.image_position[2]))
        for k, p in enumerate(regular_planes(slices=6))
    ]
    inspection = trueshape.inspect(write_series(planes, modality="CT"), irregular="fail")
    (series,) = inspection.series
    assert [f.code for f in series.findings] == [FindingCode.GANTRY_TILT]
    assert series.findings[0].severity.value == "error"
    assert inspection.errors and "GantryDetectorTilt" not in inspection.errors[0]


def test_parallel_orientation_vectors_are_missing_geometry_not_a_crash(write_series):
    planes = regular_planes(slices=5)
    planes[2] = replace(planes[2], image_orientation=(1.0, 0.0, 0.0, 1.0, 0.0, 0.0))
    inspection = trueshape.inspect(write_series(planes))
    (series,) = inspection.series
    (missing,) = series.findings
    assert missing.code is FindingCode.GEOMETRY_MISSING
    assert "a zero or parallel row/column vector" in missing.message and missing.where[0].endswith("00003.dcm")
    assert [s.shape[2] for s in series.stacks] == [4]


def test_an_interrupted_convert_leaves_no_volume_without_its_sidecar(write_series, tmp_path, monkeypatch):
    import trueshape.io._stack_files

    folder = write_series(regular_planes(slices=3))

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trueshape.io._stack_files, "write_json", interrupted)  # the volume is written, then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        trueshape.convert(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.undo()
    result = trueshape.convert(folder, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in result.written)


def test_a_full_disk_is_said_before_the_work_and_while_writing(write_series, tmp_path, monkeypatch):
    import shutil

    import SimpleITK as sitk

    import trueshape.io._outputs

    folder = write_series(regular_planes(slices=4))
    coil = tmp_path / "c.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    real_usage = shutil.disk_usage
    monkeypatch.setattr(trueshape.io._outputs.shutil, "disk_usage", lambda path: real_usage(path)._replace(free=2**19))
    result = run("correct", folder, "--coef", coil, "--state", "ND", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "and the disk has 0 MB free" in result.output and not (tmp_path / "o").exists()
    monkeypatch.undo()

    def full_disk(*_args):
        raise RuntimeError("HDF5 error ... errno = 28, error message = 'No space left on device', buf = 0x0")

    monkeypatch.setattr(sitk, "WriteTransform", full_disk)
    result = run("correct", folder, "--coef", coil, "--state", "ND", "--out", tmp_path / "o")
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    assert f"error: {tmp_path / 'o'}/" in message
    assert "_residual.h5: writing the transform failed (No space left on device)" in message


def test_an_unexpected_error_is_one_line_unless_asked(write_series, monkeypatch, capsys):
    import trueshape.api
    import trueshape.cli

    folder = write_series(regular_planes(slices=3))

    def broken(*_args, **_kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(trueshape.api, "inspect", broken)
    monkeypatch.setattr("sys.argv", ["trueshape", "inspect", str(folder)])
    # main() also sets process-wide state (a SIGTERM handler, a frozen heap) that must not outlive the test
    monkeypatch.setattr(trueshape.cli.signal, "signal", lambda *_args: None)
    monkeypatch.setattr(trueshape.cli.gc, "freeze", lambda: None)
    monkeypatch.delenv("TRUESHAPE_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as stopped:
        trueshape.cli.main()
    assert stopped.value.code == 1
    printed = capsys.readouterr().err
    assert "Traceback" not in printed and " ".join(printed.split()).startswith("error: unexpected ValueError: boom (a")
    monkeypatch.setenv("TRUESHAPE_TRACEBACK", "1")
    with pytest.raises(ValueError, match="boom"):
        trueshape.cli.main()


def test_output_names_the_file_system_refuses_and_a_demo_file(write_series, tmp_path):
    folder = write_series(regular_planes(slices=3))
    long_name = tmp_path / ("a" * 300)
    result = run("convert", folder, "--out", long_name)
    assert result.exit_code == 2 and "cannot write here (File name too long)" in " ".join(result.output.split())
    (tmp_path / "a_file").write_text("mine")
    result = run("demo", tmp_path / "a_file", "--quick")
    assert result.exit_code == 2 and "a_file: is a file, not a folder" in " ".join(result.output.split())
    assert (tmp_path / "a_file").read_text() == "mine"


def test_outputs_never_go_into_the_dicom_folder_being_read(write_series, tmp_path):
    folder = write_series(regular_planes(slices=3))
    digest = tree_digest(folder)
    coil = tmp_path / "c.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    for command in (["convert", folder], ["correct", folder, "--coef", coil, "--state", "ND"]):
        for out in (folder, folder / "derived"):
            result = run(*command, "--out", out)
            assert result.exit_code == 2, result.output
            assert f"is inside the DICOM folder {folder} being read" in " ".join(result.output.split())
    assert tree_digest(folder) == digest


def test_series_whose_file_names_would_coincide_get_distinct_labels(write_series, tmp_path):
    # "T1 (ax)" and "t1 [ax]" both become 5_T1_ax (on a case-insensitive disk); two copies of one series
    # share number and description outright. Each must keep its own files.
    root = tmp_path / "dicom"
    for index, description in enumerate(("T1 (ax)", "t1 [ax]", "copy", "copy")):
        planes = [replace(p, pixels=np.full_like(p.pixels, 100 * (index + 1))) for p in regular_planes(slices=3)]
        write_series(planes, root / f"s{index}", series_number=5, series_description=description)
    result = run("convert", root, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    volumes = sorted((tmp_path / "out").glob("*.nii.gz"))
    assert len(volumes) == 4, [p.name for p in volumes]
    assert len({p.name.casefold() for p in volumes}) == 4
    means = sorted(round(float(nib.load(p).get_fdata().max())) for p in volumes)
    assert means == [100, 200, 300, 400]


def test_force_removes_what_an_earlier_run_with_other_options_wrote(write_series, coil, tmp_path):
    planes = regular_planes(slices=8, slice_spacing=3.0)
    del planes[3]
    folder = write_series(planes, image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    out = tmp_path / "out"
    assert run("convert", folder, "--out", out, "--irregular", "warn").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "1_synthetic.json",
        "1_synthetic.nii.gz",
        "1_synthetic_acquisition.h5",
    ]
    again = run("convert", folder, "--out", out, "--irregular", "resample", "--format", "nrrd", "--force")
    assert again.exit_code == 0, again.output
    # No stale transform beside the resampled volume (it would move the anatomy a second time).
    assert sorted(p.name for p in out.iterdir()) == ["1_synthetic.json", "1_synthetic.nrrd"]
    corrected = tmp_path / "corrected"
    assert (
        run(
            "correct", out / "1_synthetic.nrrd", "--coef", coil, "--out", corrected, "--state", "ND", "--format", "nii"
        ).exit_code
        == 0
    )
    again = run(
        "correct",
        out / "1_synthetic.nrrd",
        "--coef",
        coil,
        "--out",
        corrected,
        "--state",
        "ND",
        "--format",
        "nrrd",
        "--force",
    )
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in corrected.iterdir()) == [
        "1_synthetic_corrected.json",
        "1_synthetic_corrected.nrrd",
        "1_synthetic_residual.h5",
        "1_synthetic_residual_field.nii.gz",
    ]


def test_correct_warns_when_a_single_slice_loses_voxels(write_series, coil, tmp_path):
    planes = regular_planes(
        rows=80,
        columns=80,
        slices=1,
        origin=(-197.5, 40.0, 197.5),
        orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        pixel_spacing=(5.0, 5.0),
    )
    folder = write_series(planes, image_type=("ORIGINAL", "PRIMARY", "M", "DIS2D"), slice_thickness_mm=5.0)
    result = run("correct", folder, "--coef", coil, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "OUTSIDE_ACQUIRED_VOLUME" in text and "a single slice is 5 mm thick" in text, text
    (sidecar,) = (tmp_path / "out").glob("*_corrected.json")
    written = json.loads(sidecar.read_text())
    assert 0.1 < written["correction"]["outside_fraction"] < 0.4
    assert [f["code"] for f in written["findings"]] == ["OUTSIDE_ACQUIRED_VOLUME"]


def test_force_never_removes_files_trueshape_did_not_write_or_reads(write_series, coil, tmp_path):
    folder = write_series(regular_planes(slices=6), image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "1_synthetic.nii.gz").write_bytes(b"a dcm2niix volume of the same name")
    assert run("convert", folder, "--out", out, "--format", "nrrd").exit_code == 0  # not in the way: no --force
    assert run("convert", folder, "--out", out, "--format", "nrrd", "--force").exit_code == 0
    assert (out / "1_synthetic.nii.gz").read_bytes() == b"a dcm2niix volume of the same name"
    # A --like grid that an earlier correction wrote is read, not removed, by a forced correction.
    first = run("correct", folder, "--coef", coil, "--out", tmp_path / "c", "--format", "dicom")
    assert first.exit_code == 0, first.output
    like = tmp_path / "c" / "1_synthetic_corrected"
    before = tree_digest(like)
    again = run("correct", folder, "--coef", coil, "--out", tmp_path / "c", "--like", like, "--force")
    assert again.exit_code == 0, again.output
    assert tree_digest(like) == before


def test_force_keeps_inputs_a_sidecar_lists_and_clears_an_older_runs_outputs(write_series, coil, tmp_path):
    folder = write_series(regular_planes(slices=6), image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    out = tmp_path / "out"
    assert run("convert", folder, "--out", out, "--format", "nii").exit_code == 0
    volume, sidecar = out / "1_synthetic.nii", out / "1_synthetic.json"
    corrected = tmp_path / "corrected"
    assert run("correct", volume, "--coef", coil, "--out", corrected).exit_code == 0
    written = corrected / "1_synthetic_corrected.json"
    data = json.loads(written.read_text())
    # A hand-edited sidecar that lists the input's own sidecar, or an older one that lists nothing.
    data["outputs"] = [*data["outputs"], "../out/1_synthetic.json", "1_synthetic.json"]
    (corrected / "1_synthetic.json").write_text("{}")
    written.write_text(json.dumps(data))
    again = run("correct", volume, "--coef", coil, "--out", corrected, "--format", "nrrd", "--force")
    assert again.exit_code == 0, again.output
    assert sidecar.is_file() and (corrected / "1_synthetic.json").is_file()
    assert not (corrected / "1_synthetic_corrected.nii.gz").exists()
    data = json.loads(written.read_text())
    del data["outputs"]  # as trueshape wrote it before it listed its outputs
    written.write_text(json.dumps(data))
    third = run("correct", volume, "--coef", coil, "--out", corrected, "--format", "nii", "--force")
    assert third.exit_code == 0, third.output
    assert sorted(p.name for p in corrected.iterdir()) == [
        "1_synthetic.json",
        "1_synthetic_corrected.json",
        "1_synthetic_corrected.nii",
        "1_synthetic_residual.h5",
        "1_synthetic_residual_field.nii",
    ]


def test_the_console_script_keeps_the_exit_status_and_every_line(write_series, tmp_path):
    """The script leaves without the interpreter's teardown (trueshape.cli.run): nothing printed is lost."""
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(sys.executable).with_name("trueshape"))
    folder = write_series(regular_planes(slices=3))
    done = subprocess.run([script, "inspect", "--json", str(folder)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == ""
    assert [len(s["stacks"]) for s in json.loads(done.stdout)["series"]] == [1]  # the whole document arrived
    missing = tmp_path / "missing"
    refused = subprocess.run([script, "inspect", str(missing)], capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert " ".join(refused.stderr.split()) == f"error: {missing}: no such file or folder"


@pytest.mark.parametrize(("code", "status", "printed"), [(None, 0, ""), (2, 2, ""), ("stopped", 1, "stopped\n")])
def test_exit_status_as_sys_exit_gives_it(code, status, printed, capsys):
    from trueshape.cli import _exit_status

    assert _exit_status(code) == status
    assert capsys.readouterr().err == printed
