"""Load/convert speed: trueshape convert vs dcm2niix vs SimpleITK's ImageSeriesReader, side by side.

Run:  .venv/bin/python benchmarks/load.py [--repeats 3] [--skip-large]

Every tool converts the same folder to NIfTI in a fresh process (start-up included, as a user sees it);
each configuration runs ``--repeats`` times in interleaved order and the median wall time is reported,
with the ratio to dcm2niix at the same output setting. dcm2niix comes from PyPI into a separate venv
(benchmarks/_work/venv_peers), never a project dependency. Peak memory is the child's max RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _process import user_environment
from _series import WORK, large_classic_series

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
TRUESHAPE = ROOT / ".venv" / "bin" / "trueshape"
PEERS = WORK / "venv_peers"
CORPUS = ROOT.parent / "shared" / "corpus" / "real"

SITK_SCRIPT = """
import sys, SimpleITK as sitk
reader = sitk.ImageSeriesReader()
names = reader.GetGDCMSeriesFileNames(sys.argv[1])
reader.SetFileNames(names)
sitk.WriteImage(reader.Execute(), sys.argv[2], useCompression=sys.argv[2].endswith('.gz'))
"""


def ensure_dcm2niix() -> Path:
    binary = PEERS / "bin" / "dcm2niix"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(PEERS / "bin" / "pip"), "install", "-q", "dcm2niix"], check=True)
    return binary


def run_child(command: list[str], environment: dict[str, str] | None = None) -> tuple[float, os.struct_rusage]:
    """Wall seconds and the resource usage of one child process (its own rusage, via wait4).

    ``environment``: default :func:`_process.user_environment` (compiled bytecode, as a user runs).
    """
    environment = _user_environment() if environment is None else environment
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, command)
    return elapsed, usage


_ENVIRONMENT: dict[str, str] = {}


def _user_environment() -> dict[str, str]:
    """:func:`_process.user_environment`, compiled once per run."""
    if not _ENVIRONMENT:
        _ENVIRONMENT.update(user_environment())
    return _ENVIRONMENT


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    elapsed, usage = run_child(command)
    return elapsed, usage.ru_maxrss / 1024


def configurations(source: Path, out: Path, dcm2niix: Path) -> dict[str, list[str]]:
    return {
        "dcm2niix -z n (.nii)": [str(dcm2niix), "-z", "n", "-b", "n", "-o", str(out), str(source)],
        "trueshape --format nii": [str(TRUESHAPE), "convert", str(source), "--out", str(out), "--format", "nii"],
        "SimpleITK reader (.nii)": [str(PYTHON), "-c", SITK_SCRIPT, str(source), str(out / "sitk.nii")],
        "dcm2niix -z y (.nii.gz)": [str(dcm2niix), "-z", "y", "-b", "n", "-o", str(out), str(source)],
        "trueshape (.nii.gz)": [str(TRUESHAPE), "convert", str(source), "--out", str(out)],
        "SimpleITK reader (.nii.gz)": [str(PYTHON), "-c", SITK_SCRIPT, str(source), str(out / "sitk.nii.gz")],
    }


def run(source: Path, label: str, repeats: int, dcm2niix: Path) -> None:
    times: dict[str, list[float]] = {}
    peaks: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for _ in range(repeats):
        for name in configurations(source, Path("/unused"), dcm2niix):
            out = Path(tempfile.mkdtemp(prefix="bench_", dir=WORK))
            command = configurations(source, out, dcm2niix)[name]
            elapsed, peak = timed(command)
            times.setdefault(name, []).append(elapsed)
            peaks[name] = max(peaks.get(name, 0.0), peak)
            sizes[name] = sum(p.stat().st_size for p in out.iterdir() if ".nii" in p.name)
            shutil.rmtree(out)
    size = sum(p.stat().st_size for p in Path(source).rglob("*") if p.is_file())
    files = sum(1 for p in Path(source).rglob("*") if p.is_file())
    print(f"\n{label}: {source} ({files} files, {size / 1e6:.1f} MB)")
    print(f"{'tool':32s} {'median s':>9s} {'vs dcm2niix':>12s} {'peak MB':>8s} {'output MB':>10s}")
    for name, values in times.items():
        reference = "dcm2niix -z y (.nii.gz)" if ".gz" in name else "dcm2niix -z n (.nii)"
        ratio = statistics.median(values) / statistics.median(times[reference])
        print(
            f"{name:32s} {statistics.median(values):9.3f} {ratio:11.2f}x {peaks[name]:8.0f} {sizes[name] / 1e6:10.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    dcm2niix = ensure_dcm2niix()
    print(f"machine: {os.cpu_count()} cores; timings are medians of {args.repeats} interleaved runs")
    startup = statistics.median(timed([str(PYTHON), "-c", "import trueshape.cli"])[0] for _ in range(5))
    print(f"trueshape start-up (python -c 'import trueshape.cli', median of 5): {startup:.3f} s")
    if not args.skip_large:
        run(large_classic_series(), "synthetic classic 512x512x400 (uint16, 400 files)", args.repeats, dcm2niix)
    if CORPUS.is_dir():
        for folder in ("siemens-t1-2d-sag-dis2d", "siemens-xa30-t1-3d-enhanced", "siemens-epi-mosaic-ax"):
            run(CORPUS / folder / "dicom", f"real corpus: {folder}", args.repeats, dcm2niix)
    else:
        print(f"\nreal corpus not found at {CORPUS}: skipped")


if __name__ == "__main__":
    main()
