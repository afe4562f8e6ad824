"""A rigid motion of the patient between two series (rotation about a centre, then a translation).

Examples
--------
>>> motion = RigidMotion(translation_mm=np.array([1.0, 0.0, 0.0]))
>>> motion.apply(np.array([[0.0, 0.0, 0.0]])).tolist()
[[1.0, 0.0, 0.0]]
>>> motion.inverse().apply(motion.apply(np.array([[5.0, 6.0, 7.0]]))).round(12).tolist()
[[5.0, 6.0, 7.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["RigidMotion"]


@dataclass(frozen=True, eq=False)
class RigidMotion:
    """``T(x) = rotation (x - centre) + centre + translation`` (mm, LPS): where anatomy moved between series."""

    rotation: NDArray[np.float64] = field(default_factory=lambda: np.eye(3))
    translation_mm: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    centre_lps: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))

    def apply(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """Move points (P, 3), mm LPS."""
        return np.asarray((points - self.centre_lps) @ self.rotation.T + self.centre_lps + self.translation_mm)

    @property
    def angle_deg(self) -> float:
        """Rotation angle, degrees."""
        return math.degrees(math.acos(max(-1.0, min(1.0, (float(np.trace(self.rotation)) - 1.0) / 2.0))))

    def updated(self, step: NDArray[np.float64]) -> RigidMotion:
        """Compose a small step (rotation vector, rad; translation, mm) on the left."""
        return RigidMotion(_rodrigues(step[:3]) @ self.rotation, self.translation_mm + step[3:], self.centre_lps)

    def inverse(self) -> RigidMotion:
        """Return the motion back: ``T^-1(y) = R^T (y - c - t) + c``, written about the moved centre ``c + t``."""
        centre = self.centre_lps + self.translation_mm
        return RigidMotion(self.rotation.T, self.centre_lps - centre, centre)

    def to_json(self) -> dict[str, object]:
        """Plain values for sidecars."""
        return {"rotation": self.rotation.tolist(), "translation_mm": self.translation_mm.tolist(),
                "centre_lps": self.centre_lps.tolist(), "angle_deg": self.angle_deg,
                "shift_mm": float(np.linalg.norm(self.translation_mm))}


def _rodrigues(vector: NDArray[np.float64]) -> NDArray[np.float64]:
    angle = float(np.linalg.norm(vector))
    if angle < 1e-15:
        return np.eye(3)
    x, y, z = vector / angle
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * cross @ cross
