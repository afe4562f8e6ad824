"""The fast path: a smooth field evaluated exactly on a coarse grid and upsampled by separable cubic splines.

The coarse nodes lie on the index axes of a target :class:`~trueshape.geometry.VolumeGeometry` (so the grid
is aligned with the volume), padded beyond its field of view. Along each axis the interpolating cubic
spline (not-a-knot ends) is a fixed linear map from node values to any set of positions, i.e. a matrix;
upsampling a 3-D block is three matrix products (BLAS), done slab by slab along i to bound memory.

Examples
--------
Worst error of the default 20 mm grid for SYN-AS over a 516 mm cube, inside r = 250 mm and overall (mm):

>>> from trueshape.geometry import VolumeGeometry
>>> from trueshape.gnl import SYN_AS, ResidualField
>>> geometry = VolumeGeometry.from_components(shape=(129, 129, 129), origin=(-256, -256, -256), spacing=(4, 4, 4))
>>> residual = ResidualField(SYN_AS)
>>> interpolant = residual.interpolant(geometry)
>>> inside = lambda points: np.linalg.norm(points, axis=1) <= 250.0
>>> print(f"{interpolant.max_error(residual.displacement_lps, inside=inside):.1e}")
3.4e-04
>>> print(f"{interpolant.max_error(residual.displacement_lps):.1e}")
9.5e-04
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trueshape.geometry import VolumeGeometry

__all__ = [
    "COARSE_PADDING_NODES",
    "DEFAULT_COARSE_SPACING_MM",
    "PROBE_POSITIONS_PER_AXIS",
    "GridInterpolant",
    "SlabUpsampler",
    "coarse_nodes",
    "cubic_interpolation_matrix",
    "max_probe_error",
    "probe_lattices",
]

#: Default node spacing of the coarse grid, mm (for SYN-AS: 3.4e-4 mm worst error inside r = 250 mm, see the
#: module example; 40 mm would give 5.6e-3 mm).
DEFAULT_COARSE_SPACING_MM = 20.0

#: Nodes added beyond each end of the field of view, so spline end effects stay outside it.
COARSE_PADDING_NODES = 2

#: Largest number of probe positions per axis used to measure an interpolation error.
PROBE_POSITIONS_PER_AXIS = 16


def cubic_interpolation_matrix(nodes: NDArray[np.float64], positions: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ``W`` with ``W @ values`` = the not-a-knot cubic spline through ``(nodes, values)`` at ``positions``.

    Parameters
    ----------
    nodes : ndarray, shape (N,)
        Strictly increasing node coordinates (N >= 2; two or three nodes give a line or a parabola).
    positions : ndarray, shape (P,)
        Where to evaluate (same units as ``nodes``).

    Returns
    -------
    ndarray, shape (P, N)

    Examples
    --------
    >>> nodes = np.arange(6.0)
    >>> w = cubic_interpolation_matrix(nodes, np.array([2.5]))
    >>> round(float((w @ nodes**3)[0]), 9)
    15.625
    """
    node_array = np.asarray(nodes, dtype=np.float64)
    where = np.asarray(positions, dtype=np.float64).reshape(-1)
    if node_array.size < 2:
        return np.ones((where.size, 1))
    interval, weights = _spline_weights(node_array, where)
    rows = np.arange(where.size)
    values = np.zeros((where.size, node_array.size))
    moments = np.zeros_like(values)
    values[rows, interval] = weights[:, 0]
    values[rows, interval + 1] = weights[:, 1]
    moments[rows, interval] = weights[:, 2]
    moments[rows, interval + 1] = weights[:, 3]
    return np.asarray(values + moments @ _moment_matrix(node_array), dtype=np.float64)


def _spline_weights(
    nodes: NDArray[np.float64], positions: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Interval of each position and the weights of (y_a, y_a+1, M_a, M_a+1), shape (P, 4).

    On ``[x_a, x_a+1]`` with ``h = x_a+1 - x_a`` and ``t = (x - x_a) / h`` a cubic spline with node values
    ``y`` and second derivatives ``M`` is ``(1-t) y_a + t y_a+1 + h^2/6 [((1-t)^3 - (1-t)) M_a + (t^3 - t) M_a+1]``
    (beyond the end nodes, the end cubics continue).
    """
    interval = np.clip(np.searchsorted(nodes, positions, side="right") - 1, 0, nodes.size - 2)
    width = nodes[interval + 1] - nodes[interval]
    t = (positions - nodes[interval]) / width
    curvature = width**2 / 6.0
    weights = np.stack([1.0 - t, t, curvature * ((1.0 - t) ** 3 - (1.0 - t)), curvature * (t**3 - t)], axis=1)
    return interval, weights


def _moment_matrix(nodes: NDArray[np.float64]) -> NDArray[np.float64]:
    """Matrix taking node values to the second derivatives of their not-a-knot cubic spline, shape (N, N).

    Interior rows are the usual continuity equations; the end rows make the third derivative continuous
    at the second and the second-to-last node (not-a-knot). Three nodes give one parabola, two a line.
    """
    count = nodes.size
    if count < 3:
        return np.zeros((count, count))
    h = np.diff(nodes)
    system = np.zeros((count, count))
    right = np.zeros((count, count))
    for i in range(1, count - 1):
        system[i, i - 1 : i + 2] = (h[i - 1], 2.0 * (h[i - 1] + h[i]), h[i])
        right[i, i - 1 : i + 2] = (6.0 / h[i - 1], -6.0 / h[i - 1] - 6.0 / h[i], 6.0 / h[i])
    if count == 3:
        system[0, :2] = (1.0, -1.0)
        system[2, 1:] = (-1.0, 1.0)
    else:
        system[0, :3] = (-1.0 / h[0], 1.0 / h[0] + 1.0 / h[1], -1.0 / h[1])
        system[-1, -3:] = (-1.0 / h[-2], 1.0 / h[-2] + 1.0 / h[-1], -1.0 / h[-1])
    return np.asarray(np.linalg.solve(system, right), dtype=np.float64)


def coarse_nodes(
    size: int, spacing_mm: float, coarse_spacing_mm: float, *, padding_mm: float = 0.0
) -> NDArray[np.float64]:
    """Return coarse node positions (index units) covering ``[-pad, size - 1 + pad]`` along one axis.

    ``pad`` is the larger of ``padding_mm`` and :data:`COARSE_PADDING_NODES` node spacings; nodes are
    spread evenly and centred on the field of view.
    """
    step = coarse_spacing_mm / spacing_mm
    pad = max(COARSE_PADDING_NODES * step, padding_mm / spacing_mm)
    span = (size - 1) + 2.0 * pad
    count = max(int(np.ceil(span / step - 1e-9)) + 1, 4)
    return np.asarray(np.linspace(-pad, size - 1 + pad, count), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class GridInterpolant:
    """Values on coarse nodes aligned with the index axes of ``geometry``, upsampled by cubic splines.

    Parameters
    ----------
    geometry : VolumeGeometry
        The grid the nodes are aligned with (node positions are in its index units).
    nodes : tuple of 3 ndarray
        Node positions along i, j, k (continuous voxel indices of ``geometry``).
    values : ndarray, shape (Ni, Nj, Nk, C)
        Values at the nodes (C components, e.g. a displacement in mm, LPS).
    """

    geometry: VolumeGeometry
    nodes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
    values: NDArray[np.float64]

    def __post_init__(self) -> None:
        expected = tuple(len(n) for n in self.nodes)
        if self.values.ndim != 4 or self.values.shape[:3] != expected:
            raise ValueError(f"values shape {self.values.shape} does not match nodes {expected} + (C,)")

    @classmethod
    def from_function(
        cls,
        geometry: VolumeGeometry,
        function: Callable[[NDArray[np.float64]], NDArray[np.float64]],
        *,
        coarse_spacing_mm: float = DEFAULT_COARSE_SPACING_MM,
        padding_mm: float = 0.0,
    ) -> GridInterpolant:
        """Evaluate ``function`` (LPS points (P, 3) -> values (P, C)) exactly on the coarse nodes."""
        spacing = geometry.spacing
        nodes = tuple(
            coarse_nodes(size, float(s), coarse_spacing_mm, padding_mm=padding_mm)
            for size, s in zip(geometry.shape, spacing, strict=True)
        )
        grids = np.meshgrid(*nodes, indexing="ij")
        points = geometry.index_to_lps(np.stack(grids, axis=-1).reshape(-1, 3))
        values = np.asarray(function(points), dtype=np.float64)
        values = values.reshape((*grids[0].shape, -1))
        return cls(geometry, (nodes[0], nodes[1], nodes[2]), values)

    @property
    def components(self) -> int:
        """Number of components C."""
        return int(self.values.shape[3])

    def with_values(self, values: NDArray[np.float64]) -> GridInterpolant:
        """Return an interpolant on the same nodes holding other values, shape (Ni, Nj, Nk, C')."""
        return GridInterpolant(self.geometry, self.nodes, np.asarray(values, dtype=np.float64))

    def upsampler(self) -> SlabUpsampler:
        """Prepare slab-by-slab upsampling of every component onto all voxels of ``geometry``."""
        return SlabUpsampler.from_interpolant(self)

    def matrices(
        self, positions: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Per-axis interpolation matrices for index positions along i, j, k."""
        w0, w1, w2 = (cubic_interpolation_matrix(n, p) for n, p in zip(self.nodes, positions, strict=True))
        return w0, w1, w2

    def on_lattice(
        self, positions: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
    ) -> NDArray[np.float64]:
        """Values on the outer product of index positions, shape (Pi, Pj, Pk, C)."""
        w0, w1, w2 = self.matrices(positions)
        n0, n1, n2, components = self.values.shape
        p0, p1, p2 = w0.shape[0], w1.shape[0], w2.shape[0]
        # Three plain matrix products, components kept innermost: [k][i][j][c] -> [j][k][i][c] -> [i][j][k][c].
        along_k = w2 @ self.values.transpose(2, 0, 1, 3).reshape(n2, n0 * n1 * components)
        along_j = w1 @ along_k.reshape(p2, n0, n1, components).transpose(2, 0, 1, 3).reshape(n1, -1)
        along_i = w0 @ along_j.reshape(p1, p2, n0, components).transpose(2, 0, 1, 3).reshape(n0, -1)
        return along_i.reshape(p0, p1, p2, components)

    def at_indices(self, index_points: NDArray[np.float64], *, chunk: int = 2048) -> NDArray[np.float64]:
        """Values at scattered continuous indices, shape (P, 3) -> (P, C)."""
        flat = np.asarray(index_points, dtype=np.float64).reshape(-1, 3)
        out = np.empty((flat.shape[0], self.components))
        for start in range(0, flat.shape[0], chunk):
            part = flat[start : start + chunk]
            w0, w1, w2 = self.matrices((part[:, 0], part[:, 1], part[:, 2]))
            tmp = np.tensordot(w0, self.values, axes=([1], [0]))  # (P, Nj, Nk, C)
            tmp = np.einsum("pjkc,pj->pkc", tmp, w1)
            out[start : start + chunk] = np.einsum("pkc,pk->pc", tmp, w2)
        return out

    def at_lps(self, points_lps: NDArray[np.float64]) -> NDArray[np.float64]:
        """Values at LPS points (mm), shape (..., 3) -> (..., C)."""
        points = np.asarray(points_lps, dtype=np.float64)
        values = self.at_indices(self.geometry.lps_to_index(points.reshape(-1, 3)))
        return values.reshape((*points.shape[:-1], self.components))

    def max_error(
        self,
        function: Callable[[NDArray[np.float64]], NDArray[np.float64]],
        *,
        inside: Callable[[NDArray[np.float64]], NDArray[np.bool_]] | None = None,
        max_per_axis: int = PROBE_POSITIONS_PER_AXIS,
    ) -> float:
        """Largest vector error against ``function`` where cubic interpolation errs most, inside the FOV.

        The probes are the midpoints between coarse nodes along one, two or three axes (at nodes along the
        others), see :func:`probe_lattices`. ``inside`` (LPS points (P, 3) -> bool (P,)) restricts the
        check further, e.g. to a sphere.
        """
        return max_probe_error(
            self.geometry,
            self.nodes,
            lambda positions, _points: self.on_lattice(positions).reshape(-1, self.components),
            function,
            inside=inside,
            max_per_axis=max_per_axis,
        )


@dataclass(frozen=True, eq=False)
class SlabUpsampler:
    """Upsample a :class:`GridInterpolant` to every voxel, one slab of i at a time (float32).

    The j and k directions are contracted once; along i the spline is kept as node values and second
    derivatives (memory ``8 C Ni J K`` bytes), so a voxel row is four scaled additions: no matrix product,
    nothing that competes with the BLAS thread pool, and the GIL is released.

    Parameters
    ----------
    shape : tuple of 3 int
        Voxel grid (I, J, K).
    row_interval : ndarray, shape (I,), int
        Coarse interval ``a`` holding each voxel row i.
    row_weights : ndarray, shape (I, 4), float32
        Weights of value a, value a+1, second derivative a and second derivative a+1 for each row.
    node_values, node_moments : ndarray, shape (Ni, C, J*K), float32
        Spline values and second derivatives along i at the coarse nodes, already upsampled along j and k.
    """

    shape: tuple[int, int, int]
    row_interval: NDArray[np.intp]
    row_weights: NDArray[np.float32]
    node_values: NDArray[np.float32]
    node_moments: NDArray[np.float32]

    @classmethod
    def from_interpolant(cls, interpolant: GridInterpolant) -> SlabUpsampler:
        """Precompute the contraction and the second derivatives for ``interpolant.geometry``."""
        shape = interpolant.geometry.shape
        w1 = cubic_interpolation_matrix(interpolant.nodes[1], np.arange(shape[1], dtype=np.float64))
        w2 = cubic_interpolation_matrix(interpolant.nodes[2], np.arange(shape[2], dtype=np.float64))
        along_j = np.einsum("abcv,jb->avjc", interpolant.values, w1)  # (Ni, C, J, Nk), small
        # Contiguous operands keep the batched product on BLAS.
        values = np.matmul(
            np.ascontiguousarray(along_j, dtype=np.float32), np.ascontiguousarray(w2.T, dtype=np.float32)
        )
        nodes = interpolant.nodes[0]
        count, components = nodes.size, interpolant.components
        values = values.reshape(count, components, -1)
        moments = (_moment_matrix(nodes).astype(np.float32) @ values.reshape(count, -1)).reshape(values.shape)
        interval, weights = _spline_weights(nodes, np.arange(shape[0], dtype=np.float64))
        return cls(shape, interval, weights.astype(np.float32), values, moments)

    @property
    def components(self) -> int:
        """Number of components C."""
        return int(self.node_values.shape[1])

    def slab(self, start: int, stop: int) -> NDArray[np.float32]:
        """Values for voxel rows ``start:stop`` of i, shape (C, stop - start, J, K), float32."""
        count = stop - start
        out = np.empty((self.components, count, self.shape[1], self.shape[2]), dtype=np.float32)
        scratch = np.empty((self.components, self.shape[1] * self.shape[2]), dtype=np.float32)
        for local, row in enumerate(range(start, stop)):
            a = self.row_interval[row]
            w = self.row_weights[row]
            value = out[:, local].reshape(self.components, -1)
            np.multiply(self.node_values[a], w[0], out=value)
            for source, weight in (
                (self.node_values[a + 1], w[1]),
                (self.node_moments[a], w[2]),
                (self.node_moments[a + 1], w[3]),
            ):
                np.multiply(source, weight, out=scratch)
                value += scratch
        return out


def _spread(values: NDArray[np.float64], limit: int) -> NDArray[np.float64]:
    """Return about ``limit`` entries of ``values``, evenly spread, keeping the two at each end.

    The not-a-knot spline errs most in the second cell from each end, so those probes always stay.
    """
    if values.size <= limit:
        return values
    chosen = np.linspace(0, values.size - 1, limit).round().astype(int)
    # A set, not np.unique: that loads numpy.ma (see geometry/_statistics.py) for a dozen indices.
    return values[sorted({*chosen.tolist(), 1, values.size - 2})]


_Lattice = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def max_probe_error(
    geometry: VolumeGeometry,
    nodes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    approximate: Callable[[_Lattice, NDArray[np.float64]], NDArray[np.float64]],
    exact: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    *,
    inside: Callable[[NDArray[np.float64]], NDArray[np.bool_]] | None = None,
    max_per_axis: int = PROBE_POSITIONS_PER_AXIS,
) -> float:
    """Largest vector error of ``approximate`` against ``exact`` on the :func:`probe_lattices` of ``nodes``.

    ``approximate(positions, points)`` gets the lattice (index positions per axis) and its LPS points
    (P, 3) and returns (P, C); ``exact(points)`` returns the true values. ``inside`` restricts the check.
    """
    worst = 0.0
    for positions in probe_lattices(nodes, geometry.shape, max_per_axis=max_per_axis):
        grids = np.meshgrid(*positions, indexing="ij")
        points = geometry.index_to_lps(np.stack(grids, axis=-1).reshape(-1, 3))
        approx = np.asarray(approximate(positions, points), dtype=np.float64)
        error = np.linalg.norm(approx - np.asarray(exact(points), dtype=np.float64).reshape(approx.shape), axis=1)
        if inside is not None:
            error = error[inside(points)]
        if error.size:
            worst = max(worst, float(error.max()))
    return worst


def probe_lattices(
    nodes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    shape: tuple[int, int, int],
    *,
    max_per_axis: int = PROBE_POSITIONS_PER_AXIS,
) -> list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]:
    """Index positions where interpolation between ``nodes`` errs most, inside ``[0, size - 1]``.

    Returns the seven lattices that take, along each axis, either the nodes or the midpoints between
    them (not nodes on all three). Edge midpoints matter: for harmonic fields (zero Laplacian) the
    leading trilinear error cancels at cell centres but not at edge midpoints.
    """
    per_axis = []
    for axis_nodes, size in zip(nodes, shape, strict=True):
        mids = 0.5 * (axis_nodes[1:] + axis_nodes[:-1])
        at_nodes = axis_nodes[(axis_nodes >= 0.0) & (axis_nodes <= size - 1)]
        at_mids = mids[(mids >= 0.0) & (mids <= size - 1)]
        centre = np.array([0.5 * (size - 1)])
        per_axis.append(
            (
                _spread(at_nodes if at_nodes.size else centre, max_per_axis),
                _spread(at_mids if at_mids.size else centre, max_per_axis),
            )
        )
    lattices = []
    for choice in itertools.product((0, 1), repeat=3):
        if choice == (0, 0, 0):
            continue
        lattices.append((per_axis[0][choice[0]], per_axis[1][choice[1]], per_axis[2][choice[2]]))
    return lattices
