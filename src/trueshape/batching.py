"""Cohorts: run one trueshape command per row of a CSV, on local processes or a Dask cluster, resumably.

The CSV's header is ``path,action,options``: ``path`` is a session or series relative to the CSV's folder,
``action`` one of inspect, convert, correct, estimate, learn, and ``options`` that command's own flags as one
string (``--model scanner.json``; paths in it are relative to the CSV's folder too). Each job runs the
``trueshape`` command in a process of its own, in the CSV's folder, writing into ``OUT/<row>_<path's last
part>/`` and nowhere else; then ``job.json`` records that it finished, its status and its figures. A job
whose ``job.json`` says ok, for the same row, with every output it lists still there, is not run again: a
batch killed at any moment and run again finishes what failed or was missing, and nothing twice (a job's
own outputs appear whole or not at all, and a job re-run replaces them). ``OUT/summary.csv`` has one row per
CSV row: ``status`` (ok or failed), ``reason`` and the job's figures.

Jobs run on a local pool of ``workers`` at a time by default, or, given a ``scheduler`` address
(``tcp://host:8786``), as tasks of that ``dask.distributed`` cluster: the same function either way. The
cluster's workers need trueshape installed and the CSV's folder and ``OUT`` at the same paths.

Examples
--------
>>> result = batch("cohort.csv", "cohort-out", workers=2)                        # doctest: +SKIP
>>> [(row["folder"], row["status"]) for row in result.rows]                     # doctest: +SKIP
[('1_subject01', 'ok'), ('2_subject02', 'failed')]
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trueshape.errors import TrueshapeError
from trueshape.io import atomic_path, check_output_folder

__all__ = ["ACTIONS", "JOB_FILE", "SUMMARY_COLUMNS", "BatchResult", "Job", "batch", "read_cohort", "run_job"]

ACTIONS = ("inspect", "convert", "correct", "estimate", "learn")
#: What a finished job writes last, into its folder: its status, its figures and its outputs.
JOB_FILE = "job.json"
#: The command's standard output and error, beside its outputs.
LOG_FILE = "log.txt"
SUMMARY_FILE = "summary.csv"
HEADER = ("path", "action", "options")
SUMMARY_COLUMNS = (
    "row", "path", "action", "options", "folder", "status", "reason", "distortion_state",
    "max_distance_from_isocentre_mm", "findings", "displacement_max_mm", "displacement_mean_mm",
    "displacement_rms_mm", "seconds", "peak_memory_mb", "worker",
)  # fmt: skip
#: The files a job writes besides the command's own outputs.
_OWN_FILES = (JOB_FILE, LOG_FILE)


@dataclass(frozen=True)
class Job:
    """One row of the cohort: what to run, where it writes, or why it cannot run."""

    row: int  #: the row's number among the CSV's rows (1 is the first after the header)
    path: str
    action: str
    options: tuple[str, ...]
    folder: str  #: ``<row>_<path's last part>``, inside the batch's output folder
    problem: str | None = None

    def failed(self, reason: str, **figures: Any) -> dict[str, Any]:
        """Return the summary row of this job, failed for ``reason``."""
        return {**self.identity(), "status": "failed", "reason": reason, **figures}

    def identity(self) -> dict[str, Any]:
        """Return what names the job in its ``job.json`` and the summary."""
        return {
            "row": self.row,
            "path": self.path,
            "action": self.action,
            "options": shlex.join(self.options),
            "folder": self.folder,
        }


@dataclass
class BatchResult:
    """One summary row per job, in the CSV's order, and where the summary (and report) went."""

    rows: list[dict[str, Any]]
    summary: Path
    report: Path | None = None
    resumed: int = 0  #: jobs found finished and not run again
    ran: list[int] = field(default_factory=list)  #: rows run this time

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The rows whose job failed."""
        return [row for row in self.rows if row["status"] != "ok"]


def _job(row: int, fields: list[str]) -> Job:
    """Read one CSV row into a Job; a malformed row becomes a Job that says why."""
    path = fields[0].strip() if fields else ""
    last = Path(path.split("#")[0]).name if path else ""
    folder = f"{row}_{re.sub(r'[^A-Za-z0-9._-]+', '_', last) or 'job'}"
    if len(fields) != len(HEADER):
        return Job(row, path, "", (), folder, f"malformed line: {len(fields)} fields, expected path,action,options")
    action = fields[1].strip().lower()
    if not path:
        return Job(row, path, action, (), folder, "no path given")
    if action not in ACTIONS:
        return Job(row, path, action, (), folder, f"unknown action {fields[1].strip()!r} (one of {', '.join(ACTIONS)})")
    try:
        options = tuple(shlex.split(fields[2]))
    except ValueError as error:
        return Job(row, path, action, (), folder, f"options cannot be read ({error}): {fields[2]!r}")
    if any(o in ("--out", "-o") or o.startswith("--out=") for o in options):
        return Job(row, path, action, options, folder, "options set --out: each job writes into its own folder")
    return Job(row, path, action, options, folder)


def read_cohort(cohort: str | os.PathLike[str]) -> list[Job]:
    """Read a cohort CSV (header ``path,action,options``) into one Job per row.

    Raises
    ------
    TrueshapeError
        The file cannot be read, or its header is not ``path,action,options``.
    """
    source = Path(cohort)
    try:  # line by line: a broken quote spoils its own row, never the rows after it
        text = source.read_text(encoding="utf-8-sig")
        lines = [row for line in text.splitlines() if line.strip() for row in csv.reader([line])]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise TrueshapeError(f"{source}: cannot be read as a cohort CSV ({error})") from None
    if not lines or tuple(cell.strip().lower() for cell in lines[0]) != HEADER:
        raise TrueshapeError(f"{source}: the first line must be the header path,action,options")
    return [_job(number, fields) for number, fields in enumerate(lines[1:], start=1)]


def _arguments(job: Job, folder: Path, report: bool, cohort_folder: Path) -> list[str]:
    """Return the command line of ``job`` (after ``trueshape``), writing into ``folder``.

    The path is made absolute, so that the outputs' records name the series wherever they are read.
    """
    out = ["--out", str(folder)]
    path = str(cohort_folder / job.path)
    if job.action == "inspect":
        return ["inspect", path, "--json", *job.options, *(["--report", str(folder)] if report else [])]
    extra = ["--force", *(["--report"] if report else [])]
    if job.action == "estimate":
        return ["estimate", "--moving", path, *out, *job.options, *extra]
    return [job.action, path, *out, *job.options, *extra]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to end this job's process if the batch dies (no orphan keeps writing into a job's folder)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_RUNNING: set[subprocess.Popen[bytes]] = set()
_RUNNING_LOCK = threading.Lock()


def _run_command(arguments: list[str], cwd: Path) -> tuple[int, bytes, bytes, float]:
    """Run ``trueshape ARGUMENTS`` in ``cwd``; return exit code, stdout, stderr and peak memory (MB)."""
    command = [sys.executable, "-c", "from trueshape.cli import main; main()", *arguments]
    environment = {**os.environ, "COLUMNS": "200"}
    environment.pop("TRUESHAPE_TRACEBACK", None)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=environment,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        peak = 0.0
        try:
            if hasattr(os, "wait4"):  # the child's own peak memory comes with its exit status
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                peak = usage.ru_maxrss / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)
            else:  # pragma: no cover - Windows
                process.wait()
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(process)
        stdout.seek(0)
        stderr.seek(0)
        return process.returncode, stdout.read(), stderr.read(), peak


def _finished(job: Job, folder: Path) -> dict[str, Any] | None:
    """Return the job's summary row when it finished ok earlier, with all its outputs still there; else None."""
    try:
        record = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = all(record.get(key) == value for key, value in job.identity().items())
    complete = all((folder / name).exists() for name in record.get("outputs", [])) and bool(record.get("outputs"))
    return record if same and complete and record.get("status") == "ok" else None


def run_job(job: Job, cohort_folder: str, out: str, report: bool = False) -> dict[str, Any]:
    """Run one job (on whichever worker calls this) and return its summary row; never raises for bad input."""
    if job.problem is not None:
        return job.failed(job.problem)
    folder = Path(out) / job.folder
    done = _finished(job, folder)
    if done is not None:
        return {**done, "resumed": True}
    target = Path(cohort_folder) / job.path.split("#")[0]
    if not target.exists():
        return job.failed(f"not found: {job.path} (relative to {cohort_folder})")
    started = time.perf_counter()
    code, stdout, stderr, peak = _run_command(_arguments(job, folder, report, Path(cohort_folder)), Path(cohort_folder))
    seconds = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    if job.action == "inspect" and not report and stdout.strip():
        with atomic_path(folder / "inspect.json", force=True) as staged:
            staged.write_bytes(stdout)
    with atomic_path(folder / LOG_FILE, force=True) as staged:
        staged.write_bytes(stdout + b"\n" + stderr)
    figures = {
        **job_figures(job.action, folder),
        "seconds": round(seconds, 2),
        "peak_memory_mb": round(peak, 1),
        "worker": _worker_name(),
    }
    if code == 0:
        row = {**job.identity(), "status": "ok", "reason": "", **figures}
    else:
        row = job.failed(_reason(code, stderr), **figures)
    outputs = sorted(p.name for p in folder.iterdir() if p.name not in _OWN_FILES and not p.name.startswith("."))
    with atomic_path(folder / JOB_FILE, force=True) as staged:
        staged.write_text(json.dumps({**row, "outputs": outputs}, indent=2) + "\n", encoding="utf-8")
    return row


def _reason(code: int, stderr: bytes) -> str:
    """Return why a command failed: its one-line errors, or the message of an option error's panel."""
    lines = [line.strip().strip("│╭╮╰╯─ ").strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Usage:", "Try '", "Error"))]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    said = "; ".join(errors or lines)[:500]
    return f"exit code {code}: {said}" if said else f"exit code {code}"


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"local-{threading.current_thread().name.rsplit('_', 1)[-1]}"


def _local(jobs: list[Job], call: Callable[[Job], dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
    """Run ``jobs`` on ``workers`` threads, each waiting on its job's process; yield rows as they finish."""
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
    try:
        pending: set[Future[dict[str, Any]]] = {executor.submit(call, job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:  # interrupted: nothing new starts, and the running commands end (their outputs stay as they were)
        executor.shutdown(wait=False, cancel_futures=True)
        with _RUNNING_LOCK:
            for process in list(_RUNNING):
                process.terminate()
        executor.shutdown(wait=True)


def _cluster(jobs: list[Job], call: Callable[[Job], dict[str, Any]], scheduler: str) -> Iterator[dict[str, Any]]:
    """Run ``jobs`` as tasks of the ``dask.distributed`` cluster at ``scheduler``; yield rows as they finish."""
    from distributed import Client, as_completed

    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as error:
        raise TrueshapeError(f"--scheduler {scheduler}: cannot connect ({error})") from None
    try:
        futures = client.map(call, jobs, pure=False)
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()


def _records(action: str, folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the series records and the correction records a job's outputs hold."""

    def read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    corrections = [read(p) for p in sorted(folder.rglob("*_corrected.json"))]
    if action == "inspect":
        data = read(folder / "inspect.json")
        return [stack for series in data.get("series", []) for stack in series.get("stacks", [])], []
    if action == "convert":
        return [r for r in (read(p) for p in sorted(folder.glob("*.json"))) if "volume_file" in r], []
    return [c.get("source", {}) for c in corrections], corrections


def job_figures(action: str, folder: Path) -> dict[str, Any]:
    """Return a job's figures from its outputs: states, farthest point from the isocentre, findings, displacement."""
    if not folder.is_dir():
        return {}
    records, corrections = _records(action, folder)
    distances = [
        float(r["max_distance_from_isocentre_mm"])
        for r in records
        if r.get("max_distance_from_isocentre_mm") is not None
    ]
    codes = sorted(
        {str(f.get("code")) for r in records for f in r.get("findings", [])}
        | {str(f.get("code")) for c in corrections for f in c.get("findings", [])}
    )
    figures: dict[str, Any] = {
        "distortion_state": "/".join(sorted({str(r.get("distortion_state")) for r in records if r})),
        "max_distance_from_isocentre_mm": round(max(distances), 1) if distances else "",
        "findings": " ".join(codes),
    }
    done = [c.get("correction", {}) for c in corrections]
    if done:
        figures["displacement_max_mm"] = round(max(float(c.get("max_displacement_mm", 0)) for c in done), 3)
        figures["displacement_mean_mm"] = round(max(float(c.get("mean_displacement_mm", 0)) for c in done), 3)
    estimates = [p for p in [folder / "estimate.json", *sorted(folder.glob("*/estimate.json"))] if p.is_file()]
    fields = [f for p in estimates for f in json.loads(p.read_text(encoding="utf-8")).get("field", {}).values()]
    if fields:
        figures["displacement_rms_mm"] = round(max(float(f.get("rms_mm", 0)) for f in fields), 3)
    return figures


def _write_summary(root: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``root/summary.csv``: one row per job, in the CSV's order (whole, or not at all)."""
    summary = root / SUMMARY_FILE
    with atomic_path(summary, force=True) as staged, staged.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return summary


def batch(
    cohort: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    report: bool = False,
    show_identifiers: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Run every row of ``cohort`` into ``out`` and write ``out/summary.csv`` (and the cohort's report).

    Parameters
    ----------
    cohort : str or PathLike
        The CSV (header ``path,action,options``; paths relative to its folder).
    out : str or PathLike
        The batch's folder: one sub-folder per job, ``summary.csv`` and, with ``report``, ``report.html``.
    workers : int, optional
        Jobs at a time on this machine (default: its processor count); ignored with ``scheduler``.
    scheduler : str, optional
        A ``dask.distributed`` scheduler address (``tcp://host:8786``): the jobs run on that cluster.
    report : bool
        Write each job's report and the cohort's (``out/report.html``), linking to them.
    show_identifiers : bool
        With ``report``, the jobs' reports show patient identifiers (the cohort's page and ``summary.csv``
        name sessions by their folders only).
    progress : callable, optional
        Called with (jobs finished, jobs) as they finish.

    Returns
    -------
    BatchResult
        One row per job in the CSV's order (a failed job's row says why; the others are not stopped).
    """
    import functools

    check_output_folder(out)
    source = Path(cohort).resolve()
    jobs = read_cohort(source)
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    call = functools.partial(run_job, cohort_folder=str(source.parent), out=str(root), report=report)
    count = workers or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    finished: dict[int, dict[str, Any]] = {}
    rows = _cluster(jobs, call, scheduler) if scheduler else _local(jobs, call, count)
    for row in rows:
        finished[int(row["row"])] = row
        if progress is not None:
            progress(len(finished), len(jobs))
    ordered = [finished[job.row] for job in jobs]
    summary = _write_summary(root, ordered)
    ran = [int(r["row"]) for r in ordered if not r.get("resumed") and r.get("seconds") is not None]
    result = BatchResult(ordered, summary, resumed=sum(1 for r in ordered if r.get("resumed")), ran=ran)
    if report:
        from trueshape.reporting import write_report

        _job_reports(root, ordered, show_identifiers)
        result.report = write_report(root, show_identifiers=show_identifiers)
    return result


def _job_reports(root: Path, rows: list[dict[str, Any]], show_identifiers: bool) -> None:
    """Write the report of each finished job that has none, or one made with the other identifier choice.

    A job writes its own report without identifiers; a job finished in an earlier run may have none.
    """
    from trueshape.reporting import IDENTIFIERS_SHOWN, REPORT_FILE, write_report

    for row in rows:
        folder = root / str(row.get("folder", ""))
        if row.get("status") != "ok" or not folder.is_dir():
            continue
        page = folder / REPORT_FILE
        shown = page.is_file() and IDENTIFIERS_SHOWN in page.read_text(encoding="utf-8", errors="replace")
        if not page.is_file() or shown != show_identifiers:
            write_report(folder, show_identifiers=show_identifiers)
