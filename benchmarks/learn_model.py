"""A scanner model learned from 2 subjects, judged on 4 unseen subjects corrected from their coronal scan alone.

Subjects are the corpus T1 head (benchmarks/_anatomy.py) at other heights above the isocentre and other
sizes, each scanned as a DIS3D axial reference and a DIS2D coronal series through SYN-AS. Two subjects with
both scans train; four others are corrected from the model alone. For each unseen subject the script prints
the RMS of the true through-plane residual over its head, what the model leaves, and the share removed.

Side by side, on the same data:

* ``trueshape learn`` - the whole command (picks each session's pair, estimates it, pools the model);
* a plain least-squares fit - the harmonics of both training pairs fitted to plain image differences at full
  resolution (one level, normalised cross-correlation, no prior to speak of, no motion), pooled: the
  prototype ``research/learn-feasibility.md`` describes.

With ``--training realistic`` the training sessions are as real ones are: the reference has another contrast
(PD-like, remapped) and the head moves 2 mm and turns 1 degree between the two series.

Usage::

    .venv/bin/python benchmarks/learn_model.py [--training clean|realistic] [--voxel-scale 2]

The first run writes six sessions (several minutes); later runs reuse them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import trueshape  # noqa: E402
from _anatomy import PairSpec, head_pair  # noqa: E402
from trueshape.dicom import DistortionState  # noqa: E402
from trueshape.estimation import (  # noqa: E402
    FitOptions,
    Level,
    SessionEstimate,
    Similarity,
    fit_pair,
    pool_sessions,
    prepare_argument,
)
from trueshape.gnl import MagnetFrame, ResidualField, read_scanner_model  # noqa: E402

WORK = HERE / "_work" / "learn_model"
TRAINING = ((80.0, 1.0), (20.0, 0.92))
UNSEEN = ((0.0, 0.95), (50.0, 1.05), (100.0, 0.90), (140.0, 1.0))


def _plain_model(pairs: list) -> tuple[object, np.ndarray]:
    """Plain least squares: one sharp level, NCC, a prior too weak to matter, no motion; both pairs pooled."""
    plain = FitOptions(levels=(Level(0.0, 250_000, 99, 30),), similarity=Similarity.NCC, motion=False,
                       prior_sd=100.0, asymmetric_prior_sd=100.0)
    sessions = []
    for pair in pairs:
        reference, moving = prepare_argument(pair.reference), prepare_argument(pair.moving)
        fit = fit_pair(reference.image, moving.image, options=plain)
        sessions.append(SessionEstimate(pair.spec.key(), tuple(fit.model.labels()), fit.theta, fit.normal_matrix,
                                        fit.prior_precision, 250.0, ((moving.image.view, fit.sample_points_lps),)))
    pooled = pool_sessions(sessions, prior_sd=100.0, asymmetric_prior_sd=100.0)
    return pooled.model, pooled.theta


def _errors(field: ResidualField, pair) -> tuple[float, float]:
    """RMS of the true residual over the head of the pair's coronal series, and of what ``field`` leaves (mm)."""
    geometry = trueshape.load(pair.moving).geometry
    normal = geometry.direction[:, 2]
    points = pair.object_points(geometry, step=3)
    truth = pair.truth_residual(DistortionState.IN_PLANE_2D, normal).displacement_lps(points)
    left = field.displacement_lps(points) - truth
    return float(np.sqrt(np.mean(np.sum(truth**2, axis=1)))), float(np.sqrt(np.mean(np.sum(left**2, axis=1))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voxel-scale", type=float, default=1.0)
    parser.add_argument("--training", choices=("clean", "realistic"), default="clean")
    options = parser.parse_args()
    print(f"CPUs: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}; training: {options.training}")
    realistic = options.training == "realistic"
    training = [head_pair(PairSpec(centre_mm=c, scale=s, voxel_scale=options.voxel_scale,
                                   reference_contrast="PD" if realistic else "T1", motion=realistic))
                for c, s in TRAINING]
    unseen = [head_pair(PairSpec(centre_mm=c, scale=s, voxel_scale=options.voxel_scale)) for c, s in UNSEEN]
    out = WORK / f"learned_{options.training}_{options.voxel_scale:g}"
    started = time.perf_counter()
    process = subprocess.run([str(Path(sys.executable).with_name("trueshape")), "learn",
                              *(str(p.reference.parents[1]) for p in training), "--out", str(out), "--force"],
                             capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"trueshape learn failed:\n{process.stdout}{process.stderr}")
    learned = read_scanner_model(out / "model.json")
    started = time.perf_counter()
    plain_model, plain_theta = _plain_model(training)
    plain_seconds = time.perf_counter() - started
    print(f"trained on {', '.join(f'{c:g} mm (x{s:g})' for c, s in TRAINING)}: trueshape learn {seconds:.1f} s "
          f"(whole command); plain least squares {plain_seconds:.1f} s (fits only)")
    for check in learned.fit_quality.get("cross_validation", []):
        print(f"  leave-one-out {check['session']}: {check['rms_difference_mm']:.3f} mm RMS "
              f"({check['rigid_adjusted_rms_mm']:.3f} up to a rigid motion)")
    print(f"{'unseen subject':<22}{'true RMS':>10}{'trueshape':>12}{'removed':>10}{'plain LSQ':>12}{'removed':>10}")
    for (centre, scale), pair in zip(UNSEEN, unseen, strict=True):
        volume = trueshape.load(pair.moving)
        normal = volume.geometry.direction[:, 2]
        ours = ResidualField(learned, MagnetFrame(), DistortionState.IN_PLANE_2D, normal)
        true_rms, left = _errors(ours, pair)
        from trueshape.estimation import SeriesView

        view = SeriesView.build(DistortionState.IN_PLANE_2D, slice_normal_lps=normal)
        points = pair.object_points(volume.geometry, step=3)
        truth = pair.truth_residual(DistortionState.IN_PLANE_2D, normal).displacement_lps(points)
        plain_left = float(np.sqrt(np.mean(np.sum((plain_model.residual(view, plain_theta, points)  # type: ignore[attr-defined]
                                                    - truth) ** 2, axis=1))))
        print(f"{f'{centre:g} mm, x{scale:g}':<22}{true_rms:>10.3f}{left:>12.4f}{100 * (1 - left / true_rms):>9.1f}%"
              f"{plain_left:>12.4f}{100 * (1 - plain_left / true_rms):>9.1f}%")
    print("(target: >= 95% removed, or <= 0.05 mm RMS left near the isocentre)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
