"""DICOM display values or Philips precise values: the values asked for, the numbers in every sidecar."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from tests.conftest import tree_digest
from typer.testing import CliRunner

import trueshape
from trueshape.cli import app
from trueshape.dicom import PhilipsScaling, ValueScaling
from trueshape.gnl import SYN_AS, format_siemens_grad
from trueshape.synth import regular_planes

runner = CliRunner()
RESCALE_SLOPE, RESCALE_INTERCEPT, SCALE_SLOPE = 1.08205128205128, -3.5, 0.003298636991530657


@pytest.fixture
def philips_series(write_series, tmp_path):
    planes = regular_planes(rows=6, columns=5, slices=4)
    for index, plane in enumerate(planes):
        plane.pixels[:] = np.arange(30, dtype=np.uint16).reshape(6, 5) * 37 + index
    folder = write_series(
        planes,
        folder=tmp_path / "philips",
        manufacturer="Philips Medical Systems",
        rescale_slope=RESCALE_SLOPE,
        rescale_intercept=RESCALE_INTERCEPT,
    )
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x0E, "FL", SCALE_SLOPE)
        ds.save_as(path)
    return folder


def _stored(folder):
    return np.stack([pydicom.dcmread(p).pixel_array.T for p in sorted(folder.glob("*.dcm"))], axis=-1).astype(float)


def test_display_and_precise_values(philips_series):
    stored = _stored(philips_series)
    display = stored * RESCALE_SLOPE + RESCALE_INTERCEPT
    display_volume = trueshape.load(philips_series)
    np.testing.assert_allclose(display_volume.values(np.float64), display, rtol=1e-6)
    precise_volume = trueshape.load(philips_series, philips_scaling="precise")
    np.testing.assert_allclose(precise_volume.values(np.float64), display / (RESCALE_SLOPE * SCALE_SLOPE), rtol=1e-6)
    np.testing.assert_array_equal(precise_volume.array, display_volume.array)  # the stored values, rescaled apart
    record = precise_volume.provenance.values_json()
    assert record["philips_scaling"] == "precise" and record["philips_scale_slope"] == pytest.approx(SCALE_SLOPE)
    assert "(2005,100E)" in record["formula"]


def test_precise_scaling_is_computed_as_dcm2niix_does():
    # dcm2niix -p y wrote scl_slope 303.155517578125 for RS 1.08205128205128, SS 0.003298636991530657 (corpus DTI).
    scaling = ValueScaling.for_frame(1.08205128205128, 0.0, 0.003298636991530657, PhilipsScaling.PRECISE)
    assert (scaling.slope, scaling.intercept) == (303.155517578125, 0.0)
    display = ValueScaling.for_frame(1.08205128205128, 0.0, 0.003298636991530657, PhilipsScaling.DISPLAY)
    assert (display.slope, display.applied) == (1.08205128205128, PhilipsScaling.DISPLAY)


def test_every_sidecar_records_the_scaling(philips_series, write_series, tmp_path):
    before = tree_digest(philips_series)
    result = runner.invoke(
        app, ["convert", str(philips_series), "--out", str(tmp_path / "p"), "--philips-scaling", "precise"]
    )
    assert result.exit_code == 0, result.output
    (sidecar,) = (json.loads(p.read_text()) for p in (tmp_path / "p").glob("*.json"))
    assert sidecar["values"]["philips_scaling"] == "precise"
    assert sidecar["values"]["slope"] == pytest.approx(1 / SCALE_SLOPE, rel=1e-6)
    # A series without Philips' scale slope keeps display values and says why.
    other = write_series(regular_planes(slices=3), folder=tmp_path / "siemens", rescale_slope=2.0)
    result = runner.invoke(app, ["convert", str(other), "--out", str(tmp_path / "s"), "--philips-scaling", "PRECISE"])
    assert result.exit_code == 0, result.output
    (sidecar,) = (json.loads(p.read_text()) for p in (tmp_path / "s").glob("*.json"))
    assert sidecar["values"]["philips_scaling"] == "display" and sidecar["values"]["requested"] == "precise"
    assert sidecar["values"]["slope"] == 2.0
    assert "no usable Philips scale slope (2005,100E)" in sidecar["values"]["note"]
    # correct: the corrected values are the precise ones, and its sidecar says so.
    coil = tmp_path / "SYN-AS.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    arguments = ["correct", str(philips_series), "--coef", str(coil), "--state", "ND", "--format", "nii"]
    for scaling in ("display", "precise"):
        result = runner.invoke(app, [*arguments, "--out", str(tmp_path / scaling), "--philips-scaling", scaling])
        assert result.exit_code == 0, result.output
    (display,), (precise,) = ((tmp_path / s).glob("*_corrected.nii") for s in ("display", "precise"))
    ratio = np.asanyarray(trueshape.io.read_volume(precise).values(np.float64))
    reference = np.asanyarray(trueshape.io.read_volume(display).values(np.float64))
    inside = np.abs(reference) > 1.0
    np.testing.assert_allclose(ratio[inside], reference[inside] / (RESCALE_SLOPE * SCALE_SLOPE), rtol=1e-4)
    record = json.loads(next((tmp_path / "precise").glob("*_corrected.json")).read_text())
    assert record["source"]["values"]["philips_scaling"] == "precise"
    # A volume file's values are already scaled: precise is refused there, naming the file.
    converted = next((tmp_path / "p").glob("*.nii.gz"))
    on_file = ["correct", str(converted), *arguments[2:], "--out", str(tmp_path / "v"), "--philips-scaling", "precise"]
    result = runner.invoke(app, on_file)
    assert result.exit_code == 2
    assert f"{converted}: --philips-scaling precise chooses how a DICOM series' stored values are scaled" in " ".join(
        result.output.split()
    )
    assert tree_digest(philips_series) == before


@pytest.mark.parametrize(("keyword", "text"), [("RescaleSlope", "inf"), ("RescaleIntercept", "1e308")])
def test_a_rescale_that_cannot_give_finite_values_is_named(write_series, tmp_path, keyword, text):
    folder = write_series(regular_planes(slices=3), folder=tmp_path / "s", rescale_slope=2.0)
    path = sorted(folder.glob("*.dcm"))[1]
    ds = pydicom.dcmread(path)
    ds[keyword].VR = "LO"  # written as text, as a damaged file holds it
    ds[keyword].value = text
    ds.save_as(path)
    (problem,) = trueshape.inspect(folder).problems
    tag = "(0028,1053)" if keyword == "RescaleSlope" else "(0028,1052)"
    assert problem.message == f"{path}: {keyword} {tag} is {text!r}, not a finite number within +-1e+20"
