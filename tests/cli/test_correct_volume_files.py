"""`trueshape correct` on NIfTI/NRRD volumes: the sidecar's facts, the options that replace them, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from tests.conftest import tree_digest
from typer.testing import CliRunner

from trueshape.cli import app
from trueshape.dicom import DistortionState, PatientPosition
from trueshape.gnl import SYN_AS, format_siemens_grad
from trueshape.synth import Acquisition, FemurPhantom, Plane, write_session

runner = CliRunner()
TABLE_ISOCENTRE_LPS = (0.0, 0.0, -120.0)


def _session_with_nifti(root: Path, acquisition: Acquisition) -> Path:
    """Write ``acquisition`` as DICOM, then as trueshape NIfTI + sidecar (``nifti/``) and corrected from the DICOM
    (``from_dicom/``), with the SYN-AS coil beside them; return ``root``."""
    write_session(root / "s", FemurPhantom(), SYN_AS, (acquisition,))
    (root / "SYN-AS.grad").write_text(format_siemens_grad(SYN_AS))
    dicom = root / "s" / "dicom"
    for arguments in (
        ["convert", str(dicom), "--out", str(root / "nifti"), "--format", "nii"],
        [
            "correct",
            str(dicom),
            "--coef",
            str(root / "SYN-AS.grad"),
            "--out",
            str(root / "from_dicom"),
            "--format",
            "nii",
        ],
    ):
        result = runner.invoke(app, arguments)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DIS2D coronal series (feet first, table moved) as DICOM and as trueshape NIfTI + sidecar."""
    root = tmp_path_factory.mktemp("volume_files")
    acquisition = Acquisition(
        plane=Plane.CORONAL,
        fov_mm=(120.0, 120.0),
        matrix=(32, 32),
        slices=10,
        slice_thickness_mm=5.0,
        centre_lps=(95.0, 0.0, -100.0),
        isocentre_lps=TABLE_ISOCENTRE_LPS,
        patient_position=PatientPosition.FFS,
        distortion_state=DistortionState.IN_PLANE_2D,
        in_plane_samples=1,
        slice_samples=1,
        series_number=4,
        description="cor",
    )
    return _session_with_nifti(root, acquisition)


def _correct(session: Path, volume: Path, out: str, *options: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "correct",
            str(volume),
            "--coef",
            str(session / "SYN-AS.grad"),
            "--out",
            str(session / out),
            "--format",
            "nii",
            *options,
        ],
    )
    return result.exit_code, " ".join(result.output.split())


def _image(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj, dtype=np.float64)


def _bare_copy(session: Path, name: str, sidecar: dict[str, object] | None = None) -> Path:
    folder = session / name
    folder.mkdir()
    target = folder / "cor.nii"
    target.write_bytes((session / "nifti" / "4_cor.nii").read_bytes())
    if sidecar is not None:
        (folder / "cor.json").write_text(json.dumps(sidecar))
    return target


def test_trueshape_sidecar_gives_the_dicom_result(session: Path) -> None:
    code, output = _correct(session, session / "nifti" / "4_cor.nii", "from_nifti")
    assert code == 0, output
    assert sorted(p.name for p in (session / "from_nifti").iterdir()) == [
        "4_cor_corrected.json",
        "4_cor_corrected.nii",
        "4_cor_residual.h5",
        "4_cor_residual_field.nii",
    ]
    expected = _image(session / "from_dicom" / "4_cor_corrected.nii")
    got = _image(session / "from_nifti" / "4_cor_corrected.nii")
    assert np.abs(expected).max() > 100.0
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    sidecar = json.loads((session / "from_nifti" / "4_cor_corrected.json").read_text())
    assert sidecar["correction"]["mode"] == "through-plane"
    assert sidecar["source"]["patient_position"] == "FFS"
    assert sidecar["source"]["isocentre_lps"] == pytest.approx(list(TABLE_ISOCENTRE_LPS), abs=1e-6)
    assert any("trueshape sidecar 4_cor.json" in a for a in sidecar["correction"]["read_from_headers"])


def test_corrected_volume_is_not_corrected_twice(session: Path) -> None:
    first = session / "from_dicom" / "4_cor_corrected.nii"
    code, output = _correct(session, first, "twice")
    assert code == 0, output
    assert "already corrected in 3-D (DIS3D): nothing is left to correct" in output
    np.testing.assert_array_equal(_image(session / "twice" / "4_cor_corrected_corrected.nii"), _image(first))


def test_dcm2niix_sidecar_and_isocentre_option(session: Path) -> None:
    # This feet-first series records ImaRelTablePosition [0, 0, 120]; dcm2niix v1.0.20260724 writes it as
    # TablePosition [0, 0, -120], whatever the patient position (benchmarks/dcm2niix_sidecars.py --probe-table).
    bids = {
        "ImageType": ["ORIGINAL", "PRIMARY", "M", "DIS2D", "NORM"],
        "PatientPosition": "FFS",
        "TablePosition": [0, 0, -120],
    }
    volume = _bare_copy(session, "bids", bids)
    before = tree_digest(volume.parent)
    expected = _image(session / "from_dicom" / "4_cor_corrected.nii")
    code, output = _correct(session, volume, "bids_out")
    assert code == 0, output
    sidecar = json.loads((session / "bids_out" / "cor_corrected.json").read_text())
    assert sidecar["source"]["isocentre_lps"] == pytest.approx(list(TABLE_ISOCENTRE_LPS), abs=1e-9)
    assert "rotated for FFS" in sidecar["source"]["isocentre_source"]
    np.testing.assert_allclose(
        _image(session / "bids_out" / "cor_corrected.nii"), expected, atol=1e-4 * np.abs(expected).max()
    )
    code, output = _correct(session, volume, "bids_option", "--isocentre", ",".join(map(str, TABLE_ISOCENTRE_LPS)))
    assert code == 0, output
    np.testing.assert_allclose(
        _image(session / "bids_option" / "cor_corrected.nii"), expected, atol=1e-4 * np.abs(expected).max()
    )
    assert tree_digest(volume.parent) == before
    # The wrong isocentre (the table not moved) gives a different, wrong answer: the option is applied.
    code, output = _correct(session, volume, "bids_wrong", "--isocentre", "0,0,0")
    assert code == 0, output
    wrong = _image(session / "bids_wrong" / "cor_corrected.nii")
    assert np.abs(wrong - expected).max() > 0.05 * np.abs(expected).max()


def test_no_sidecar_needs_the_state(session: Path) -> None:
    volume = _bare_copy(session, "bare")
    code, output = _correct(session, volume, "bare_out")
    assert code == 2 and "Traceback" not in output
    assert "no sidecar (cor.json) says what the scanner corrected: give --state ND, DIS2D or DIS3D" in output
    code, output = _correct(
        session,
        volume,
        "bare_out",
        "--state",
        "DIS2D",
        "--patient-position",
        "FFS",
        "--isocentre",
        ",".join(map(str, TABLE_ISOCENTRE_LPS)),
    )
    assert code == 0, output
    expected = _image(session / "from_dicom" / "4_cor_corrected.nii")
    np.testing.assert_allclose(
        _image(session / "bare_out" / "cor_corrected.nii"), expected, atol=1e-4 * np.abs(expected).max()
    )
    code, output = _correct(session, volume, "bare_assumed", "--state", "DIS2D")
    assert code == 0, output
    sidecar = json.loads((session / "bare_assumed" / "cor_corrected.json").read_text())
    assumptions = " ".join(sidecar["correction"]["assumptions"])
    assert "HFS assumed" in assumptions and "isocentre not recorded" in assumptions


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{broken", "cannot read the JSON sidecar"),
        ("[1, 2]", "a sidecar must be a JSON object"),
        (json.dumps({"PatientPosition": "XYZ"}), "unknown PatientPosition 'XYZ'"),
    ],
)
def test_bad_sidecars_are_named(session: Path, tmp_path: Path, content: str, message: str) -> None:
    volume = tmp_path / "cor.nii"
    volume.write_bytes((session / "nifti" / "4_cor.nii").read_bytes())
    (tmp_path / "cor.json").write_text(content)
    code, output = _correct(session, volume, f"bad_{abs(hash(content))}", "--state", "ND")
    assert code == 2 and "Traceback" not in output
    assert f"{tmp_path / 'cor.json'}: {message}" in output


def test_sidecar_of_another_volume_is_refused(session: Path, tmp_path: Path) -> None:
    volume = tmp_path / "cor.nii"
    volume.write_bytes((session / "nifti" / "4_cor.nii").read_bytes())
    sidecar = json.loads((session / "nifti" / "4_cor.json").read_text())
    sidecar["affine_lps"][0][3] += 2.0
    (tmp_path / "cor.json").write_text(json.dumps(sidecar))
    code, output = _correct(session, volume, "other")
    assert code == 2 and "the sidecar's affine differs from the volume's by 2 mm" in output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p, good: p.write_bytes(good[:1000]),
            "truncated: its header (32 x 32 x 10 voxels) needs 20480 bytes of data, the file holds 648",
        ),
        (lambda p, good: p.write_bytes(good[:300]), "cannot read the volume"),
        (lambda p, good: p.write_bytes(b"not a nifti at all" * 30), "cannot read the volume"),
        (lambda p, good: None, "no such file"),
    ],
)
def test_damaged_volumes_are_named(session: Path, tmp_path: Path, make, message: str) -> None:
    volume = tmp_path / "cor.nii"
    make(volume, (session / "nifti" / "4_cor.nii").read_bytes())
    code, output = _correct(session, volume, "damaged", "--state", "ND")
    assert code == 2 and "Traceback" not in output
    assert f"{volume}: {message}" in output


def test_isocentre_option_is_checked(session: Path) -> None:
    code, output = _correct(session, session / "nifti" / "4_cor.nii", "iso", "--isocentre", "1,2")
    assert code == 2 and "--isocentre needs three numbers X,Y,Z" in output


def test_nrrd_in_other_units_is_refused(session: Path, tmp_path: Path) -> None:
    import nrrd

    volume = tmp_path / "cm.nrrd"
    nrrd.write(
        str(volume),
        np.zeros((4, 4, 4), np.float32),
        {
            "space": "left-posterior-superior",
            "space directions": np.eye(3),
            "space origin": np.zeros(3),
            "space units": ["cm", "cm", "cm"],
        },
    )
    code, output = _correct(session, volume, "cm", "--state", "ND")
    assert code == 2 and f"{volume}: NRRD space units ['cm', 'cm', 'cm']; trueshape reads millimetres" in output


def test_damaged_nrrd_is_named(session: Path, tmp_path: Path) -> None:
    volume = tmp_path / "cor.nrrd"
    volume.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4\n\n")
    code, output = _correct(session, volume, "damaged_nrrd", "--state", "ND")
    assert code == 2 and "Traceback" not in output
    assert f"{volume}: cannot read the NRRD volume" in output


def test_dcm2niix_flag_without_dimension_needs_the_state(session: Path) -> None:
    volume = _bare_copy(session, "ngc", {"NonlinearGradientCorrection": True, "PatientPosition": "FFS"})
    code, output = _correct(session, volume, "ngc_out")
    assert code == 2
    assert "in 2-D or 3-D is not recorded" in output and "give --state ND, DIS2D or DIS3D" in output


def _trueshape_sidecar(session: Path, **changes: object) -> dict[str, object]:
    sidecar = json.loads((session / "nifti" / "4_cor.json").read_text())
    sidecar.update(changes)
    return sidecar


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"affine_lps": [[float("nan")] * 4] * 4}, "each row of affine_lps must be a list of 4 finite numbers"),
        ({"isocentre_lps": "123"}, "isocentre_lps must be a list of 3 finite numbers"),
        ({"isocentre_lps": [float("nan"), 0, 0]}, "isocentre_lps must be a list of 3 finite numbers"),
        ({"shape": None}, "shape must be a list of finite numbers"),
        ({"shape": [32, 32]}, "shape must list 3 sizes, or 4 for a series of volumes"),
        ({"shape": [32.4, 32.2, 10.9]}, "the sidecar describes a [32, 32, 10] x 1 grid"),
        ({"volume_count": 7}, "the sidecar describes a [32, 32, 10] x 7 grid, the volume is [32, 32, 10] x 1"),
    ],
)
def test_malformed_trueshape_sidecars_are_refused(
    session: Path, tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    volume = tmp_path / "cor.nii"
    volume.write_bytes((session / "nifti" / "4_cor.nii").read_bytes())
    (tmp_path / "cor.json").write_text(json.dumps(_trueshape_sidecar(session, **changes)))
    code, output = _correct(session, volume, "malformed")
    assert code == 2 and "Traceback" not in output
    assert f"{tmp_path / 'cor.json'}: {message}" in output
    assert not (session / "malformed").exists() or not any((session / "malformed").iterdir())


def test_sidecar_without_isocentre_says_it_was_assumed(session: Path, tmp_path: Path) -> None:
    volume = tmp_path / "cor.nii"
    volume.write_bytes((session / "nifti" / "4_cor.nii").read_bytes())
    sidecar = _trueshape_sidecar(session)
    del sidecar["isocentre_lps"]
    (tmp_path / "cor.json").write_text(json.dumps(sidecar))
    code, output = _correct(session, volume, "no_isocentre")
    assert code == 0, output
    assumptions = json.loads((session / "no_isocentre" / "cor_corrected.json").read_text())["correction"]["assumptions"]
    assert any(a.startswith("isocentre not recorded: assumed at LPS [0.0, 0.0, 0.0]") for a in assumptions)


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ({"ImageType": "DIS2D"}, "ImageType must be a list of strings, got 'DIS2D'"),
        ({"ImageType": ["DIS2D"], "TablePosition": ["a"]}, "TablePosition must be a list of 3 finite numbers"),
        ({"ImageType": ["DIS2D"], "TablePosition": "0 0 120"}, "TablePosition must be a list of 3 finite numbers"),
        (
            {"ImageType": ["DIS2D"], "ImageOrientationPatientDICOM": [0.6, 0.8, 0, 0, 0, 1]},
            "ImageOrientationPatientDICOM [0.6, 0.8, 0.0, 0.0, 0.0, 1.0] is not along the volume's axes",
        ),
    ],
)
def test_malformed_dcm2niix_sidecars_are_refused(
    session: Path, tmp_path: Path, sidecar: dict[str, object], message: str
) -> None:
    volume = tmp_path / "cor.nii"
    volume.write_bytes((session / "nifti" / "4_cor.nii").read_bytes())
    (tmp_path / "cor.json").write_text(json.dumps(sidecar))
    code, output = _correct(session, volume, "bids_bad", "--isocentre", "0,0,0")
    assert code == 2 and "Traceback" not in output
    assert f"{tmp_path / 'cor.json'}: {message}" in output


def test_dcm2niix_orientation_matching_the_volume_is_accepted(session: Path) -> None:
    # A coronal series: rows along L-R, columns along S-I (dcm2niix may reverse either axis).
    bids = {"ImageType": ["DIS2D"], "PatientPosition": "FFS", "ImageOrientationPatientDICOM": [1, 0, 0, 0, 0, -1]}
    code, output = _correct(
        session,
        _bare_copy(session, "bids_iop", bids),
        "bids_iop_out",
        "--isocentre",
        ",".join(map(str, TABLE_ISOCENTRE_LPS)),
    )
    assert code == 0, output


def _nifti(
    path: Path,
    array: np.ndarray,
    *,
    codes: tuple[int, int] = (1, 1),
    affine: np.ndarray | None = None,
    unit: str = "mm",
) -> Path:
    image = nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine)
    image.header.set_xyzt_units(unit)
    nib.save(image, path)
    # nibabel fills in codes for an affine it is given; set the ones wanted in the bytes (qform 252, sform 254).
    data = bytearray(path.read_bytes())
    data[252:256] = np.array(codes[::-1], dtype="<i2").tobytes()
    path.write_bytes(bytes(data))
    return path


def _claiming(path: Path, shape: tuple[int, int, int]) -> Path:
    """Make the header claim ``shape`` (dim[1:4], bytes 42-47) over the data actually written."""
    data = bytearray(path.read_bytes())
    data[42:48] = np.array(shape, dtype="<i2").tobytes()
    path.write_bytes(bytes(data))
    return path


def _nan_sform(path: Path) -> Path:
    """Put NaN in the sform's second row (srow_y, bytes 296-311), as a damaged writer might."""
    data = bytearray(path.read_bytes())
    data[296:300] = np.array([np.nan], dtype="<f4").tobytes()
    path.write_bytes(bytes(data))
    return path


def _zero_axis(path: Path) -> Path:
    """Zero the sform's third row (srow_z, bytes 312-327): the k axis has no length (nibabel cannot save it)."""
    data = bytearray(path.read_bytes())
    data[312:328] = np.zeros(4, dtype="<f4").tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _nifti(p, np.zeros((6, 6, 4), np.complex64)), "voxel type complex64 is not a real scalar"),
        (lambda p: _nifti(p, np.zeros((6, 6, 4), np.float32), codes=(0, 0)), "no scanner coordinates"),
        (lambda p: _nifti(p, np.zeros((6, 6, 4), np.float32), unit="meter"), "spatial unit 'meter'"),
        (lambda p: _zero_axis(_nifti(p, np.zeros((6, 6, 4), np.float32), codes=(1, 0))), "zero-length axis"),
        (lambda p: _nifti(p, np.zeros((6, 6, 4), np.float32), codes=(4, 0)), "template space (NIfTI xform code 4)"),
        (
            lambda p: _nan_sform(_nifti(p, np.zeros((6, 6, 4), np.float32), codes=(1, 0))),
            "affine holds non-finite values",
        ),
        (
            lambda p: _claiming(_nifti(p, np.zeros((6, 6, 4), np.float32)), (30000, 30000, 30000)),
            "truncated: its header (30000 x 30000 x 30000 voxels) needs 108000000000000 bytes of data, the file holds",
        ),
        (lambda p: _claiming(_nifti(p, np.zeros((6, 6, 4), np.float32)), (6, 0, 4)), "the header gives an empty grid"),
    ],
)
def test_unusable_niftis_are_refused_with_their_name(session: Path, tmp_path: Path, make, message: str) -> None:
    volume = make(tmp_path / "odd[1].nii")
    code, output = _correct(session, volume, f"odd_{tmp_path.name}", "--state", "ND")
    assert code == 2 and "Traceback" not in output
    assert f"{volume}: " in output and message in output


def test_a_failure_while_writing_leaves_no_outputs(session: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trueshape.correction._pipeline
    from trueshape.errors import OutputError

    def broken(_volume: object, path: Path, **_kwargs: object) -> Path:
        raise OutputError(f"{path}: writing failed (No space left on device)")

    monkeypatch.setattr(trueshape.correction._pipeline, "write_volume", broken)
    code, output = _correct(session, session / "nifti" / "4_cor.nii", "full_disk")
    target = session / "full_disk" / "4_cor_corrected.nii"
    assert code == 2 and f"{target}: writing failed (No space left on device)" in output
    assert not (session / "full_disk").exists()  # no field, transform, staging folder, or folder at all


@pytest.fixture(scope="module")
def head_first(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ND axial series, head first supine, table moved so that the isocentre is at LPS z = +20 mm."""
    root = tmp_path_factory.mktemp("head_first")
    acquisition = Acquisition(
        plane=Plane.AXIAL,
        fov_mm=(120.0, 120.0),
        matrix=(24, 24),
        slices=8,
        slice_thickness_mm=6.0,
        centre_lps=(95.0, 0.0, 180.0),
        isocentre_lps=(0.0, 0.0, 20.0),
        patient_position=PatientPosition.HFS,
        distortion_state=DistortionState.NONE,
        in_plane_samples=1,
        slice_samples=1,
        series_number=2,
        description="ax",
    )
    return _session_with_nifti(root, acquisition)


@pytest.mark.parametrize(("table_z", "matches"), [(-20.0, True), (20.0, False)])
def test_dcm2niix_table_position_of_a_head_first_series(head_first: Path, table_z: float, matches: bool) -> None:
    # dcm2niix writes minus the table offset: on the real pair siemens-table-baseline / -moved-h20
    # (ImaRelTablePosition +20) it wrote TablePosition [0, 0, -20] (see trueshape/io/_volume_input.py).
    folder = head_first / f"bids_{table_z:+.0f}"
    folder.mkdir()
    (folder / "ax.nii").write_bytes((head_first / "nifti" / "2_ax.nii").read_bytes())
    (folder / "ax.json").write_text(
        json.dumps(
            {
                "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
                "PatientPosition": "HFS",
                "TablePosition": [0, 0, table_z],
            }
        )
    )
    out = head_first / f"out_{table_z:+.0f}"
    result = runner.invoke(
        app,
        [
            "correct",
            str(folder / "ax.nii"),
            "--coef",
            str(head_first / "SYN-AS.grad"),
            "--out",
            str(out),
            "--format",
            "nii",
        ],
    )
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "ax_corrected.json").read_text())
    assert sidecar["source"]["isocentre_lps"] == pytest.approx([0.0, 0.0, -table_z])
    expected = _image(head_first / "from_dicom" / "2_ax_corrected.nii")
    got = _image(out / "ax_corrected.nii")
    assert sidecar["correction"]["max_displacement_mm"] > 1.0
    difference = np.abs(got - expected).max() / np.abs(expected).max()
    assert bool(difference < 1e-4) is matches


def test_like_puts_the_corrected_volume_on_another_grid(session: Path) -> None:
    full = _image(session / "from_dicom" / "4_cor_corrected.nii")
    crop = nib.load(session / "nifti" / "4_cor.nii").slicer[2:20, 3:25, 1:8]
    nib.save(crop, session / "crop.nii")
    code, output = _correct(session, session / "nifti" / "4_cor.nii", "like_crop", "--like", str(session / "crop.nii"))
    assert code == 0, output
    on_crop = nib.load(session / "like_crop" / "4_cor_corrected.nii")
    np.testing.assert_allclose(on_crop.affine, crop.affine, atol=1e-6)
    np.testing.assert_allclose(np.asanyarray(on_crop.dataobj), full[2:20, 3:25, 1:8], atol=1e-3 * np.abs(full).max())
    sidecar = json.loads((session / "like_crop" / "4_cor_corrected.json").read_text())
    assert sidecar["output_grid"]["like"] == str(session / "crop.nii") and sidecar["output_grid"]["shape"] == [
        18,
        22,
        7,
    ]
    # The result is known as corrected: correcting it again leaves it as it is (its sidecar names its grid).
    code, output = _correct(session, session / "like_crop" / "4_cor_corrected.nii", "like_again")
    assert code == 0 and "already corrected in 3-D (DIS3D): nothing is left to correct" in output, output
    np.testing.assert_allclose(
        _image(session / "like_again" / "4_cor_corrected_corrected.nii"),
        np.asanyarray(on_crop.dataobj),
        atol=1e-6 * np.abs(full).max(),
    )
    # A DICOM series names a grid too: its own grid gives the default result.
    code, output = _correct(
        session, session / "nifti" / "4_cor.nii", "like_self", "--like", f"{session / 's' / 'dicom'}#4"
    )
    assert code == 0, output
    np.testing.assert_allclose(
        _image(session / "like_self" / "4_cor_corrected.nii"), full, atol=1e-4 * np.abs(full).max()
    )
    code, output = _correct(session, session / "nifti" / "4_cor.nii", "like_bad", "--like", str(session / "nope.nii"))
    assert code == 2 and "nope.nii: no such file" in output


def test_requests_that_would_give_an_empty_or_nan_image_are_refused(session: Path, tmp_path: Path) -> None:
    volume = session / "nifti" / "4_cor.nii"
    image = nib.load(volume)
    far = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), image.affine @ np.diag([1, 1, 1, 1.0]))
    far.affine[0, 3] += 2000.0
    far.set_sform(far.affine, code=1)
    nib.save(far, tmp_path / "far.nii")
    code, output = _correct(session, volume, "far", "--like", str(tmp_path / "far.nii"))
    assert code == 2 and f"{tmp_path / 'far.nii'}: its grid does not overlap" in output
    huge = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), image.affine)
    huge.header.set_data_shape((30000, 30000, 30000))
    (tmp_path / "huge.nii").write_bytes(huge.header.binaryblock + b"\0" * 4)  # a header claiming 100 TiB
    code, output = _correct(session, volume, "huge", "--like", str(tmp_path / "huge.nii"))
    assert code == 2 and "on a 30000 x 30000 x 30000 grid needs 100" in output and "GiB of memory" in output
    code, output = _correct(session, volume, "iso", "--isocentre", "1e30,0,0")
    assert code == 2 and "more than 5000 mm from the patient origin" in output
    blown = (session / "SYN-AS.grad").read_text().replace("-0.055000000  y", "1e300  y")
    assert blown != (session / "SYN-AS.grad").read_text()
    (tmp_path / "blown.grad").write_text(blown)
    result = runner.invoke(
        app, ["correct", str(volume), "--coef", str(tmp_path / "blown.grad"), "--out", str(tmp_path / "blown")]
    )
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and f"the residual field of {tmp_path / 'blown.grad'}" in message, message
    assert "over the output grid, beyond any gradient coil" in message and not (tmp_path / "blown").exists()
    for absent in ("far", "huge", "iso"):
        assert not (session / absent).exists()


def test_mode_none_is_not_offered(session: Path) -> None:
    code, output = _correct(session, session / "nifti" / "4_cor.nii", "none", "--mode", "none")
    assert code == 2 and "'none' is not one of" in output.replace("\u2018", "'").replace("\u2019", "'")


def test_a_converted_four_dimensional_series_corrects_from_its_sidecar(tmp_path: Path, write_series) -> None:
    from dataclasses import replace

    from trueshape.synth import regular_planes

    planes = [replace(p, overrides={"AcquisitionNumber": t + 1}) for t in range(3) for p in regular_planes(slices=5)]
    folder = write_series(planes)
    converted = runner.invoke(app, ["convert", str(folder), "--out", str(tmp_path / "nifti"), "--format", "nii"])
    assert converted.exit_code == 0, converted.output
    (volume,) = (tmp_path / "nifti").glob("*.nii")
    assert json.loads(volume.with_suffix(".json").read_text())["shape"][3] == 3
    (tmp_path / "c.grad").write_text(format_siemens_grad(SYN_AS))
    result = runner.invoke(
        app,
        ["correct", str(volume), "--coef", str(tmp_path / "c.grad"), "--out", str(tmp_path / "o"), "--format", "nii"],
    )
    assert result.exit_code == 0, result.output
    assert nib.load(next((tmp_path / "o").glob("*_corrected.nii"))).shape[3] == 3


def test_a_reoriented_dis2d_volume_is_corrected_along_its_acquired_slices(session: Path, tmp_path: Path) -> None:
    import pydicom

    # As dcm2niix -x or fslreorient2std leave it: the coronal slices no longer along the third array axis.
    canonical = nib.as_closest_canonical(nib.load(session / "nifti" / "4_cor.nii"))
    nib.save(canonical, tmp_path / "cor.nii")
    first = pydicom.dcmread(next((session / "s" / "dicom").rglob("*.dcm")), stop_before_pixels=True)
    (tmp_path / "cor.json").write_text(
        json.dumps(
            {
                "ImageType": ["ORIGINAL", "PRIMARY", "M", "DIS2D"],
                "PatientPosition": "FFS",
                "ImageOrientationPatientDICOM": [float(v) for v in first.ImageOrientationPatient],
            }
        )
    )
    isocentre = ",".join(str(v) for v in TABLE_ISOCENTRE_LPS)
    code, output = _correct(session, tmp_path / "cor.nii", "reoriented", "--isocentre", isocentre)
    assert code == 0, output
    corrected = _image(session / "reoriented" / "cor_corrected.nii")
    from_dicom = nib.as_closest_canonical(nib.load(session / "from_dicom" / "4_cor_corrected.nii"))
    reference = np.asanyarray(from_dicom.dataobj, dtype=np.float64)
    assert corrected.shape == reference.shape
    assert np.abs(corrected - reference).max() <= 1e-3 * np.abs(reference).max()
    field = nib.load(session / "reoriented" / "cor_residual_field.nii").get_fdata()
    assert np.abs(field[..., 0, 1]).max() > 0.3 and np.abs(field[..., 0, [0, 2]]).max() < 1e-9  # along A-P only


def test_a_given_patient_position_moves_the_isocentre_with_the_table_offset(session: Path) -> None:
    # Headers without PatientPosition: the isocentre computed for an assumed HFS is 240 mm off for this
    # feet-first series. --patient-position FFS must rotate the table offset again.
    bare = session / "no_position"
    bare.mkdir()
    for path in sorted((session / "s" / "dicom").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        del ds.PatientPosition
        ds.save_as(bare / path.name)
    code, output = _correct(session, bare, "no_position_out", "--patient-position", "FFS")
    assert code == 0, output
    assert "patient position FFS given by the caller" in output and "rotated for FFS" in output
    expected = _image(session / "from_dicom" / "4_cor_corrected.nii")
    got = _image(next((session / "no_position_out").glob("*_corrected.nii")))
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    # The same through a trueshape sidecar that records no patient position.
    sidecar = json.loads((session / "nifti" / "4_cor.json").read_text())
    assert sidecar["table_position_mm"] is not None
    target = _bare_copy(
        session, "no_position_nifti", {**sidecar, "patient_position": None, "isocentre_lps": [0.0, 0.0, 120.0]}
    )
    code, output = _correct(session, target, "no_position_nifti_out", "--patient-position", "FFS")
    assert code == 0, output
    np.testing.assert_allclose(
        _image(session / "no_position_nifti_out" / "cor_corrected.nii"), expected, atol=1e-4 * np.abs(expected).max()
    )


def test_a_model_for_another_coil_is_flagged(session: Path) -> None:
    from trueshape.io import write_scanner_model

    model = write_scanner_model(SYN_AS, session / "syn_as_model.json")  # coil id SYN-AS
    sidecar = json.loads((session / "nifti" / "4_cor.json").read_text())
    for coil, flagged in (("AS097", True), ("syn as", False)):
        target = _bare_copy(session, f"coil_{flagged}", {**sidecar, "gradient_coil": coil})
        result = runner.invoke(
            app,
            [
                "correct",
                str(target),
                "--model",
                str(model),
                "--out",
                str(session / f"coil_out_{flagged}"),
                "--format",
                "nii",
            ],
        )
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        written = json.loads((session / f"coil_out_{flagged}" / "cor_corrected.json").read_text())
        codes = [finding["code"] for finding in written["findings"]]
        if flagged:
            assert "COIL_MISMATCH" in text and "gradient coil 'AS097', but the coefficients describe 'SYN-AS'" in text
            assert codes == ["COIL_MISMATCH"]
        else:
            assert "COIL_MISMATCH" not in text and codes == []
