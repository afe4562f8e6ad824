"""`trueshape estimate`, `model fit` and `learn` on DICOM sessions trueshape writes itself, scored in mm."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

import trueshape
from trueshape.cli import app
from trueshape.dicom import DistortionState
from trueshape.gnl import SYN_AS, MagnetFrame, ResidualField, read_scanner_model
from trueshape.synth import Acquisition, FemurPhantom, Plane, VolumePhantom, write_session

from .conftest import textured_anatomy

runner = CliRunner()


def _acquisitions(centre_mm: float, *, reference_state: DistortionState = DistortionState.FULL_3D
                  ) -> tuple[Acquisition, Acquisition]:
    centre = (0.0, 0.0, centre_mm)
    reference = Acquisition(plane=Plane.AXIAL, fov_mm=(192.0, 192.0), matrix=(64, 64), slices=64,
                            slice_thickness_mm=3.0, centre_lps=centre, distortion_state=reference_state,
                            noise_sd=10.0, in_plane_samples=1, slice_samples=2, series_number=2,
                            description="ax_ref", seed=1)
    moving = Acquisition(plane=Plane.CORONAL, fov_mm=(186.0, 186.0), matrix=(62, 62), slices=64,
                         slice_thickness_mm=3.0, centre_lps=centre, distortion_state=DistortionState.IN_PLANE_2D,
                         noise_sd=10.0, in_plane_samples=1, slice_samples=2, series_number=3, description="cor",
                         seed=2)
    return reference, moving


def _write(root: Path, centre_mm: float, *, seed: int = 0, scale: float = 1.0) -> Path:
    phantom = VolumePhantom.from_volume(textured_anatomy(seed), centre_lps=(0.0, 0.0, centre_mm), scale=scale)
    write_session(root, phantom, SYN_AS, _acquisitions(centre_mm))
    return root / "dicom"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One session, 110 mm above the isocentre: an axial DIS3D reference and a coronal DIS2D series."""
    return _write(tmp_path_factory.mktemp("visit") / "s1", 110.0)


def _truth_error(model_file: Path, series: Path, step: int = 2) -> tuple[float, float]:
    """RMS and largest error (mm) of a model's residual for ``series`` inside its anatomy, against SYN-AS."""
    volume = trueshape.load(series)
    normal = volume.geometry.direction[:, 2]
    learned = ResidualField(read_scanner_model(model_file), MagnetFrame(), DistortionState.IN_PLANE_2D, normal)
    truth = ResidualField(SYN_AS, MagnetFrame(), DistortionState.IN_PLANE_2D, normal)
    points = volume.geometry.voxel_centres()[::step, ::step, ::step].reshape(-1, 3)
    values = volume.values()[::step, ::step, ::step].reshape(-1)
    points = points[values > 0.1 * np.percentile(values, 99)]
    errors = np.linalg.norm(learned.displacement_lps(points) - truth.displacement_lps(points), axis=1)
    return float(np.sqrt(np.mean(errors**2))), float(errors.max())


def test_estimate_writes_the_model_the_corrected_series_and_the_report(session: Path, tmp_path: Path) -> None:
    out = tmp_path / "est"
    result = runner.invoke(app, ["estimate", "--reference", f"{session}/02_ax_ref", "--moving", f"{session}/03_cor",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["3_cor_corrected.json", "3_cor_corrected.nii.gz", "3_cor_residual.h5",
                     "3_cor_residual_field.nii.gz", "estimate.json", "model.json"]
    rms, worst = _truth_error(out / "model.json", session / "03_cor")
    assert rms < 0.1 and worst < 0.5
    report = json.loads((out / "estimate.json").read_text())
    assert report["kind"] == "pair" and report["moving"]["distortion_state"] == "DIS2D"
    assert report["fit"]["agreement_after"] > report["fit"]["agreement_before"]
    assert report["motion_reference_to_moving"]["shift_mm"] < 0.2
    assert report["warnings"] == [] and "the data determine" in result.output
    # The field found is the size of the true one at the anatomy's edge (SYN-AS: several mm there).
    assert report["field"]["3_cor"]["max_mm"] > 3.0
    model = read_scanner_model(out / "model.json")
    assert model.fit_quality["parameters"][0].startswith("y ")  # a coronal DIS2D series sees the y coil only
    sidecar = json.loads((out / "3_cor_corrected.json").read_text())
    assert sidecar["coefficients"] == str(out / "model.json")
    # correct --model with the learned model gives the same corrected series, voxel for voxel
    again = runner.invoke(app, ["correct", f"{session}/03_cor", "--model", str(out / "model.json"), "--out",
                                str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert "MODEL_EXTRAPOLATED" not in again.output
    first = np.asarray(nib.load(out / "3_cor_corrected.nii.gz").dataobj)
    second = np.asarray(nib.load(tmp_path / "again" / "3_cor_corrected.nii.gz").dataobj)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("reference, moving, expected", [
    ("02_ax_ref", "02_ax_ref", "nothing to estimate"),
    ("03_cor", "03_cor", "same part of the field"),
])
def test_a_pair_that_cannot_determine_a_field_is_refused(session: Path, tmp_path: Path, reference: str,
                                                         moving: str, expected: str) -> None:
    out = tmp_path / "never"
    result = runner.invoke(app, ["estimate", "--reference", f"{session}/{reference}", "--moving",
                                 f"{session}/{moving}", "--out", str(out)])
    assert result.exit_code == 2
    assert expected in result.output and "error:" in result.output
    assert not out.exists()


def test_series_of_another_frame_of_reference_need_same_frame(session: Path, tmp_path: Path) -> None:
    other = _write(tmp_path / "s2", 110.0)  # another visit: its own frame of reference
    out = tmp_path / "never"
    refused = runner.invoke(app, ["estimate", "--reference", f"{other}/02_ax_ref", "--moving", f"{session}/03_cor",
                                  "--out", str(out)])
    assert refused.exit_code == 2 and "different frames of reference" in refused.output
    assert not out.exists()
    # the same anatomy in the same place: said so, the pair is usable
    allowed = runner.invoke(app, ["estimate", "--reference", f"{other}/02_ax_ref", "--moving", f"{session}/03_cor",
                                  "--out", str(out), "--same-frame"])
    assert allowed.exit_code == 0, allowed.output


def test_series_that_do_not_overlap_are_refused(session: Path, tmp_path: Path) -> None:
    far = tmp_path / "far"
    phantom = VolumePhantom.from_volume(textured_anatomy(), centre_lps=(0.0, 0.0, 110.0))
    reference, moving = _acquisitions(110.0)
    write_session(far, phantom, SYN_AS, (replace(reference, centre_lps=(0.0, 0.0, 400.0)), moving))
    result = runner.invoke(app, ["estimate", "--reference", f"{far}/dicom/02_ax_ref", "--moving",
                                 f"{far}/dicom/03_cor", "--out", str(tmp_path / "never")])
    assert result.exit_code == 2 and "do not overlap" in result.output
    assert not (tmp_path / "never").exists()


def test_a_localizer_is_refused(session: Path, tmp_path: Path) -> None:
    from trueshape.io import SeriesMetadata, write_dicom_slices
    from trueshape.synth import SAGITTAL, regular_planes

    scout = tmp_path / "scout"
    planes = [replace(plane, overrides={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
              for plane in regular_planes(slices=3, orientation=SAGITTAL, origin=(0.0, -100.0, 200.0))]
    write_dicom_slices(scout, planes, SeriesMetadata())
    out = tmp_path / "never"
    result = runner.invoke(app, ["estimate", "--reference", str(scout), "--moving", f"{session}/03_cor",
                                 "--out", str(out), "--same-frame"])
    assert result.exit_code == 2, result.output
    assert "is a localizer" in result.output and str(scout) in result.output.replace("\n", "")
    assert not out.exists()


def test_a_poor_fit_still_writes_its_outputs_but_says_so_and_strict_exits_3(session: Path, tmp_path: Path) -> None:
    # Another subject's anatomy in the moving series (same place, same frame said): nothing to agree on.
    stranger = tmp_path / "stranger"
    write_session(stranger, FemurPhantom(hip_centre_lps=(0.0, 0.0, 110.0)), SYN_AS, _acquisitions(110.0))
    stranger = stranger / "dicom"
    out = tmp_path / "poor"
    result = runner.invoke(app, ["estimate", "--reference", f"{session}/02_ax_ref", "--moving",
                                 f"{stranger}/03_cor", "--out", str(out), "--same-frame", "--strict"])
    assert result.exit_code == 3, result.output
    assert "[warning] poor fit" in result.output
    report = json.loads((out / "estimate.json").read_text())
    assert report["warnings"]
    assert read_scanner_model(out / "model.json").fit_quality["warnings"] == report["warnings"]
    corrected = runner.invoke(app, ["correct", f"{stranger}/03_cor", "--model", str(out / "model.json"),
                                    "--out", str(tmp_path / "with_poor_model")])
    assert corrected.exit_code == 0 and "MODEL_FIT_POOR" in corrected.output


def test_the_free_form_fallback_corrects_these_series_only(session: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    out = tmp_path / "free"
    result = runner.invoke(app, ["estimate", "--reference", f"{session}/02_ax_ref", "--moving", f"{session}/03_cor",
                                 "--out", str(out), "--free-form", "--free-form-spacing-mm", "60"])
    assert result.exit_code == 0, result.output
    assert "no model.json is written" in result.output
    assert not (out / "model.json").exists()
    report = json.loads((out / "estimate.json").read_text())
    assert report["transferable"] is False and report["model_file"] is None
    # The transform written beside the corrected series moves points by the true residual: 0.24 mm RMS measured
    # inside the anatomy of a 1.65 mm RMS field (a B-spline on 60 mm control points cannot follow degree 5).
    volume = trueshape.load(session / "03_cor")
    normal = volume.geometry.direction[:, 2]
    truth = ResidualField(SYN_AS, MagnetFrame(), DistortionState.IN_PLANE_2D, normal)
    points = volume.geometry.voxel_centres()[::4, ::4, ::4].reshape(-1, 3)
    values = volume.values()[::4, ::4, ::4].reshape(-1)
    points = points[values > 0.1 * np.percentile(values, 99)]
    transform = sitk.ReadTransform(str(out / "3_cor_residual.h5"))
    found = np.array([transform.TransformPoint(p.tolist()) for p in points]) - points
    expected = truth.displacement_lps(points)
    error = np.linalg.norm(found - expected, axis=1)
    assert np.sqrt(np.mean(np.sum(expected**2, axis=1))) > 1.0  # a field worth finding
    assert np.sqrt(np.mean(error**2)) < 0.3
    # nothing to pool: a scanner model is never made from it
    refused = runner.invoke(app, ["model", "fit", str(out), "--out", str(tmp_path / "scanner.json")])
    assert refused.exit_code != 0 and "free-form" in refused.output


def test_learn_picks_each_pair_pools_a_model_that_corrects_an_unseen_subject(tmp_path: Path) -> None:
    sessions = [_write(tmp_path / "visits" / name, centre, seed=seed, scale=scale).parent
                for name, centre, seed, scale in (("subject1", 110.0, 0, 1.0), ("subject2", 60.0, 3, 0.95))]
    out = tmp_path / "learned"
    result = runner.invoke(app, ["learn", *map(str, sessions), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "moving: 3_cor" in result.output and "reference: 2_ax_ref (DIS3D, corrected in 3-D" in result.output
    assert "leave-one-session-out" in result.output
    model = read_scanner_model(out / "model.json")
    checks = model.fit_quality["cross_validation"]
    assert [c["session"] for c in checks] == ["subject1", "subject2"]
    assert all(c["rms_difference_mm"] < 0.3 for c in checks)
    # a third subject, scanned only coronally at another height, corrected from the model alone
    third = _write(tmp_path / "subject3", 85.0, seed=5, scale=1.03)
    rms, _ = _truth_error(out / "model.json", third / "03_cor")
    truth_rms = _truth_error_of_nothing(third / "03_cor")
    assert rms < 0.05 * truth_rms or rms < 0.05
    # model fit pools the same estimates again
    refit = runner.invoke(app, ["model", "fit", str(out / "subject1"), str(out / "subject2"), "--out",
                                str(tmp_path / "scanner.json")])
    assert refit.exit_code == 0, refit.output
    pooled = read_scanner_model(tmp_path / "scanner.json")
    assert np.allclose(pooled.alpha, model.alpha) and np.allclose(pooled.beta, model.beta)


def _truth_error_of_nothing(series: Path) -> float:
    """RMS of the true residual inside the anatomy (what a model has to remove), mm."""
    volume = trueshape.load(series)
    truth = ResidualField(SYN_AS, MagnetFrame(), DistortionState.IN_PLANE_2D, volume.geometry.direction[:, 2])
    points = volume.geometry.voxel_centres()[::2, ::2, ::2].reshape(-1, 3)
    values = volume.values()[::2, ::2, ::2].reshape(-1)
    points = points[values > 0.1 * np.percentile(values, 99)]
    return float(np.sqrt(np.mean(np.sum(truth.displacement_lps(points) ** 2, axis=1))))


def test_model_fit_refuses_what_is_not_an_estimate(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["model", "fit", str(tmp_path / "empty"), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 2 and "not a finished estimate" in result.output
    assert not (tmp_path / "m.json").exists()


def test_a_marker_phantom_characterises_all_three_axes(tmp_path: Path) -> None:
    from trueshape.gnl import GradientCoefficients
    from trueshape.synth import MarkerPhantom, write_marker_csv

    coil = GradientCoefficients.from_terms(250.0, {
        ("x", "A", 3, 1): -0.055, ("x", "A", 2, 1): 0.008, ("y", "B", 3, 1): -0.055, ("y", "A", 2, 0): 0.012,
        ("z", "A", 3, 0): -0.08, ("z", "A", 2, 1): -0.006}, coil_id="ASYM")
    turn = np.array([[0.9994, -0.0349, 0.0], [0.0349, 0.9994, 0.0], [0.0, 0.0, 1.0]])  # 2 degrees about z
    phantom = MarkerPhantom.grid(spacing_mm=24.0, radius_mm=130.0, marker_radius_mm=4.0, rotation=turn,
                                 translation_mm=(2.0, -3.0, 4.0))
    scan = Acquisition(plane=Plane.AXIAL, fov_mm=(300.0, 300.0), matrix=(100, 100), slices=100, slice_thickness_mm=3.0,
                       distortion_state=DistortionState.NONE, noise_sd=5.0, in_plane_samples=2, slice_samples=2,
                       series_number=9, description="grid")
    write_session(tmp_path / "phantom", phantom, coil, (scan,))
    markers = write_marker_csv(tmp_path / "markers.csv", phantom.centres_mm)  # the phantom's own frame
    out = tmp_path / "characterised"
    result = runner.invoke(app, ["estimate", "--phantom", str(markers), "--moving",
                                 str(tmp_path / "phantom" / "dicom" / "09_grid"), "--out", str(out),
                                 "--marker-radius-mm", "4"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "estimate.json").read_text())
    assert report["markers"]["matched"] == len(phantom.centres_mm)
    assert report["markers"]["residual_mean_mm"] < 0.2
    assert np.allclose(report["markers"]["pose"]["translation_mm"], [2.0, -3.0, 4.0], atol=0.2)
    learned = read_scanner_model(out / "model.json")
    assert {name[0] for name in learned.fit_quality["parameters"]} == {"x", "y", "z"}  # ND: all three axes
    points = np.random.default_rng(0).uniform(-100, 100, (500, 3))
    points = points[np.linalg.norm(points, axis=1) < 110]
    error = np.linalg.norm(ResidualField(learned, MagnetFrame(), DistortionState.NONE).displacement_lps(points)
                           - ResidualField(coil, MagnetFrame(), DistortionState.NONE).displacement_lps(points), axis=1)
    assert error.max() < 0.1


def test_markers_that_are_not_this_phantom_are_refused(tmp_path: Path, session: Path) -> None:
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    result = runner.invoke(app, ["estimate", "--phantom", str(tmp_path / "bad.csv"), "--moving",
                                 f"{session}/03_cor", "--out", str(tmp_path / "never")])
    assert result.exit_code == 2 and "must name columns x, y and z" in result.output
    assert not (tmp_path / "never").exists()
