"""The long fuzz run: malformed DICOM by the thousand through inspect, convert and correct (tests/fuzzing.py).

Run:  .venv/bin/python benchmarks/fuzz.py [--cases 10000] [--seed 20261201] [--start 0]

Prints the counts per mutation kind and verdict, the totals (crashes, hangs, unnamed errors, inputs modified,
stray output: every one of them a defect), and the first defects with the command that hit them. The quick
run in ``make test`` (tests/test_fuzz.py) is the first cases of the same seed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fuzzing import iterate_defects, run_cases
from tests.test_fuzz import SEED


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--start", type=int, default=0)
    arguments = parser.parse_args()
    start = time.perf_counter()

    def progress(index: int) -> None:
        done = index - arguments.start + 1
        if done % 500 == 0:
            print(f"  {done} cases, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="trueshape-fuzz-") as folder:
        report = run_cases(arguments.cases, arguments.seed, Path(folder), start=arguments.start, progress=progress)
        print(report.table())
        print(report.summary() + f" ({time.perf_counter() - start:.0f} s)")
        for line in iterate_defects(report, limit=40):
            print(line)
    return 1 if report.defects else 0


if __name__ == "__main__":
    raise SystemExit(main())
