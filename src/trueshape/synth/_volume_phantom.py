"""A phantom made of a real image: any volume (say a 3D T1 head) placed anywhere, as anatomy truth.

The analytic SYN-FEMUR phantom has sharp edges and no texture; real anatomy has both fine texture and
partial-volume edges, which is what registration must cope with. :class:`VolumePhantom` samples a volume
by cubic B-spline interpolation at any patient point after placing it (its centre moved to ``centre_lps``,
scaled by ``scale``), and can remap intensities to emulate another contrast of the same anatomy.

Examples
--------
>>> from trueshape.geometry import Volume, VolumeGeometry
>>> grid = VolumeGeometry.from_components(shape=(8, 8, 8), origin=(0, 0, 0), spacing=(2.0, 2.0, 2.0))
>>> ramp = np.broadcast_to(np.arange(8.0)[:, None, None], (8, 8, 8)).copy()
>>> phantom = VolumePhantom.from_volume(Volume(ramp, grid), centre_lps=(0.0, 0.0, 0.0))
>>> float(phantom.signal(np.array([[1.0, 0.0, 0.0]]))[0])   # 1 mm right of the centre (index 4.0)
4.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from trueshape.geometry import Volume, VolumeGeometry
from trueshape.synth._phantom import Contrast

__all__ = ["ContrastMap", "VolumePhantom"]


@dataclass(frozen=True)
class ContrastMap:
    """A piecewise-linear intensity remap: ``source`` levels (fractions of the 99th percentile) -> ``target``.

    The default turns a T1-weighted brain into a proton-density-like one: fat and white matter darker
    than grey matter, cerebrospinal fluid brighter - a non-monotonic map, as between real contrasts.
    """

    source: tuple[float, ...] = (0.0, 0.05, 0.25, 0.45, 0.6, 0.8, 1.0, 2.0)
    target: tuple[float, ...] = (0.0, 0.10, 0.85, 0.75, 0.55, 0.5, 0.35, 0.5)

    def apply(self, values: NDArray[np.float64], reference_level: float) -> NDArray[np.float64]:
        """Remap ``values`` whose 99th percentile is ``reference_level``."""
        scaled = np.asarray(values, dtype=np.float64) / reference_level
        return np.interp(scaled, self.source, self.target) * reference_level


@dataclass(frozen=True, eq=False)
class VolumePhantom:
    """Anatomy truth from a volume: ``signal(points)`` samples it at patient points (mm, LPS).

    Parameters
    ----------
    coefficients : ndarray, shape (I, J, K)
        Cubic B-spline coefficients of the source image (prefiltered once).
    geometry : VolumeGeometry
        The source grid after placement (centre moved, scaled).
    level : float
        The source's 99th-percentile value (the scale of :class:`ContrastMap`).
    contrast_maps : dict
        What :meth:`signal` does for each contrast (absent: the image as it is).
    """

    coefficients: NDArray[np.float64]
    geometry: VolumeGeometry
    level: float
    contrast_maps: dict[Contrast, ContrastMap] = field(default_factory=lambda: {Contrast.PD: ContrastMap()})

    @classmethod
    def from_volume(
        cls,
        volume: Volume,
        *,
        centre_lps: tuple[float, float, float],
        scale: float = 1.0,
        rotation: NDArray[np.float64] | None = None,
        contrast_maps: dict[Contrast, ContrastMap] | None = None,
    ) -> VolumePhantom:
        """Place ``volume`` with its grid centre at ``centre_lps`` (mm, LPS), scaled and turned about it.

        ``scale`` multiplies its size and ``rotation`` (3x3, LPS) turns it.
        """
        from scipy import ndimage

        values = volume.values(np.float64)
        values = values[..., 0] if values.ndim == 4 else values
        grid = volume.geometry
        middle = grid.index_to_lps((np.asarray(grid.shape, dtype=np.float64) - 1.0) / 2.0)
        turn = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        matrix = grid.lps_from_ijk.copy()
        matrix[:3, :3] = turn @ matrix[:3, :3] * scale
        matrix[:3, 3] = np.asarray(centre_lps, dtype=np.float64) + scale * turn @ (grid.origin - middle)
        placed = VolumeGeometry(shape=grid.shape, lps_from_ijk=matrix)
        level = float(np.percentile(values, 99.0)) or 1.0
        maps = {Contrast.PD: ContrastMap()} if contrast_maps is None else dict(contrast_maps)
        return cls(ndimage.spline_filter(values, order=3, mode="mirror"), placed, level, maps)

    @property
    def centre_lps(self) -> NDArray[np.float64]:
        """Centre of the placed grid, mm LPS."""
        return self.geometry.index_to_lps((np.asarray(self.geometry.shape, dtype=np.float64) - 1.0) / 2.0)

    def signal(self, points: NDArray[np.float64], contrast: Contrast = Contrast.T1) -> NDArray[np.float32]:
        """Noise-free signal at each point (shape (...,) for points (..., 3), mm LPS); 0 outside the volume."""
        from scipy import ndimage

        flat = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        index = self.geometry.lps_to_index(flat).T
        values = ndimage.map_coordinates(self.coefficients, index, order=3, mode="constant", cval=0.0, prefilter=False)
        np.clip(values, 0.0, None, out=values)
        remap = self.contrast_maps.get(Contrast(contrast))
        if remap is not None:
            values = remap.apply(values, self.level)
        return values.astype(np.float32).reshape(np.shape(points)[:-1])

    def describe(self) -> dict[str, object]:
        """Return what ``session.json`` records of this phantom."""
        return {
            "kind": "volume",
            "shape": list(self.geometry.shape),
            "centre_lps": self.centre_lps.tolist(),
            "spacing_mm": self.geometry.spacing.tolist(),
            "level": self.level,
            "contrasts_remapped": sorted(c.value for c in self.contrast_maps),
        }

    def inside(self, points: NDArray[np.float64], *, threshold: float = 0.1) -> NDArray[np.bool_]:
        """Whether each point lies in the object (source signal above ``threshold`` x its 99th percentile)."""
        return np.asarray(self.signal(points, Contrast.T1) > threshold * self.level)
