"""Small synthetic pairs with a known field, made in memory (no corpus needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray

from trueshape.dicom import DistortionState
from trueshape.estimation import SeriesImage, SeriesView
from trueshape.geometry import Volume, VolumeGeometry
from trueshape.gnl import SYN_AS, GradientCoefficients, ResidualField
from trueshape.synth import Acquisition, Contrast, Plane, VolumePhantom, acquire, residual_for


def textured_anatomy(seed: int = 0, *, size: int = 96, spacing_mm: float = 2.0) -> Volume:
    """An ellipsoid of smooth random texture with a bright rim: anatomy-like edges and texture at any scale."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=(size,) * 3), 1.2)
    texture = 600.0 + 1500.0 * texture / texture.std() * 0.15
    index = (np.indices((size,) * 3) - (size - 1) / 2.0) / (size / 2.0)
    radius = np.sqrt((index[0] / 0.85) ** 2 + (index[1] / 0.75) ** 2 + (index[2] / 0.9) ** 2)
    values = np.where(radius < 0.92, texture, 0.0) + np.where((radius >= 0.92) & (radius < 1.0), 1400.0, 0.0)
    blobs = ndimage.gaussian_filter((rng.random((size,) * 3) > 0.9995).astype(float), 1.5)
    values += 2e4 * blobs * (radius < 0.9)
    grid = VolumeGeometry.from_components(shape=(size,) * 3, origin=(0, 0, 0), spacing=(spacing_mm,) * 3)
    return Volume(values.astype(np.float32), grid)


@dataclass(frozen=True)
class SyntheticPair:
    reference: SeriesImage
    moving: SeriesImage
    phantom: VolumePhantom
    coil: GradientCoefficients

    def truth(self, series: SeriesImage) -> ResidualField:
        normal = series.geometry.direction[:, 2]
        return ResidualField(self.coil, series.view.magnet_frame, series.view.distortion_state, normal)

    def object_points(self, series: SeriesImage, step: int = 2) -> NDArray[np.float64]:
        points = series.geometry.voxel_centres()[::step, ::step, ::step].reshape(-1, 3)
        return points[self.phantom.inside(points)]


def make_pair(*, centre_mm: float = 110.0, coil: GradientCoefficients = SYN_AS,
              reference_state: DistortionState = DistortionState.FULL_3D,
              reference_contrast: Contrast = Contrast.T1, motion_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
              scale: float = 1.0, seed: int = 0) -> SyntheticPair:
    anatomy = textured_anatomy(seed)
    centre = (0.0, 0.0, centre_mm)
    phantom = VolumePhantom.from_volume(anatomy, centre_lps=centre, scale=scale)
    moved = VolumePhantom.from_volume(anatomy, centre_lps=tuple(c + m for c, m in zip(centre, motion_mm, strict=True)),
                                      scale=scale)
    noise = 0.02 * phantom.level
    reference = Acquisition(plane=Plane.AXIAL, fov_mm=(190.0, 190.0), matrix=(95, 95), slices=90,
                            slice_thickness_mm=2.0, centre_lps=centre, distortion_state=reference_state,
                            contrast=reference_contrast, noise_sd=noise, in_plane_samples=1, slice_samples=2, seed=1)
    moving = Acquisition(plane=Plane.CORONAL, fov_mm=(180.0, 180.0), matrix=(100, 100), slices=95,
                         slice_thickness_mm=2.0, centre_lps=centre, distortion_state=DistortionState.IN_PLANE_2D,
                         noise_sd=noise, in_plane_samples=1, slice_samples=2, seed=2)
    series = []
    for acquisition, anatomy_now in ((reference, phantom), (moving, moved)):
        residual = residual_for(coil, acquisition)
        scan = acquire(anatomy_now, acquisition, None if residual.is_zero else residual.displacement_lps)
        view = SeriesView.build(acquisition.distortion_state, slice_normal_lps=acquisition.directions[:, 2],
                                isocentre_lps=acquisition.isocentre_lps)
        series.append(SeriesImage(scan.volume.array, scan.volume.geometry, view))
    return SyntheticPair(series[0], series[1], phantom, coil)


@pytest.fixture(scope="session")
def coronal_pair() -> SyntheticPair:
    """A DIS3D axial reference and a DIS2D coronal series 110 mm above the isocentre (SYN-AS)."""
    return make_pair()


def field_error(pair: SyntheticPair, series: SeriesImage, model, theta) -> NDArray[np.float64]:
    """Per-point error (mm) of a fitted field against the truth inside the object."""
    points = pair.object_points(series)
    fitted = model.residual(series.view, theta, points)
    return np.linalg.norm(fitted - pair.truth(series).displacement_lps(points), axis=1)
