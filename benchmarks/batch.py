"""Cohorts: sessions per minute with 1 and 2 local workers and on a 2-worker Dask LocalCluster.

Run:  .venv/bin/python benchmarks/batch.py [--sessions 20]

Writes ``--sessions`` synthetic sessions (SYN-FEMUR, the quick demo's wide coronal DIS2D series, each subject
of another size and table position) under benchmarks/_work/batch, and a cohort CSV that corrects each one's
coronal series with the SYN-AS coil. The same cohort runs three times into fresh folders: ``--workers 1``,
``--workers 2``, and on a ``dask.distributed`` LocalCluster of 2 single-threaded worker processes on
127.0.0.1. Printed: sessions per minute for each, the 2-worker speed-up over 1 worker (target >= 1.6x on two
cores), the peak memory of the jobs each worker ran (the job processes' own peak resident memory), how many
jobs were in flight on average (the jobs' seconds over the batch's: 2 when two ran at all times) and the load
average. On a machine shared with other work the speed-up says little: Linux's autogroup scheduling gives
each session (this benchmark is one) an equal share of the processors, however many processes it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _series import WORK
from trueshape.batching import batch
from trueshape.gnl import SYN_AS, format_siemens_grad
from trueshape.synth import FemurPhantom, demo_acquisitions, write_session

FOLDER = WORK / "batch"


def sessions(count: int) -> Path:
    """Write ``count`` sessions (once) and the cohort CSV; return the CSV."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    (FOLDER / "SYN-AS.grad").write_text(format_siemens_grad(SYN_AS))
    rows = []
    for number in range(1, count + 1):
        folder = FOLDER / f"subject{number:02d}"
        phantom = FemurPhantom(scale=0.9 + 0.01 * number)
        _, coronal = demo_acquisitions(phantom, quick=True)
        z = -150.0 + 2.0 * number
        coronal = replace(coronal, isocentre_lps=(0.0, 0.0, z))
        if not (folder / "dicom").is_dir():
            write_session(folder, phantom, SYN_AS, (coronal,), patient_id=f"BATCH{number:02d}", force=True)
        rows.append(f"subject{number:02d}/dicom,correct,--coef SYN-AS.grad")
    cohort = FOLDER / "cohort.csv"
    cohort.write_text("path,action,options\n" + "\n".join(rows) + "\n")
    return cohort


def run(cohort: Path, name: str, **how: object) -> None:
    out = FOLDER / f"out_{name}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = batch(cohort, out, **how)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    assert not result.failed, result.failed
    peaks: dict[str, float] = defaultdict(float)
    for row in result.rows:
        peaks[row["worker"]] = max(peaks[row["worker"]], float(row["peak_memory_mb"]))
    memory = ", ".join(f"{worker}: {peak:.0f} MB" for worker, peak in sorted(peaks.items()))
    in_flight = sum(float(row["seconds"]) for row in result.rows) / seconds
    print(
        f"{name:>24}: {len(result.rows)} sessions in {seconds:6.1f} s = {60 * len(result.rows) / seconds:5.1f} "
        f"sessions/min; {in_flight:.2f} jobs in flight; load average {os.getloadavg()[0]:.1f}; "
        f"peak memory per worker {memory}",
        flush=True,
    )
    RESULTS[name] = len(result.rows) / seconds


RESULTS: dict[str, float] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    count = parser.parse_args().sessions
    cohort = sessions(count)
    run(cohort, "1 local worker", workers=1)
    run(cohort, "2 local workers", workers=2)
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        run(cohort, "Dask LocalCluster (2)", scheduler=cluster.scheduler_address)
    local = RESULTS["2 local workers"] / RESULTS["1 local worker"]
    dask = RESULTS["Dask LocalCluster (2)"] / RESULTS["1 local worker"]
    print(f"speed-up over 1 worker: 2 local workers {local:.2f}x, Dask LocalCluster {dask:.2f}x (target >= 1.6x)")


if __name__ == "__main__":
    main()
