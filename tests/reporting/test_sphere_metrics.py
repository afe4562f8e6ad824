"""measure_bright_sphere recovers the diameters of flattened and elongated ellipsoids, not only spheres."""

from __future__ import annotations

import numpy as np
import pytest

from trueshape.geometry import Volume, VolumeGeometry
from trueshape.reporting import measure_bright_sphere

RADIUS = 21.5


def _ellipsoid(ap_over_lr: float, voxel: float = 1.5) -> Volume:
    """A bright ellipsoid (LR = SI = 43 mm), partial volume from 3 x 3 x 3 sub-samples per voxel."""
    size = int(np.ceil(2 * 1.7 * RADIUS * max(1.0, ap_over_lr) / voxel))
    geometry = VolumeGeometry.from_components(
        shape=(size, size, size), origin=(-(size - 1) * voxel / 2,) * 3, spacing=(voxel, voxel, voxel)
    )
    offsets = (np.arange(3) - 1) / 3 * voxel
    centres = geometry.voxel_centres()
    filled = np.zeros(geometry.shape)
    semi = np.array([RADIUS, RADIUS * ap_over_lr, RADIUS])
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                p = centres + np.array([dx, dy, dz])
                filled += np.sum((p / semi) ** 2, axis=-1) <= 1.0
    return Volume((1000.0 * filled / 27.0).astype(np.float32), geometry)


@pytest.mark.parametrize("ratio", [0.92, 1.0, 1.08, 1.2])
def test_ap_lr_ratio_of_ellipsoids(ratio: float) -> None:
    measured = measure_bright_sphere(_ellipsoid(ratio), (0.0, 0.0, 0.0), RADIUS, inside_level=1000.0, outside_level=0.0)
    assert measured.ap_lr_ratio == pytest.approx(ratio, rel=0.005)
    assert measured.diameters_mm[0] == pytest.approx(2 * RADIUS, abs=0.2)
