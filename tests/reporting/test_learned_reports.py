"""The reports of what `trueshape learn` and `trueshape estimate` wrote: the sessions' images compared, the
fields, the leave-one-session-out table and the coefficients with their uncertainty, and no patient identifier.

Two quick SYN-FEMUR sessions (the demo's learning subjects) whose headers carry a name, ID, birth date,
accession number and institution are learned with ``--report``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from trueshape.cli import app
from trueshape.demo_learn import LEARNING_SUBJECTS, learning_subject
from trueshape.gnl import SYN_AS
from trueshape.synth import write_session

pytestmark = pytest.mark.slow

IDENTIFIERS = {
    "PatientName": "ROE^RICHARD^K",
    "PatientID": "PID-5512087",
    "PatientBirthDate": "19540923",
    "AccessionNumber": "ACC-40417",
    "InstitutionName": "Mercy General Imaging",
}
FIGURE = re.compile(r'<figure id="([^"]+)"><img alt="([^"]*)"')


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``trueshape learn subject1 subject2 --out learned --report`` on sessions with identifiers in their headers."""
    root = tmp_path_factory.mktemp("learn_report")
    sessions = []
    for number, (scale, drop) in enumerate(LEARNING_SUBJECTS, start=1):
        phantom, acquisitions = learning_subject(scale, drop, quick=True)
        folder = root / f"subject{number}"
        write_session(folder, phantom, SYN_AS, acquisitions)
        for path in sorted((folder / "dicom").rglob("*.dcm")):
            dataset = pydicom.dcmread(path)
            for keyword, value in IDENTIFIERS.items():
                setattr(dataset, keyword, value)
            dataset.save_as(path)
        sessions.append(str(folder))
    result = CliRunner().invoke(app, ["learn", *sessions, "--out", str(root / "learned"), "--report"])
    assert result.exit_code == 0, result.output
    assert f"report: {root / 'learned' / 'report.html'}" in result.output
    return root / "learned"


def _figures(page: str) -> dict[str, str]:
    """Return figure id -> caption of a report page."""
    return {name: html.unescape(caption) for name, caption in FIGURE.findall(page)}


def test_the_learn_report_has_the_cross_validation_table_and_the_terms_with_uncertainty(learned: Path) -> None:
    page = (learned / "report.html").read_text(encoding="utf-8")
    quality = json.loads((learned / "model.json").read_text())["fit_quality"]
    table = page[page.index('<table class="cross-validation">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr><td>(subject\d)</td><td>([\d.]+)</td><td>([\d.]+)</td>", table)
    expected = [
        (c["session"], f"{c['rms_field_mm']:.3f}", f"{c['rms_difference_mm']:.3f}") for c in quality["cross_validation"]
    ]
    assert rows == expected and [r[0] for r in rows] == ["subject1", "subject2"]
    assert all(0 < float(difference) < float(field) for _, field, difference in rows)
    figures = _figures(page)
    assert "standard error" in figures["learned_terms"]
    # Each session's estimate follows, with its pair compared, its field and its coefficients.
    for session in ("subject1", "subject2"):
        for kind in ("magnet", "checkerboard", "by_distance", "terms"):
            assert f"{session}_{kind}" in figures, (session, kind)
            assert (learned / "report_figures" / f"{session}_{kind}.png").stat().st_size > 10_000
        assert any(name.startswith(session) and name.endswith("_displacement") for name in figures)
        assert any(name.startswith(session) and name.endswith("_slices") for name in figures)


def test_the_estimate_report_compares_reference_and_moving_before_and_after(learned: Path) -> None:
    session = learned / "subject1"
    result = CliRunner().invoke(app, ["report", str(session)])
    assert result.exit_code == 0, result.output
    page = (session / "report.html").read_text(encoding="utf-8")
    estimate = json.loads((session / "estimate.json").read_text())
    assert "<title>trueshape estimate: subject1</title>" in page
    fit = estimate["fit"]
    assert f"{100 * fit['agreement_before']:.1f}% before, {100 * fit['agreement_after']:.1f}% after" in page
    figures = _figures(page)
    compared = re.search(r"RMS difference ([\d.]+) before, ([\d.]+) after", figures["subject1_checkerboard"])
    assert compared is not None
    before, after = (float(v) for v in compared.groups())
    assert 0 < after < before  # the corrected moving series agrees better with the reference
    label = estimate["moving"]["label"]
    assert "residual displacement the correction removed" in figures[f"subject1_{label}_displacement"]
    assert "by distance from the isocentre" in figures["subject1_by_distance"]
    determined = [t for t in estimate["identifiability"]["terms"] if t["determined"]]
    assert determined and all(t["standard_error"] > 0 for t in determined)


def test_no_report_names_the_patient(learned: Path) -> None:
    pages = sorted(learned.rglob("report.html"))
    assert len(pages) >= 1
    for path in pages:
        text = path.read_text(encoding="utf-8")
        for value in IDENTIFIERS.values():
            assert value not in text and value.replace("^", " ") not in text, (path, value)
