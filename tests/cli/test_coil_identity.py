"""Which gradient coil the coefficients belong to: read from a .grad header, checked against the series' own coil."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from tests.conftest import write_coronal_session
from typer.testing import CliRunner

from trueshape.cli import app
from trueshape.dicom.vendor import SIEMENS_XA_SDS
from trueshape.gnl import SYN_AS, format_siemens_grad, read_siemens_grad

runner = CliRunner()

#: A vendor-style header (as Siemens scripts write it) that names the coil in its description.
SIEMENS_HEADER = """\
#*[ Script ****************************************************************\\
#
# Name        : $PDIR/default/meas/coeff_AC44.grad
#
# Description : Defines Legendre coefficients in spherical harmonics for
#               high end gradient coil AC44 (Allegra).
#
#****************************************************************************/
"""


def _with_header(header: str) -> str:
    """SYN-AS's rows under another header (the header trueshape writes dropped)."""
    rows = [line for line in format_siemens_grad(SYN_AS).splitlines() if not line.startswith("#")]
    return header + "\n".join(rows) + "\n"


@pytest.mark.parametrize(
    ("header", "coil"),
    [
        (SIEMENS_HEADER, "AC44"),
        ("# Name        : AS097.grad (Basis #1007-#1010 gemessen, 4/2/08)\n", "AS097"),
        ("#*] Gradient coil: AS82\n", "AS82"),
        # A model name is not a coil id, and a file that names nothing has none (never its file name).
        ("# Description : Legendre coefficients for Gradient Coil Verio (r0=0.25m)\n", ""),
        ("#*] some coil\n", ""),
    ],
)
def test_the_coil_is_read_from_the_grad_header(tmp_path: Path, header: str, coil: str) -> None:
    path = tmp_path / "coeff_AS92.grad"
    path.write_text(_with_header(header))
    read = read_siemens_grad(path)
    assert read.coil_id == coil
    assert bool(read.provenance.get("coil_id_from")) == bool(coil)


def test_trueshape_writes_the_coil_where_it_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "coil.grad"
    path.write_text(format_siemens_grad(SYN_AS))
    assert read_siemens_grad(path).coil_id == "SYN-AS"


def _series_on_coil(root: Path, coil: str) -> Path:
    """The tests' DIS2D coronal series, its slices saying they were acquired on gradient coil ``coil``."""
    dicom, _ = write_coronal_session(root)
    for file in sorted(dicom.rglob("*.dcm")):
        dataset = pydicom.dcmread(file)
        dataset.private_block(0x0021, SIEMENS_XA_SDS, create=True).add_new(0x33, "SH", coil)
        dataset.save_as(file)
    return dicom


@pytest.mark.parametrize(
    ("header", "code", "said"),
    [
        ("#*] Gradient coil: AS097\n", "COIL_MISMATCH", "acquired on gradient coil 'AS82', but the coefficients "
         "describe 'AS097'"),
        ("#*] a coefficient file\n", "COIL_UNVERIFIED", "the coefficient file names no coil; the series was "
         "acquired on AS82 - make sure it belongs to this scanner"),
    ],
)
def test_a_series_of_coil_as82_is_checked_against_the_coefficients(
    tmp_path: Path, header: str, code: str, said: str
) -> None:
    dicom = _series_on_coil(tmp_path, "AS82")
    coefficients = tmp_path / "coeff.grad"
    coefficients.write_text(_with_header(header))
    result = runner.invoke(app, ["correct", str(dicom), "--coef", str(coefficients), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    severity = "[warning]" if code == "COIL_MISMATCH" else "[info]"
    assert f"{severity} {code}" in text and said in text
    sidecar = json.loads(next((tmp_path / "out").glob("*_corrected.json")).read_text())
    recorded = [f for f in sidecar["findings"] if f["code"] == code]
    assert len(recorded) == 1 and said in recorded[0]["message"]
    assert recorded[0]["details"]["series_coil"] == "AS82"
    # The coil recorded is the one the coefficients name, never the file's name.
    assert sidecar["coil"] == ("AS097" if code == "COIL_MISMATCH" else None)


def test_the_same_coil_is_not_flagged(tmp_path: Path) -> None:
    dicom = _series_on_coil(tmp_path, "AS82")
    coefficients = tmp_path / "coeff.grad"
    coefficients.write_text(_with_header("#*] Gradient coil: as-82\n"))
    result = runner.invoke(app, ["correct", str(dicom), "--coef", str(coefficients), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "COIL_" not in result.output
    sidecar = json.loads(next((tmp_path / "out").glob("*_corrected.json")).read_text())
    assert sidecar["coil"] == "as-82" and not [f for f in sidecar["findings"] if f["code"].startswith("COIL_")]
