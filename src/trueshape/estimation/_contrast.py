"""Two contrasts of one anatomy: the map that carries one series' intensities into the other's.

Examples
--------
>>> from trueshape.estimation._levels import Level
>>> MAP_NODES > 2
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from trueshape.estimation._intensity import IntensityMap
from trueshape.estimation._levels import SeriesImage
from trueshape.estimation._motion import RigidMotion
from trueshape.estimation._sides import Side

logger = logging.getLogger(__name__)

__all__ = ["MAP_NODES", "MAP_POINTS", "NONLINEAR_GAIN", "IntensityFunction", "contrast_maps", "remapped"]


#: Sample points at which the contrast map between the series is fitted.
MAP_POINTS = 60_000
#: Nodes of that map.
MAP_NODES = 32
#: A nonlinear map is used only when it explains this much more of the variance than a linear one (one
#: contrast, misaligned at the start, gains about 0.02 by chance; a proton-density-like remap of a T1, 0.5).
NONLINEAR_GAIN = 0.05


IntensityFunction = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def remapped(series: SeriesImage, mapping: IntensityFunction) -> SeriesImage:
    """Return ``series`` in the other contrast, voxel by voxel (unsmoothed: a map mixes no tissues then)."""
    return SeriesImage(mapping(np.asarray(series.values, dtype=np.float32)), series.geometry, series.view, series.label,
                       series.psf_widths_mm)


def contrast_maps(anchor: Side, other: Side, points: NDArray[np.float64], theta: NDArray[np.float64],
                   motion: RigidMotion) -> tuple[IntensityFunction | None, IntensityFunction | None]:
    """Return the map into the anchor's contrast (``E[anchor | other]``) or the other's, whichever explains more.

    At most one of the two is returned: the direction in which one series' intensity is (more nearly) a
    function of the other's - by the correlation ratio, the share of variance the map explains - and none
    when a linear map explains nearly as much (the same contrast up to scale).
    """
    anchor_values, _, _, anchor_inside = anchor.corrected(theta, points, need_jacobian=False)
    other_values, _, _, other_inside = other.corrected(theta, motion.apply(points), need_jacobian=False)
    use = anchor_inside & other_inside
    source = {"anchor": anchor_values[use], "other": other_values[use]}
    best: tuple[float, str, NDArray[np.float64], NDArray[np.float64]] | None = None
    linear = 0.0
    for given, predicted in (("other", "anchor"), ("anchor", "other")):
        for count in (2, MAP_NODES):
            mapping = IntensityMap.spanning(source[given], nodes=count)
            fit = mapping.fit(source[given], source[predicted])
            explained = 1.0 - float(np.var(fit.residual)) / max(float(np.var(source[predicted])), 1e-30)
            if count == 2:
                linear = max(linear, explained)
            elif best is None or explained > best[0]:
                best = (explained, predicted, mapping.nodes, fit.node_values)
    assert best is not None
    logger.debug("contrast map: linear explains %.4f, nonlinear %.4f predicting the %s", linear, best[0], best[1])
    if best[0] - linear < NONLINEAR_GAIN:
        return None, None  # one contrast up to scale: compare as it is
    _, predicted, knots, values = best

    def apply(image: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.interp(image, knots, values).astype(np.float32)

    return (apply, None) if predicted == "anchor" else (None, apply)
