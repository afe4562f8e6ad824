"""A distortion phantom's markers: found in the image, matched to their known positions, and the field fitted.

A phantom holds small bright markers at positions known from its drawing or a CT (its own frame). In the
scanner it sits at an unknown rigid pose ``T``; a marker at true patient position ``T(x)`` appears at
``T(x) + u(T(x))`` with ``u`` the series' residual of the scanner's field. Fitting the pose and the harmonic
coefficients to the found markers characterises the scanner - all three gradient axes from one ND scan -
as medical physicists do with grid phantoms (anchor: mri-distortion-toolkit), in the same model format as a
fit from images.

Examples
--------
>>> known = np.array([[0.0, 0.0, 0.0], [30.0, 0.0, 0.0], [0.0, 30.0, 0.0], [0.0, 0.0, 30.0]])
>>> pairs = match_markers(known + 1.0, known, tolerance_mm=5.0)
>>> pairs.tolist()
[[0, 0], [1, 1], [2, 2], [3, 3]]
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from trueshape.errors import EstimationError
from trueshape.estimation._field_model import FieldModel, SeriesView
from trueshape.estimation._motion import RigidMotion
from trueshape.geometry import VolumeGeometry
from trueshape.gnl._basis import HarmonicBasis

__all__ = ["MarkerFit", "detect_markers", "fit_markers", "match_markers", "read_marker_csv"]


def read_marker_csv(path: str | os.PathLike[str]) -> NDArray[np.float64]:
    """Read marker positions from a CSV with a header row naming ``x``, ``y`` and ``z`` (mm).

    Raises
    ------
    EstimationError
        The file cannot be read, lacks a column, or holds a value that is not a finite number (the message
        names the line).
    """
    source = Path(path)
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [name.strip().lower() for name in (reader.fieldnames or [])]
            missing = [axis for axis in "xyz" if axis not in fields]
            if missing:
                raise EstimationError(f"{source}: the header row must name columns x, y and z (found "
                                      f"{', '.join(reader.fieldnames or []) or 'nothing'})")
            rows = []
            for line, row in enumerate(reader, start=2):
                values = {key.strip().lower(): value for key, value in row.items() if key is not None}
                try:
                    point = [float(values[axis]) for axis in "xyz"]
                except (TypeError, ValueError):
                    raise EstimationError(f"{source}: line {line}: x, y and z must be numbers (mm), got "
                                          f"{[values.get(axis) for axis in 'xyz']}") from None
                if not all(math.isfinite(v) for v in point):
                    raise EstimationError(f"{source}: line {line}: a position must be finite, got {point}")
                rows.append(point)
    except OSError as error:
        raise EstimationError(f"{source}: cannot read the marker positions ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise EstimationError(f"{source}: not a text CSV file ({error.reason})") from None
    if len(rows) < 10:
        raise EstimationError(f"{source}: {len(rows)} marker positions; a field fit needs at least 10")
    return np.asarray(rows, dtype=np.float64)


def detect_markers(values: NDArray[np.floating], geometry: VolumeGeometry, *, marker_radius_mm: float,
                   threshold: float = 0.3) -> NDArray[np.float64]:
    """Centres (mm, LPS) of the bright markers in an image, shape (D, 3).

    Peaks of the image smoothed at half the marker radius, above ``threshold`` of the brightest, are refined
    by the intensity-weighted centroid of the unsmoothed image within ``1.5 x`` the marker radius.
    """
    from scipy import ndimage

    data = np.asarray(values, dtype=np.float32)
    spacing = geometry.spacing
    smooth = ndimage.gaussian_filter(data, marker_radius_mm / 2.0 / spacing, truncate=3.0)
    reach = np.maximum(np.round(1.5 * marker_radius_mm / spacing).astype(int), 1)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=tuple(2 * reach + 1), mode="constant")) & (
        smooth > threshold * float(smooth.max()))
    centres = []
    background = float(np.percentile(data, 50.0))
    offsets = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), axis=-1).reshape(-1, 3)
    within = np.linalg.norm(offsets * spacing, axis=1) <= 1.5 * marker_radius_mm
    offsets = offsets[within]
    shape = np.asarray(data.shape)
    for peak in np.argwhere(peaks):
        index = peak + offsets
        keep = np.all((index >= 0) & (index < shape), axis=1)
        if not keep.all():
            continue  # a marker cut by the edge of the field of view has a biased centroid
        weights = np.clip(data[index[:, 0], index[:, 1], index[:, 2]] - background, 0.0, None)
        if weights.sum() <= 0:
            continue
        centres.append((index * weights[:, None]).sum(axis=0) / weights.sum())
    if not centres:
        return np.zeros((0, 3))
    return geometry.index_to_lps(np.asarray(centres, dtype=np.float64))


def match_markers(found: NDArray[np.float64], predicted: NDArray[np.float64], *, tolerance_mm: float
                  ) -> NDArray[np.intp]:
    """Pairs ``[found index, predicted index]`` that are each other's nearest within ``tolerance_mm``."""
    from scipy.spatial import cKDTree

    if found.shape[0] == 0 or predicted.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.intp)
    forward_distance, forward = cKDTree(predicted).query(found, k=1)
    _, backward = cKDTree(found).query(predicted, k=1)
    mutual = (backward[forward] == np.arange(found.shape[0])) & (forward_distance <= tolerance_mm)
    chosen = np.nonzero(mutual)[0]
    return np.stack([chosen, forward[chosen]], axis=1).astype(np.intp)


@dataclass(frozen=True, eq=False)
class MarkerFit:
    """The fitted field and pose, and how well the markers agree.

    Parameters
    ----------
    model : FieldModel
        Basis and axes of ``theta``.
    theta : ndarray
        Coefficients.
    pose : RigidMotion
        Phantom frame -> patient LPS (centre: the phantom's origin).
    normal_matrix : ndarray
        Data normal matrix (pose marginalised), per mm^2 of marker position noise.
    prior_precision : ndarray
        Prior precision of each coefficient.
    matched : int
        Markers matched and used.
    found : int
        Markers found in the image.
    residual_mm : ndarray, shape (K,)
        Distance between each matched marker and where the fit puts it, mm.
    distortion_mm : ndarray, shape (K,)
        The displacement the fit explains at each matched marker, mm.
    true_lps : ndarray, shape (K, 3)
        Posed marker positions (patient LPS, mm) of the matched markers.
    observed_lps : ndarray, shape (K, 3)
        Where they were found.
    """

    model: FieldModel
    theta: NDArray[np.float64]
    pose: RigidMotion
    normal_matrix: NDArray[np.float64]
    prior_precision: NDArray[np.float64]
    matched: int
    found: int
    residual_mm: NDArray[np.float64]
    distortion_mm: NDArray[np.float64]
    true_lps: NDArray[np.float64]
    observed_lps: NDArray[np.float64]


def _proper_rotations() -> list[NDArray[np.float64]]:
    """Return the 24 rotations that map the coordinate axes onto themselves (a phantom is placed square)."""
    rotations = []
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            for row, column in enumerate(permutation):
                matrix[row, column] = signs[row]
            if np.linalg.det(matrix) > 0:
                rotations.append(matrix)
    return rotations


def _rigid_fit(source: NDArray[np.float64], target: NDArray[np.float64]) -> tuple[NDArray[np.float64],
                                                                                   NDArray[np.float64]]:
    """Least-squares rotation and translation taking ``source`` onto ``target`` (Kabsch)."""
    source_centre, target_centre = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - source_centre).T @ (target - target_centre))
    flip = np.diag([1.0, 1.0, float(np.sign(np.linalg.det(vt.T @ u.T)))])
    rotation = vt.T @ flip @ u.T
    return rotation, target_centre - rotation @ source_centre


def _initial_pose(known: NDArray[np.float64], found: NDArray[np.float64], tolerance_mm: float
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return a pose (rotation, translation) from the markers nearest the isocentre, where distortion is least."""
    near = found[np.argsort(np.linalg.norm(found, axis=1))[: max(20, found.shape[0] // 3)]]
    best: tuple[int, float, NDArray[np.float64], NDArray[np.float64]] | None = None
    for rotation in _proper_rotations():
        turned = known @ rotation.T
        translation = np.median(near, axis=0) - np.median(turned, axis=0)
        for _ in range(8):  # iterated closest points on the central markers
            pairs = match_markers(near, turned + translation, tolerance_mm=tolerance_mm * 2)
            if pairs.shape[0] < 4:
                break
            rotation_step, translation_step = _rigid_fit(turned[pairs[:, 1]] + translation, near[pairs[:, 0]])
            turned = turned @ rotation_step.T
            translation = rotation_step @ translation + translation_step
        pairs = match_markers(near, turned + translation, tolerance_mm=tolerance_mm)
        if pairs.shape[0] == 0:
            continue
        spread = float(np.mean(np.linalg.norm(near[pairs[:, 0]] - turned[pairs[:, 1]] - translation, axis=1)))
        candidate = (int(pairs.shape[0]), -spread, *_rigid_fit(known[pairs[:, 1]], near[pairs[:, 0]]))
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:
        raise EstimationError("no arrangement of the known markers matches the markers found in the image: check "
                              "the CSV's unit (mm) and that it describes this phantom")
    return best[2], best[3]


def fit_markers(known_mm: NDArray[np.float64], found_lps: NDArray[np.float64], view: SeriesView, *,
                order: int = 5, lowest_order: int = 2, r0_mm: float = 250.0, prior_sd: float = 0.1,
                asymmetric_prior_sd: float = 0.02, known_in_lps: bool = False, iterations: int = 30) -> MarkerFit:
    """Fit the pose and the field that put the known markers where the image shows them.

    Parameters
    ----------
    known_mm : ndarray, shape (K, 3)
        Marker positions in the phantom's frame (or in patient LPS with ``known_in_lps``), mm.
    found_lps : ndarray, shape (D, 3)
        Markers found in the image (mm, LPS).
    view : SeriesView
        How the phantom series sees the field (ND: all three axes).
    order, lowest_order, r0_mm, prior_sd, asymmetric_prior_sd : see :class:`~trueshape.estimation.FitOptions`.
    known_in_lps : bool
        The positions are already in patient LPS: the pose starts at identity (it is still refined).

    Raises
    ------
    EstimationError
        Too few markers found or matched, or no axis of the field reaches the series.
    """
    axes = view.axes_seen()
    if not axes:
        raise EstimationError("the phantom series carries no residual distortion (corrected in 3-D): there is "
                              "nothing to fit; scan it without distortion correction (ND) or with 2-D only")
    if found_lps.shape[0] < 10:
        raise EstimationError(f"only {found_lps.shape[0]} markers were found in the image; a field fit needs at "
                              "least 10 (is the marker radius right?)")
    spacing = _typical_spacing(known_mm)
    tolerance = 0.4 * spacing
    if known_in_lps:
        rotation, translation = np.eye(3), np.zeros(3)
    else:
        rotation, translation = _initial_pose(known_mm, found_lps, tolerance)
    pose = RigidMotion(rotation, translation, np.zeros(3))  # phantom frame -> LPS (centre: phantom origin)
    model = FieldModel(HarmonicBasis.up_to(order, r0_mm=r0_mm, lowest=lowest_order), axes)
    theta = np.zeros(model.size)
    precision = 1.0 / model.prior_sd(symmetric=prior_sd, asymmetric=asymmetric_prior_sd) ** 2
    pairs = np.zeros((0, 2), dtype=np.intp)
    normal = np.zeros((model.size, model.size))
    variance = 1.0
    for _ in range(iterations):
        posed = pose.apply(known_mm)
        predicted = posed + model.residual(view, theta, posed)
        pairs = match_markers(found_lps, predicted, tolerance_mm=tolerance)
        if pairs.shape[0] < max(10, (model.size + 6) // 3 + 1):
            raise EstimationError(f"only {pairs.shape[0]} markers could be matched to their known positions; check "
                                  "the CSV describes this phantom (mm) and the marker radius")
        observed = found_lps[pairs[:, 0]]
        posed_matched = posed[pairs[:, 1]]
        residual = (observed - predicted[pairs[:, 1]]).reshape(-1)
        design = _design(model, view, posed_matched, known_mm[pairs[:, 1]], pose)
        variance = max(float(np.mean(residual**2)), 1e-8)
        penalty = np.concatenate([variance * precision, np.zeros(6)])
        system = design.T @ design + np.diag(penalty)
        parameters = np.concatenate([theta, np.zeros(6)])
        step = np.linalg.solve(system, design.T @ residual - penalty * parameters)
        theta = theta + step[: model.size]
        pose = pose.updated(step[model.size:])
        full = design.T @ design / variance
        coupling = full[: model.size, model.size:]
        normal = full[: model.size, : model.size] - coupling @ np.linalg.solve(full[model.size:, model.size:],
                                                                                 coupling.T)
        if float(np.abs(step).max()) < 1e-7:
            break
    posed = pose.apply(known_mm)
    fitted = posed + model.residual(view, theta, posed)
    pairs = match_markers(found_lps, fitted, tolerance_mm=tolerance)
    observed = found_lps[pairs[:, 0]]
    residual_mm = np.linalg.norm(observed - fitted[pairs[:, 1]], axis=1)
    distortion = np.linalg.norm(fitted[pairs[:, 1]] - posed[pairs[:, 1]], axis=1)
    return MarkerFit(model, theta, pose, np.asarray(normal), precision, int(pairs.shape[0]), int(found_lps.shape[0]),
                     residual_mm, distortion, posed[pairs[:, 1]], observed)


def _typical_spacing(points: NDArray[np.float64]) -> float:
    """Median distance from each marker to its nearest neighbour, mm."""
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(points).query(points, k=2)
    spacing = float(np.median(distance[:, 1]))
    if not spacing > 0:
        raise EstimationError("the marker positions coincide: each marker needs its own position")
    return spacing


def _design(model: FieldModel, view: SeriesView, posed: NDArray[np.float64], known: NDArray[np.float64],
            pose: RigidMotion) -> NDArray[np.float64]:
    """d(predicted position)/d(theta, pose step), shape (3K, N + 6), rows ordered marker by marker."""
    values, _ = model.basis.evaluate(view.coefficient_points(posed))
    weights = view.weights[:, list(model.axes)]  # (3, A)
    count = posed.shape[0]
    theta_part = np.einsum("ca,pt->pcat", weights, values).reshape(count * 3, -1)
    arm = posed - pose.centre_lps - pose.translation_mm
    rotation_part = np.zeros((count, 3, 3))
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        rotation_part[:, :, axis] = np.cross(unit, arm)
    translation_part = np.broadcast_to(np.eye(3), (count, 3, 3))
    pose_part = np.concatenate([rotation_part, translation_part], axis=2).reshape(count * 3, 6)
    return np.concatenate([theta_part, pose_part], axis=1)
