"""Exact interpolants and their derivatives; the intensity map a contrast change needs."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from trueshape.estimation import IntensityMap
from trueshape.estimation._sampling import ColumnSpline, SplineImage


def _image() -> np.ndarray:
    return ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(20, 24, 28)), 1.5)


def test_spline_gradient_is_the_derivative_of_its_values() -> None:
    sampler = SplineImage.from_array(_image())
    points = np.random.default_rng(1).uniform(-0.5, 19.5, (2000, 3))
    _, gradient = sampler.sample(points, with_gradient=True)
    assert gradient is not None
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = 1e-5
        plus, _ = sampler.sample(points + step)
        minus, _ = sampler.sample(points - step)
        assert np.abs((plus - minus) / 2e-5 - gradient[:, axis]).max() < 1e-4


def test_spline_reproduces_the_voxels_and_column_sampling_agrees() -> None:
    image = _image()
    sampler, columns = SplineImage.from_array(image), ColumnSpline.from_array(image)
    rng = np.random.default_rng(2)
    i, j = rng.integers(0, 20, 500), rng.integers(0, 24, 500)
    k = rng.uniform(-0.9, 27.9, 500)
    values, gradient = sampler.sample(np.stack([i, j, k], axis=1).astype(float), with_gradient=True)
    along, slope = columns.sample_columns(i * 24 + j, k, with_gradient=True)
    assert gradient is not None and slope is not None
    assert np.abs(values - along).max() < 1e-5 and np.abs(gradient[:, 2] - slope).max() < 1e-5
    whole, _ = sampler.sample(np.stack([i, j, np.round(np.clip(k, 0, 27))], axis=1).astype(float))
    assert np.abs(whole - image[i, j, np.round(np.clip(k, 0, 27)).astype(int)]).max() < 1e-5


def test_intensity_map_fits_a_non_monotonic_contrast_and_projects_it_out() -> None:
    reference = np.random.default_rng(3).uniform(0.0, 1000.0, 20000)
    moving = np.interp(reference, [0, 300, 600, 1000], [0, 900, 400, 700])  # contrast reversed in the middle
    fit = IntensityMap.spanning(reference, nodes=24).fit(reference, moving)
    assert np.sqrt(np.mean(fit.residual**2)) < 5.0  # of a 900-unit range
    # a Jacobian column that is itself a function of the reference is absorbed by the map: nothing is left
    column = np.interp(reference, [0, 500, 1000], [0, 1, 0])[:, None]
    assert np.abs(fit.project(column)).max() < 0.05 * np.abs(column).max()
