"""`trueshape correct --format dicom`: a derived DICOM series that viewers and trueshape read back exactly."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from tests.conftest import dciodvfy_errors, tree_digest, write_coronal_session
from typer.testing import CliRunner

import trueshape
from trueshape.cli import app
from trueshape.dicom import DistortionState
from trueshape.errors import TrueshapeError
from trueshape.geometry import Volume
from trueshape.gnl import SYN_AS, ResidualField, format_siemens_grad
from trueshape.io import DERIVED_SERIES_NUMBER_OFFSET, lps_to_ras_affine, write_derived_series
from trueshape.io._derived import quantize
from trueshape.synth import Acquisition, FemurPhantom, Plane, write_session

runner = CliRunner()


@pytest.fixture(scope="module")
def corrected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DIS2D coronal series corrected twice: as NIfTI (the reference) and as a derived DICOM series."""
    root = tmp_path_factory.mktemp("derived")
    write_coronal_session(root)
    digest = tree_digest(root / "s" / "dicom")
    for fmt in ("nii", "dicom"):
        result = runner.invoke(
            app,
            [
                "correct",
                str(root / "s" / "dicom"),
                "--coef",
                str(root / "SYN-AS.grad"),
                "--out",
                str(root / fmt),
                "--format",
                fmt,
            ],
        )
        assert result.exit_code == 0, result.output
    assert tree_digest(root / "s" / "dicom") == digest
    return root


def test_derived_series_reads_back_as_the_corrected_volume(corrected: Path) -> None:
    reference = nib.load(corrected / "nii" / "4_cor_corrected.nii")
    expected = np.asanyarray(reference.dataobj, dtype=np.float64)
    volume = trueshape.load(corrected / "dicom" / "4_cor_corrected")
    assert volume.provenance.distortion_state == "DIS3D"
    np.testing.assert_allclose(lps_to_ras_affine(volume.geometry.lps_from_ijk), reference.affine, atol=1e-3)
    sidecar = json.loads((corrected / "dicom" / "4_cor_corrected.json").read_text())
    step = sidecar["dicom"]["quantization_step"]
    assert sidecar["dicom"]["files"] == 10
    assert step == 1.0  # the synthetic source stores integers at slope 1, and the corrected range fits
    values = volume.values(np.float64)
    assert np.abs(expected).max() > 100.0
    assert np.abs(values - expected).max() <= 0.5 * step + 1e-3


def test_derived_series_is_a_valid_mr_image_for_dciodvfy(corrected: Path) -> None:
    for path in sorted((corrected / "dicom" / "4_cor_corrected").iterdir())[::9]:  # the first and the last slice
        assert dciodvfy_errors(path) == [], path


def test_derived_series_keeps_patient_study_and_frame(corrected: Path) -> None:
    source = pydicom.dcmread(next((corrected / "s" / "dicom").rglob("*.dcm")), stop_before_pixels=True)
    files = sorted((corrected / "dicom" / "4_cor_corrected").iterdir())
    assert len(files) == 10 and not any(p.name.startswith(".") for p in (corrected / "dicom").iterdir())
    derived = pydicom.dcmread(files[0], stop_before_pixels=True)
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "PatientPosition"):
        assert derived.data_element(keyword).value == source.data_element(keyword).value, keyword
    assert derived.SeriesInstanceUID != source.SeriesInstanceUID
    assert derived.SeriesNumber == source.SeriesNumber + DERIVED_SERIES_NUMBER_OFFSET
    assert list(derived.ImageType) == ["DERIVED", "SECONDARY", "M", "DIS3D"]
    assert "trueshape" in derived.DerivationDescription and "DIS2D series" in derived.DerivationDescription
    assert len({pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files}) == 10


def test_derived_series_is_not_corrected_again_and_is_replaced_only_with_force(corrected: Path) -> None:
    derived = corrected / "dicom" / "4_cor_corrected"
    again = runner.invoke(
        app,
        [
            "correct",
            str(derived),
            "--coef",
            str(corrected / "SYN-AS.grad"),
            "--out",
            str(corrected / "again"),
            "--format",
            "nii",
        ],
    )
    assert again.exit_code == 0, again.output
    assert "already corrected in 3-D (DIS3D): nothing is left to correct" in " ".join(again.output.split())
    arguments = [
        "correct",
        str(corrected / "s" / "dicom"),
        "--coef",
        str(corrected / "SYN-AS.grad"),
        "--out",
        str(corrected / "dicom"),
        "--format",
        "dicom",
    ]
    refused = runner.invoke(app, arguments)
    assert refused.exit_code == 2 and "already exists" in refused.output
    before = {p.name for p in derived.iterdir()}
    replaced = runner.invoke(app, [*arguments, "--force"])
    assert replaced.exit_code == 0, replaced.output
    assert {p.name for p in derived.iterdir()} == before
    assert not any(p.name.startswith(".") for p in (corrected / "dicom").iterdir())


def test_dicom_output_needs_a_dicom_source(corrected: Path) -> None:
    result = runner.invoke(
        app,
        [
            "correct",
            str(corrected / "nii" / "4_cor_corrected.nii"),
            "--coef",
            str(corrected / "SYN-AS.grad"),
            "--out",
            str(corrected / "x"),
            "--format",
            "dicom",
        ],
    )
    assert result.exit_code == 2 and "needs a DICOM source" in " ".join(result.output.split())
    result = runner.invoke(
        app, ["convert", str(corrected / "s" / "dicom"), "--out", str(corrected / "y"), "--format", "dicom"]
    )
    assert result.exit_code == 2 and "Invalid value for '--format'" in " ".join(result.output.split())
    with pytest.raises(TrueshapeError, match="DICOM output is for corrected series"):
        trueshape.convert(corrected / "s" / "dicom", corrected / "y", fmt="dicom")


def test_four_dimensional_derived_series(corrected: Path, tmp_path: Path) -> None:
    base = trueshape.load(corrected / "dicom" / "4_cor_corrected")
    values = base.values(np.float32)
    stacked = Volume(np.stack([values, 0.5 * values], axis=-1), base.geometry, base.provenance)
    template = next((corrected / "s" / "dicom").rglob("*.dcm"))
    written = write_derived_series(stacked, tmp_path / "four_d", template=template, derivation="test")
    assert len(written.files) == 20
    back = trueshape.load(tmp_path / "four_d")
    assert back.array.shape == (*base.geometry.shape, 2)
    restored = back.values(np.float64)
    tolerance = 0.5 * written.quantization_step + 1e-3
    assert np.abs(restored[..., 0] - values).max() <= tolerance
    assert np.abs(restored[..., 1] - 0.5 * values).max() <= tolerance


@pytest.mark.parametrize(
    ("values", "integer_source", "dtype", "slope", "intercept"),
    [
        ([0.0, 2.4, 4000.6], True, np.uint16, 1.0, 0.0),
        ([-12.0, 2.4, 4000.6], True, np.int16, 1.0, 0.0),
        ([0.0, 0.25, 0.5], False, np.uint16, 0.5 / 65535, 0.0),
        ([1000.0, 1000.5, 1001.0], False, np.uint16, 1.0 / 65535, 1000.0),  # the range, not 0..max, is spread
        ([-1.0e6, 0.0, 2.0e6], True, np.uint16, 3.0e6 / 65535, -1.0e6),  # integers that do not fit 16 bits
    ],
)
def test_quantize_keeps_the_range(
    values: list[float], integer_source: bool, dtype: type, slope: float, intercept: float
) -> None:
    array = np.array(values)
    stored, got_slope, got_intercept = quantize(array, integer_source=integer_source)
    assert stored.dtype == dtype
    assert (got_slope, got_intercept) == (pytest.approx(slope), pytest.approx(intercept))
    assert np.abs(stored * got_slope + got_intercept - array).max() <= 0.5 * got_slope + 1e-9


def test_quantize_stores_non_finite_voxels_at_the_intercept() -> None:
    stored, slope, intercept = quantize(np.array([np.nan, 2.0, np.inf, 4.0]), integer_source=False)
    assert stored.tolist()[0] == 0 and stored.tolist()[2] == 0
    assert intercept == 2.0 and stored[3] * slope + intercept == pytest.approx(4.0)


def _template(corrected: Path, folder: Path, name: str, **attributes: object) -> Path:
    source = pydicom.dcmread(next((corrected / "s" / "dicom").rglob("*.dcm")))
    for keyword, value in attributes.items():
        setattr(source, keyword, value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    source.save_as(path, enforce_file_format=True)
    return path


def test_derived_series_keeps_non_latin_names_and_required_attributes(corrected: Path, tmp_path: Path) -> None:
    template = _template(
        corrected,
        tmp_path / "t",
        "cyrillic.dcm",
        SpecificCharacterSet="ISO_IR 192",
        PatientName="Иванов^Иван",
        InstitutionName="Klinikum Süd",
    )
    del_keywords = ("PatientBirthDate", "AccessionNumber", "EchoTime", "ScanningSequence")
    source = pydicom.dcmread(template)
    for keyword in del_keywords:
        if keyword in source:
            delattr(source, keyword)
    source.save_as(template, enforce_file_format=True)
    volume = trueshape.load(corrected / "dicom" / "4_cor_corrected")
    written = write_derived_series(volume, tmp_path / "out", template=template, derivation="test")
    derived = pydicom.dcmread(written.files[0])
    assert str(derived.PatientName) == "Иванов^Иван" and derived.InstitutionName == "Klinikum Süd"
    # Type 2 attributes stay present (empty when unknown); Type 1 ScanningSequence gets the neutral "RM".
    for keyword in (
        "PatientBirthDate",
        "AccessionNumber",
        "EchoTime",
        "StudyID",
        "ReferringPhysicianName",
        "PositionReferenceIndicator",
    ):
        assert keyword in derived, keyword
    assert derived.ScanningSequence == "RM"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask


def test_four_dimensional_series_takes_each_volume_s_own_timing(corrected: Path, tmp_path: Path) -> None:
    base = trueshape.load(corrected / "dicom" / "4_cor_corrected")
    values = base.values(np.float32)
    stacked = Volume(np.stack([values, values], axis=-1), base.geometry, base.provenance)
    templates = [_template(corrected, tmp_path / "t", f"ti{ti}.dcm", InversionTime=ti) for ti in (100, 900)]
    written = write_derived_series(stacked, tmp_path / "out", template=templates, derivation="test")
    by_volume = {}
    for path in written.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_volume.setdefault(int(ds.TemporalPositionIdentifier), set()).add(float(ds.InversionTime))
    assert by_volume == {1: {100.0}, 2: {900.0}}


def _correct_to(corrected: Path, out: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "correct",
            str(corrected / "s" / "dicom"),
            "--coef",
            str(corrected / "SYN-AS.grad"),
            "--out",
            str(out),
            "--format",
            "dicom",
            *extra,
        ],
    )


def test_force_does_not_replace_a_folder_holding_user_files(corrected: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert _correct_to(corrected, out).exit_code == 0
    notes = out / "4_cor_corrected" / "my_annotations.txt"
    notes.write_text("mine")
    before = tree_digest(out)
    result = _correct_to(corrected, out, "--force")
    assert result.exit_code == 2
    assert "holds files trueshape did not write (my_annotations.txt)" in " ".join(result.output.split())
    assert tree_digest(out) == before


def test_a_file_where_the_series_folder_goes_is_named(corrected: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "4_cor_corrected").write_text("not a folder")
    result = _correct_to(corrected, out, "--force")
    assert result.exit_code == 2 and "is a file; trueshape writes a folder there" in " ".join(result.output.split())
    assert (out / "4_cor_corrected").read_text() == "not a folder"
    assert sorted(p.name for p in out.iterdir()) == ["4_cor_corrected"]


@pytest.mark.parametrize("failure", [OSError(13, "Permission denied"), KeyboardInterrupt()])
def test_a_failed_move_puts_the_old_outputs_back(
    corrected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    import trueshape.io._transaction

    out = tmp_path / "o"
    assert _correct_to(corrected, out).exit_code == 0
    before = tree_digest(out)
    real_replace = os.replace
    calls = []

    def failing_replace(source: object, target: object) -> None:
        destination = Path(str(target))
        if destination.parent == out or destination.name.startswith("replaced-"):  # the final moves only
            calls.append(destination)
            if len(calls) == 7:  # four old outputs moved aside, two new ones moved in, the third fails
                raise failure
        real_replace(source, target)

    monkeypatch.setattr(trueshape.io._transaction.os, "replace", failing_replace)
    result = _correct_to(corrected, out, "--force")
    if isinstance(failure, OSError):
        assert result.exit_code == 2
        assert "moving the outputs into place failed (Permission denied); the folder is as it was" in " ".join(
            result.output.split()
        )
    else:  # an interruption (Ctrl-C) at the worst moment: the old outputs are back too
        assert result.exit_code != 0 and isinstance(result.exception, KeyboardInterrupt | SystemExit)
    monkeypatch.undo()
    assert tree_digest(out) == before
    assert not any(p.name.startswith(".") for p in out.iterdir())


def test_a_failed_first_run_leaves_no_folder(corrected: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "correct",
            str(corrected / "s" / "dicom"),
            "--coef",
            str(corrected / "SYN-AS.grad"),
            "--out",
            str(tmp_path / "new"),
            "--state",
            "ND",
            "--mode",
            "through-plane",
        ],
    )
    assert result.exit_code == 2
    assert not (tmp_path / "new").exists()


def test_enhanced_source_gives_its_functional_group_values(tmp_path: Path) -> None:
    # Thickness 3 mm, spacing 4 mm: in an enhanced file SliceThickness lives in the PixelMeasuresSequence.
    acquisition = Acquisition(
        plane=Plane.AXIAL,
        fov_mm=(80.0, 80.0),
        matrix=(16, 16),
        slices=6,
        slice_thickness_mm=3.0,
        slice_gap_mm=1.0,
        centre_lps=(0.0, 0.0, 0.0),
        distortion_state=DistortionState.NONE,
        in_plane_samples=1,
        slice_samples=1,
        series_number=2,
        description="enh",
        enhanced=True,
    )
    write_session(tmp_path / "s", FemurPhantom(), SYN_AS, (acquisition,))
    (tmp_path / "SYN-AS.grad").write_text(format_siemens_grad(SYN_AS))
    result = runner.invoke(
        app,
        [
            "correct",
            str(tmp_path / "s" / "dicom"),
            "--coef",
            str(tmp_path / "SYN-AS.grad"),
            "--out",
            str(tmp_path / "o"),
            "--format",
            "dicom",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "o" / "2_enh_corrected").iterdir())
    assert len(files) == 6
    derived = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert float(derived.SliceThickness) == 3.0 and float(derived.SpacingBetweenSlices) == 4.0
    # Frames of the one enhanced source file are cited by number: the frame at the slice's own position
    # and those the residual reaches.
    source = pydicom.dcmread(next((tmp_path / "s" / "dicom").rglob("*.dcm")), stop_before_pixels=True)
    normal = np.cross(*np.reshape(derived.ImageOrientationPatient, (2, 3)).astype(float))
    frame_at = {
        round(float(np.dot(normal, item.PlanePositionSequence[0].ImagePositionPatient)), 3): n + 1
        for n, item in enumerate(source.PerFrameFunctionalGroupsSequence)
    }
    for ds in _by_position(files):
        cited = _cited(ds)
        assert {(sop_class, uid) for sop_class, uid, _ in cited} == {(source.SOPClassUID, source.SOPInstanceUID)}
        numbers = sorted(frame for _, _, frame in cited)
        assert numbers == list(range(numbers[0], numbers[-1] + 1))
        assert frame_at[round(float(np.dot(normal, ds.ImagePositionPatient)), 3)] in numbers


def _by_position(files: list[Path]) -> list[pydicom.Dataset]:
    """Headers of a single-frame series, sorted along its slice normal."""
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in files]
    row, column = np.array(headers[0].ImageOrientationPatient[:3]), np.array(headers[0].ImageOrientationPatient[3:])
    normal = np.cross(row, column)
    return sorted(headers, key=lambda ds: float(np.dot(normal, np.array(ds.ImagePositionPatient, float))))


def _cited(derived: pydicom.Dataset) -> list[tuple[str, str, int | None]]:
    items = derived.get("SourceImageSequence") or []
    for item in items:
        purpose = item.PurposeOfReferenceCodeSequence[0]
        assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("121322", "DCM")
    return [
        (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID, item.get("ReferencedFrameNumber")) for item in items
    ]


def test_each_derived_slice_cites_the_source_slices_it_was_computed_from(corrected: Path) -> None:
    sources = _by_position(sorted((corrected / "s" / "dicom").rglob("*.dcm")))
    index_of = {ds.SOPInstanceUID: k for k, ds in enumerate(sources)}
    derived = _by_position(sorted((corrected / "dicom" / "4_cor_corrected").iterdir()))
    # Independently: where the exact residual sends every voxel of each slice, as a source slice index.
    volume = trueshape.load(corrected / "s" / "dicom")
    residual = ResidualField.from_volume(SYN_AS, volume)
    geometry = volume.geometry
    ijk = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in geometry.shape), indexing="ij"), axis=-1)
    points = geometry.index_to_lps(ijk.reshape(-1, 3))
    sampled_k = geometry.lps_to_index(points + residual.displacement_lps(points))[:, 2].reshape(geometry.shape)
    widest = 0
    for k, ds in enumerate(derived):
        cited = _cited(ds)
        assert {sop_class for sop_class, _, _ in cited} == {sources[0].SOPClassUID}
        assert all(frame is None for _, _, frame in cited)
        low, high = sampled_k[:, :, k].min(), sampled_k[:, :, k].max()
        expected = set(range(max(0, int(np.floor(low))), min(len(sources) - 1, int(np.ceil(high))) + 1))
        assert {index_of[uid] for _, uid, _ in cited} == expected, (k, low, high)
        widest = max(widest, len(expected))
    assert widest >= 3  # the through-plane residual reaches beyond the neighbouring slice somewhere


def test_a_copy_cites_the_slice_it_copies(corrected: Path, tmp_path: Path) -> None:
    source_folder = corrected / "dicom" / "4_cor_corrected"
    result = runner.invoke(
        app,
        [
            "correct",
            str(source_folder),
            "--coef",
            str(corrected / "SYN-AS.grad"),
            "--out",
            str(tmp_path),
            "--format",
            "dicom",
        ],
    )
    assert result.exit_code == 0, result.output
    sources = _by_position(sorted(source_folder.iterdir()))
    copies = _by_position(sorted(next(p for p in tmp_path.iterdir() if p.is_dir()).iterdir()))
    assert [[uid for _, uid, _ in _cited(ds)] for ds in copies] == [[ds.SOPInstanceUID] for ds in sources]


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_moves_waits_for_them(
    corrected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signal_number: int
) -> None:
    import trueshape.io._transaction

    out = tmp_path / "o"
    assert _correct_to(corrected, out).exit_code == 0
    names = sorted(p.name for p in out.iterdir())
    old_sidecar = (out / "4_cor_corrected.json").read_bytes()
    real_replace = os.replace
    calls = []

    def interrupted_replace(source: object, target: object) -> None:
        destination = Path(str(target))
        if destination.name.startswith("replaced-"):
            calls.append(destination)
            if len(calls) == 1:  # right after the first old output is moved aside
                os.kill(os.getpid(), signal_number)
        real_replace(source, target)

    monkeypatch.setattr(trueshape.io._transaction.os, "replace", interrupted_replace)
    monkeypatch.setattr(trueshape.io._transaction.signal, "getsignal", signal.getsignal)  # keep the module's own
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))
    # Python's own Ctrl-C handler, even when the tests were started in the background (`make test &`): a
    # non-interactive shell starts background jobs with SIGINT ignored, and an ignored signal interrupts nothing.
    previous_interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = _correct_to(corrected, out, "--force")
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)
    assert result.exit_code != 0 and isinstance(result.exception, KeyboardInterrupt | SystemExit)
    monkeypatch.undo()
    # The signal waited: every new output is in place, none of the old ones is lost half-way.
    assert sorted(p.name for p in out.iterdir()) == names
    assert (out / "4_cor_corrected.json").read_bytes() != old_sidecar
    assert len(calls) == 4
