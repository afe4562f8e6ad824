"""Siemens .grad / .coef and trueshape model JSON: round trips, gradunwarp compatibility, line-numbered errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from trueshape.errors import CoefficientFileError, OutputExistsError
from trueshape.gnl import (
    SYN_AS,
    CoefficientFrame,
    GradientCoefficients,
    format_siemens_grad,
    read_coefficients,
    read_scanner_model,
    read_siemens_coef,
    read_siemens_grad,
    scanner_model_json,
)
from trueshape.io import write_scanner_model

VENDOR_STYLE_GRAD = """\
#*[ Script ****************************************************************************
#*  Name: synthetic test coil
#*] END:
 R0 = 0.25 m, lnorm = 4? A(1,0) = B(1,1) = A(1,1) = 0
 NO.  TYPE   SPECTRUM   AXIS
   1 A( 3, 0)   -0.080   z
   2 A( 5, 0)   -0.030   z
 101 A( 3, 1)   -0.055   x
 102 B( 2, 1)    1.5e-3  x
 201 B( 3, 1)   -0.055   y
"""

# gradunwarp's own patterns (core/coeffs.py, grad_file_parse), to prove its parser reads what we write.
GRADUNWARP_ROW = re.compile(
    r"(?P<no>\d+)[\s]+(?P<aorb>[AB])[\s]*\(\s*(?P<x>\d+),\s*(?P<y>\d+)\)\s+(?P<spectrum>[\-]?\d+\.\d+)\s+(?P<axis>[xyz])"
)
GRADUNWARP_R0 = re.compile(r"(?P<R0>\d+\.\d+) m = R0")


def assert_same_coil(a: GradientCoefficients, b: GradientCoefficients) -> None:
    size = max(a.alpha.shape[1], b.alpha.shape[1])

    def padded(table: np.ndarray) -> np.ndarray:
        out = np.zeros((3, size, size))
        out[:, : table.shape[1], : table.shape[2]] = table
        return out

    np.testing.assert_allclose(padded(a.alpha), padded(b.alpha), atol=1e-12)
    np.testing.assert_allclose(padded(a.beta), padded(b.beta), atol=1e-12)
    assert a.r0_mm == pytest.approx(b.r0_mm)
    assert a.frame is b.frame


def test_grad_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "syn_as.grad"
    path.write_text(format_siemens_grad(SYN_AS))
    coil = read_siemens_grad(path)
    assert_same_coil(coil, SYN_AS)
    assert str(path) in coil.source


def test_written_grad_is_read_by_gradunwarp_patterns() -> None:
    text = format_siemens_grad(SYN_AS)
    rows = [GRADUNWARP_ROW.search(line) for line in text.splitlines()]
    found = {(m["axis"], m["aorb"], int(m["x"]), int(m["y"])): float(m["spectrum"]) for m in rows if m}
    assert found == {(t.axis, t.kind.value, t.n, t.m): t.value for t in SYN_AS.terms()}
    r0 = GRADUNWARP_R0.search(text)
    assert r0 is not None and float(r0["R0"]) == 0.25


def test_vendor_style_grad(tmp_path: Path) -> None:
    path = tmp_path / "coil.grad"
    path.write_text(VENDOR_STYLE_GRAD)
    before = path.read_bytes()
    coil = read_coefficients(path)
    assert coil.r0_mm == 250.0
    assert coil.alpha[2, 3, 0] == -0.080 and coil.alpha[2, 5, 0] == -0.030
    assert coil.alpha[0, 3, 1] == -0.055 and coil.beta[0, 2, 1] == 1.5e-3
    assert coil.beta[1, 3, 1] == -0.055
    assert path.read_bytes() == before  # read as-is, never modified


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (" 103 A( 5 1)  -0.035  x", "line 9"),
        (" 103 A( 5, 1)  -0.0x35  x", "line 9"),
        (" 103 A( 1, 3)  -0.035  x", r"line 9: term A\(1,3\) needs 0 <= m <= n"),
        (" 103 A( 3, 1)  -0.035  x", "line 9: term A\\(3,1\\) of axis x repeats line 8"),
    ],
)
def test_malformed_grad_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    lines = VENDOR_STYLE_GRAD.splitlines()
    lines.insert(8, bad_line)
    path = tmp_path / "broken.grad"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CoefficientFileError, match=message) as caught:
        read_siemens_grad(path)
    assert str(path) in str(caught.value)


def test_grad_without_r0(tmp_path: Path) -> None:
    path = tmp_path / "nor0.grad"
    path.write_text(VENDOR_STYLE_GRAD.replace(" R0 = 0.25 m,", ""))
    with pytest.raises(CoefficientFileError, match="no line states R0") as caught:
        read_siemens_grad(path)
    assert str(path) in str(caught.value)


def test_grad_with_unreadable_r0(tmp_path: Path) -> None:
    path = tmp_path / "badr0.grad"
    path.write_text(VENDOR_STYLE_GRAD.replace("R0 = 0.25 m", "R0 = quarter"))
    with pytest.raises(CoefficientFileError, match="line 4: cannot read R0"):
        read_siemens_grad(path)


def coef_text(coil: GradientCoefficients, *, r0_comment: bool) -> str:
    # gradunwarp's .coef names: x A terms are alpha_y, y B terms beta_x, z A terms alpha_x.
    names = {
        ("x", "A"): "alpha_y",
        ("y", "A"): "alpha_z",
        ("z", "A"): "alpha_x",
        ("x", "B"): "beta_y",
        ("y", "B"): "beta_x",
        ("z", "B"): "beta_z",
    }
    lines = ["# synthetic coefficients"] + (["# R0 = 0.25 m"] if r0_comment else []) + [""]
    lines += [f"{names[(t.axis, t.kind.value)]} {t.n} {t.m} {t.value!r};" for t in coil.terms()]
    return "\n".join(lines) + "\n"


def test_coef_round_trip_with_r0_in_file(tmp_path: Path) -> None:
    path = tmp_path / "any_name.coef"
    path.write_text(coef_text(SYN_AS, r0_comment=True))
    assert_same_coil(read_siemens_coef(path), SYN_AS)


def test_coef_r0_from_caller(tmp_path: Path) -> None:
    path = tmp_path / "sonata.coef"  # gradunwarp would guess R0 from this name; trueshape does not
    path.write_text(coef_text(SYN_AS, r0_comment=False))
    with pytest.raises(CoefficientFileError, match="pass r0_mm"):
        read_siemens_coef(path)
    coil = read_coefficients(path, r0_mm=250.0)
    assert_same_coil(coil, SYN_AS)


def test_malformed_coef_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.coef"
    text = coef_text(SYN_AS, r0_comment=True).splitlines()
    text.insert(5, "gamma_x 3 1 0.1;")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(CoefficientFileError, match=r"broken\.coef, line 6: malformed term"):
        read_siemens_coef(path)


def test_model_json_round_trip(tmp_path: Path) -> None:
    coil = GradientCoefficients.from_terms(
        240.0,
        {("x", "A", 3, 1): -0.05, ("y", "B", 2, 1): 0.01, ("z", "A", 2, 0): 0.002},
        frame=CoefficientFrame.MAGNET,
        coil_id="FIT-1",
        provenance={"sessions": ["a", "b"]},
        fit_quality={"rms_residual_mm": 0.06},
    )
    path = write_scanner_model(coil, tmp_path / "scanner.json")
    back = read_scanner_model(path)
    assert_same_coil(back, coil)
    assert back.coil_id == "FIT-1"
    assert back.provenance == {"sessions": ["a", "b"]}
    assert back.fit_quality == {"rms_residual_mm": 0.06}
    document = json.loads(path.read_text())
    assert document["r0_mm"] == 240.0 and document["frame"] == "magnet"
    with pytest.raises(OutputExistsError):
        write_scanner_model(coil, path)
    write_scanner_model(SYN_AS, path, force=True)
    assert_same_coil(read_coefficients(path), SYN_AS)


def _model_lines() -> list[str]:
    return scanner_model_json(SYN_AS).splitlines()


def _line_of(lines: list[str], needle: str) -> int:
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


def test_model_json_syntax_error_names_line(tmp_path: Path) -> None:
    lines = _model_lines()
    number = _line_of(lines, '"n": 5, "m": 3')
    lines[number - 1] = lines[number - 1].replace('"m": 3', '"m" 3')
    path = tmp_path / "bad.json"
    path.write_text("\n".join(lines))
    with pytest.raises(CoefficientFileError, match=rf"bad\.json, line {number}: invalid JSON"):
        read_scanner_model(path)


def test_model_json_bad_term_names_line(tmp_path: Path) -> None:
    lines = _model_lines()
    number = _line_of(lines, '"n": 5, "m": 3')
    lines[number - 1] = lines[number - 1].replace('"m": 3', '"m": 6')
    path = tmp_path / "bad.json"
    path.write_text("\n".join(lines))
    with pytest.raises(CoefficientFileError, match=rf"line {number}: term A\(5,6\) needs 0 <= m <= n"):
        read_scanner_model(path)


def test_model_json_missing_field_names_line(tmp_path: Path) -> None:
    lines = _model_lines()
    number = _line_of(lines, '"n": 3, "m": 3')
    lines[number - 1] = re.sub(r', "value": [^}]+', "", lines[number - 1])
    path = tmp_path / "bad.json"
    path.write_text("\n".join(lines))
    with pytest.raises(CoefficientFileError, match=rf"line {number}: the term lacks the field 'value'"):
        read_scanner_model(path)


def test_model_json_unknown_frame(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(scanner_model_json(SYN_AS).replace('"frame": "LAI"', '"frame": "RAS"'))
    with pytest.raises(CoefficientFileError, match="line 1: unknown frame 'RAS'"):
        read_scanner_model(path)


def test_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(CoefficientFileError, match="unknown coefficient file type"):
        read_coefficients(tmp_path / "coil.txt")
    with pytest.raises(CoefficientFileError, match="cannot read"):
        read_coefficients(tmp_path / "missing.grad")


def test_a_file_missing_a_gradient_axis_is_refused(tmp_path: Path) -> None:
    truncated = tmp_path / "cut.grad"
    truncated.write_text("\n".join(format_siemens_grad(SYN_AS).splitlines()[:8]) + "\n")  # z and x rows only
    with pytest.raises(CoefficientFileError, match=r"cut\.grad.*no coefficient rows for the y gradient"):
        read_siemens_grad(truncated)
    model = json.loads(scanner_model_json(SYN_AS))
    del model["coefficients"]["y"]
    (tmp_path / "m.json").write_text(json.dumps(model))
    with pytest.raises(CoefficientFileError, match=r"m\.json.*'coefficients' lacks the y gradient"):
        read_scanner_model(tmp_path / "m.json")
    model["coefficients"] = {}
    (tmp_path / "m.json").write_text(json.dumps(model))
    with pytest.raises(CoefficientFileError, match=r"lacks the x and y and z gradient"):
        read_scanner_model(tmp_path / "m.json")


def test_a_coil_with_a_linear_only_gradient_reads_back_from_both_formats(tmp_path: Path) -> None:
    coil = GradientCoefficients.from_terms(250.0, {("z", "A", 3, 0): -0.08})
    (tmp_path / "z.grad").write_text(format_siemens_grad(coil))
    (tmp_path / "z.json").write_text(scanner_model_json(coil))
    for path in (tmp_path / "z.grad", tmp_path / "z.json"):
        back = read_coefficients(path)
        assert [(t.axis, t.kind.value, t.n, t.m, t.value) for t in back.terms()] == [("z", "A", 3, 0, -0.08)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"provenance": [1, 2]}, "the field 'provenance' must be an object (got list)"),
        ({"fit_quality": "good"}, "the field 'fit_quality' must be an object (got str)"),
        ({"format_version": 0}, "format_version must be 1 or more, got 0"),
    ],
)
def test_model_json_mistyped_optional_fields(tmp_path: Path, change: dict[str, object], message: str) -> None:
    model = json.loads(scanner_model_json(SYN_AS)) | change
    (tmp_path / "m.json").write_text(json.dumps(model))
    with pytest.raises(CoefficientFileError, match=re.escape(message)):
        read_scanner_model(tmp_path / "m.json")


def test_model_json_with_a_byte_order_mark_and_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + scanner_model_json(SYN_AS).encode())
    assert list(read_scanner_model(path).terms()) == list(SYN_AS.terms())
    path.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(CoefficientFileError, match="nested too deeply"):
        read_scanner_model(path)


def test_r0_option_is_checked_and_only_for_coef_files(tmp_path: Path) -> None:
    coef = tmp_path / "c.coef"
    coef.write_text("alpha_z 3 0 -0.08;\nalpha_x 3 1 -0.055;\nbeta_y 3 1 -0.055;\n")
    for bad in (-5.0, 0.0, float("nan"), float("inf")):
        with pytest.raises(CoefficientFileError, match=r"c\.coef: the reference radius R0 \(--r0-mm\) must be"):
            read_coefficients(coef, r0_mm=bad)
    assert read_coefficients(coef, r0_mm=250.0).r0_mm == 250.0
    grad = tmp_path / "c.grad"
    grad.write_text(format_siemens_grad(SYN_AS))
    with pytest.raises(CoefficientFileError, match=r"c\.grad: states its own reference radius"):
        read_coefficients(grad, r0_mm=250.0)


@pytest.mark.parametrize("row", ["B( 3, 1) -0.055 y", " 201B( 3, 1) -0.055 y", " 201 b( 3, 1) -0.055 y"])
def test_grad_rows_outside_the_vendor_layout_are_refused_not_skipped(tmp_path: Path, row: str) -> None:
    # Skipping the row (as gradunwarp's parser does) would flip the sign of the y field at y = 150 mm.
    path = tmp_path / "odd.grad"
    path.write_text(VENDOR_STYLE_GRAD.replace(" 201 B( 3, 1)   -0.055   y", row))
    with pytest.raises(CoefficientFileError, match=r"odd\.grad, line 10: malformed coefficient row"):
        read_siemens_grad(path)


def test_grad_line_numbers_count_only_line_breaks(tmp_path: Path) -> None:
    # 0x85 (Windows-1252 ellipsis) and a form feed are characters, not line ends, for an editor.
    text = VENDOR_STYLE_GRAD.replace("synthetic test coil", "coil \x85 (\x0c)")
    text = text.replace("   -0.055   y", "   -0.0x5   y")
    path = tmp_path / "latin.grad"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(CoefficientFileError, match=r"line 10: malformed coefficient row"):
        read_siemens_grad(path)


def test_grad_r0_statements_must_agree_and_prose_may_mention_r0(tmp_path: Path) -> None:
    path = tmp_path / "two.grad"
    path.write_text(VENDOR_STYLE_GRAD + "# note: R0 = 0.275 m for the long version\n")
    with pytest.raises(CoefficientFileError, match=r"two\.grad, line 11: states R0 = 275 mm, but line 4 states 250"):
        read_siemens_grad(path)
    path.write_text(VENDOR_STYLE_GRAD.replace("#*] END:", "# Note : R0 = reference radius of the expansion"))
    assert read_siemens_grad(path).r0_mm == 250.0


def test_grad_encodings(tmp_path: Path) -> None:
    path = tmp_path / "wide.grad"
    path.write_bytes(VENDOR_STYLE_GRAD.encode("utf-16"))  # with a byte-order mark
    assert read_siemens_grad(path).r0_mm == 250.0
    path.write_bytes(VENDOR_STYLE_GRAD.encode("utf-16-le"))
    with pytest.raises(CoefficientFileError, match=r"wide\.grad: holds NUL bytes"):
        read_siemens_grad(path)


def test_coef_inline_r0_comment_keeps_the_term_and_conflicts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "inline.coef"
    lines = coef_text(SYN_AS, r0_comment=False).splitlines()
    lines[2] += "  # R0 = 0.25 m (AS coil)"
    path.write_text("\n".join(lines) + "\n")
    assert_same_coil(read_siemens_coef(path), SYN_AS)
    assert read_coefficients(path, r0_mm=250.0).r0_mm == 250.0
    with pytest.raises(CoefficientFileError, match=r"inline\.coef, line 3: states R0 = 250 mm; --r0-mm 300 disagrees"):
        read_coefficients(path, r0_mm=300.0)


def test_model_json_duplicate_keys_huge_numbers_and_null_coil(tmp_path: Path) -> None:
    path = write_scanner_model(SYN_AS, tmp_path / "scanner.json")
    text = path.read_text()
    extra = '\n    "x": [{"type": "A", "n": 7, "m": 1, "value": 0.001}],'
    twice = text.replace('"coefficients": {', '"coefficients": {' + extra)
    path.write_text(twice)
    with pytest.raises(CoefficientFileError, match=r"scanner\.json, line \d+: the key 'x' appears twice"):
        read_scanner_model(path)
    path.write_text(text.replace('"r0_mm": 250.0', '"r0_mm": ' + "9" * 400))
    with pytest.raises(CoefficientFileError, match=r"scanner\.json, line 1: the model field 'r0_mm' is too large"):
        read_scanner_model(path)
    path.write_text(re.sub(r'"coil_id": "[^"]*"', '"coil_id": null', text))
    assert read_scanner_model(path).coil_id == ""
    path.write_text(re.sub(r'"coil_id": "[^"]*"', '"coil_id": 7', text))
    with pytest.raises(CoefficientFileError, match="'coil_id' must be text or null"):
        read_scanner_model(path)
