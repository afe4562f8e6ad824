"""The residual field a correction applies, as it is exported and measured.

The exact residual is evaluated on a coarse grid aligned with the output grid (:func:`correction_interpolant`)
and exported for ITK as a :class:`DisplacementField` on a padded grid about :data:`DEFAULT_FIELD_SPACING_MM`
apart (:func:`residual_displacement_field`). What a correction sampled is measured from the same coarse grid:
the range along the input's slice normal that each output slice read (:func:`sampled_normal_range`, for the
source images a derived series cites) and the share of voxels sampled beyond the input (:func:`outside_fraction`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from trueshape.correction._result import CorrectionResult
from trueshape.geometry import DisplacementField, VolumeGeometry
from trueshape.gnl import DEFAULT_COARSE_SPACING_MM, GridInterpolant, ResidualField, coarse_nodes, max_probe_error

__all__ = [
    "DEFAULT_FIELD_SPACING_MM",
    "FIELD_PADDING_NODES",
    "correction_interpolant",
    "exported_field_shape",
    "outside_fraction",
    "residual_displacement_field",
    "sampled_normal_range",
    "trilinear_field_error",
]

#: Node spacing of the exported :class:`DisplacementField`, mm. ITK interpolates it trilinearly: for SYN-AS
#: over a 512 mm cube the largest resulting error is 0.022 mm (``field_interpolation_error_mm`` reported by
#: ``benchmarks/gnl_correct.py``).
DEFAULT_FIELD_SPACING_MM = 4.0
#: Nodes the exported field extends beyond the field of view on each side (ITK treats points outside the
#: field's grid as undisplaced).
FIELD_PADDING_NODES = 2


def residual_displacement_field(
    interpolant: GridInterpolant,
    *,
    field_spacing_mm: float = DEFAULT_FIELD_SPACING_MM,
    description: str = "",
) -> DisplacementField:
    """Sample a residual interpolant (components 0-2: mm, LPS) on a padded grid for ITK.

    The nodes lie on the index axes of ``interpolant.geometry``, about ``field_spacing_mm`` apart, and
    extend :data:`FIELD_PADDING_NODES` nodes beyond the field of view (the interpolant's coarse grid must
    cover them; :func:`correct_volume` pads it accordingly).
    """
    geometry = interpolant.geometry
    positions = _field_node_positions(geometry, field_spacing_mm)
    steps = [float(nodes[1] - nodes[0]) for nodes in positions]
    vectors = interpolant.on_lattice((positions[0], positions[1], positions[2]))[..., :3]
    index_from_node = np.eye(4)
    index_from_node[:3, :3] = np.diag(steps)
    index_from_node[:3, 3] = [p[0] for p in positions]
    field_geometry = VolumeGeometry(
        shape=(len(positions[0]), len(positions[1]), len(positions[2])),
        lps_from_ijk=geometry.lps_from_ijk @ index_from_node,
    )
    return DisplacementField(field_geometry, np.ascontiguousarray(vectors, dtype=np.float64), description)


def _field_node_positions(geometry: VolumeGeometry, field_spacing_mm: float) -> list[NDArray[np.float64]]:
    return [
        coarse_nodes(size, float(spacing), field_spacing_mm, padding_mm=FIELD_PADDING_NODES * field_spacing_mm)
        for size, spacing in zip(geometry.shape, geometry.spacing, strict=True)
    ]


def exported_field_shape(
    geometry: VolumeGeometry, field_spacing_mm: float = DEFAULT_FIELD_SPACING_MM
) -> tuple[int, int, int]:
    """Node counts of the field a correction onto ``geometry`` exports (what its files will hold).

    Examples
    --------
    >>> grid = VolumeGeometry.from_components(shape=(100, 100, 10), origin=(0, 0, 0), spacing=(1.0, 1.0, 5.0))
    >>> exported_field_shape(grid)
    (30, 30, 17)
    """
    first, second, third = (len(nodes) for nodes in _field_node_positions(geometry, field_spacing_mm))
    return first, second, third


def correction_interpolant(
    residual: ResidualField,
    geometry: VolumeGeometry,
    *,
    coarse_spacing_mm: float = DEFAULT_COARSE_SPACING_MM,
    field_spacing_mm: float = DEFAULT_FIELD_SPACING_MM,
    intensity_correction: bool = True,
) -> GridInterpolant:
    """Return the exact coarse grid that :func:`correct_volume` upsamples for ``geometry`` (same arguments).

    Components 0-2: residual displacement (mm, LPS); 3: ``det(I + grad d_res)`` when ``intensity_correction``.
    ``correction_interpolant(...).upsampler()`` reproduces, voxel by voxel, the field a correction applied.

    Examples
    --------
    >>> from trueshape.dicom import DistortionState
    >>> from trueshape.gnl import SYN_AS, MagnetFrame
    >>> grid = VolumeGeometry.from_components(shape=(8, 8, 8), origin=(-70, -70, -70), spacing=(20, 20, 20))
    >>> coarse = correction_interpolant(ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE), grid)
    >>> coarse.values.shape[-1]
    4
    """
    return residual.interpolant(
        geometry,
        coarse_spacing_mm=coarse_spacing_mm,
        padding_mm=_field_padding_mm(field_spacing_mm),
        with_jacobian_determinant=intensity_correction,
    )


def sampled_normal_range(result: CorrectionResult, geometry_in: VolumeGeometry) -> NDArray[np.float64]:
    """Per output slice, the lowest and highest position along the input's slice normal that was sampled.

    Returns shape (K, 2), mm along ``geometry_in``'s k direction (LPS dot normal): output slice k was
    computed from input values between the two, and from the input slices that interpolation reaches from
    there. A derived DICOM series cites those slices as its source images. The field is smooth, so a
    lattice of at most 33 x 33 points per slice (its edges included) finds the range within 0.01 mm of
    every voxel's (SYN-AS over a 384 mm coronal field of view: tests/correction/test_resample.py).

    Examples
    --------
    >>> from trueshape.correction import correct_volume
    >>> from trueshape.dicom import DistortionState
    >>> from trueshape.geometry import Volume
    >>> from trueshape.gnl import SYN_AS, MagnetFrame
    >>> grid = VolumeGeometry.from_components(shape=(8, 8, 4), origin=(-35, -35, -15), spacing=(10, 10, 10))
    >>> residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE)
    >>> result = correct_volume(Volume(np.ones((8, 8, 4), np.float32), grid), residual)
    >>> sampled_normal_range(result, grid).round(1).tolist()[0]
    [-15.1, -15.0]
    """
    geometry_out = result.volume.geometry
    rows, columns, slices = geometry_out.shape
    positions = (_spread_indices(rows), _spread_indices(columns), np.arange(slices, dtype=np.float64))
    displacement = result.coarse_field.on_lattice(positions)[..., :3]
    lattice = np.stack(np.meshgrid(*positions, indexing="ij"), axis=-1)
    sampled = geometry_out.index_to_lps(lattice.reshape(-1, 3)).reshape(displacement.shape) + displacement
    along = np.tensordot(sampled, geometry_in.direction[:, 2], axes=([3], [0]))
    return np.stack([along.min(axis=(0, 1)), along.max(axis=(0, 1))], axis=1)


def outside_fraction(interpolant: GridInterpolant, geometry_in: VolumeGeometry) -> float:
    """Return the share of output voxels sampled beyond half a voxel outside ``geometry_in``.

    ``interpolant`` is the correction's coarse field on the output grid; see
    :attr:`CorrectionDiagnostics.outside_fraction`.
    """
    geometry_out = interpolant.geometry
    # The lattice spans the output voxels the input covers (a thin input on a fine --like grid included).
    corners = geometry_out.lps_to_index(geometry_in.corner_points())
    low = np.maximum(np.ceil(corners.min(axis=0)), 0).astype(int)
    high = np.minimum(np.floor(corners.max(axis=0)), np.asarray(geometry_out.shape) - 1).astype(int)
    positions = tuple(_spread_range(int(a), int(b), most=40) for a, b in zip(low, high, strict=True))
    if any(p.size == 0 for p in positions):
        return 0.0  # no output voxel lies within the input: nothing of it was there to lose
    displacement = interpolant.on_lattice((positions[0], positions[1], positions[2]))[..., :3]
    lattice = np.stack(np.meshgrid(*positions, indexing="ij"), axis=-1).reshape(-1, 3)
    plain = geometry_out.index_to_lps(lattice)
    size = np.asarray(geometry_in.shape, dtype=np.float64)

    def inside(points: NDArray[np.float64]) -> NDArray[np.bool_]:
        index = geometry_in.lps_to_index(points)
        return np.all((index >= -0.5) & (index < size - 0.5), axis=1)

    # Only what the correction moves out counts: an output grid reaching beyond the input (--like) is not news.
    covered = inside(plain)
    lost = covered & ~inside(plain + displacement.reshape(-1, 3))
    return float(lost.sum() / max(int(covered.sum()), 1))


def _spread_range(first: int, last: int, *, most: int) -> NDArray[np.float64]:
    """Whole indices from ``first`` to ``last`` (both kept), at most about ``most`` of them; empty if none."""
    if last < first:
        return np.zeros(0)
    return first + _spread_indices(last - first + 1, most=most)


def _spread_indices(size: int, most: int = 32) -> NDArray[np.float64]:
    """Index positions 0, s, 2 s, ... and the last one, with the step s that keeps them to about ``most``."""
    step = max(1, -(-size // most))
    indices = np.arange(0, size, step, dtype=np.float64)  # sorted and distinct: no np.unique (it loads numpy.ma)
    return indices if indices[-1] == size - 1 else np.append(indices, size - 1)


def _field_padding_mm(field_spacing_mm: float) -> float:
    """Return the padding of the coarse grid: the exported field's padding and one node more, mm."""
    return (FIELD_PADDING_NODES + 1) * field_spacing_mm


def trilinear_field_error(field: DisplacementField, residual: ResidualField, geometry: VolumeGeometry) -> float:
    """Largest error of the field under trilinear interpolation (as ITK applies it) inside the FOV, mm."""
    volume_from_field = geometry.ijk_from_lps @ field.geometry.lps_from_ijk
    nodes = tuple(
        volume_from_field[axis, axis] * np.arange(field.geometry.shape[axis]) + volume_from_field[axis, 3]
        for axis in range(3)
    )
    return max_probe_error(
        geometry,
        (nodes[0], nodes[1], nodes[2]),
        lambda _positions, points: field.displacement_at(points),
        residual.displacement_lps,
    )
