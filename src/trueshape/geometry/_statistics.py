"""Order statistics without numpy's masked-array module.

``np.median`` and ``np.percentile`` call ``np.unique``, which imports ``numpy.ma``: 7 ms on a quiet machine
(``.venv/bin/python -X importtime -c 'import numpy; import numpy.ma'``), more under load, at the start of every
command that uses them, for a few thousand values at most. Written by hand for that reason.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["percentile"]


def percentile(values: NDArray[np.floating], q: float) -> float:
    """Return ``np.percentile(values, q)`` (linear interpolation) of a non-empty array of finite values.

    Examples
    --------
    >>> percentile(np.array([3.0, 1.0, 2.0, 4.0]), 50.0), float(np.percentile([3.0, 1.0, 2.0, 4.0], 50.0))
    (2.5, 2.5)
    >>> percentile(np.array([3.0, 1.0, 2.0]), 50.0), percentile(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 99.0)
    (2.0, 4.96)
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64).ravel())
    position = q / 100.0 * (ordered.size - 1)
    low = int(np.floor(position))
    high = min(low + 1, ordered.size - 1)
    return float(ordered[low] + (position - low) * (ordered[high] - ordered[low]))
