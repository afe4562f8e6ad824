"""Find the bright round structures of an image (femoral heads) that a report outlines before and after.

A femoral head's marrow is a bright ball inside dark cortex. On a grid of about 2 mm, the bright voxels
(above the level that splits the body's signal in two, Otsu's) are measured by their distance to the nearest
dark voxel: the centre of a ball lies farthest inside. Each candidate keeps its darkness around: the shell
from 1.1 to 1.5 radii of a ball is mostly dark (cortex, muscle), that of a slab of fat is not. The best
candidates are then measured by :func:`~trueshape.reporting.measure_bright_sphere` on the full image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.geometry import Volume
from trueshape.reporting._metrics import SphereMeasurement, measure_bright_sphere, physical_values

__all__ = ["MIN_SHELL_DARKNESS", "ball_values", "find_bright_spheres"]

#: Fraction of the shell around a candidate (1.1 to 1.5 radii) that must be dark for it to count as round.
MIN_SHELL_DARKNESS = 0.6
#: The coarse grid the search runs on, mm (at least).
SEARCH_SPACING_MM = 2.0


def _otsu(values: NDArray[np.float64]) -> float:
    histogram, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(histogram)
    mean = np.cumsum(histogram * centres)
    total, grand = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (grand * weight - total * mean) ** 2 / (weight * (total - weight))
    return float(centres[int(np.nanargmax(between[:-1]))])


def find_bright_spheres(
    volume: Volume, *, min_radius_mm: float = 10.0, max_radius_mm: float = 40.0, limit: int = 2
) -> list[SphereMeasurement]:
    """Return up to ``limit`` bright round structures of ``volume``, roundest first, measured.

    Parameters
    ----------
    volume : Volume
        The image (the first volume of a 4-D series).
    min_radius_mm, max_radius_mm : float
        Radii of the structures looked for, mm.
    limit : int
        How many to return at most.

    Returns
    -------
    list of SphereMeasurement
        Centre (LPS mm) and diameters along x, y, z; empty when nothing bright is round.
    """
    from scipy import ndimage

    stored = volume.array[..., 0] if volume.array.ndim == 4 else volume.array
    spacing = np.asarray(volume.geometry.spacing, dtype=np.float64)
    step = np.maximum(1, np.floor(SEARCH_SPACING_MM / spacing)).astype(int)
    coarse = physical_values(volume, stored[:: step[0], :: step[1], :: step[2]])
    coarse_spacing = spacing * step
    body = coarse[coarse > 0.1 * np.percentile(coarse, 99.5)]
    if body.size < 100:
        return []
    bright = coarse > _otsu(body)
    depth = ndimage.distance_transform_edt(bright, sampling=coarse_spacing)
    peaks = (depth == ndimage.maximum_filter(depth, size=3)) & (depth >= min_radius_mm) & (depth <= max_radius_mm)
    candidates: list[tuple[float, NDArray[np.int64], float]] = []
    for index in np.argwhere(peaks)[np.argsort(-depth[peaks])][:50]:
        radius = float(depth[tuple(index)])
        half = np.ceil(1.5 * radius / coarse_spacing).astype(int)
        low, high = np.maximum(index - half, 0), np.minimum(index + half + 1, coarse.shape)
        axes = np.meshgrid(*(np.arange(a, b) - i for a, b, i in zip(low, high, index, strict=True)), indexing="ij")
        distance = np.linalg.norm(np.stack(axes, axis=-1) * coarse_spacing, axis=-1)
        shell = (distance > 1.1 * radius) & (distance < 1.5 * radius)
        near = bright[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
        darkness = float(1.0 - near[shell].mean()) if shell.any() else 0.0
        if darkness >= MIN_SHELL_DARKNESS:
            candidates.append((darkness, index * step, radius))
    return _measured(volume, stored, candidates, limit)


def _measured(
    volume: Volume, stored: NDArray[Any], candidates: list[tuple[float, NDArray[np.int64], float]], limit: int
) -> list[SphereMeasurement]:
    """Measure each candidate (roundest first) on the full image; skip one inside a sphere already found."""
    found: list[SphereMeasurement] = []
    for _, index, radius in sorted(candidates, key=lambda c: -c[0]):
        centre = volume.geometry.index_to_lps(np.asarray(index, dtype=np.float64))
        if any(np.linalg.norm(centre - s.centre_lps) < max(s.diameters_mm) for s in found):
            continue
        near = ball_values(volume, stored, centre, radius)
        inside, shell = near
        try:
            found.append(
                measure_bright_sphere(
                    volume,
                    centre,
                    radius,
                    inside_level=float(np.median(inside)),
                    outside_level=float(np.percentile(shell, 5)),
                    surround_level=float(np.median(shell)),
                )
            )
        except ValueError:
            continue
        if len(found) == limit:
            break
    return found


def ball_values(
    volume: Volume, stored: NDArray[Any], centre: NDArray[np.float64], radius: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Return the physical values within 0.7 radii of ``centre`` and those from 1.1 to 1.5 radii.

    ``stored`` is the volume's array (its first volume when 4-D); only the box around the ball is converted.
    """
    geometry = volume.geometry
    centre_index = geometry.lps_to_index(centre)
    half = np.ceil(1.5 * radius / np.asarray(geometry.spacing)).astype(int) + 1
    low = np.maximum(np.round(centre_index).astype(int) - half, 0)
    high = np.minimum(np.round(centre_index).astype(int) + half + 1, geometry.shape[:3])
    box = physical_values(volume, stored[tuple(slice(a, b) for a, b in zip(low, high, strict=True))], np.float32)
    axes = np.meshgrid(*(np.arange(a, b, dtype=np.float64) for a, b in zip(low, high, strict=True)), indexing="ij")
    distance = np.linalg.norm(geometry.index_to_lps(np.stack(axes, axis=-1)) - centre, axis=-1)
    return box[distance <= 0.7 * radius], box[(distance > 1.1 * radius) & (distance < 1.5 * radius)]
