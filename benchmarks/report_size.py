"""The report of a 400-slice series: its size (target < 20 MB) and the time to write it (target < 10 s).

Run:  .venv/bin/python benchmarks/report_size.py

Corrects the synthetic 512 x 512 x 400 classic series (benchmarks/_series.py, 0.5 mm pixels, 0.6 mm slices)
with the SYN-AS coil (``--state ND``, written once under benchmarks/_work/report_size), then writes its report
three times and prints the page's size, the figures' size, the median time and the processor time it took (this
process and its DICOM readers), with the load average: on a shared machine the wall time grows with the load,
the processor time much less. The report reads the series as acquired (400 DICOM files) and the corrected
volume, finds bright round structures, draws the figures and encodes the slice scroller.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trueshape
from _series import WORK, large_classic_series
from trueshape.gnl import SYN_AS, format_siemens_grad
from trueshape.reporting import FIGURES_FOLDER, write_report

SIZE_BUDGET_MB = 20.0
TIME_BUDGET_S = 10.0


def _processor_seconds() -> float:
    """User and system time of this process and its finished children, s."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    series = large_classic_series()
    out = WORK / "report_size"
    coil = WORK / "SYN-AS.grad"
    coil.write_text(format_siemens_grad(SYN_AS))
    if not any(out.glob("*_corrected.json")):
        trueshape.correct(series, out, coefficients=coil, distortion_state="ND", force=True)
    times, processor = [], []
    load = os.getloadavg()[0]
    for _ in range(3):
        before = _processor_seconds()
        started = time.perf_counter()
        page = write_report(out)
        times.append(time.perf_counter() - started)
        processor.append(_processor_seconds() - before)
    size = page.stat().st_size / 1e6
    figures = sum(p.stat().st_size for p in (out / FIGURES_FOLDER).iterdir()) / 1e6
    median = statistics.median(times)
    print(
        f"report of a 512x512x400 series: {size:.1f} MB page (+ {figures:.1f} MB of PNG figures beside it), "
        f"written in {median:.1f} s (median of 3: {', '.join(f'{t:.1f}' for t in times)} s; processor "
        f"{statistics.median(processor):.1f} s; load average {load:.1f} on {os.cpu_count()} cores); "
        f"targets < {SIZE_BUDGET_MB:.0f} MB and < {TIME_BUDGET_S:.0f} s: "
        f"{'met' if size < SIZE_BUDGET_MB and median < TIME_BUDGET_S else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
