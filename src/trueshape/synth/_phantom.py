"""SYN-FEMUR: an analytic pelvis-and-thighs phantom with two femurs (DESIGN.md section 7).

Every tissue is an implicit shape evaluated at arbitrary points (mm, patient LPS), so an acquisition can
sample it at exactly the positions a distorted scanner would: no resampling of a pre-made voxel grid.
Femoral heads are spheres (radius 24 mm) at x = +-95 mm whose marrow is a closed sphere (radius 21.5 mm,
sealed by cortex as by the physeal scar); necks and shafts are capsules with a cortical shell around
fatty marrow; muscle and a subcutaneous fat layer surround them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Contrast", "FemurPhantom", "Tissue"]


class Tissue(enum.IntEnum):
    """Label values of the phantom."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    CORTEX = 3
    MARROW = 4


class Contrast(enum.StrEnum):
    """Signal per tissue: T1-weighted (fat and marrow bright) or proton-density-like."""

    T1 = "T1"
    PD = "PD"


_SIGNAL = {
    Contrast.T1: {Tissue.AIR: 0.0, Tissue.FAT: 1000.0, Tissue.MUSCLE: 420.0, Tissue.CORTEX: 40.0, Tissue.MARROW: 880.0},
    Contrast.PD: {Tissue.AIR: 0.0, Tissue.FAT: 760.0, Tissue.MUSCLE: 600.0, Tissue.CORTEX: 60.0, Tissue.MARROW: 820.0},
}

#: Femoral head radius (mm) and cortical thickness (mm) of the reference (scale 1) subject.
HEAD_RADIUS_MM = 24.0
CORTEX_MM = 2.5


#: Plane waves of the soft-tissue texture: unit directions, wave numbers (rad/mm) and phases, fixed (seed 7) so
#: that every subject and series shares its anatomy's texture.
_WAVES = np.random.default_rng(7)
_TEXTURE_DIRECTIONS = _WAVES.normal(size=(32, 3))
_TEXTURE_DIRECTIONS /= np.linalg.norm(_TEXTURE_DIRECTIONS, axis=1, keepdims=True)
_TEXTURE_WAVENUMBERS = 2.0 * np.pi / _WAVES.uniform(6.0, 30.0, size=32)
_TEXTURE_PHASES = _WAVES.uniform(0.0, 2.0 * np.pi, size=32)


def _texture(local: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return a smooth, anatomy-fixed pattern in [-1, 1] at local points (mm of the scale-1 subject)."""
    waves = np.cos(local @ (_TEXTURE_DIRECTIONS * _TEXTURE_WAVENUMBERS[:, None]).T + _TEXTURE_PHASES)
    return np.asarray(np.clip(waves.sum(axis=-1) / 4.0, -1.0, 1.0))


def _soft_tissue_depth(local: NDArray[np.float64], *, trunk_axes: tuple[float, float],
                       thigh_axes: tuple[float, float]) -> NDArray[np.float64]:
    """Approximate signed depth (mm of the scale-1 subject, positive inside) into the trunk-and-thighs shape.

    The ellipses' implicit function over its gradient's length, cut by the shape's ends; trunk and thighs
    overlap by 10 mm at the crotch so that their union has no seam.
    """
    x, y, z = local[..., 0], local[..., 1], local[..., 2]

    def ellipse_depth(u: NDArray[np.float64], a: NDArray[np.float64] | float, b: float) -> NDArray[np.float64]:
        radius = np.sqrt((u / a) ** 2 + (y / b) ** 2)
        gradient = np.sqrt((u / np.square(a)) ** 2 + (y / b**2) ** 2) / np.maximum(radius, 1e-9)
        return np.asarray((1.0 - radius) / np.maximum(gradient, 1e-9))

    trunk = np.minimum(ellipse_depth(x, trunk_axes[0], trunk_axes[1]), np.minimum(z + 120.0, 160.0 - z))
    taper = 1.0 - 0.25 * np.clip(-(z + 110.0) / 400.0, 0.0, 1.0)
    thighs = np.maximum(*(ellipse_depth(x - side * 100.0, thigh_axes[0] * taper, thigh_axes[1])
                          for side in (-1.0, 1.0)))
    thighs = np.minimum(thighs, np.minimum(-100.0 - z, z + 480.0))
    return np.asarray(np.maximum(trunk, thighs))


def _capsule_distance(
    points: NDArray[np.float64], start: NDArray[np.float64], end: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Distance from each point to the segment start-end (mm)."""
    axis = end - start
    t = np.clip(((points - start) @ axis) / (axis @ axis), 0.0, 1.0)
    closest = start + t[..., None] * axis
    return np.asarray(np.linalg.norm(points - closest, axis=-1), dtype=np.float64)


@dataclass(frozen=True)
class FemurPhantom:
    """A subject: anatomy scale and where the hips sit in patient coordinates.

    Parameters
    ----------
    scale : float
        Anatomy scale (1.0 = femoral head radius 24 mm, heads 190 mm apart).
    hip_centre_lps : tuple of 3 float
        Midpoint between the femoral head centres, mm LPS.

    Examples
    --------
    >>> phantom = FemurPhantom()
    >>> [float(c[0]) for c, _ in phantom.femoral_heads()]
    [-95.0, 95.0]
    >>> int(phantom.labels(np.array([[95.0, 0.0, 0.0]]))[0]) == Tissue.MARROW
    True
    """

    scale: float = 1.0
    hip_centre_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: Relative signal variation within muscle and fat (fibres, septa): 0 for flat tissues. Real soft tissue
    #: has such texture; it is what shows a through-plane shift away from tissue boundaries.
    texture: float = 0.0
    #: Width (mm) over which signal changes at a tissue boundary: 0 for sharp boundaries. A scanner images
    #: a band-limited object; sharp boundaries point-sampled alias, and a registration then fits the aliasing.
    edge_mm: float = 0.0

    def femoral_heads(self) -> list[tuple[NDArray[np.float64], float]]:
        """Centre (mm, LPS) and radius (mm) of each femoral head, right (x < 0) first."""
        centre = np.asarray(self.hip_centre_lps, dtype=np.float64)
        return [
            (centre + np.array([side * 95.0 * self.scale, 0.0, 0.0]), HEAD_RADIUS_MM * self.scale)
            for side in (-1.0, 1.0)
        ]

    def _bones(self) -> list[tuple[NDArray[np.float64], NDArray[np.float64], float]]:
        """Capsules (start, end, radius) of each neck and shaft."""
        s = self.scale
        centre = np.asarray(self.hip_centre_lps, dtype=np.float64)
        capsules = []
        for side in (-1.0, 1.0):
            head = centre + np.array([side * 95.0 * s, 0.0, 0.0])
            trochanter = centre + np.array([side * 135.0 * s, 5.0 * s, -45.0 * s])
            knee = centre + np.array([side * 100.0 * s, 10.0 * s, -420.0 * s])
            capsules.append((head, trochanter, 15.0 * s))
            capsules.append((trochanter, knee, 14.0 * s))
        return capsules

    def labels(self, points: NDArray[np.float64]) -> NDArray[np.uint8]:
        """Tissue label at each point, shape (...,) for points of shape (..., 3) (mm, LPS)."""
        s = self.scale
        centre = np.asarray(self.hip_centre_lps, dtype=np.float64)
        local = (points - centre) / s
        labels = np.full(points.shape[:-1], Tissue.AIR, dtype=np.uint8)
        # Pelvis and thighs: an elliptic cylinder above the crotch, two below (mm of the scale-1 subject);
        # the muscle inside is the same shape, smaller by the subcutaneous fat layer.
        body = self._soft_tissue(local, trunk_axes=(190.0, 130.0), thigh_axes=(95.0, 100.0))
        muscle = self._soft_tissue(local, trunk_axes=(172.0, 112.0), thigh_axes=(80.0, 85.0))
        labels[body] = Tissue.FAT
        labels[muscle] = Tissue.MUSCLE
        # Bones cover a few percent of the body: evaluate them only inside their bounding box.
        bone_box_low, bone_box_high = self._bone_bounds()
        near = np.all((points >= bone_box_low) & (points <= bone_box_high), axis=-1)
        bone_distance, marrow_margin = self._bone_depths(points[near])
        near_labels = labels[near]
        near_labels[bone_distance <= 0.0] = Tissue.CORTEX
        near_labels[marrow_margin >= 0.0] = Tissue.MARROW
        labels[near] = near_labels
        return labels

    @staticmethod
    def _soft_tissue(
        local: NDArray[np.float64], *, trunk_axes: tuple[float, float], thigh_axes: tuple[float, float]
    ) -> NDArray[np.bool_]:
        """Inside an elliptic-cylinder trunk above z = -110 mm or two tapering thighs below it."""
        x, y, z = local[..., 0], local[..., 1], local[..., 2]
        inside = ((x / trunk_axes[0]) ** 2 + (y / trunk_axes[1]) ** 2 <= 1.0) & (z > -110.0) & (z < 160.0)
        taper = 1.0 - 0.25 * np.clip(-(z + 110.0) / 400.0, 0.0, 1.0)
        for side in (-1.0, 1.0):
            inside |= (
                (((x - side * 100.0) / (thigh_axes[0] * taper)) ** 2 + (y / thigh_axes[1]) ** 2 <= 1.0)
                & (z <= -110.0)
                & (z > -480.0)
            )
        return np.asarray(inside)

    def _bone_bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Axis-aligned box (mm, LPS) holding every bone."""
        corners = [c - r for c, r in self.femoral_heads()] + [c + r for c, r in self.femoral_heads()]
        for start, end, radius in self._bones():
            corners += [np.minimum(start, end) - radius, np.maximum(start, end) + radius]
        stacked = np.array(corners)
        return stacked.min(axis=0), stacked.max(axis=0)

    def signal(self, points: NDArray[np.float64], contrast: Contrast = Contrast.T1) -> NDArray[np.float32]:
        """Noise-free signal at each point (arbitrary units)."""
        if self.edge_mm > 0:
            return self._smooth_signal(np.asarray(points, dtype=np.float64), Contrast(contrast))
        table = np.zeros(len(Tissue), dtype=np.float32)
        for tissue, value in _SIGNAL[Contrast(contrast)].items():
            table[tissue] = value
        labels = self.labels(points)
        values = table[labels]
        if self.texture:
            soft = (labels == Tissue.MUSCLE) | (labels == Tissue.FAT)
            local = (np.asarray(points, dtype=np.float64)[soft] - np.asarray(self.hip_centre_lps)) / self.scale
            values[soft] *= (1.0 + self.texture * _texture(local)).astype(np.float32)
        return values

    def _smooth_signal(self, points: NDArray[np.float64], contrast: Contrast) -> NDArray[np.float32]:
        """Return the signal with every boundary a linear ramp ``edge_mm`` wide (by signed depth into each tissue)."""
        level = _SIGNAL[contrast]
        s = self.scale
        local = (points - np.asarray(self.hip_centre_lps)) / s

        def ramp(depth_mm: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.clip(0.5 + depth_mm / self.edge_mm, 0.0, 1.0)

        body = ramp(s * _soft_tissue_depth(local, trunk_axes=(190.0, 130.0), thigh_axes=(95.0, 100.0)))
        muscle = ramp(s * _soft_tissue_depth(local, trunk_axes=(172.0, 112.0), thigh_axes=(80.0, 85.0)))
        values = level[Tissue.AIR] + (level[Tissue.FAT] - level[Tissue.AIR]) * body
        values = values + (level[Tissue.MUSCLE] - level[Tissue.FAT]) * muscle
        if self.texture:
            values = values * (1.0 + self.texture * _texture(local) * body)
        low, high = self._bone_bounds()
        near = np.all((points >= low - self.edge_mm) & (points <= high + self.edge_mm), axis=-1)
        bone_distance, marrow_margin = self._bone_depths(points[near])
        cortex = ramp(-bone_distance)
        marrow = ramp(marrow_margin)
        inner = values[near] * (1.0 - cortex) + level[Tissue.CORTEX] * cortex
        values[near] = inner * (1.0 - marrow) + level[Tissue.MARROW] * marrow
        return np.asarray(values, dtype=np.float32)

    def _bone_depths(self, points: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Signed distance to the bone surface (mm, negative inside) and depth into the marrow (positive inside)."""
        s = self.scale
        bone_distance = np.full(points.shape[:-1], np.inf)
        marrow_margin = np.full(points.shape[:-1], -np.inf)
        outside_heads = np.ones(points.shape[:-1], dtype=bool)
        for head_centre, radius in self.femoral_heads():
            distance = np.linalg.norm(points - head_centre, axis=-1)
            bone_distance = np.minimum(bone_distance, distance - radius)
            marrow_margin = np.maximum(marrow_margin, radius - CORTEX_MM * s - distance)
            outside_heads &= distance > radius
        for start, end, radius in self._bones():
            distance = _capsule_distance(points, start, end)
            bone_distance = np.minimum(bone_distance, distance - radius)
            # neck marrow stops at the head (the physeal scar): the head's marrow is a closed sphere
            margin = np.where(outside_heads, radius - CORTEX_MM * s - distance, -np.inf)
            marrow_margin = np.maximum(marrow_margin, margin)
        return bone_distance, marrow_margin

    def head_marrow_radius_mm(self) -> float:
        """Radius of each femoral head's marrow sphere, mm."""
        return (HEAD_RADIUS_MM - CORTEX_MM) * self.scale

    def signal_of(self, tissue: Tissue, contrast: Contrast = Contrast.T1) -> float:
        """Noise-free signal of one tissue."""
        return _SIGNAL[Contrast(contrast)][tissue]
