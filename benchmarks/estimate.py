"""Learning the field from images: trueshape estimate against elastix, SimpleITK and ANTs, on the same truth.

Cases (``--cases``; each prints its own table):

* ``pair`` - the real-anatomy pair (benchmarks/_anatomy.py: the corpus T1 head 90 mm above the isocentre, a
  DIS3D axial reference and a DIS2D coronal series with SYN-AS, through-plane field up to ~13 mm). trueshape's
  figure is the whole command ``trueshape estimate --reference ... --moving ... --out ...`` (reading DICOM,
  fitting, writing the model, the corrected series, its field and transform, and the report), in a child
  process under ``/usr/bin/time -v``; each peer (``--peers``) is timed as in benchmarks/_peers.py (its
  registration call, and its whole process). Errors: the field against the truth at the head's voxels of
  the moving grid (every 2nd), RMS / 99th percentile / max, and the largest spurious in-plane component.
* ``contrast`` - the same pair with the reference remapped to a proton-density-like contrast.
* ``motion`` - the head moved 2.0 mm and turned 1 degree between the series: the field, and the motion found.
* ``selfcal`` - both series DIS2D (axial and coronal): both fields from the one pair.
* ``femur`` - SYN-FEMUR as the demo's learning subject (textured soft tissue, band-limited boundaries): the
  field, and the femoral heads' front-back / left-right ratio after correcting with the learned model.
* ``phantom`` - a 256^3 marker phantom scanned ND with a coil that has asymmetric terms: marker errors within
  100 mm of the isocentre after correction with the fitted model, and with the true coefficients.
* ``memory`` - peak memory of the whole estimate command with a 512x512x200 moving series.

Usage::

    .venv/bin/python benchmarks/estimate.py [--cases pair contrast ...] [--peers elastix simpleitk ants]
                                            [--voxel-scale 2] [--repeats 1]

Data are written once under benchmarks/_work (the first run takes several minutes per case); peers run in
their own venv (benchmarks/_peers.py). Times are wall clock on this machine: compare the ratios, printed
beside each figure, rather than the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _peers  # noqa: E402
import trueshape  # noqa: E402
from _anatomy import ASYMMETRIC, Pair, PairSpec, head_pair  # noqa: E402
from trueshape.dicom import DistortionState  # noqa: E402
from trueshape.gnl import MagnetFrame, ResidualField, read_scanner_model  # noqa: E402

WORK = HERE / "_work" / "estimate"
TRUESHAPE = Path(sys.executable).with_name("trueshape")


def run_trueshape(arguments: list[str], out: Path) -> dict[str, float]:
    """Run ``trueshape`` as a child under ``/usr/bin/time -v``: wall seconds and peak RSS (MB)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report = out.parent / f"{out.name}.time-v.txt"
    started = time.perf_counter()
    process = subprocess.run(["/usr/bin/time", "-v", "-o", str(report), str(TRUESHAPE), *arguments, "--out",
                              str(out), "--force"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if process.returncode not in (0, 3):
        raise RuntimeError(f"trueshape {' '.join(arguments)} failed:\n{process.stdout}{process.stderr}")
    fields = dict(line.strip().rsplit(": ", 1) for line in report.read_text().splitlines() if ": " in line)
    return {"seconds": seconds, "peak_mb": float(fields["Maximum resident set size (kbytes)"]) / 1024.0,
            "exit": float(process.returncode)}


def model_errors(model_file: Path, pair: Pair, series: Path, state: DistortionState) -> dict[str, float]:
    """The learned model's residual for ``series`` against the truth, where the peers are scored."""
    geometry = trueshape.load(series).geometry
    normal = geometry.direction[:, 2]
    points = pair.object_points(geometry)
    learned = ResidualField(read_scanner_model(model_file), MagnetFrame(), state, normal).displacement_lps(points)
    truth = pair.truth_residual(state, normal).displacement_lps(points)
    reference = trueshape.load(pair.reference).geometry
    index = reference.lps_to_index(points)
    off_grid = np.any((index < -0.5) | (index > np.array(reference.shape) - 0.5), axis=1)
    learned[off_grid] = np.nan  # where the peers have no field either: left out for every tool alike
    return {**_peers.field_errors(learned, truth, normal), "points": len(points)}


def _row(name: str, errors: dict[str, float], seconds: float | None, peak: float | None,
         against: dict[str, float] | None = None, against_seconds: float | None = None) -> str:
    cells = [f"{errors['rms']:.3f}", f"{errors['p99']:.3f}", f"{errors['max']:.3f}", f"{errors['inplane_max']:.3f}",
             "-" if seconds is None else f"{seconds:.1f}", "-" if peak is None else f"{peak:.0f}"]
    if against is not None and against_seconds is not None and seconds is not None:
        cells += [f"{errors['rms'] / against['rms']:.2f}", f"{errors['p99'] / against['p99']:.2f}",
                  f"{seconds / against_seconds:.2f}"]
    return f"{name:<22}" + "".join(f"{c:>11}" for c in cells)


HEADER = f"{'tool':<22}" + "".join(f"{h:>11}" for h in ("RMS", "p99", "max", "in-plane", "seconds", "peak MB",
                                                         "RMS/el", "p99/el", "time/el"))


def case_pair(spec: PairSpec, peers: list[str], repeats: int, title: str) -> None:
    pair = head_pair(spec)
    work = WORK / spec.key()
    print(f"\n== {title}: {spec}")
    runs = [run_trueshape(["estimate", "--reference", str(pair.reference), "--moving", str(pair.moving)],
                          work / "trueshape") for _ in range(repeats)]
    ours = model_errors(work / "trueshape" / "model.json", pair, pair.moving, DistortionState.IN_PLANE_2D)
    seconds = statistics.median(r["seconds"] for r in runs)
    peak = max(r["peak_mb"] for r in runs)
    rows = [("none", _peers.score(None, pair), None, None)]
    if peers:
        fixed = _peers.write_peer_input(trueshape.load(pair.reference), work / "reference.nii")
        moving = _peers.write_peer_input(trueshape.load(pair.moving), work / "moving.nii")
        metric = "mi"
        for name in peers:
            result = _peers.run_peer(name, fixed, moving, work / f"{name}_{metric}", metric=metric)
            rows.append((name, _peers.score(result, pair), result.registration_seconds, result.peak_rss_mb))
            print(f"  {name}: registration {result.registration_seconds:.1f} s, whole process "
                  f"{result.process_seconds:.1f} s ({result.settings})")
    elastix = next(((e, s) for n, e, s, _ in rows if n == "elastix"), None)
    print(f"field error against the truth at {ours['points']} head voxels (mm); trueshape's seconds: the whole "
          f"command (median of {repeats}); peers': the registration call")
    print(HEADER)
    for name, errors, secs, mb in rows:
        print(_row(name, errors, secs, mb, *(elastix if elastix else (None, None))))
    print(_row("trueshape estimate", ours, seconds, peak, *(elastix if elastix else (None, None))))
    report = json.loads((work / "trueshape" / "estimate.json").read_text())
    motion = report["motion_reference_to_moving"]
    print(f"  trueshape: fit {report['fit']['seconds']:.1f} s of the command; motion found {motion['shift_mm']:.2f} "
          f"mm, {motion['angle_deg']:.2f} deg; agreement {report['fit']['agreement_before']:.3f} -> "
          f"{report['fit']['agreement_after']:.3f}; warnings: {report['warnings'] or 'none'}")


def case_selfcal(spec: PairSpec) -> None:
    pair = head_pair(spec)
    work = WORK / spec.key()
    print(f"\n== self-calibration (both DIS2D): {spec}")
    run = run_trueshape(["estimate", "--reference", str(pair.reference), "--moving", str(pair.moving)],
                        work / "trueshape")
    for label, series in (("coronal", pair.moving), ("axial", pair.reference)):
        errors = model_errors(work / "trueshape" / "model.json", pair, series, DistortionState.IN_PLANE_2D)
        print(f"  {label}: RMS {errors['rms']:.3f} mm, p99 {errors['p99']:.3f} mm, max {errors['max']:.3f} mm "
              f"(target: RMS <= 0.20, p99 <= 0.5)")
    print(f"  whole command {run['seconds']:.1f} s, peak {run['peak_mb']:.0f} MB")


def case_phantom(size: int) -> None:
    from trueshape.synth import Acquisition, MarkerPhantom, Plane, inverse_map, write_marker_csv, write_session

    folder = WORK / f"phantom_{size}"
    rotation = _rotation((0.3, 1.0, 0.2), 2.0)
    voxel = 384.0 / size
    phantom = MarkerPhantom.grid(spacing_mm=20.0, radius_mm=170.0, marker_radius_mm=3.0, rotation=rotation,
                                 translation_mm=(2.0, -3.0, 5.0))
    print(f"\n== phantom: {size}^3 at {voxel:.2f} mm, {len(phantom.centres_mm)} markers, coil {ASYMMETRIC.coil_id} "
          "(ND)")
    if not (folder / "session.json").is_file():
        acquisition = Acquisition(plane=Plane.AXIAL, fov_mm=(384.0, 384.0), matrix=(size, size), slices=size,
                                  slice_thickness_mm=voxel, distortion_state=DistortionState.NONE, noise_sd=10.0,
                                  in_plane_samples=2, slice_samples=2, series_number=5, description="phantom", seed=3)
        write_session(folder, phantom, ASYMMETRIC, (acquisition,), force=True)
    csv = write_marker_csv(WORK / f"phantom_{size}_markers.csv", phantom.centres_mm)
    series = folder / "dicom" / "05_phantom"
    run = run_trueshape(["estimate", "--phantom", str(csv), "--moving", str(series)], WORK / f"phantom_{size}_out")
    report = json.loads((WORK / f"phantom_{size}_out" / "estimate.json").read_text())
    markers = report["markers"]
    print(f"  found {markers['found']}, matched {markers['matched']}; whole command {run['seconds']:.1f} s, peak "
          f"{run['peak_mb']:.0f} MB")
    from scipy.spatial import cKDTree

    from trueshape.estimation import detect_markers

    volume = trueshape.load(series)
    found = detect_markers(volume.values(), volume.geometry, marker_radius_mm=3.0)
    true_positions = phantom.centres_lps  # the pose the phantom was scanned in (the fit finds it too)
    fitted = read_scanner_model(WORK / f"phantom_{size}_out" / "model.json")
    for name, coil in (("fitted model", fitted), ("true coefficients", ASYMMETRIC)):
        field = ResidualField(coil, MagnetFrame(), DistortionState.NONE)
        corrected = inverse_map(field.displacement_lps, found)
        nearest = true_positions[cKDTree(true_positions).query(corrected)[1]]
        error = np.linalg.norm(corrected - nearest, axis=1)
        near = np.linalg.norm(nearest, axis=1) <= 100.0
        print(f"  corrected with the {name}: marker error within 100 mm mean {error[near].mean():.3f} mm, max "
              f"{error[near].max():.3f} mm ({near.sum()} markers); all markers mean {error.mean():.3f}, max "
              f"{error.max():.3f} mm (target within 100 mm: mean <= 0.08, max <= 0.2)")


def case_femur(quick: bool) -> None:
    from trueshape.demo_learn import learning_subject
    from trueshape.gnl import SYN_AS
    from trueshape.io import read_volume_file
    from trueshape.reporting import measure_bright_sphere
    from trueshape.synth import Contrast, Tissue, write_session

    folder = WORK / ("femur_quick" if quick else "femur_subject")
    # The demo's learning subject (textured soft tissue, band-limited boundaries, anti-aliased sampling) at
    # the size of the truth, the isocentre 150 mm below the hips: sharp point-sampled edges alias, and
    # registration then fits the aliasing.
    phantom, (reference, coronal) = learning_subject(1.0, 150.0, quick=quick)
    print(f"\n== SYN-FEMUR pair (the demo's learning subject, {'quick' if quick else 'demo'} resolution)")
    if not (folder / "session.json").is_file():
        write_session(folder, phantom, SYN_AS, (reference, coronal), force=True)
    dicom = folder / "dicom"
    ref_dir, cor_dir = (dicom / f"{a.series_number:02d}_{a.description}" for a in (reference, coronal))
    volume = trueshape.load(cor_dir)
    normal = volume.geometry.direction[:, 2]
    frame = MagnetFrame(coronal.patient_position, np.asarray(coronal.isocentre_lps))
    truth = ResidualField(SYN_AS, frame, DistortionState.IN_PLANE_2D, normal)
    points = volume.geometry.voxel_centres()[::2, ::2, ::2].reshape(-1, 3)
    points = points[phantom.labels(points) > 0]
    ref_geometry = trueshape.load(ref_dir).geometry
    index = ref_geometry.lps_to_index(points)
    points = points[np.all((index >= 0) & (index <= np.array(ref_geometry.shape) - 1), axis=1)]
    true_rms = np.sqrt(np.mean(np.sum(truth.displacement_lps(points) ** 2, axis=1)))
    print(f"  field error in the object where both series image it (true field RMS {true_rms:.2f} mm):")
    # The default (motion fitted) and --no-motion: the subject lay still, so the second shows what a
    # spurious motion costs the field.
    for flags in ([], ["--no-motion"]):
        out = WORK / (("femur_quick_out" if quick else "femur_subject_out") + "".join(f.replace("-", "_")
                                                                                      for f in flags))
        run = run_trueshape(["estimate", "--reference", str(ref_dir), "--moving", str(cor_dir), *flags], out)
        learned = ResidualField(read_scanner_model(out / "model.json"), frame, DistortionState.IN_PLANE_2D, normal)
        errors = np.linalg.norm(learned.displacement_lps(points) - truth.displacement_lps(points), axis=1)
        motion = json.loads((out / "estimate.json").read_text()).get("motion_reference_to_moving") or {}
        found = f"motion found {motion['shift_mm']:.2f} mm, {motion['angle_deg']:.2f} deg" if motion else "no motion"
        print(f"  estimate {' '.join(flags) or '(default)':<14} RMS {np.sqrt(np.mean(errors**2)):.3f} mm, p99 "
              f"{np.percentile(errors, 99):.3f}, max {errors.max():.3f}; {found}; whole command "
              f"{run['seconds']:.1f} s")
        corrected = read_volume_file(next(out.glob("*_corrected.nii.gz")))
        for label, image in (("as acquired", volume), ("corrected (learned)", corrected)):
            ratios = []
            for centre, _ in phantom.femoral_heads():
                measurement = measure_bright_sphere(
                    image, centre, phantom.head_marrow_radius_mm(),
                    inside_level=phantom.signal_of(Tissue.MARROW, Contrast.T1),
                    outside_level=phantom.signal_of(Tissue.CORTEX, Contrast.T1),
                    surround_level=phantom.signal_of(Tissue.MUSCLE, Contrast.T1))
                ratios.append(measurement.ap_lr_ratio)
            print(f"    femoral heads {label}: front-back / left-right {', '.join(f'{r:.4f}' for r in ratios)} "
                  f"(truth 1; target within 0.5%)")


def case_memory() -> None:
    spec = PairSpec(voxel_scale=1.0)
    pair = head_pair(spec)
    from trueshape.synth import Acquisition, Plane, VolumePhantom, write_session

    folder = WORK / "memory_512"
    if not (folder / "session.json").is_file():
        head = trueshape.load(Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "real"
                              / "siemens-xa30-t1-3d-enhanced" / "dicom")
        phantom = VolumePhantom.from_volume(head, centre_lps=(0.0, 0.0, 90.0))
        moving = Acquisition(plane=Plane.CORONAL, fov_mm=(230.0, 230.0), matrix=(512, 512), slices=200,
                             slice_thickness_mm=1.2, centre_lps=(0.0, 0.0, 90.0),
                             distortion_state=DistortionState.IN_PLANE_2D, noise_sd=0.02 * phantom.level,
                             in_plane_samples=1, slice_samples=1, series_number=4, description="cor_512", seed=4)
        from trueshape.gnl import SYN_AS

        write_session(folder, phantom, SYN_AS, (moving,), force=True)
    print("\n== memory: a 512x512x200 moving series against the head pair's reference")
    # Written as its own session (a new frame of reference UID), of the same truth at the same place.
    run = run_trueshape(["estimate", "--reference", str(pair.reference), "--moving",
                         str(folder / "dicom" / "04_cor_512"), "--same-frame"], WORK / "memory_out")
    print(f"  whole command {run['seconds']:.1f} s, peak {run['peak_mb']:.0f} MB (target below 4096 MB)")


def _rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    x, y, z = np.asarray(axis) / np.linalg.norm(axis)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["pair", "contrast", "motion", "selfcal", "femur", "phantom",
                                                         "memory"])
    parser.add_argument("--peers", nargs="*", default=["elastix"], choices=_peers.PEERS)
    parser.add_argument("--voxel-scale", type=float, default=1.0, help="1: the stated voxels; 2: twice as coarse")
    parser.add_argument("--repeats", type=int, default=1)
    options = parser.parse_args()
    print(f"CPUs: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}")
    scale = options.voxel_scale
    for case in options.cases:
        if case == "pair":
            case_pair(PairSpec(voxel_scale=scale), options.peers, options.repeats, "real-anatomy pair")
        elif case == "contrast":
            case_pair(PairSpec(voxel_scale=scale, reference_contrast="PD"), options.peers[:1], 1,
                      "another contrast (reference PD-like)")
        elif case == "motion":
            case_pair(PairSpec(voxel_scale=scale, motion=True), [], 1, "motion between the series (2 mm, 1 degree)")
        elif case == "selfcal":
            case_selfcal(PairSpec(voxel_scale=scale, reference_state="DIS2D"))
        elif case == "femur":
            case_femur(quick=scale > 1.5)
        elif case == "phantom":
            case_phantom(128 if scale > 1.5 else 256)
        elif case == "memory":
            case_memory()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
