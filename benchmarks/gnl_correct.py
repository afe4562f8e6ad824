"""GNL correction side by side: trueshape vs gradunwarp (HCP 1.2.3), against the exact forward truth.

Both tools get the same SYN-AS coefficients written as a Siemens ``.grad`` file and the same distorted
rod/grid phantom NIfTI (256^3 at 2 mm and 512x512x200 at 1 x 1 x 2.5 mm, both about the isocentre,
head-first supine, no table offset: gradunwarp's assumptions). For each tool the script prints

* the error of the displacement it applied to every voxel inside r <= 250 mm (max and mean, mm), against
  the exact harmonic field at the voxel centre (gradunwarp: the sample positions in its ``fullWarp_abs``
  output; trueshape: its coarse field upsampled exactly as the correction does);
* the error of its Jacobian intensity factor (gradunwarp: default run / ``-n`` run; trueshape: the factor
  it applied), against the exact ``det(I + grad d)``;
* the image NRMSE against the true phantom, wall time and peak RSS of the whole command (child process,
  ``/usr/bin/time -v``), and the ratios. trueshape's command is ``trueshape correct distorted.nii --coef
  syn_as.grad --state ND ...``: it reads the volume, corrects it and writes the corrected volume, the field
  (NIfTI), the ITK transform (.h5) and the JSON sidecar; gradunwarp's writes the volume and its warp;
* the correction call alone (``correct_volume`` on a volume in memory), with trueshape's compiled kernel and
  with its numpy/scipy fallback.

gradunwarp runs from its PyPI wheel in a separate venv (``benchmarks/_work/venv_gu``, created on first
use); it is never a trueshape dependency. Usage::

    .venv/bin/python benchmarks/gnl_correct.py [--sizes 256 512x512x200] [--repeats 3]

The distorted phantom is made by inverting ``x + d(x) = y`` exactly (Newton, exact harmonics) on a
4 mm grid and interpolating the inverse with cubic splines (the script prints the error at random voxels); the
image at ``y`` is ``truth(x) / det(I + grad d)(x)``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from trueshape.correction import _kernel, correct_volume, correction_interpolant
from trueshape.dicom.vendor import DistortionState
from trueshape.geometry import Volume, VolumeGeometry
from trueshape.gnl import (
    SYN_AS,
    GridInterpolant,
    MagnetFrame,
    ResidualField,
    coarse_nodes,
    format_siemens_grad,
    read_siemens_grad,
)
from trueshape.io import read_volume, write_nifti

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _process import user_environment

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "gnl_correct"
GRADUNWARP_VENV = HERE / "_work" / "venv_gu"
#: How many times faster than gradunwarp the whole ``trueshape correct`` command should be (issue 12).
WHOLE_COMMAND_TARGET = 20.0
#: The environment of every timed child process (set in main: compiled bytecode).
ENVIRONMENT: dict[str, str] = dict(os.environ)

SIZES: dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]] = {
    "256": ((256, 256, 256), (2.0, 2.0, 2.0)),
    "512x512x200": ((512, 512, 200), (1.0, 1.0, 2.5)),
    "128": ((128, 128, 128), (4.0, 4.0, 4.0)),  # quick check of the pipeline
}
DEFAULT_SIZES = ["256", "512x512x200"]
SPHERE_MM = 250.0
CENTRAL_SPHERE_MM = 150.0
PHANTOM_RADIUS_MM = 240.0
ROD_PITCH_MM = 30.0
ROD_RADIUS_MM = 3.0
EDGE_WIDTH_MM = 0.7
BACKGROUND = 0.5
INVERSE_NODE_SPACING_MM = 4.0
INVERSE_SEARCH_RADIUS_MM = 340.0
INVERSE_VALID_RADIUS_MM = 300.0
NEWTON_MAX_STEP_MM = 20.0
DISTORTED_SUPPORT_RADIUS_MM = 285.0
SLAB_ROWS = 16


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------- phantom


def smooth_step(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(t / EDGE_WIDTH_MM))


def phantom(points: np.ndarray) -> np.ndarray:
    """Rod lattice (rods along x, y and z every 30 mm, radius 3 mm) in a 240 mm sphere; shape (..., 3) -> (...)."""
    offsets = points - ROD_PITCH_MM * np.round(points / ROD_PITCH_MM)
    squared = offsets**2
    rods = np.zeros(points.shape[:-1])
    for axis in range(3):
        radial = np.sqrt(squared.sum(axis=-1) - squared[..., axis])
        rods = np.maximum(rods, smooth_step(ROD_RADIUS_MM - radial))
    inside = smooth_step(PHANTOM_RADIUS_MM - np.linalg.norm(points, axis=-1))
    return inside * (BACKGROUND + (1.0 - BACKGROUND) * rods)


def geometry_for(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> VolumeGeometry:
    origin = -np.array(spacing) * (np.array(shape) - 1) / 2.0
    return VolumeGeometry.from_components(shape=shape, origin=origin, spacing=spacing)


def slab_points(geometry: VolumeGeometry, start: int, stop: int) -> np.ndarray:
    grids = np.meshgrid(
        np.arange(start, stop, dtype=np.float64),
        np.arange(geometry.shape[1], dtype=np.float64),
        np.arange(geometry.shape[2], dtype=np.float64),
        indexing="ij",
    )
    return geometry.index_to_lps(np.stack(grids, axis=-1))


def inverse_with_determinant(residual: ResidualField, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``x - y`` and ``det(I + grad d)(x)`` with ``x + d(x) = y`` (Newton), shape (P, 4), and validity.

    Valid where Newton converges to an x with |x| <= 300 mm and a positive determinant; the forward map
    folds further out, where no phantom is.
    """
    out = np.zeros((len(y), 4))
    out[:, 3] = 1.0
    valid = np.zeros(len(y), dtype=bool)
    candidates = np.flatnonzero(np.linalg.norm(y, axis=1) <= INVERSE_SEARCH_RADIUS_MM)
    target = y[candidates]
    x = target.copy()
    active = np.arange(len(x))
    for _ in range(60):
        displacement, jacobian = residual.displacement_and_jacobian_lps(x[active])
        mismatch = x[active] + displacement - target[active]
        step = np.linalg.solve(np.eye(3) + jacobian, mismatch[..., None])[..., 0]
        length = np.linalg.norm(step, axis=1)
        x[active] -= step * np.minimum(1.0, NEWTON_MAX_STEP_MM / np.maximum(length, 1e-30))[:, None]
        active = active[length >= 1e-11]
        if not active.size:
            break
    mismatch = np.max(np.abs(x + residual.displacement_lps(x) - target), axis=1)
    determinant = residual.jacobian_determinant(x)
    good = (mismatch < 1e-8) & (np.linalg.norm(x, axis=1) <= INVERSE_VALID_RADIUS_MM) & (determinant > 0.0)
    valid[candidates[good]] = True
    out[candidates[good], :3] = (x - target)[good]
    out[candidates[good], 3] = determinant[good]
    return out, valid


def make_distorted(geometry: VolumeGeometry, residual: ResidualField, path: Path) -> None:
    log(f"  making the distorted phantom {geometry.shape} -> {path.name}")
    started = time.perf_counter()
    nodes = tuple(
        coarse_nodes(size, float(spacing), INVERSE_NODE_SPACING_MM)
        for size, spacing in zip(geometry.shape, geometry.spacing, strict=True)
    )
    grids = np.meshgrid(*nodes, indexing="ij")
    node_points = geometry.index_to_lps(np.stack(grids, axis=-1).reshape(-1, 3))
    values, valid = inverse_with_determinant(residual, node_points)
    values = values.reshape((*grids[0].shape, 4))
    valid = valid.reshape(grids[0].shape)
    # Invalid nodes (beyond the fold, far outside the phantom) copy their nearest valid node, so the
    # spline stays smooth where it matters.
    nearest = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    values = values[tuple(nearest)]
    preimages = node_points.reshape(values[..., :3].shape) + values[..., :3]
    if np.any(np.linalg.norm(preimages[~valid], axis=-1) < PHANTOM_RADIUS_MM + 20.0):
        raise RuntimeError("a node without an exact inverse would show phantom signal")
    inverse = GridInterpolant(geometry, (nodes[0], nodes[1], nodes[2]), values)
    upsampler = inverse.upsampler()
    image = np.zeros(geometry.shape, dtype=np.float32)
    for start in range(0, geometry.shape[0], SLAB_ROWS):
        stop = min(start + SLAB_ROWS, geometry.shape[0])
        y = slab_points(geometry, start, stop)
        fine = upsampler.slab(start, stop).astype(np.float64)
        x = y + np.moveaxis(fine[:3], 0, -1)
        values_at_y = phantom(x) / fine[3]
        values_at_y[np.linalg.norm(y, axis=-1) > DISTORTED_SUPPORT_RADIUS_MM] = 0.0
        image[start:stop] = values_at_y
    # Accuracy of the forward model where it matters: points whose preimage lies in the phantom.
    check = np.random.default_rng(0).uniform(0.0, np.array(geometry.shape) - 1.0, size=(4000, 3))
    exact, exact_valid = inverse_with_determinant(residual, geometry.index_to_lps(check))
    preimage = geometry.index_to_lps(check) + exact[:, :3]
    keep = exact_valid & (np.linalg.norm(preimage, axis=1) <= PHANTOM_RADIUS_MM + 5.0)
    error = np.linalg.norm(inverse.at_indices(check[keep])[:, :3] - exact[keep, :3], axis=1)
    write_nifti(Volume(image, geometry), path, force=True)
    log(
        f"  done in {time.perf_counter() - started:.1f} s; inverse-map error at {keep.sum()} random points "
        f"mapping into the phantom: max {error.max():.1e} mm, mean {error.mean():.1e} mm"
    )


# ------------------------------------------------------------------------------------------ processes


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    load: float
    output: str


def run_measured(command: list[str], cwd: Path) -> Measured:
    """Run a command under ``/usr/bin/time -v``: wall seconds, CPU seconds, peak RSS (MB), load, output.

    (``os.wait4`` would count the benchmark's own memory: a forked child starts with the parent's pages.)
    """
    cwd.mkdir(parents=True, exist_ok=True)
    report = cwd / "time-v.txt"
    started = time.perf_counter()
    process = subprocess.run(
        ["/usr/bin/time", "-v", "-o", str(report), *command], cwd=cwd, capture_output=True, text=True, env=ENVIRONMENT
    )
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({process.returncode}):\n{(process.stdout + process.stderr)[-3000:]}"
        )
    fields = dict(line.strip().rsplit(": ", 1) for line in report.read_text().splitlines() if ": " in line)
    return Measured(
        wall_s=wall,
        cpu_s=float(fields["User time (seconds)"]) + float(fields["System time (seconds)"]),
        peak_rss_mb=float(fields["Maximum resident set size (kbytes)"]) / 1024.0,
        load=os.getloadavg()[0],
        output=process.stdout,
    )


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda run: run["wall_s"])[len(runs) // 2]


def ensure_gradunwarp() -> Path:
    python = GRADUNWARP_VENV / "bin" / "python"
    script = GRADUNWARP_VENV / "bin" / "gradient_unwarp.py"
    if not script.exists():
        log(f"creating {GRADUNWARP_VENV} and installing gradunwarp from PyPI")
        subprocess.run(["python3", "-m", "venv", str(GRADUNWARP_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "gradunwarp", "nibabel"], check=True)
    return script


def trueshape_command(distorted: Path, grad: Path, out_dir: Path) -> list[str]:
    """The measured command: what a user with a NIfTI volume and a .grad file types (gradunwarp's assumptions:
    nothing corrected by the scanner, head first supine, isocentre at the origin)."""
    trueshape = Path(sys.executable).with_name("trueshape")
    return [
        str(trueshape),
        "correct",
        str(distorted),
        "--coef",
        str(grad),
        "--state",
        "ND",
        "--patient-position",
        "HFS",
        "--isocentre",
        "0,0,0",
        "--format",
        "nii",
        "--out",
        str(out_dir),
        "--force",
    ]


def time_start_up(repeats: int) -> list[float]:
    """Seconds for ``python -c 'import trueshape.cli'``: the part of the command no volume size changes."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import trueshape.cli"], check=True, env=ENVIRONMENT)
        times.append(time.perf_counter() - started)
    return times


def time_correction_call(distorted: Path, grad: Path, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``correct_volume`` alone (volume in memory), with the compiled kernel and without."""
    volume = read_volume(distorted)
    residual = ResidualField(read_siemens_grad(grad), MagnetFrame(), DistortionState.NONE)
    times: dict[str, list[float]] = {"compiled": [], "numpy/scipy": []}
    kernel = _kernel.KERNEL
    try:
        for _ in range(repeats):
            for label, use in (("compiled", kernel), ("numpy/scipy", None)):
                if label == "compiled" and use is None:
                    continue
                _kernel.KERNEL = use
                started = time.perf_counter()
                correct_volume(volume, residual)
                times[label].append(time.perf_counter() - started)
    finally:
        _kernel.KERNEL = kernel
    return times


# ------------------------------------------------------------------------------------------- analysis


@dataclass
class Errors:
    displacement_max_150: float = 0.0
    displacement_max: float = 0.0
    displacement_sum: float = 0.0
    jacobian_max: float = 0.0
    jacobian_sum: float = 0.0
    jacobian_count: int = 0
    count: int = 0
    image_sq: float = 0.0
    truth_sq: float = 0.0

    def add(self, displacement_error: np.ndarray, jacobian_error: np.ndarray, central: np.ndarray) -> None:
        if displacement_error[central].size:
            self.displacement_max_150 = max(self.displacement_max_150, float(displacement_error[central].max()))
        if displacement_error.size:
            self.displacement_max = max(self.displacement_max, float(displacement_error.max()))
            self.displacement_sum += float(displacement_error.sum())
            self.count += displacement_error.size
        if jacobian_error.size:
            self.jacobian_max = max(self.jacobian_max, float(jacobian_error.max()))
            self.jacobian_sum += float(jacobian_error.sum())
            self.jacobian_count += jacobian_error.size

    @property
    def displacement_mean(self) -> float:
        return self.displacement_sum / max(self.count, 1)

    @property
    def jacobian_mean(self) -> float:
        return self.jacobian_sum / max(self.jacobian_count, 1)

    @property
    def nrmse(self) -> float:
        return float(np.sqrt(self.image_sq / max(self.truth_sq, 1e-30)))


def analyse(size_dir: Path, geometry: VolumeGeometry, residual: ResidualField) -> dict[str, Errors]:
    """Compare both tools with the exact field and the true phantom, slab by slab, inside r <= 250 mm."""
    distorted_image = nib.load(size_dir / "distorted.nii")
    affine = distorted_image.affine
    zooms = distorted_image.header.get_zooms()[:3]
    neurological = np.linalg.det(affine[:3, :3]) > 0
    warp = np.asanyarray(nib.load(size_dir / "gu_jac" / "fullWarp_abs.nii.gz").dataobj)
    gu_jac = np.asanyarray(nib.load(size_dir / "gu_jac" / "corrected.nii").dataobj)
    gu_nojac = np.asanyarray(nib.load(size_dir / "gu_nojac" / "corrected.nii").dataobj)
    ts_image = np.asanyarray(nib.load(size_dir / "trueshape" / "distorted_corrected.nii").dataobj)
    # The field the command applied: its coarse grid is a pure function of the residual and the grid.
    upsampler = correction_interpolant(residual, geometry).upsampler()
    results = {"gradunwarp": Errors(), "gradunwarp -n": Errors(), "trueshape": Errors()}
    for start in range(0, geometry.shape[0], SLAB_ROWS):
        stop = min(start + SLAB_ROWS, geometry.shape[0])
        points = slab_points(geometry, start, stop)
        inside = np.linalg.norm(points, axis=-1) <= SPHERE_MM
        if not inside.any():
            continue
        p = points[inside]
        central = np.linalg.norm(p, axis=1) <= CENTRAL_SPHERE_MM
        exact, jacobian = residual.displacement_and_jacobian_lps(p)
        determinant = np.linalg.det(np.eye(3) + jacobian)
        truth = phantom(p)
        # gradunwarp: fullWarp_abs holds FSL-scaled voxel mm of the sample positions.
        w = warp[start:stop][inside].astype(np.float64)
        index = np.stack([w[:, 0] / zooms[0], w[:, 1] / zooms[1], w[:, 2] / zooms[2]], axis=1)
        if neurological:
            index[:, 0] = (geometry.shape[0] - 1) - index[:, 0]
        ras = index @ affine[:3, :3].T + affine[:3, 3]
        applied = ras * np.array([-1.0, -1.0, 1.0]) - p
        reference = gu_nojac[start:stop][inside].astype(np.float64)
        usable = reference > 0.05
        gu_factor = gu_jac[start:stop][inside].astype(np.float64)[usable] / reference[usable]
        gu_error = np.linalg.norm(applied - exact, axis=1)
        results["gradunwarp"].add(gu_error, np.abs(gu_factor - determinant[usable]), central)
        results["gradunwarp -n"].add(gu_error, np.zeros(0), central)
        # trueshape: the coarse field upsampled exactly as the correction does.
        fine = upsampler.slab(start, stop)
        ts_applied = np.moveaxis(fine[:3], 0, -1)[inside].astype(np.float64)
        ts_factor = np.clip(fine[3][inside].astype(np.float64), 0.0, 10.0)
        results["trueshape"].add(np.linalg.norm(ts_applied - exact, axis=1), np.abs(ts_factor - determinant), central)
        for name, image in (("gradunwarp", gu_jac), ("gradunwarp -n", gu_nojac), ("trueshape", ts_image)):
            values = image[start:stop][inside].astype(np.float64)
            results[name].image_sq += float(np.sum((values - truth) ** 2))
            results[name].truth_sq += float(np.sum(truth**2))
    return results


# ----------------------------------------------------------------------------------------------- main


def run_size(name: str, grad: Path, repeats: int, repeats_gradunwarp: int) -> dict[str, Any]:
    shape, spacing = SIZES[name]
    geometry = geometry_for(shape, spacing)
    residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE)
    size_dir = WORK / name
    size_dir.mkdir(parents=True, exist_ok=True)
    distorted = size_dir / "distorted.nii"
    if not distorted.exists():
        make_distorted(geometry, residual, distorted)
    script = ensure_gradunwarp()
    python = str(GRADUNWARP_VENV / "bin" / "python")
    runs: dict[str, Any] = {}

    def gradunwarp(label: str, extra: list[str], repeat: int) -> dict[str, float]:
        cwd = size_dir / label
        command = [python, str(script), str(distorted), str(cwd / "corrected.nii"), "siemens", "-g", str(grad)]
        m = run_measured([*command, *extra], cwd)
        log(
            f"  gradunwarp {' '.join(extra) or '(Jacobian on)'} run {repeat + 1}: {m.wall_s:.1f} s wall, "
            f"{m.cpu_s:.1f} s CPU, {m.peak_rss_mb:.0f} MB"
        )
        return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_rss_mb": m.peak_rss_mb, "load": m.load}

    def trueshape(repeat: int) -> dict[str, float]:
        m = run_measured(trueshape_command(distorted, grad, size_dir / "trueshape"), size_dir / "trueshape")
        log(f"  trueshape correct run {repeat + 1}: {m.wall_s:.2f} s wall, {m.cpu_s:.1f} s CPU, {m.peak_rss_mb:.0f} MB")
        return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_rss_mb": m.peak_rss_mb, "load": m.load}

    # Interleaved, so that both tools see the same machine (a short run is at the mercy of its neighbours).
    gradunwarp_runs, trueshape_runs = [], []
    for repeat in range(max(repeats, repeats_gradunwarp)):
        if repeat < repeats:
            trueshape_runs.append(trueshape(repeat))
        if repeat < repeats_gradunwarp:
            gradunwarp_runs.append(gradunwarp("gu_jac", [], repeat))
    runs["gu_jac"], runs["gu_jac_all"] = median_run(gradunwarp_runs), gradunwarp_runs
    no_jacobian = [gradunwarp("gu_nojac", ["-n"], 0)]
    runs["gu_nojac"], runs["gu_nojac_all"] = median_run(no_jacobian), no_jacobian
    calls = time_correction_call(distorted, grad, repeats)
    for label, values in calls.items():
        log(f"  correction call alone ({label}): " + ", ".join(f"{v:.2f}" for v in values) + " s")
    runs["calls"] = calls
    runs["start_up"] = time_start_up(repeats)
    runs["trueshape"] = median_run(trueshape_runs)
    runs["trueshape_all"] = trueshape_runs
    log("  analysing ...")
    errors = analyse(size_dir, geometry, residual)
    return {"runs": runs, "errors": errors}


def print_table(name: str, outcome: dict[str, Any]) -> None:
    runs, errors = outcome["runs"], outcome["errors"]
    rows = [("gradunwarp", "gu_jac"), ("gradunwarp -n", "gu_nojac"), ("trueshape", "trueshape")]
    log(f"\n{name}: errors against the exact field / true phantom inside r <= {SPHERE_MM:.0f} mm (mm; J dimensionless)")
    header = ("tool", "wall s", "CPU s", "peak MB", "d max", "d mean", "d max r150", "J max", "J mean", "NRMSE")
    log(f"{header[0]:<15}" + "".join(f"{h:>11}" for h in header[1:]))
    for label, key in rows:
        e, r = errors[label], runs[key]
        has_jacobian = label != "gradunwarp -n"
        cells = [
            f"{r['wall_s']:.2f}",
            f"{r['cpu_s']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{e.displacement_max:.3g}",
            f"{e.displacement_mean:.3g}",
            f"{e.displacement_max_150:.3g}",
            f"{e.jacobian_max:.3g}" if has_jacobian else "-",
            f"{e.jacobian_mean:.3g}" if has_jacobian else "-",
            f"{e.nrmse:.4f}",
        ]
        log(f"{label:<15}" + "".join(f"{c:>11}" for c in cells))
    gu, ts, gu_run, ts_run = errors["gradunwarp"], errors["trueshape"], runs["gu_jac"], runs["trueshape"]
    calls = {label: float(np.median(values)) for label, values in runs["calls"].items() if values}
    wall_ratio = gu_run["wall_s"] / ts_run["wall_s"]
    log(
        "ratios gradunwarp / trueshape (medians): "
        f"wall {wall_ratio:.1f}x (target {WHOLE_COMMAND_TARGET:g}x: "
        f"{'met' if wall_ratio >= WHOLE_COMMAND_TARGET else 'MISSED'}) "
        f"(against the correction call alone: {gu_run['wall_s'] / calls.get('compiled', np.nan):.1f}x compiled, "
        f"{gu_run['wall_s'] / calls['numpy/scipy']:.1f}x numpy/scipy), "
        f"CPU {gu_run['cpu_s'] / ts_run['cpu_s']:.1f}x, "
        f"peak memory {gu_run['peak_rss_mb'] / ts_run['peak_rss_mb']:.2f}x, "
        f"displacement error max {gu.displacement_max / max(ts.displacement_max, 1e-12):.3g}x, "
        f"Jacobian error max {gu.jacobian_max / max(ts.jacobian_max, 1e-12):.3g}x"
    )
    for key, label in (("gu_jac_all", "gradunwarp"), ("trueshape_all", "trueshape")):
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs[key])
        loads = ", ".join(f"{r['load']:.2f}" for r in runs[key])
        log(f"{label} runs: wall {walls} s; 1-minute load average after each: {loads}")
    log(
        "trueshape correction call alone (medians): "
        + ", ".join(f"{label} {value:.2f} s" for label, value in calls.items())
        + f"; start-up (python -c 'import trueshape.cli') {float(np.median(runs['start_up'])):.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="trueshape runs per size (median reported)")
    parser.add_argument("--repeats-gradunwarp", type=int, default=3, help="gradunwarp runs per size (median reported)")
    options = parser.parse_args(arguments)
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_gradunwarp()
    # Both tools from compiled bytecode, as a user runs them (whatever PYTHONDONTWRITEBYTECODE says here).
    ENVIRONMENT.update(user_environment(GRADUNWARP_VENV))
    grad = WORK / "syn_as.grad"
    grad.write_text(format_siemens_grad(SYN_AS))
    log(f"coefficients: {grad}; CPUs available: {len(os.sched_getaffinity(0))}")
    outcomes = {}
    for name in options.sizes:
        log(f"\n== {name} ==")
        outcomes[name] = run_size(name, grad, options.repeats, options.repeats_gradunwarp)
    for name, outcome in outcomes.items():
        print_table(name, outcome)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
