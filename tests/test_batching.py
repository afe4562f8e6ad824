"""Cohorts: bad rows fail alone with their reason, re-runs finish only what is missing, a killed batch loses and
duplicates nothing, a Dask cluster runs the same jobs, and nothing identifies the patients."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_coronal_session
from trueshape.batching import batch
from trueshape.cli import app

pytestmark = pytest.mark.slow

IDENTIFIERS = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "PID-7734219",
    "PatientBirthDate": "19610417",
    "AccessionNumber": "ACC-99120",
    "InstitutionName": "St Elsewhere Hospital",
}


def _cohort(root: Path, rows: list[str]) -> Path:
    dicom, coil = write_coronal_session(root, matrix=(16, 16), slices=6)
    (root / "corrupt").mkdir()
    (root / "corrupt" / "x.dcm").write_bytes(b"DICM" + b"\0" * 10)
    cohort = root / "cohort.csv"
    cohort.write_text("path,action,options\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert dicom == root / "s" / "dicom" and coil.name == "SYN-AS.grad"
    return cohort


def _summary(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


GOOD = ["s/dicom,inspect,", "s/dicom#4,correct,--coef SYN-AS.grad", "s/dicom,convert,"]
BAD = ["missing,convert,", "corrupt,convert,", "s/dicom#4,correct,--no-such-flag", '"broken,line', "s/dicom,paint,"]


def test_bad_rows_fail_alone_with_their_reason_and_a_rerun_finishes_only_what_failed(tmp_path: Path) -> None:
    cohort = _cohort(tmp_path, [GOOD[0], BAD[0], GOOD[1], BAD[1], BAD[2], BAD[3], GOOD[2], BAD[4]])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["batch", str(cohort), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 2, result.output
    rows = _summary(out)
    assert [r["row"] for r in rows] == [str(n) for n in range(1, 9)]
    status = {r["row"]: (r["status"], r["reason"]) for r in rows}
    assert [status[n][0] for n in "13" + "7"] == ["ok"] * 3
    assert status["2"][1].startswith("not found: missing")
    assert "corrupt/x.dcm" in status["4"][1]
    assert "No such option: --no-such-flag" in status["5"][1]
    assert status["6"][1].startswith("malformed line")
    assert status["8"][1].startswith("unknown action 'paint'")
    corrected = next(r for r in rows if r["row"] == "3")
    assert corrected["distortion_state"] == "DIS2D" and float(corrected["displacement_max_mm"]) > 0.1
    assert "DISTORTION_2D_ONLY" in corrected["findings"] and float(corrected["max_distance_from_isocentre_mm"]) > 100
    assert float(corrected["peak_memory_mb"]) > 30 and float(corrected["seconds"]) > 0
    # Each job wrote into its own folder, and only there.
    assert sorted(p.name for p in out.iterdir()) == [
        "1_dicom",
        "3_dicom",
        "4_corrupt",
        "5_dicom",
        "7_dicom",
        "summary.csv",
    ]
    assert (out / "3_dicom" / "4_cor_corrected.nii.gz").is_file() and (out / "1_dicom" / "inspect.json").is_file()
    # The missing folder appears: a re-run runs it (and the failed ones), not the finished ones.
    write_coronal_session(tmp_path / "missing_parent", matrix=(16, 16), slices=6)
    (tmp_path / "missing_parent" / "s" / "dicom").rename(tmp_path / "missing")
    stamp = (out / "3_dicom" / "job.json").stat().st_mtime_ns
    again = batch(cohort, out, workers=2)
    assert again.resumed == 3 and sorted(again.ran) == [2, 4, 5]
    assert (out / "3_dicom" / "job.json").stat().st_mtime_ns == stamp
    assert {r["row"]: r["status"] for r in _summary(out)}["2"] == "ok"


def test_a_killed_batch_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    cohort = _cohort(tmp_path, ["s/dicom#4,correct,--coef SYN-AS.grad --mode full" for _ in range(6)])
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-c",
        "from trueshape.cli import main; main()",
        "batch",
        str(cohort),
        "--out",
        str(out),
        "--workers",
        "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(out.glob("*/job.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = {p.parent.name for p in out.glob("*/job.json")}
    assert 1 <= len(finished_before) < 6 and not (out / "summary.csv").exists()
    result = batch(cohort, out, workers=2)
    assert result.resumed == len(finished_before) and len(result.ran) == 6 - len(finished_before)
    rows = _summary(out)
    assert [r["row"] for r in rows] == ["1", "2", "3", "4", "5", "6"] and {r["status"] for r in rows} == {"ok"}
    for folder in sorted(out.glob("*_dicom")):  # each job's outputs once, whole
        names = sorted(p.name for p in folder.iterdir())
        assert names == [
            "4_cor_corrected.json",
            "4_cor_corrected.nii.gz",
            "4_cor_residual.h5",
            "4_cor_residual_field.nii.gz",
            "job.json",
            "log.txt",
        ], names


def test_a_dask_cluster_runs_the_same_jobs(tmp_path: Path) -> None:
    from distributed import LocalCluster

    cohort = _cohort(tmp_path, [GOOD[1], GOOD[2], BAD[0]])
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = batch(cohort, tmp_path / "out", scheduler=cluster.scheduler_address)
    assert [r["status"] for r in result.rows] == ["ok", "ok", "failed"]
    assert all(r["worker"].startswith("tcp://127.0.0.1:") for r in result.rows[:2])


def test_summaries_and_reports_carry_no_identifier_unless_asked(tmp_path: Path) -> None:
    from trueshape.io import SeriesMetadata  # noqa: F401 - the synthetic writer's fields

    dicom, _ = write_coronal_session(tmp_path, matrix=(16, 16), slices=6)
    import pydicom

    for path in sorted((dicom / "04_cor").iterdir()):
        dataset = pydicom.dcmread(path)
        for keyword, value in IDENTIFIERS.items():
            setattr(dataset, keyword, value)
        dataset.save_as(path)
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("path,action,options\ns/dicom,inspect,\ns/dicom#4,correct,--coef SYN-AS.grad\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["batch", str(cohort), "--out", str(out), "--report"])
    assert result.exit_code == 0, result.output
    written = [
        out / "summary.csv",
        out / "report.html",
        *out.glob("*/report.html"),
        *out.glob("*/job.json"),
        *out.glob("*/inspect.json"),
        *out.glob("*/*_corrected.json"),
    ]
    assert len(written) == 8
    for path in written:
        text = path.read_text(encoding="utf-8")
        for value in IDENTIFIERS.values():
            assert value not in text and value.replace("^", " ") not in text, (path, value)
    cohort_page = (out / "report.html").read_text(encoding="utf-8")
    assert 'href="2_dicom/report.html"' in cohort_page and "Cohort: 2 job(s), 2 ok, 0 failed" in cohort_page
    assert json.loads((out / "2_dicom" / "job.json").read_text())["status"] == "ok"
    # Asked for: the jobs' reports show them (finished jobs are not run again; their reports are made again).
    shown = CliRunner().invoke(app, ["batch", str(cohort), "--out", str(out), "--report", "--show-identifiers"])
    assert shown.exit_code == 0, shown.output
    for job in ("1_dicom", "2_dicom"):
        page = (out / job / "report.html").read_text(encoding="utf-8")
        assert [value for value in IDENTIFIERS.values() if value not in page] == [], job
    summary = (out / "summary.csv").read_text(encoding="utf-8")
    assert [value for value in IDENTIFIERS.values() if value in summary] == []
    # And asked for no more: they are made again without.
    hidden = CliRunner().invoke(app, ["batch", str(cohort), "--out", str(out), "--report"])
    assert hidden.exit_code == 0, hidden.output
    page = (out / "2_dicom" / "report.html").read_text(encoding="utf-8")
    assert [value for value in IDENTIFIERS.values() if value in page] == []
