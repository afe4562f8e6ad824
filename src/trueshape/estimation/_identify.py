"""What a fit determined: per coefficient, its standard error and how much of it the data (not the prior) set.

With ``N`` the data's normal matrix at the solution (``J^T J / sigma^2``, motion marginalised) and ``P`` the
prior precision, the posterior covariance is ``C = (N + P)^-1`` and the resolution matrix ``C N``: its
diagonal is 1 for a coefficient the data pin down and 0 for one only the prior holds (Tikhonov's shrinkage,
Backus-Gilbert's resolution). The eigenvalues of the prior-whitened normal matrix count the coefficient
combinations the data determine (eigenvalue > 1: the data outweigh the prior). A coefficient below
:data:`DETERMINED_RESOLUTION` is written as undetermined (0, listed), never as a number that looks known.

Examples
--------
>>> normal = np.diag([1e6, 1e-3])          # the data see the first coefficient, not the second
>>> report = Identifiability.from_normal(["y B(3,1)", "y A(2,0)"], np.array([-0.055, 0.004]), normal,
...                                      prior_precision=100.0)
>>> [term.determined for term in report.terms], report.determined_combinations
([True, False], 1)
>>> report.written_values().tolist()
[-0.055, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["DETERMINED_RESOLUTION", "Identifiability", "TermEstimate"]

#: A coefficient is determined when the data set at least this share of it (diagonal of the resolution matrix).
DETERMINED_RESOLUTION = 0.5


@dataclass(frozen=True)
class TermEstimate:
    """One coefficient as fitted."""

    name: str  #: axis and term, e.g. ``"y B(3,1)"``
    value: float  #: the fitted value (dimensionless, Siemens normalisation)
    standard_error: float  #: posterior standard deviation (formal: from the image noise)
    resolution: float  #: share of the value the data set (0 prior only ... 1 data only)

    @property
    def determined(self) -> bool:
        """Whether the data, not the prior, set this coefficient."""
        return self.resolution >= DETERMINED_RESOLUTION

    def to_json(self) -> dict[str, object]:
        """Plain values for model files and sidecars."""
        return {"term": self.name, "value": self.value if self.determined else 0.0, "fitted": self.value,
                "standard_error": self.standard_error, "resolution": self.resolution,
                "determined": self.determined}


@dataclass(frozen=True, eq=False)
class Identifiability:
    """Per-coefficient estimates and the spectrum of what the data determine.

    Parameters
    ----------
    terms : tuple of TermEstimate
        In parameter order.
    whitened_eigenvalues : ndarray, shape (N,)
        Eigenvalues of ``P^-1/2 N P^-1/2``, descending: data information relative to the prior, per
        combination of coefficients.
    covariance : ndarray, shape (N, N)
        Posterior covariance.
    normal : ndarray, shape (N, N)
        The data's normal matrix (what pooling sessions adds up).
    prior_precision : ndarray, shape (N,)
        The prior's precision of each coefficient.
    """

    terms: tuple[TermEstimate, ...]
    whitened_eigenvalues: NDArray[np.float64]
    covariance: NDArray[np.float64]
    normal: NDArray[np.float64]
    prior_precision: NDArray[np.float64]

    @classmethod
    def from_normal(cls, names: list[str], theta: NDArray[np.float64], normal: NDArray[np.float64], *,
                    prior_precision: float | NDArray[np.float64]) -> Identifiability:
        """Analyse a fit from its normal matrix ``normal`` (data only) and prior precision (scalar or per term)."""
        count = len(names)
        normal = np.asarray(normal, dtype=np.float64).reshape(count, count)
        normal = 0.5 * (normal + normal.T)
        precision = np.broadcast_to(np.asarray(prior_precision, dtype=np.float64), (count,))
        covariance = np.linalg.inv(normal + np.diag(precision))
        resolution = np.clip(np.diag(covariance @ normal), 0.0, 1.0)
        scale = 1.0 / np.sqrt(precision)
        whitened = normal * scale[:, None] * scale[None, :]
        eigenvalues = np.sort(np.clip(np.linalg.eigvalsh(whitened), 0.0, None))[::-1]
        terms = tuple(TermEstimate(name, float(value), float(np.sqrt(max(covariance[i, i], 0.0))),
                                   float(resolution[i]))
                      for i, (name, value) in enumerate(zip(names, np.asarray(theta, dtype=np.float64), strict=True)))
        return cls(terms, np.asarray(eigenvalues, dtype=np.float64), np.asarray(covariance, dtype=np.float64), normal,
                   np.asarray(precision, dtype=np.float64))

    @property
    def determined_combinations(self) -> int:
        """Coefficient combinations the data determine (whitened eigenvalue above 1)."""
        return int(np.sum(self.whitened_eigenvalues > 1.0))

    def written_values(self) -> NDArray[np.float64]:
        """Return the coefficients as a model file carries them: undetermined ones 0."""
        return np.array([term.value if term.determined else 0.0 for term in self.terms])

    def undetermined(self) -> list[str]:
        """Names of the coefficients written as 0."""
        return [term.name for term in self.terms if not term.determined]

    def to_json(self) -> dict[str, object]:
        """Plain values for model files and sidecars."""
        return {"determined_resolution_threshold": DETERMINED_RESOLUTION,
                "determined_combinations": self.determined_combinations,
                "whitened_eigenvalues": self.whitened_eigenvalues.tolist(),
                "undetermined": self.undetermined(), "terms": [term.to_json() for term in self.terms]}
