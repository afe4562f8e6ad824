"""A typed, keyword-argument face of the compiled pull-back kernel ``trueshape._warp`` (optional).

setup.py builds the kernel when a C compiler is available; without it :data:`KERNEL` is None and the
resampler runs the numpy/scipy fallback (same values, slower: ``benchmarks/gnl_correct.py`` measures
both, ``tests/correction/test_kernel.py`` compares them).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray

__all__ = ["KERNEL", "SlabStatistics", "compiled_kernel_disabled", "has_compiled_kernel", "pull_back"]


class _CompiledKernel(Protocol):
    """The C module's one function (positional arguments, as ``PyArg_ParseTuple`` reads them)."""

    def pull_back(
        self,
        source: NDArray[np.float32],
        node_values: NDArray[np.float32],
        node_moments: NDArray[np.float32],
        row_interval: NDArray[np.int64],
        row_weights: NDArray[np.float32],
        out: NDArray[np.float32],
        start: int,
        stop: int,
        axis: int,
        affine: tuple[float, ...],
        spacing_sq: tuple[float, float, float],
        has_det: bool,
        max_det: float,
        /,
    ) -> tuple[float, float, float, float, int]: ...


def _load() -> _CompiledKernel | None:
    try:  # imported by name: the import graph sees no import of the package itself
        return cast(_CompiledKernel, importlib.import_module("trueshape._warp"))
    except ImportError:  # pragma: no cover - a machine without a C compiler at install
        return None


#: The compiled kernel, or None when it was not built (the numpy/scipy fallback then runs).
KERNEL: _CompiledKernel | None = _load()


@dataclass
class SlabStatistics:
    """What pulling back one slab measured (merged over slabs into a correction's diagnostics).

    Parameters
    ----------
    max_norm_sq : float
        Largest squared displacement length, mm^2.
    sum_norm : float
        Sum of the displacement lengths, mm.
    jacobian_min, jacobian_max : float
        Range of the intensity factor ``det(I + grad d)`` (before clipping).
    folded : int
        Voxels with a factor <= 0.
    """

    max_norm_sq: float = 0.0
    sum_norm: float = 0.0
    jacobian_min: float = np.inf
    jacobian_max: float = -np.inf
    folded: int = 0


def pull_back(
    *,
    source: NDArray[np.float32],
    node_values: NDArray[np.float32],
    node_moments: NDArray[np.float32],
    row_interval: NDArray[np.int64],
    row_weights: NDArray[np.float32],
    out: NDArray[np.float32],
    start: int,
    stop: int,
    through_axis: int | None,
    base_map: tuple[float, ...],
    spacing_squared: tuple[float, float, float],
    intensity_correction: bool,
    max_jacobian_determinant: float,
) -> SlabStatistics:
    """Pull back rows ``start:stop`` of ``out`` from ``source`` in one pass per voxel (compiled kernel).

    Parameters
    ----------
    source : ndarray, shape (SI, SJ, SK), float32, C-contiguous
        Input values.
    node_values, node_moments : ndarray, shape (N, C, OJ * OK), float32
        The field upsampled along j and k at the coarse nodes along i, and its second derivatives along i.
        Components: the displacement in input index units (3, or 1 along ``through_axis``), then
        ``det(I + grad d)`` when ``intensity_correction``.
    row_interval : ndarray, shape (OI,), int64
        The coarse interval holding each output row.
    row_weights : ndarray, shape (OI, 4), float32
        Weights of value a, value a + 1, moment a and moment a + 1 for each output row.
    out : ndarray, shape (OI, OJ, OK), float32, C-contiguous
        Output; rows ``start:stop`` are written.
    start, stop : int
        Output rows of the slab.
    through_axis : int or None
        The input axis of a 1-D (through-plane) displacement, or None for a 3-D one.
    base_map : tuple of 12 float
        Row-major 3x4 map from output index to input index without displacement.
    spacing_squared : tuple of 3 float
        Squared input voxel sizes, mm^2 (displacement lengths in mm).
    intensity_correction : bool
        Multiply by ``det(I + grad d)`` clipped to [0, ``max_jacobian_determinant``].
    max_jacobian_determinant : float
        Upper clip of the intensity factor.

    Returns
    -------
    SlabStatistics
        Displacement and determinant statistics of the slab.

    Raises
    ------
    RuntimeError
        When the kernel was not built (check :data:`KERNEL` first).
    """
    kernel = KERNEL
    if kernel is None:
        raise RuntimeError("trueshape._warp was not compiled (no C compiler at install): use the numpy fallback")
    measured = kernel.pull_back(
        source,
        node_values,
        node_moments,
        row_interval,
        row_weights,
        out,
        start,
        stop,
        -1 if through_axis is None else through_axis,
        base_map,
        spacing_squared,
        intensity_correction,
        max_jacobian_determinant,
    )
    max_norm_sq, sum_norm, jacobian_min, jacobian_max, folded = measured
    return SlabStatistics(max_norm_sq, sum_norm, jacobian_min, jacobian_max, folded)


def has_compiled_kernel() -> bool:
    """Whether corrections run in the compiled kernel (else in the numpy/scipy fallback).

    Examples
    --------
    >>> has_compiled_kernel() in (True, False)
    True
    """
    return KERNEL is not None


@contextlib.contextmanager
def compiled_kernel_disabled() -> Iterator[None]:
    """Run the numpy/scipy fallback within the block, as on a machine without the compiled kernel.

    Examples
    --------
    >>> with compiled_kernel_disabled():
    ...     has_compiled_kernel()
    False
    """
    global KERNEL
    saved: Any = KERNEL
    KERNEL = None
    try:
        yield
    finally:
        KERNEL = saved
