"""Generic deformable registration peers, run on a benchmark pair and returned as displacement fields.

Three peers learn the field between a reference (fixed) and a distorted moving series, each in a child
process of a separate venv (``benchmarks/_work/venv_peers``, created on first use: antspyx pins numpy < 2.4,
and none of them is ever a trueshape dependency):

* ``elastix``: itk-elastix, one B-spline map, 3 resolutions, 40 mm final grid, 20000 random samples,
  500 iterations, a single metric (Mattes MI, or normalised correlation with ``metric="ncc"``); a multi-metric
  map with 2 threads segfaults (ITKElastix #160), so the default map's bending-energy term is dropped.
* ``simpleitk``: SimpleITK B-spline, ~40 mm knots over the fixed field of view, Mattes MI (or correlation),
  random sampling 50/20/5%, LBFGSB, shrink 4/2/1, smoothing 4/2/1 mm.
* ``ants``: antspyx ``registration(type_of_transform="SyN")`` (its affine stage then SyN; Mattes, or the
  local cross-correlation ``CC``, radius 4, with ``metric="ncc"``); the affine and the warp composed into one
  field.

Every peer reads the same two NIfTI files (:func:`write_peer_input`), uses 2 threads and registers
fixed = reference, moving = moving. Its field ``v`` is returned on the fixed grid in LPS mm, in ITK's
convention: the fixed point ``p`` maps to the moving point ``p + v(p)``, so the corrected image is
``moving(p + v(p))`` and ``v`` is compared with the forward model's ``u`` (a structure at ``x`` is seen at
``x + u(x)`` in the moving series). Two checks run on every result: the fixed grid the peer read must be the
file's, and the peer's own warped moving image must match the moving image sampled at ``p + v(p)`` (and not
at ``p - v(p)``: :attr:`PeerResult.warp_mismatch`). Wall time and peak RSS are the whole child process's
(``/usr/bin/time -v``); the child reports the registration call alone.

Self-check (half resolution, all peers, scored against the truth)::

    .venv/bin/python benchmarks/_peers.py [--voxel-scale 1] [--peers elastix ants] [--metric ncc]

At full resolution on 2 cores elastix and ANTs take about 2 minutes each, SimpleITK with Mattes MI about
30 (at half resolution, correlation instead of MI made it about 3x faster and less accurate on this pair).

This file runs in both venvs: at module level it imports only the standard library, numpy and scipy; trueshape
is imported by the functions that run in the project's venv, the peers by those that run in the child.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

if TYPE_CHECKING:
    from _anatomy import Pair
    from trueshape.geometry import Volume

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "peers"
VENV = HERE / "_work" / "venv_peers"
PACKAGES = ("itk-elastix", "SimpleITK", "antspyx", "nibabel", "numpy")
PEERS = ("elastix", "simpleitk", "ants")
METRICS = ("mi", "ncc")
THREADS = 2
GRID_SPACING_MM = 40.0
SEED = 1


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PeerResult:
    """One peer's field on the fixed grid, what it cost, and the checks of its convention."""

    name: str
    #: ``v`` (mm, LPS) at every fixed voxel, shape (I, J, K, 3): fixed point p -> moving point p + v(p).
    field: NDArray[np.float32]
    #: Fixed voxel index -> LPS mm (4x4), as the peer read the fixed image.
    lps_from_ijk: NDArray[np.float64]
    registration_seconds: float  #: the registration call alone (child's clock)
    process_seconds: float  #: the whole child process: start-up, reading, registering, field, writing
    cpu_seconds: float
    peak_rss_mb: float
    settings: str
    #: RMS of (peer's own warped moving - moving sampled at p + v(p)) and at p - v(p), inside the head,
    #: relative to the warped image's RMS there; the first must be the small one.
    warp_mismatch: tuple[float, float] = (float("nan"), float("nan"))

    def displacement_at(self, points_lps: NDArray[np.float64], *, outside: float = np.nan) -> NDArray[np.float64]:
        """``v`` at LPS points (trilinear), shape (..., 3) -> (..., 3); ``outside`` beyond the fixed grid."""
        points = np.asarray(points_lps, dtype=np.float64)
        return sample_field(self.field, self.lps_from_ijk, points.reshape(-1, 3), outside).reshape(points.shape)


def sample_field(
    field: NDArray[Any], lps_from_ijk: NDArray[np.float64], points: NDArray[np.float64], outside: float
) -> NDArray[np.float64]:
    """Trilinear samples of a (I, J, K, C) array at LPS points (P, 3) -> (P, C); ``outside`` off the grid."""
    ijk_from_lps = np.linalg.inv(lps_from_ijk)
    index = points @ ijk_from_lps[:3, :3].T + ijk_from_lps[:3, 3]
    out = np.empty((len(points), field.shape[3]))
    for c in range(field.shape[3]):
        out[:, c] = ndimage.map_coordinates(field[..., c], index.T, order=1, mode="nearest")
    off_grid = np.any((index < -0.5) | (index > np.array(field.shape[:3]) - 0.5), axis=1)
    out[off_grid] = outside
    return out


def field_errors(
    displacement: NDArray[np.float64], truth: NDArray[np.float64], normal: NDArray[np.float64]
) -> dict[str, float]:
    """Error of a displacement against the truth at the same points (mm), and its spurious in-plane part.

    ``displacement``, ``truth``: (P, 3) LPS; ``normal``: the unit slice normal of the moving series. Returns
    ``rms``, ``p99``, ``max`` of ``|v - u|``, ``inplane_max`` = max ``|v - (v.n) n|`` (``u`` has none) and
    ``missing``, the points where the displacement is NaN (beyond its grid), which are left out.
    """
    known = np.all(np.isfinite(displacement), axis=1)
    error = np.linalg.norm(displacement[known] - truth[known], axis=1)
    along = displacement[known] @ normal
    in_plane = np.linalg.norm(displacement[known] - along[:, None] * normal, axis=1)
    return {
        "rms": float(np.sqrt(np.mean(error**2))),
        "p99": float(np.percentile(error, 99)),
        "max": float(error.max()),
        "inplane_max": float(in_plane.max()),
        "missing": int((~known).sum()),
    }


# ------------------------------------------------------------------------------------- parent side


def write_peer_input(volume: Volume, path: Path) -> Path:
    """Write ``volume``'s physical values as float32 NIfTI (the geometry converted to RAS), as every peer reads it."""
    from trueshape.io import write_nifti

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_nifti(volume.with_array(volume.values(np.float32)), path, force=True)


def ensure_venv() -> Path:
    """The peers' python (``_work/venv_peers``), created and filled from PyPI on first use."""
    python = VENV / "bin" / "python"
    ready = VENV / "peers-ready"
    if not ready.exists():
        log(f"creating {VENV} and installing {' '.join(PACKAGES)} from PyPI (a few minutes)")
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
        subprocess.run([str(python), "-c", "import itk, SimpleITK, ants, nibabel"], check=True)
        ready.write_text(" ".join(PACKAGES) + "\n")
    return python


def _measured(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run under ``/usr/bin/time -v``: wall seconds, CPU seconds, peak RSS (MB), stdout."""
    report = cwd / "time-v.txt"
    started = time.perf_counter()
    process = subprocess.run(["/usr/bin/time", "-v", "-o", str(report), *command], cwd=cwd, env=env,
                             capture_output=True, text=True)
    wall = time.perf_counter() - started
    (cwd / "child.log").write_text(process.stdout + process.stderr)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}); see {cwd / 'child.log'}:\n"
                           f"{(process.stdout + process.stderr)[-3000:]}")
    fields = dict(line.strip().rsplit(": ", 1) for line in report.read_text().splitlines() if ": " in line)
    cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
    return wall, cpu, float(fields["Maximum resident set size (kbytes)"]) / 1024.0, process.stdout


def run_peer(name: str, fixed: Path, moving: Path, work: Path, *, metric: str = "mi") -> PeerResult:
    """Register ``moving`` to ``fixed`` (NIfTI from :func:`write_peer_input`) with one peer in its own process.

    ``work`` receives the child's files (``field.npy``, ``warped.npy``, ``result.json``, its log and
    ``time-v.txt``). Raises RuntimeError when the child fails or a convention check does not hold.
    """
    from trueshape.io import read_volume

    if name not in PEERS or metric not in METRICS:
        raise ValueError(f"peer {name!r} / metric {metric!r}: expected one of {PEERS} / {METRICS}")
    python = ensure_venv()
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("field.npy", "warped.npy", "result.json"):
        (work / stale).unlink(missing_ok=True)
    thread_vars = ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "MKL_NUM_THREADS")
    env = {**os.environ, **dict.fromkeys(thread_vars, str(THREADS))}
    command = [str(python), str(Path(__file__).resolve()), "--child", name, str(fixed.resolve()),
               str(moving.resolve()), str(work.resolve()), metric]
    wall, cpu, rss, _ = _measured(command, work, env)
    outcome = json.loads((work / "result.json").read_text())
    field = np.load(work / "field.npy")
    affine = np.asarray(outcome["lps_from_ijk"], dtype=np.float64)
    fixed_geometry = read_volume(fixed).geometry
    if field.shape[:3] != fixed_geometry.shape or not np.allclose(affine, fixed_geometry.lps_from_ijk, atol=1e-3):
        raise RuntimeError(f"{name}: its field grid {field.shape[:3]}\n{affine}\nis not the fixed image's "
                           f"{fixed_geometry.shape}\n{fixed_geometry.lps_from_ijk}")
    mismatch = _warp_mismatch(field, affine, np.load(work / "warped.npy"), read_volume(moving))
    if not mismatch[0] < 0.5 * mismatch[1]:
        raise RuntimeError(f"{name}: its warped image does not match moving(p + v(p)) (relative RMS "
                           f"{mismatch[0]:.3f}; at p - v(p): {mismatch[1]:.3f}): wrong field convention")
    return PeerResult(name=name, field=field, lps_from_ijk=affine,
                      registration_seconds=float(outcome["registration_seconds"]), process_seconds=wall,
                      cpu_seconds=cpu, peak_rss_mb=rss, settings=str(outcome["settings"]), warp_mismatch=mismatch)


def _warp_mismatch(
    field: NDArray[np.float32], affine: NDArray[np.float64], warped: NDArray[np.float32], moving: Volume
) -> tuple[float, float]:
    """Relative RMS of ``warped - moving(p + s v(p))`` for s = +1 and -1, over fixed voxels where ``warped``
    is bright (above 10% of its 99th percentile), every 2nd voxel."""
    grids = np.meshgrid(*(np.arange(0, n, 2, dtype=np.float64) for n in field.shape[:3]), indexing="ij")
    index = np.stack(grids, axis=-1).reshape(-1, 3)
    sub = tuple(index.astype(int).T)
    target = warped[sub].astype(np.float64)
    bright = target > 0.1 * np.percentile(target, 99)
    points = (index[bright] @ affine[:3, :3].T + affine[:3, 3])
    v = field[sub][bright].astype(np.float64)
    values = moving.values(np.float32)[..., None]
    scale = float(np.sqrt(np.mean(target[bright] ** 2)))
    out = []
    for sign in (1.0, -1.0):
        sampled = sample_field(values, moving.geometry.lps_from_ijk, points + sign * v, 0.0)[:, 0]
        out.append(float(np.sqrt(np.mean((sampled - target[bright]) ** 2))) / scale)
    return out[0], out[1]


# -------------------------------------------------------------------------------------- child side


def _affine(origin: Any, spacing: Any, direction: Any) -> list[list[float]]:
    """ITK image geometry (LPS) -> the 4x4 voxel-to-LPS matrix."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) * np.asarray(spacing, dtype=np.float64)
    matrix[:3, 3] = np.asarray(origin, dtype=np.float64)
    return matrix.tolist()


def _elastix(fixed_path: str, moving_path: str, work: Path, metric: str) -> dict[str, Any]:
    import itk

    fixed = itk.imread(fixed_path, itk.F)
    moving = itk.imread(moving_path, itk.F)
    parameters = itk.ParameterObject.New()
    bspline = parameters.GetDefaultParameterMap("bspline", 3, GRID_SPACING_MM)
    # One metric only: the default map adds a bending-energy term, and a multi-metric map with 2 threads
    # segfaults (ITKElastix #160).
    bspline["Registration"] = ["MultiResolutionRegistration"]
    bspline["Metric"] = ["AdvancedMattesMutualInformation" if metric == "mi" else "AdvancedNormalizedCorrelation"]
    for key in ("Metric0Weight", "Metric1Weight"):
        bspline.pop(key, None)
    bspline["NumberOfSpatialSamples"] = ["20000"]
    bspline["MaximumNumberOfIterations"] = ["500"]
    bspline["RandomSeed"] = [str(SEED)]
    parameters.AddParameterMap(bspline)
    started = time.perf_counter()
    warped, transform = itk.elastix_registration_method(
        fixed, moving, parameter_object=parameters, number_of_threads=THREADS, log_to_console=False,
        output_directory=str(work))
    seconds = time.perf_counter() - started
    deformation = itk.transformix_deformation_field(moving, transform)
    field = np.transpose(itk.array_from_image(deformation), (2, 1, 0, 3))
    settings = ("itk-elastix: 1 B-spline map, 3 resolutions (grid schedule 2/1.41/1), final grid 40 mm, "
                f"{bspline['Metric'][0]}, 20000 random samples, 500 iterations (ASGD), {THREADS} threads")
    return {
        "field": field, "warped": np.transpose(itk.array_from_image(warped), (2, 1, 0)),
        "lps_from_ijk": _affine(fixed.GetOrigin(), fixed.GetSpacing(), itk.array_from_matrix(fixed.GetDirection())),
        "registration_seconds": seconds, "settings": settings,
    }


def _simpleitk(fixed_path: str, moving_path: str, metric: str) -> dict[str, Any]:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    fixed = sitk.ReadImage(fixed_path, sitk.sitkFloat32)
    moving = sitk.ReadImage(moving_path, sitk.sitkFloat32)
    extent = np.array(fixed.GetSize()) * np.array(fixed.GetSpacing())
    mesh = [max(1, round(float(e) / GRID_SPACING_MM)) for e in extent]
    transform = sitk.BSplineTransformInitializer(fixed, mesh, 3)
    method = sitk.ImageRegistrationMethod()
    if metric == "mi":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    else:
        method.SetMetricAsCorrelation()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel([0.5, 0.2, 0.05], SEED)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=100,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=1000,
                                costFunctionConvergenceFactor=1e7)
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([4.0, 2.0, 1.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform, inPlace=True)
    started = time.perf_counter()
    result = method.Execute(fixed, moving)
    seconds = time.perf_counter() - started
    displacement = sitk.TransformToDisplacementField(result, sitk.sitkVectorFloat64, fixed.GetSize(),
                                                     fixed.GetOrigin(), fixed.GetSpacing(), fixed.GetDirection())
    warped = sitk.Resample(moving, fixed, result, sitk.sitkLinear, 0.0)
    settings = (f"SimpleITK {sitk.Version.VersionString()}: B-spline mesh {mesh} (~40 mm knots), "
                f"{'Mattes MI (50 bins)' if metric == 'mi' else 'correlation'}, random sampling 50/20/5%, "
                f"LBFGSB (100 iterations), shrink 4/2/1, smoothing 4/2/1 mm, {THREADS} threads; stopped: "
                f"{method.GetOptimizerStopConditionDescription()}")
    return {
        "field": np.transpose(sitk.GetArrayFromImage(displacement), (2, 1, 0, 3)),
        "warped": np.transpose(sitk.GetArrayFromImage(warped), (2, 1, 0)),
        "lps_from_ijk": _affine(fixed.GetOrigin(), fixed.GetSpacing(), fixed.GetDirection()),
        "registration_seconds": seconds, "settings": settings,
    }


def _ants(fixed_path: str, moving_path: str, work: Path, metric: str) -> dict[str, Any]:
    import ants

    fixed = ants.image_read(fixed_path)
    moving = ants.image_read(moving_path)
    # syn_sampling is Mattes' histogram bins (antspyx's default 32) or CC's window radius (ANTs' usual 4).
    syn_metric, syn_sampling = ("mattes", 32) if metric == "mi" else ("CC", 4)
    started = time.perf_counter()
    registration = ants.registration(fixed, moving, type_of_transform="SyN", syn_metric=syn_metric,
                                     syn_sampling=syn_sampling, outprefix=str(work / "ants_"), random_seed=SEED)
    seconds = time.perf_counter() - started
    # The affine stage and the SyN warp as one displacement field on the fixed grid (antsApplyTransforms
    # composes them in the order it applies them), in ITK's LPS convention.
    composed = ants.apply_transforms(fixed, moving, registration["fwdtransforms"],
                                     compose=str(work / "ants_composed_"))
    field = ants.image_read(composed)
    settings = (f"antspyx {ants.__version__}: registration(type_of_transform='SyN'): affine stage (mattes) then "
                f"SyN (syn_metric={syn_metric}, syn_sampling {syn_sampling}, reg_iterations (40, 20, 0), "
                f"flow_sigma 3), affine and warp composed, {THREADS} threads")
    return {
        "field": field.numpy(), "warped": registration["warpedmovout"].numpy(),
        "lps_from_ijk": _affine(fixed.origin, fixed.spacing, fixed.direction),
        "registration_seconds": seconds, "settings": settings,
    }


def _child(arguments: list[str]) -> int:
    name, fixed, moving, work, metric = arguments
    folder = Path(work)
    if name == "elastix":
        outcome = _elastix(fixed, moving, folder, metric)
    elif name == "simpleitk":
        outcome = _simpleitk(fixed, moving, metric)
    else:
        outcome = _ants(fixed, moving, folder, metric)
    np.save(folder / "field.npy", np.ascontiguousarray(outcome.pop("field"), dtype=np.float32))
    np.save(folder / "warped.npy", np.ascontiguousarray(outcome.pop("warped"), dtype=np.float32))
    (folder / "result.json").write_text(json.dumps(outcome, indent=1))
    log(f"{name}: registration {outcome['registration_seconds']:.1f} s")
    return 0


# ------------------------------------------------------------------------------------------ self-check


def score(result: PeerResult | None, pair: Pair) -> dict[str, float]:
    """A peer's field (None: no correction) against the truth over the head's voxels of the moving grid
    (every 2nd), those off the fixed grid left out."""
    import trueshape
    from trueshape.dicom import DistortionState

    geometry = trueshape.load(pair.moving).geometry
    normal = geometry.direction[:, 2]
    points = pair.object_points(geometry)
    truth = pair.truth_residual(DistortionState.IN_PLANE_2D, normal).displacement_lps(points)
    if result is None:  # no correction, left out where the peers' (reference) grid has no field either
        reference = trueshape.load(pair.reference).geometry
        index = reference.lps_to_index(points)
        off_grid = np.any((index < -0.5) | (index > np.array(reference.shape) - 0.5), axis=1)
        displacement = np.where(off_grid[:, None], np.nan, np.zeros_like(points))
    else:
        displacement = result.displacement_at(points)
    return {**field_errors(displacement, truth, normal), "points": len(points)}


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--child"]:
        return _child(arguments[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voxel-scale", type=float, default=2.0, help="PairSpec.voxel_scale (1 = full resolution)")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--metric", default="mi", choices=METRICS)
    options = parser.parse_args(arguments)

    sys.path.insert(0, str(HERE))
    import trueshape
    from _anatomy import PairSpec, head_pair

    spec = PairSpec(voxel_scale=options.voxel_scale)
    pair = head_pair(spec)
    work = WORK / spec.key()
    fixed = write_peer_input(trueshape.load(pair.reference), work / "reference.nii")
    moving = write_peer_input(trueshape.load(pair.moving), work / "moving.nii")
    log(f"pair {spec.key()} (voxel scale {spec.voxel_scale:g}); CPUs available: {len(os.sched_getaffinity(0))}")
    rows: list[tuple[str, dict[str, float], PeerResult | None]] = [("none", score(None, pair), None)]
    for name in options.peers:
        log(f"running {name} ({options.metric}) ...")
        result = run_peer(name, fixed, moving, work / f"{name}_{options.metric}", metric=options.metric)
        log(f"  {result.settings}")
        plus, minus = result.warp_mismatch
        log(f"  its warped image vs moving(p + v): {plus:.3f}; vs moving(p - v): {minus:.3f} (relative RMS)")
        rows.append((name, score(result, pair), result))
        errors = rows[-1][1]
        log(f"  error RMS {errors['rms']:.3f}, p99 {errors['p99']:.3f}, max {errors['max']:.3f} mm, in-plane max "
            f"{errors['inplane_max']:.3f} mm; registration {result.registration_seconds:.1f} s, process "
            f"{result.process_seconds:.1f} s, peak {result.peak_rss_mb:.0f} MB")
    log(f"\nfield error against the truth at {rows[0][1]['points']} head voxels of the moving grid (mm); "
        "in-plane = spurious component off the slice normal; times are the whole child process")
    header = ("peer", "RMS", "p99", "max", "in-plane", "reg s", "proc s", "CPU s", "peak MB", "missing")
    log(f"{header[0]:<10}" + "".join(f"{h:>10}" for h in header[1:]))
    for name, errors, result in rows:
        cells = [f"{errors['rms']:.3f}", f"{errors['p99']:.3f}", f"{errors['max']:.3f}", f"{errors['inplane_max']:.3f}"]
        if result is None:
            cells += ["-"] * 4
        else:
            cells += [f"{result.registration_seconds:.1f}", f"{result.process_seconds:.1f}",
                      f"{result.cpu_seconds:.1f}", f"{result.peak_rss_mb:.0f}"]
        log(f"{name:<10}" + "".join(f"{c:>10}" for c in [*cells, str(errors["missing"])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
