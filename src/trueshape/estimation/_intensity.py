"""Similarity that survives a change of contrast: the moving image predicted from the reference's intensity.

Two series of one session rarely share a contrast, but the same tissue gives (nearly) the same signal
throughout each: the corrected moving value is a function of the reference value, ``M~ ~ g(R~)``. ``g`` is
piecewise linear on bins of the reference intensity (the correlation ratio of Roche et al.), fitted by
least squares with a light smoothness penalty, and *projected out* of every Gauss-Newton step (variable
projection): the field is fitted against the best ``g`` for it, never against a stale one. A linear ``g``
(two nodes) is global normalised cross-correlation; many nodes allow non-monotonic contrast maps.

References
----------
Roche A., Malandain G., Pennec X., Ayache N. The correlation ratio as a new similarity measure for multimodal
image registration. MICCAI 1998, LNCS 1496:1115-1124. doi:10.1007/BFb0056301
Golub G., Pereyra V. Separable nonlinear least squares: the variable projection method and its applications.
Inverse Problems 19 (2003) R1. doi:10.1088/0266-5611/19/2/201

Examples
--------
>>> reference = np.linspace(0.0, 100.0, 1001)
>>> mapping = IntensityMap.spanning(reference, nodes=8)
>>> fit = mapping.fit(reference, 3.0 * reference + 5.0)
>>> float(np.abs(fit.residual).max()) < 1e-6
True
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["IntensityFit", "IntensityMap", "Similarity"]


class Similarity(enum.StrEnum):
    """How the moving image is compared with the reference."""

    #: The moving image as any smooth function of the reference intensity (different contrasts).
    CORRELATION_RATIO = "cr"
    #: The moving image as a linear function of the reference (same contrast, other scaling): global NCC.
    NCC = "ncc"

    @property
    def nodes(self) -> int:
        """Nodes of the piecewise-linear intensity map."""
        return 2 if self is Similarity.NCC else 24


#: Weight of the second-difference penalty on the map's node values, relative to the mean bin count.
_SMOOTHNESS = 1e-3


@dataclass(frozen=True, eq=False)
class IntensityFit:
    """One fit of the intensity map: the residual and what projects the map out of a Jacobian."""

    residual: NDArray[np.float64]
    node_values: NDArray[np.float64]
    slopes: NDArray[np.float64]  #: g'(R) at each point
    design: Any  #: scipy.sparse matrix (P, nodes): the hat functions at each point
    inverse_normal: NDArray[np.float64]

    def project(self, jacobian: NDArray[np.float64]) -> NDArray[np.float64]:
        """Remove from the columns of ``jacobian`` (P, N) what a change of the map would absorb."""
        coefficients = self.inverse_normal @ (self.design.T @ jacobian)
        return np.asarray(jacobian - self.design @ coefficients)


@dataclass(frozen=True)
class IntensityMap:
    """Node positions of a piecewise-linear map over reference intensities."""

    nodes: NDArray[np.float64]

    @classmethod
    def spanning(cls, reference_values: NDArray[np.float64], *, nodes: int) -> IntensityMap:
        """Nodes evenly spread between the 0.5th and 99.5th percentiles of ``reference_values``."""
        low, high = np.percentile(reference_values, [0.5, 99.5])
        if not high > low:
            high = low + 1.0
        return cls(np.linspace(float(low), float(high), max(2, nodes)))

    def fit(self, reference: NDArray[np.float64], moving: NDArray[np.float64]) -> IntensityFit:
        """Fit ``moving ~ g(reference)`` by least squares; values beyond the end nodes extrapolate linearly."""
        from scipy import sparse

        nodes = self.nodes
        count = nodes.size
        step = nodes[1] - nodes[0]
        position = (reference - nodes[0]) / step
        lower = np.clip(np.floor(position).astype(np.intp), 0, count - 2)
        weight_upper = position - lower
        rows = np.arange(reference.size)
        design = sparse.csr_matrix((np.concatenate([1.0 - weight_upper, weight_upper]),
                                    (np.concatenate([rows, rows]), np.concatenate([lower, lower + 1]))),
                                   shape=(reference.size, count))
        normal = np.asarray((design.T @ design).toarray())
        if count > 2:  # a light curvature penalty keeps empty or sparse bins well defined
            second = np.diff(np.eye(count), n=2, axis=0)
            normal += _SMOOTHNESS * max(float(reference.size) / count, 1.0) * (second.T @ second)
        normal += 1e-9 * max(float(np.trace(normal)), 1.0) / count * np.eye(count)
        inverse = np.linalg.inv(normal)
        node_values = inverse @ (design.T @ moving)
        predicted = design @ node_values
        slopes = (node_values[lower + 1] - node_values[lower]) / step
        return IntensityFit(moving - predicted, node_values, slopes, design, inverse)
