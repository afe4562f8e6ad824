"""A distortion phantom: small bright spheres on a regular grid, as medical physicists scan to characterise a scanner.

The marker positions are written as the CSV that ``trueshape estimate --phantom`` reads.

Examples
--------
>>> phantom = MarkerPhantom.grid(spacing_mm=40.0, radius_mm=80.0)
>>> len(phantom.centres_mm) > 20
True
>>> float(phantom.signal(phantom.centres_mm[:1])[0])
1000.0
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from trueshape.synth._phantom import Contrast

__all__ = ["MarkerPhantom", "write_marker_csv"]


@dataclass(frozen=True, eq=False)
class MarkerPhantom:
    """Spheres of radius ``marker_radius_mm`` at ``centres_mm`` (phantom frame), posed in the patient frame.

    Parameters
    ----------
    centres_mm : ndarray, shape (K, 3)
        Marker centres in the phantom's own frame, mm.
    marker_radius_mm : float
        Radius of each sphere, mm.
    rotation : ndarray, shape (3, 3)
        Pose: patient LPS = rotation @ phantom + translation.
    translation_mm : ndarray, shape (3,)
        Pose translation, mm.
    signal_level : float
        Signal inside a marker (0 outside).
    """

    centres_mm: NDArray[np.float64]
    marker_radius_mm: float = 3.0
    rotation: NDArray[np.float64] = field(default_factory=lambda: np.eye(3))
    translation_mm: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    signal_level: float = 1000.0

    @classmethod
    def grid(
        cls,
        *,
        spacing_mm: float = 20.0,
        radius_mm: float = 150.0,
        marker_radius_mm: float = 3.0,
        rotation: NDArray[np.float64] | None = None,
        translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> MarkerPhantom:
        """Markers on a cubic grid inside a sphere of ``radius_mm`` about the phantom's origin."""
        steps = np.arange(-np.floor(radius_mm / spacing_mm), np.floor(radius_mm / spacing_mm) + 1) * spacing_mm
        points = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
        points = points[np.linalg.norm(points, axis=1) <= radius_mm]
        return cls(
            points,
            marker_radius_mm,
            np.eye(3) if rotation is None else np.asarray(rotation),
            np.asarray(translation_mm, dtype=np.float64),
        )

    @property
    def centres_lps(self) -> NDArray[np.float64]:
        """Marker centres in patient coordinates (mm, LPS), shape (K, 3)."""
        return np.asarray(self.centres_mm @ self.rotation.T + self.translation_mm)

    def signal(self, points: NDArray[np.float64], contrast: Contrast = Contrast.T1) -> NDArray[np.float32]:
        """Signal at patient points (..., 3): ``signal_level`` inside a marker, 0 elsewhere."""
        from scipy.spatial import cKDTree

        flat = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        distance, _ = cKDTree(self.centres_lps).query(flat, k=1, distance_upper_bound=self.marker_radius_mm * 1.01)
        inside = distance <= self.marker_radius_mm
        return np.where(inside, self.signal_level, 0.0).astype(np.float32).reshape(np.shape(points)[:-1])

    def describe(self) -> dict[str, object]:
        """Return what ``session.json`` records of this phantom."""
        return {
            "kind": "markers",
            "markers": int(self.centres_mm.shape[0]),
            "marker_radius_mm": self.marker_radius_mm,
            "rotation": self.rotation.tolist(),
            "translation_mm": self.translation_mm.tolist(),
        }


def write_marker_csv(path: str | os.PathLike[str], centres_mm: NDArray[np.float64]) -> Path:
    """Write marker positions as the ``x,y,z`` CSV ``trueshape estimate --phantom`` reads."""
    target = Path(path)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "z"])
        for x, y, z in np.asarray(centres_mm, dtype=np.float64):
            writer.writerow([f"{x:.4f}", f"{y:.4f}", f"{z:.4f}"])
    return target
