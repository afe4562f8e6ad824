"""``trueshape inspect``: a diagnosis and the next command per stack, predictions with --coef, --summary, ``#``."""

from __future__ import annotations

import datetime
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from tests.conftest import write_coronal_session
from typer.testing import CliRunner

from trueshape._version import __version__
from trueshape.cli import app
from trueshape.cli._common import _hanging
from trueshape.dicom import DistortionState
from trueshape.gnl import SYN_AS
from trueshape.synth import regular_planes

runner = CliRunner()

#: The tests' coronal session puts the isocentre here (table moved), LPS mm; the patient lies head first supine,
#: so magnet axes are LPS axes from it.
ISOCENTRE_LPS = np.array([0.0, 0.0, -120.0])


def run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def flat(text: str) -> str:
    return " ".join(text.split())


def test_a_dis2d_series_gets_a_diagnosis_and_the_command_that_corrects_it(tmp_path: Path) -> None:
    dicom, _ = write_coronal_session(tmp_path)
    code, output = run("inspect", dicom)
    assert code == 0, output
    text = flat(output)
    assert "Diagnosis: Not the loader: every slice lies where its header says (10 slices)." in text
    assert (
        "Cause 2: the scanner corrected gradient distortion within each slice only (DIS2D); the front-to-back" in text
    )
    # One series: the folder alone names it; the command is ready to paste.
    assert f"Next: trueshape correct {dicom} --coef coeff.grad --out corrected" in text
    assert "Where coeff.grad comes from: coeff.grad is the scanner's coefficient file: ask your site physicist" in text
    # Piped (not a terminal): each finding is one line that keeps its severity as a word.
    assert re.search(
        r"^ +\[warning\] DISTORTION_2D_ONLY The scanner corrected .* reaches \d+ mm from it\.$",
        output,
        flags=re.MULTILINE,
    ), output


def test_a_dis3d_series_is_said_to_be_corrected_in_3d(tmp_path: Path) -> None:
    dicom, coil = write_coronal_session(tmp_path, distortion_state=DistortionState.FULL_3D)
    code, output = run("inspect", dicom, "--coef", coil)
    assert code == 0, output
    text = flat(output)
    assert "The scanner corrected this in 3-D (DIS3D): no gradient distortion is left to remove." in text
    assert "Predicted with SYN-AS.grad: nothing left: the scanner corrected this in 3-D." in text
    assert f"Next: trueshape convert {dicom} --out converted" in text
    assert "typically displaces anatomy" not in text


def test_coefficients_predict_the_displacement_at_a_point_and_in_the_object(tmp_path: Path) -> None:
    dicom, coil = write_coronal_session(tmp_path)
    point = np.array([95.0, -20.0, -90.0])  # near the front of the left femoral head
    code, output = run("inspect", f"{dicom}#4", "--coef", coil, "--point", "95,-20,-90", "--json")
    assert code == 0, output
    (stack,) = json.loads(output)["predictions"]
    (state,) = stack["predictions"]
    assert state["distortion_state"] == "DIS2D"
    (at_point,) = state["points"]
    # DIS2D coronal: only the coil's front-back (y) component remains; HFS: magnet axes = LPS axes.
    expected = SYN_AS.displacement_magnet(point - ISOCENTRE_LPS)
    np.testing.assert_allclose(at_point["displacement_lps"], [0.0, expected[1], 0.0], atol=1e-3)
    assert at_point["distance_from_isocentre_mm"] == pytest.approx(float(np.linalg.norm(point - ISOCENTRE_LPS)))
    inside = state["object"]
    assert 0.0 < inside["p95_mm"] <= inside["max_mm"] <= state["field_of_view_max_mm"] + 1e-9
    edge = np.asarray(inside["edge_lps"])
    assert inside["edge_distance_mm"] == pytest.approx(float(np.linalg.norm(edge - ISOCENTRE_LPS)))
    edge_expected = SYN_AS.displacement_magnet(edge - ISOCENTRE_LPS)
    np.testing.assert_allclose(inside["edge_displacement_lps"], [0.0, edge_expected[1], 0.0], atol=1e-3)
    # The same numbers in words.
    code, output = run("inspect", f"{dicom}#4", "--coef", coil, "--point", "95,-20,-90")
    assert code == 0, output
    text = flat(output)
    moved = f"{abs(expected[1]):.2f} mm (LPS +0.00, {expected[1]:+.2f}, +0.00)"
    assert (
        f"At LPS 95, -20, -90 mm ({np.linalg.norm(point - ISOCENTRE_LPS):.0f} mm from the isocentre): {moved}" in text
    )
    assert f"inside the object 95% of it moves at most {inside['p95_mm']:.1f} mm" in text
    assert f"Next: trueshape correct {dicom}#4 --coef {coil} --out corrected" in text


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--point", "1,2,3"], "error: --point needs --coef or --model"),
        (
            ["--coef", "COIL", "--point", "1,2"],
            "error: --point needs three numbers X,Y,Z in mm (patient LPS), got '1,2'",
        ),
        (["--model", "COIL"], "vendor coefficients (.grad): give them with --coef, not --model"),
        (["--coef", "MODEL"], "a scanner model (.json): give it with --model, not --coef"),
    ],
)
def test_wrong_options_are_refused_in_one_line(tmp_path: Path, arguments: list[str], said: str) -> None:
    dicom, coil = write_coronal_session(tmp_path)
    model = tmp_path / "model.json"
    model.write_text("{}")
    arguments = [str(coil) if a == "COIL" else str(model) if a == "MODEL" else a for a in arguments]
    code, output = run("inspect", dicom, *arguments)
    assert code == 2
    assert len(output.splitlines()) == 1 and said in output, output


def test_correct_refuses_a_grad_file_given_as_a_model(tmp_path: Path) -> None:
    dicom, coil = write_coronal_session(tmp_path)
    code, output = run("correct", dicom, "--model", coil, "--out", tmp_path / "out")
    assert code == 2
    assert output.splitlines() == [f"error: {coil}: vendor coefficients (.grad): give them with --coef, not --model"]
    assert not (tmp_path / "out").exists()


def test_version() -> None:
    code, output = run("--version")
    assert code == 0 and output == f"trueshape {__version__}\n"


@pytest.mark.parametrize(
    "command", [[], ["inspect"], ["convert"], ["correct"], ["estimate"], ["learn"], ["model", "fit"]]
)
def test_help_shows_flags_as_flags_and_ends_with_an_example(command: list[str]) -> None:
    code, output = run(*command, "--help")
    assert code == 0
    assert "<bool>" not in output  # a flag takes no value ('--json true' fails)
    assert ("Start with: trueshape inspect" if not command else "Example: trueshape " + " ".join(command)) in output


def test_summary_gives_one_line_per_stack_under_a_header(write_series, tmp_path: Path) -> None:
    root = tmp_path / "visit"
    study = {"study_instance_uid": "1.2.826.0.1.3680043.8.498.1", "study_at": datetime.datetime(2024, 3, 1, 9)}
    for number in range(1, 11):
        write_series(
            regular_planes(slices=3 + number),
            root / f"s{number:02d}",
            series_number=number,
            series_description=f"t1 series {number}",
            **study,
        )
    code, output = run("inspect", root, "--summary")
    assert code == 0, output
    lines = output.splitlines()
    assert len(lines) == 12, output  # where and when, the column names, ten stacks
    assert lines[0] == f"{root}: 10 series, 10 stacks; study date 2024-03-01"
    assert "TRUESHAPE^SYNTHETIC" not in output  # patient identifiers only when asked for
    code, output = run("inspect", root, "--summary", "--show-identifiers")
    assert output.splitlines()[0].endswith("study date 2024-03-01; patient TRUESHAPE^SYNTHETIC (TS0001)")
    assert lines[1].split() == ["#", "description", "shape", "spacing", "(mm)", "state", "reach", "worst", "finding"]
    for number, line in enumerate(lines[2:], start=1):
        words = line.split()
        assert words[:4] == [str(number), "t1", "series", str(number)]
        assert f"x{3 + number}" in words[4]  # the shape's slices
        assert "[info]" in line or "[warning]" in line  # a severity stays a word when piped


def test_summary_names_series_that_share_a_number_so_that_hash_picks_them(write_series, tmp_path: Path) -> None:
    root = tmp_path / "visits"
    for subject, slices in (("subject01", 4), ("subject02", 5)):
        write_series(
            regular_planes(slices=slices), root / subject / "dicom", series_number=3, series_description="t1_fl2d_sag"
        )
    code, output = run("inspect", root, "--summary")
    assert code == 0, output
    picks = [line.split()[0] for line in output.splitlines()[2:]]
    assert picks == ["3_t1_fl2d_sag_subject01", "3_t1_fl2d_sag_subject02"]
    # The full listing's headers say which visit each series comes from.
    code, output = run("inspect", root)
    assert re.findall(r"Series 3 t1_fl2d_sag \(MR\) - (subject0\d)/dicom, study \d{4}-\d\d-\d\d", output) == [
        "subject01",
        "subject02",
    ], output
    code, output = run("inspect", f"{root}#{picks[1]}", "--summary")
    assert code == 0, output
    assert len(output.splitlines()) == 3 and "x5" in output.splitlines()[2]


def test_hash_selects_in_inspect_as_in_correct(write_series, tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    write_series(regular_planes(slices=4), root / "a", series_number=3, series_description="cor hips")
    write_series(regular_planes(slices=5), root / "b", series_number=4, series_description="ax")
    for selector in ("4", "ax"):
        code, output = run("inspect", f"{root}#{selector}")
        assert code == 0, output
        assert "Series 4 ax" in output and "Series 3" not in output
        assert "Cause 3: the scanner did not correct gradient distortion (ND)" in flat(output)
        assert f"Next: trueshape correct {root}#4 --coef coeff.grad --out corrected" in flat(output)
    code, output = run("inspect", f"{root}#9")
    assert code == 2
    assert output.splitlines() == [
        f"error: {root}: no stack matches series '9' (available: 3:1 (3_cor_hips), 4:1 (4_ax))"
    ]


def test_hanging_indent_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=60, color_system=None)
    _hanging("[warning]", "CODE " + "word " * 30, indent=4, console=console)
    lines = buffer.getvalue().splitlines()
    assert len(lines) > 2 and lines[0].startswith("    [warning] CODE word")
    assert all(line.startswith(" " * 8) and not line.startswith(" " * 9) for line in lines[1:])
    assert max(len(line) for line in lines) < 60


def test_a_model_predicts_as_the_coefficient_file_of_the_same_coil(tmp_path: Path) -> None:
    from trueshape.io import write_scanner_model

    dicom, coil = write_coronal_session(tmp_path)
    model = write_scanner_model(SYN_AS, tmp_path / "model.json")
    _, by_file = run("inspect", dicom, "--coef", coil, "--point", "95,-20,-90", "--json")
    code, by_model = run("inspect", dicom, "--model", model, "--point", "95,-20,-90", "--json")
    assert code == 0, by_model
    from_file = json.loads(by_file)["predictions"][0]["predictions"][0]
    from_model = json.loads(by_model)["predictions"][0]["predictions"][0]
    np.testing.assert_allclose(
        from_model["points"][0]["displacement_lps"], from_file["points"][0]["displacement_lps"], atol=1e-6
    )
    assert from_model["object"]["p95_mm"] == pytest.approx(from_file["object"]["p95_mm"], abs=1e-6)
    code, text = run("inspect", dicom, "--model", model)
    assert code == 0 and "Predicted with model.json:" in flat(text)
    assert f"Next: trueshape correct {dicom} --model {model} --out corrected" in flat(text)
