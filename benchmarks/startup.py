"""Start-up: what ``import trueshape`` and ``trueshape inspect`` cost before any work, beside dcm2niix.

Run:  .venv/bin/python benchmarks/startup.py [--repeats 11]

Every command runs in a fresh process, ``--repeats`` times in interleaved order; the median wall time and
the median CPU time (user + system, the child's own rusage) are printed. The series is a synthetic classic
axial series of 20 slices (256 x 256, written once under benchmarks/_work). dcm2niix converts the same
series (from PyPI into benchmarks/_work/venv_peers, as benchmarks/load.py installs it). The targets: ``import
trueshape`` within 0.1 s of ``import numpy``, ``trueshape inspect`` of the series within 0.35 s and within 3x
dcm2niix's conversion (issue 12). On a busy machine wall times grow with the load; the CPU times show what
the process itself spent. Every child runs from compiled bytecode, as an installed copy does
(benchmarks/_process.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _series import WORK
from load import ensure_dcm2niix, run_child

PYTHON = Path(sys.executable)
TRUESHAPE = PYTHON.with_name("trueshape")
#: Most ``import trueshape`` may cost beyond ``import numpy``, and ``trueshape inspect`` in all, seconds.
IMPORT_BUDGET_S = 0.1
INSPECT_BUDGET_S = 0.35
#: Most ``trueshape inspect`` may take, as a multiple of dcm2niix converting the same series.
INSPECT_DCM2NIIX_RATIO = 3.0


def twenty_slices() -> Path:
    """A classic axial series of 20 slices, 256 x 256 (written once)."""
    from trueshape.io import SeriesMetadata, write_dicom_slices
    from trueshape.synth import regular_planes

    folder = WORK / "startup_20_slices"
    if folder.is_dir() and len(list(folder.glob("*.dcm"))) == 20:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    planes = regular_planes(rows=256, columns=256, slices=20, pixel_spacing=(0.9, 0.9), slice_spacing=5.0)
    write_dicom_slices(folder, planes, SeriesMetadata(series_description="startup", slice_thickness_mm=5.0))
    return folder


def measured(command: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process."""
    wall, usage = run_child(command)
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    series = twenty_slices()
    dcm2niix = ensure_dcm2niix()
    out = Path(tempfile.mkdtemp(prefix="startup_", dir=WORK))
    commands = {
        "python -c pass": [str(PYTHON), "-c", "pass"],
        "python -c 'import numpy'": [str(PYTHON), "-c", "import numpy"],
        "python -c 'import trueshape'": [str(PYTHON), "-c", "import trueshape"],
        # What any Python CLI of this stack pays before its own code: numpy and pydicom, typer (which validates
        # options with pydantic) and rich.
        "libraries alone (floor of inspect)": [
            str(PYTHON),
            "-c",
            "import numpy, pydicom, typer, typer._adapters, rich.console, rich.table",
        ],
        "python -c 'import numpy, pydicom'": [str(PYTHON), "-c", "import numpy, pydicom"],
        "trueshape --help": [str(TRUESHAPE), "--help"],
        "trueshape inspect SERIES": [str(TRUESHAPE), "inspect", str(series)],
        "trueshape inspect --json SERIES": [str(TRUESHAPE), "inspect", "--json", str(series)],
        "dcm2niix -z n SERIES (converts)": [
            str(dcm2niix),
            "-z",
            "n",
            "-b",
            "n",
            "-f",
            "%s_%p",
            "-o",
            str(out),
            str(series),
        ],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    try:
        for _ in range(args.repeats):
            for name, command in commands.items():
                wall, cpu = measured(command)
                walls[name].append(wall)
                cpus[name].append(cpu)
                for written in out.iterdir():
                    written.unlink()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(
        f"machine: {os.cpu_count()} cores, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
        f"medians of {args.repeats} interleaved runs; series: {series} (20 slices, 256 x 256)"
    )
    print(f"{'command':38s} {'wall s':>8s} {'cpu s':>8s}")
    wall = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    for name in commands:
        print(f"{name:38s} {wall[name]:8.3f} {cpu[name]:8.3f}")
    beyond_numpy = wall["python -c 'import trueshape'"] - wall["python -c 'import numpy'"]
    beyond_numpy_cpu = cpu["python -c 'import trueshape'"] - cpu["python -c 'import numpy'"]
    inspect = wall["trueshape inspect SERIES"]
    print(
        f"import trueshape beyond import numpy: {beyond_numpy:+.3f} s wall, {beyond_numpy_cpu:+.3f} s cpu "
        f"(budget {IMPORT_BUDGET_S} s): {'met' if beyond_numpy <= IMPORT_BUDGET_S else 'MISSED'}"
    )
    floor = wall["libraries alone (floor of inspect)"]
    converts = wall["dcm2niix -z n SERIES (converts)"]
    converts_cpu = cpu["dcm2niix -z n SERIES (converts)"]
    ratio, ratio_cpu = inspect / converts, cpu["trueshape inspect SERIES"] / converts_cpu
    libraries = wall["python -c 'import numpy, pydicom'"]
    print(
        f"trueshape inspect of 20 slices: {inspect:.3f} s wall, {cpu['trueshape inspect SERIES']:.3f} s cpu "
        f"(budget {INSPECT_BUDGET_S} s): {'met' if inspect <= INSPECT_BUDGET_S else 'MISSED'}; "
        f"{inspect - floor:+.3f} s beyond importing its libraries ({floor:.3f} s); "
        f"dcm2niix converts it in {converts:.3f} s"
    )
    print(
        f"trueshape inspect / dcm2niix: {ratio:.1f}x wall, {ratio_cpu:.1f}x cpu (target {INSPECT_DCM2NIIX_RATIO:g}x): "
        f"{'met' if ratio <= INSPECT_DCM2NIIX_RATIO else 'MISSED'}; numpy and pydicom alone take "
        f"{libraries / converts:.1f}x dcm2niix's time"
    )


if __name__ == "__main__":
    main()
