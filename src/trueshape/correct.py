"""Remove gradient-nonlinearity distortion from a Volume by pull-back resampling.

``corrected(r) = distorted(r + d_res(r))``, optionally times ``det(I + grad d_res)`` (DESIGN.md section 3),
with ``d_res`` the residual field of the series (:class:`~trueshape.gnl.ResidualField`). The field is
evaluated exactly on a coarse grid aligned with the output grid and upsampled by separable cubic splines
(j and k once, i row by row); the image is sampled by trilinear (or cubic B-spline) interpolation. When the
residual is through-plane only (DIS2D) and the slice normal is the grid's k axis, sampling is 1-D along k.

Trilinear sampling runs in the compiled kernel ``trueshape._warp`` (upsampling, sampling and intensity
factor in one pass per voxel) when it was built, else in numpy and scipy with the same results
(tests/test_warp_kernel.py). ``benchmarks/gnl_correct.py`` measures both against gradunwarp.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from trueshape.dicom.vendor import DistortionState
from trueshape.errors import GeometryError
from trueshape.geometry import DisplacementField, Volume, VolumeGeometry
from trueshape.gnl import (
    DEFAULT_COARSE_SPACING_MM,
    GradientCoefficients,
    GridInterpolant,
    ResidualField,
    coarse_nodes,
    max_probe_error,
)

try:  # compiled at install by setup.py; optional, so a machine without a C compiler still installs trueshape
    import trueshape._warp as _KERNEL
except ImportError:  # pragma: no cover - exercised by tests that disable the kernel
    _KERNEL = None

__all__ = [
    "DEFAULT_FIELD_SPACING_MM",
    "FIELD_PADDING_NODES",
    "MAX_JACOBIAN_DETERMINANT",
    "MAX_PLAUSIBLE_DISPLACEMENT_MM",
    "NORMAL_PARALLEL_TOLERANCE",
    "SLAB_VOXELS",
    "CorrectionDiagnostics",
    "CorrectionMode",
    "CorrectionResult",
    "correct_volume",
    "correction_interpolant",
    "exported_field_shape",
    "residual_displacement_field",
    "sampled_normal_range",
]

#: Node spacing of the exported :class:`DisplacementField`, mm. ITK interpolates it trilinearly: for SYN-AS
#: over a 512 mm cube the largest resulting error is 0.022 mm (``field_interpolation_error_mm`` reported by
#: ``benchmarks/gnl_correct.py``).
DEFAULT_FIELD_SPACING_MM = 4.0
#: Nodes the exported field extends beyond the field of view on each side (ITK treats points outside the
#: field's grid as undisplaced).
FIELD_PADDING_NODES = 2
#: A residual beyond this anywhere on the (padded) output grid comes from wrong coefficients or a wrong
#: isocentre, not from a gradient coil (SYN-AS reaches 142.99 mm at the corners of a 512 mm cube: the 256^3
#: phantom of benchmarks/gnl_correct.py), mm.
MAX_PLAUSIBLE_DISPLACEMENT_MM = 1000.0
#: Intensity factors are clipped to [0, this]; folded regions (determinant <= 0) are counted in the diagnostics.
MAX_JACOBIAN_DETERMINANT = 10.0
#: Largest sine of the angle between the slice normal and the k axis for the 1-D through-plane path.
NORMAL_PARALLEL_TOLERANCE = 1e-6
#: Voxels per slab (bounds the temporary memory of each worker thread).
SLAB_VOXELS = 1 << 20


class CorrectionMode(enum.StrEnum):
    """How the residual is applied."""

    AUTO = "auto"  #: through-plane when possible, else full
    FULL = "full"  #: 3-D pull-back resampling
    THROUGH_PLANE = "through-plane"  #: 1-D resampling along the slice normal (k axis)
    NONE = "none"  #: nothing to correct (DIS3D on the input grid): the values are copied


@dataclass(frozen=True)
class CorrectionDiagnostics:
    """What a correction did, with its accuracy.

    Parameters
    ----------
    mode : CorrectionMode
        The path used (never AUTO).
    distortion_state : str
        Correction state of the input series (ND, DIS2D, DIS3D).
    max_displacement_mm, mean_displacement_mm : float
        Largest and mean residual displacement length over the output voxels, mm.
    interpolation_error_mm : float
        Largest error of the cubic fast path against the exact field at coarse-cell centres in the field of
        view, mm.
    field_interpolation_error_mm : float
        Largest error of the exported field under trilinear interpolation (what ITK does) at its cell
        centres in the field of view, mm.
    jacobian_min, jacobian_max : float
        Range of ``det(I + grad d_res)`` over the output voxels (measured with or without intensity
        correction).
    folded_voxels : int
        Output voxels with determinant <= 0: the field folds there, whatever is done to intensities (their
        intensity factor is 0).
    coarse_spacing_mm : float
        Node spacing of the exact coarse grid, mm.
    field_spacing_mm : tuple of 3 float
        Node spacing of the exported field along i, j, k, mm.
    interpolation_order : int
        Image interpolation order (1 trilinear, 3 cubic B-spline).
    intensity_corrected : bool
        Whether intensities were multiplied by the determinant.
    threads : int
        Worker threads used.
    assumptions : tuple of str
        Assumptions behind the residual field (patient position, isocentre, state).
    outside_fraction : float
        Share of the output voxels within the input grid whose displaced sample lies beyond it (more than
        half a voxel outside its outer voxel centres), so that they are 0: on a lattice of at most 41 points
        per axis, edges included. A single slice moved through its plane by more than half its thickness
        loses voxels so.
    """

    mode: CorrectionMode
    distortion_state: str
    max_displacement_mm: float
    mean_displacement_mm: float
    interpolation_error_mm: float
    field_interpolation_error_mm: float
    jacobian_min: float
    jacobian_max: float
    folded_voxels: int
    coarse_spacing_mm: float
    field_spacing_mm: tuple[float, float, float]
    interpolation_order: int
    intensity_corrected: bool
    threads: int
    assumptions: tuple[str, ...]
    outside_fraction: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "mode": self.mode.value,
            "distortion_state": self.distortion_state,
            "max_displacement_mm": self.max_displacement_mm,
            "mean_displacement_mm": self.mean_displacement_mm,
            "interpolation_error_mm": self.interpolation_error_mm,
            "field_interpolation_error_mm": self.field_interpolation_error_mm,
            "jacobian_min": self.jacobian_min,
            "jacobian_max": self.jacobian_max,
            "folded_voxels": self.folded_voxels,
            "coarse_spacing_mm": self.coarse_spacing_mm,
            "field_spacing_mm": list(self.field_spacing_mm),
            "interpolation_order": self.interpolation_order,
            "intensity_corrected": self.intensity_corrected,
            "threads": self.threads,
            "assumptions": list(self.assumptions),
            "outside_fraction": self.outside_fraction,
        }


@dataclass(frozen=True, eq=False)
class CorrectionResult:
    """The corrected volume, the field that did it, and the diagnostics.

    Parameters
    ----------
    volume : Volume
        Corrected physical values (float32) on the output grid.
    field : DisplacementField
        Residual field in ITK's resampling convention (output point -> input point), mm, LPS, on a grid
        aligned with the output grid and padded beyond it; write it with ``trueshape.io.write_itk_transform``.
    diagnostics : CorrectionDiagnostics
        Accuracy and ranges.
    coarse_field : GridInterpolant
        The exact residual on the coarse grid aligned with the output grid (components 0-2: mm, LPS;
        component 3: ``det(I + grad d_res)`` when intensity-corrected). ``coarse_field.upsampler()``
        reproduces, slab by slab, the displacement and factor applied to every voxel.
    """

    volume: Volume
    field: DisplacementField
    diagnostics: CorrectionDiagnostics
    coarse_field: GridInterpolant


def _available_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


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
    return [coarse_nodes(size, float(spacing), field_spacing_mm, padding_mm=FIELD_PADDING_NODES * field_spacing_mm)
            for size, spacing in zip(geometry.shape, geometry.spacing, strict=True)]


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
    every voxel's (SYN-AS over a 384 mm coronal field of view: tests/test_correct.py).

    Examples
    --------
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


def _outside_fraction(interpolant: GridInterpolant, geometry_in: VolumeGeometry) -> float:
    """Share of output voxels sampled beyond half a voxel outside ``geometry_in`` (see CorrectionDiagnostics)."""
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
    return np.unique(np.append(np.arange(0, size, step), size - 1)).astype(np.float64)


def _field_padding_mm(field_spacing_mm: float) -> float:
    return (FIELD_PADDING_NODES + 1) * field_spacing_mm


def _trilinear_field_error(field: DisplacementField, residual: ResidualField, geometry: VolumeGeometry) -> float:
    """Largest error of the field under trilinear interpolation (as ITK applies it) inside the FOV, mm."""
    volume_from_field = geometry.ijk_from_lps @ field.geometry.lps_from_ijk
    nodes = tuple(
        volume_from_field[axis, axis] * np.arange(field.geometry.shape[axis]) + volume_from_field[axis, 3]
        for axis in range(3)
    )
    return max_probe_error(geometry, (nodes[0], nodes[1], nodes[2]),
                           lambda _positions, points: field.displacement_at(points), residual.displacement_lps)


@dataclass
class _SlabStats:
    max_norm_sq: float = 0.0
    sum_norm: float = 0.0
    jacobian_min: float = np.inf
    jacobian_max: float = -np.inf
    folded: int = 0


def _gather(values: NDArray[np.float32], index: NDArray[np.intp], axis: int) -> NDArray[np.float32]:
    """``values`` at ``index`` along ``axis`` (index has the slab's shape; values is the slab or, along 0, all)."""
    return np.take_along_axis(values, index, axis=axis)


def _cubic_1d(coefficients: NDArray[np.float32], position: NDArray[np.float32], axis: int) -> NDArray[np.float32]:
    """Cubic B-spline along ``axis`` of prefiltered ``coefficients`` at ``position``, mirror ends."""
    size = coefficients.shape[axis]
    base = np.floor(position)
    t = (position - base).astype(np.float32)
    base_index = base.astype(np.intp)
    t2 = t * t
    t3 = t2 * t
    weights = (
        (1.0 - t) ** 3 / 6.0,
        (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0,
        (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0,
        t3 / 6.0,
    )
    out = np.zeros(position.shape, dtype=np.float32)
    period = max(2 * (size - 1), 1)  # mirror ends: reflect with period 2 (size - 1), however far the tap
    for offset, weight in zip((-1, 0, 1, 2), weights, strict=True):
        index = np.mod(base_index + offset, period)
        index = np.where(index > size - 1, period - index, index)
        np.clip(index, 0, size - 1, out=index)
        out += weight * _gather(coefficients, index, axis)
    return out


def _within_half_voxel(position: NDArray[np.float32], size: int) -> NDArray[np.bool_]:
    """Where an index position lies within [-0.5, size - 0.5): the grid's voxels, as ITK counts them."""
    return (position >= -0.5) & (position < size - 0.5)


def _linear_1d(values: NDArray[np.float32], position: NDArray[np.float32], axis: int) -> NDArray[np.float32]:
    """Linear interpolation along ``axis`` at ``position`` (beyond the end samples: their values)."""
    size = values.shape[axis]
    position = np.clip(position, 0, size - 1)
    lower = np.clip(np.floor(position), 0, max(size - 2, 0)).astype(np.intp)
    weight = position - lower
    v0 = _gather(values, lower, axis)
    v1 = _gather(values, np.minimum(lower + 1, size - 1), axis)
    with np.errstate(invalid="ignore"):  # a non-finite neighbour of weight 0 is not read (as the kernel)
        blended = (1.0 - weight) * v0 + weight * v1
    return np.asarray(np.where(weight == 0, v0, np.where(weight == 1, v1, blended)), dtype=np.float32)


def _resolve_mode(
    mode: CorrectionMode, residual: ResidualField, geometry_in: VolumeGeometry, geometry_out: VolumeGeometry
) -> CorrectionMode:
    same_grid = geometry_in.shape == geometry_out.shape and np.allclose(
        geometry_in.lps_from_ijk, geometry_out.lps_from_ijk, atol=1e-9
    )
    if residual.is_zero and same_grid and mode is not CorrectionMode.THROUGH_PLANE:
        return CorrectionMode.NONE
    normal = residual.slice_normal_lps
    k_axis = geometry_in.direction[:, 2]
    along_k = normal is not None and float(np.linalg.norm(np.cross(normal, k_axis))) <= NORMAL_PARALLEL_TOLERANCE
    possible = same_grid and (residual.is_through_plane or residual.is_zero) and along_k and geometry_in.shape[2] >= 2
    if mode is CorrectionMode.THROUGH_PLANE and not possible:
        raise GeometryError(
            "the through-plane path needs a DIS2D residual whose slice normal is the grid's k axis "
            f"(normal {None if normal is None else normal.round(6).tolist()}, k axis {k_axis.round(6).tolist()}, "
            f"tolerance {NORMAL_PARALLEL_TOLERANCE}), at least 2 slices and output grid = input grid"
        )
    if mode is CorrectionMode.AUTO:
        return CorrectionMode.THROUGH_PLANE if possible else CorrectionMode.FULL
    if mode is CorrectionMode.NONE:
        raise ValueError("mode 'none' is a result, not a request: use auto, full or through-plane")
    return mode


# The matrix products here are small; BLAS worker threads would then spin and take the cores from the
# resampling threads.
@threadpool_limits.wrap(limits=1, user_api="blas")
def correct_volume(
    volume: Volume,
    model: ResidualField | GradientCoefficients,
    *,
    mode: CorrectionMode | str = CorrectionMode.AUTO,
    intensity_correction: bool = True,
    order: int = 1,
    output_geometry: VolumeGeometry | None = None,
    coarse_spacing_mm: float = DEFAULT_COARSE_SPACING_MM,
    field_spacing_mm: float = DEFAULT_FIELD_SPACING_MM,
    threads: int | None = None,
    on_field: Callable[[DisplacementField], object] | None = None,
) -> CorrectionResult:
    """Resample a distorted volume into true geometry.

    Parameters
    ----------
    volume : Volume
        The distorted series, shape (I, J, K) or (I, J, K, T); every volume of T gets the same field.
    model : ResidualField or GradientCoefficients
        The residual field, or coefficients from which it is built with
        :meth:`ResidualField.from_volume` (state, patient position and isocentre from the provenance).
    mode : CorrectionMode or str
        ``auto`` (1-D along k when the residual is through-plane and the normal is the k axis), ``full``
        or ``through-plane``.
    intensity_correction : bool
        Multiply by ``det(I + grad d_res)`` (clipped to [0, :data:`MAX_JACOBIAN_DETERMINANT`]).
    order : int
        Image interpolation: 1 trilinear (default) or 3 cubic B-spline.
    output_geometry : VolumeGeometry, optional
        Output grid (default: the input grid).
    coarse_spacing_mm : float
        Node spacing of the exact coarse grid, mm.
    field_spacing_mm : float
        Node spacing of the exported field, mm.
    threads : int, optional
        Worker threads (default: the CPUs available to the process).
    on_field : callable, optional
        Called with the exported field as soon as it exists, before the image is resampled, so that a
        caller can write it meanwhile (``trueshape correct`` does).

    Returns
    -------
    CorrectionResult
        Corrected volume (float32 physical values; provenance says DIS3D), the field, diagnostics.
    """
    if order not in (1, 3):
        raise ValueError(f"interpolation order must be 1 or 3, got {order}")
    if volume.array.dtype.kind not in "biuf":
        raise ValueError(f"voxel type {volume.array.dtype} cannot be resampled: real scalar values only")
    residual = model if isinstance(model, ResidualField) else ResidualField.from_volume(model, volume)
    geometry_in = volume.geometry
    geometry_out = output_geometry or geometry_in
    used = _resolve_mode(CorrectionMode(mode), residual, geometry_in, geometry_out)
    workers = threads or _available_threads()

    with np.errstate(over="ignore", invalid="ignore"):  # checked below, with a message that says why
        interpolant = correction_interpolant(
            residual,
            geometry_out,
            coarse_spacing_mm=coarse_spacing_mm,
            field_spacing_mm=field_spacing_mm,
            intensity_correction=intensity_correction,
        )
    largest = float(np.abs(interpolant.values[..., :3]).max(initial=0.0))
    if not (np.isfinite(interpolant.values).all() and largest <= MAX_PLAUSIBLE_DISPLACEMENT_MM):
        # Absurd coefficients, or a grid metres from the isocentre, give a NaN image or one moved by metres;
        # say what to check instead.
        isocentre = residual.magnet_frame.isocentre_lps.round(1).tolist()
        size = "not finite" if not np.isfinite(largest) else f"{largest:.3g} mm"
        raise GeometryError(
            f"the residual field of {residual.coefficients.source or 'the coefficients'} is {size} over the "
            f"output grid, beyond any gradient coil's {MAX_PLAUSIBLE_DISPLACEMENT_MM:.0f} mm (isocentre {isocentre} "
            f"mm LPS, grid corner {geometry_out.origin.round(1).tolist()} mm): check the coefficient values and "
            "the isocentre"
        )
    displacement_only = interpolant.with_values(interpolant.values[..., :3])
    field = residual_displacement_field(
        displacement_only,
        field_spacing_mm=field_spacing_mm,
        description=f"trueshape GNL residual ({residual.distortion_state.value}), coil {residual.coefficients.coil_id}",
    )
    if on_field is not None:
        on_field(field)
    interpolation_error = displacement_only.max_error(residual.displacement_lps)
    field_error = _trilinear_field_error(field, residual, geometry_out)

    sources = _three_dimensional_float32(volume)
    # Slabs run along the slowest memory axis so that sampling reads the input with short strides; a
    # Fortran-ordered array (as NIfTI files load) is processed as its C-ordered transpose, without a copy.
    reverse = all(source.flags.f_contiguous and not source.flags.c_contiguous for source in sources)
    if reverse:
        stack = [source.T for source in sources]
        work_in, work_out = _reversed_geometry(geometry_in), _reversed_geometry(geometry_out)
        work_interpolant = GridInterpolant(
            work_out, interpolant.nodes[::-1], np.ascontiguousarray(interpolant.values.transpose(2, 1, 0, 3))
        )
    else:
        stack = [np.ascontiguousarray(source) for source in sources]
        work_in, work_out, work_interpolant = geometry_in, geometry_out, interpolant
    through_axis = 0 if reverse else 2  # the input k axis in working order
    out_shape = geometry_out.shape
    # Every path below writes every output voxel, so the arrays need no zeroing.
    outputs = [np.empty(work_out.shape, dtype=np.float32) for _ in stack]
    stats: list[_SlabStats] = []

    if used is CorrectionMode.NONE:
        for target, source in zip(outputs, stack, strict=True):
            target[...] = source
        stats.append(_SlabStats(jacobian_min=1.0, jacobian_max=1.0))
    else:
        unusable: list[NDArray[np.float32] | None] = [None] * len(stack)
        if order == 3:
            axes = (through_axis,) if used is CorrectionMode.THROUGH_PLANE else (0, 1, 2)
            # The spline prefilter runs along whole lines: one NaN would spread to nearly every voxel. Filter
            # with the nearest finite value in its place, and mark afterwards what the cubic footprint of a
            # non-finite voxel reaches.
            unusable = [_cubic_footprint(source, axes) for source in stack]
            stack = [_prefilter(_nearest_finite(source) if mark is not None else source, axes)
                     for source, mark in zip(stack, unusable, strict=True)]
        stats = _resample(
            stack,
            outputs,
            work_interpolant,
            work_in,
            work_out,
            used,
            order=order,
            intensity_correction=intensity_correction,
            workers=workers,
            through_axis=through_axis,
        )
        for target, mark in zip(outputs, unusable, strict=True):
            if mark is not None:
                reached = np.empty(work_out.shape, dtype=np.float32)
                _resample([mark], [reached], work_interpolant, work_in, work_out, used, order=1,
                          intensity_correction=False, workers=workers, through_axis=through_axis)
                target[reached > 0.0] = np.nan
    corrected_volumes = [target.T if reverse else target for target in outputs]

    total_voxels = int(np.prod(out_shape))
    field_spacing = [float(s) for s in field.geometry.spacing]
    merged = _SlabStats(
        max_norm_sq=max(s.max_norm_sq for s in stats),
        sum_norm=sum(s.sum_norm for s in stats),
        jacobian_min=min(s.jacobian_min for s in stats),
        jacobian_max=max(s.jacobian_max for s in stats),
        folded=sum(s.folded for s in stats),
    )
    if not intensity_correction and used is not CorrectionMode.NONE:
        # Folding is a geometry failure with or without intensity correction: measure it all the same.
        merged.jacobian_min, merged.jacobian_max, merged.folded = _determinant_range(
            correction_interpolant(residual, geometry_out, coarse_spacing_mm=coarse_spacing_mm,
                                   field_spacing_mm=field_spacing_mm, intensity_correction=True))
    elif not intensity_correction:
        merged.jacobian_min = merged.jacobian_max = 1.0
    diagnostics = CorrectionDiagnostics(
        mode=used,
        distortion_state=residual.distortion_state.value,
        max_displacement_mm=float(np.sqrt(merged.max_norm_sq)),
        mean_displacement_mm=merged.sum_norm / total_voxels,
        interpolation_error_mm=interpolation_error,
        field_interpolation_error_mm=field_error,
        jacobian_min=float(merged.jacobian_min),
        jacobian_max=float(merged.jacobian_max),
        folded_voxels=merged.folded,
        coarse_spacing_mm=float(coarse_spacing_mm),
        field_spacing_mm=(field_spacing[0], field_spacing[1], field_spacing[2]),
        interpolation_order=order,
        intensity_corrected=intensity_correction,
        threads=workers,
        assumptions=residual.assumptions,
        outside_fraction=0.0 if used is CorrectionMode.NONE else _outside_fraction(interpolant, geometry_in),
    )
    corrected = corrected_volumes[0] if volume.array.ndim == 3 else np.stack(corrected_volumes, axis=-1)
    provenance = replace(
        volume.provenance,
        distortion_state=DistortionState.FULL_3D,
        distortion_source=f"trueshape GNL correction of a {residual.distortion_state.value} series",
    )
    result_volume = Volume(corrected, geometry_out, provenance=provenance)
    return CorrectionResult(result_volume, field, diagnostics, interpolant)


def _determinant_range(interpolant: GridInterpolant) -> tuple[float, float, int]:
    """Smallest and largest ``det(I + grad d)`` over every voxel, and the count <= 0 (component 3 upsampled)."""
    upsampler = interpolant.with_values(interpolant.values[..., 3:4]).upsampler()
    size_i = upsampler.shape[0]
    step = max(1, SLAB_VOXELS // max(upsampler.shape[1] * upsampler.shape[2], 1))
    low, high, folded = np.inf, -np.inf, 0
    for start in range(0, size_i, step):
        determinant = upsampler.slab(start, min(start + step, size_i))
        low, high = min(low, float(determinant.min())), max(high, float(determinant.max()))
        folded += int(np.count_nonzero(determinant <= 0.0))
    return low, high, folded


def _three_dimensional_float32(volume: Volume) -> list[NDArray[np.float32]]:
    """Physical values as float32, one 3-D array per volume of T (views of the input when possible)."""
    values = volume.values(np.float32) if volume.is_scaled else volume.array
    values = values.astype(np.float32, copy=False)
    if values.ndim == 3:
        return [values]
    return [values[..., t] for t in range(values.shape[3])]


def _reversed_geometry(geometry: VolumeGeometry) -> VolumeGeometry:
    """Return the same grid indexed (k, j, i): how a Fortran-ordered array looks when transposed."""
    permutation = np.zeros((4, 4))
    permutation[0, 2] = permutation[1, 1] = permutation[2, 0] = permutation[3, 3] = 1.0
    shape = geometry.shape
    return VolumeGeometry(shape=(shape[2], shape[1], shape[0]), lps_from_ijk=geometry.lps_from_ijk @ permutation)


def _cubic_footprint(source: NDArray[np.float32], axes: tuple[int, ...]) -> NDArray[np.float32] | None:
    """Non-finite voxels grown by one along ``axes`` (float32 0/1), or None when every voxel is finite.

    A linear sample that reads this mask is non-zero exactly where a cubic sample reads a bad voxel (the
    cubic taps reach one index further on each side than the linear ones, diagonals included: the growth is
    a box, one axis after the other).
    """
    bad = ~np.isfinite(source)
    if not bad.any():
        return None
    grown = bad.copy()
    for axis in axes:
        step = grown.copy()
        for shift in (-1, 1):
            step |= np.roll(grown, shift, axis=axis) & _not_wrapped(bad.shape, axis, shift)
        grown = step
    return grown.astype(np.float32)


def _nearest_finite(source: NDArray[np.float32]) -> NDArray[np.float32]:
    """Return ``source`` with each non-finite voxel replaced by its nearest finite one (0 if there is none)."""
    from scipy import ndimage

    bad = ~np.isfinite(source)
    if bad.all():
        return np.zeros_like(source)
    nearest = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return np.asarray(source[tuple(nearest)], dtype=np.float32)


def _not_wrapped(shape: tuple[int, ...], axis: int, shift: int) -> NDArray[np.bool_]:
    """Return False on the slice np.roll wrapped around (the first one for +1, the last one for -1)."""
    keep = np.ones(shape[axis], dtype=bool)
    keep[0 if shift > 0 else -1] = False
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return keep.reshape(view)


def _prefilter(source: NDArray[np.float32], axes: tuple[int, ...]) -> NDArray[np.float32]:
    """Cubic B-spline coefficients along ``axes`` (mirror ends), float32."""
    from scipy import ndimage  # deferred: 0.3 s of start-up (python -X importtime)

    coefficients = np.array(source, dtype=np.float32, copy=True)
    for axis in axes:
        ndimage.spline_filter1d(coefficients, order=3, axis=axis, mode="mirror", output=coefficients)
    return coefficients


def _resample(
    stack: list[NDArray[np.float32]],
    outputs: list[NDArray[np.float32]],
    interpolant: GridInterpolant,
    geometry_in: VolumeGeometry,
    geometry_out: VolumeGeometry,
    mode: CorrectionMode,
    *,
    order: int,
    intensity_correction: bool,
    workers: int,
    through_axis: int,
) -> list[_SlabStats]:
    """Pull back every volume of ``stack`` into ``outputs``, slab by slab along axis 0.

    ``through_axis`` (0 or 2) is the axis of the 1-D path (the slice normal) in these arrays.
    """
    size_i, size_j, size_k = geometry_out.shape
    linear_in_from_out = geometry_in.ijk_from_lps @ geometry_out.lps_from_ijk
    index_from_lps = geometry_in.ijk_from_lps[:3, :3]
    coarse = interpolant.values
    delta = coarse[..., :3] @ index_from_lps.T  # displacement in input index units
    through_plane = mode is CorrectionMode.THROUGH_PLANE
    components = [delta[..., through_axis : through_axis + 1]] if through_plane else [delta]
    if intensity_correction:
        components.append(coarse[..., 3:4])
    upsampler = interpolant.with_values(np.concatenate(components, axis=-1)).upsampler()
    scale_sq = (geometry_in.spacing**2).astype(np.float32)
    jj = np.arange(size_j, dtype=np.float32)[None, :, None]
    kk = np.arange(size_k, dtype=np.float32)[None, None, :]
    # Input index of each output voxel without displacement: a[0] i + (a[1] j + a[2] k + a[3]).
    planes = [
        (linear_in_from_out[axis, 1] * jj + linear_in_from_out[axis, 2] * kk + linear_in_from_out[axis, 3]).astype(
            np.float32
        )
        for axis in range(3)
    ]
    slab = max(1, SLAB_VOXELS // (size_j * size_k))
    starts = list(range(0, size_i, slab))
    through_size = geometry_in.shape[through_axis]

    kernel = _KERNEL if order == 1 else None
    row_interval = np.ascontiguousarray(upsampler.row_interval, dtype=np.int64)
    row_weights = np.ascontiguousarray(upsampler.row_weights, dtype=np.float32)
    # The 1-D path is the same loop with one displacement component; the grids are equal there, so the base
    # map is the identity exactly and untouched axes sample at whole indices.
    base_map = tuple(float(a) for a in (np.eye(4)[:3] if through_plane else linear_in_from_out[:3]).ravel())
    spacing_sq = tuple(float(s) for s in scale_sq)

    def work_compiled(start: int) -> _SlabStats:
        assert kernel is not None
        stop = min(start + slab, size_i)
        stats = _SlabStats()
        for number, (source, target) in enumerate(zip(stack, outputs, strict=True)):
            measured = kernel.pull_back(
                source, upsampler.node_values, upsampler.node_moments, row_interval, row_weights, target, start, stop,
                through_axis if through_plane else -1, base_map, spacing_sq, intensity_correction,
                MAX_JACOBIAN_DETERMINANT,
            )
            if number == 0:
                stats = _SlabStats(*measured)
        return stats

    def work(start: int) -> _SlabStats:
        if kernel is not None:
            return work_compiled(start)
        stop = min(start + slab, size_i)
        fine = upsampler.slab(start, stop)
        stats = _SlabStats()
        ii = np.arange(start, stop, dtype=np.float32)[:, None, None]
        if through_plane:
            shift = fine[0]
            stats.max_norm_sq = float(np.max(shift * shift)) * float(scale_sq[through_axis])
            stats.sum_norm = float(np.sum(np.abs(shift), dtype=np.float64)) * float(np.sqrt(scale_sq[through_axis]))
            position = shift + (ii if through_axis == 0 else kk)
            inside = _within_half_voxel(position, through_size)
            for source, target in zip(stack, outputs, strict=True):
                # Along axis 0 the samples come from the whole array; along axis 2 from the slab itself.
                part = source if through_axis == 0 else source[start:stop]
                sampled = (
                    _cubic_1d(part, position, through_axis) if order == 3 else _linear_1d(part, position, through_axis)
                )
                sampled[~inside] = 0.0
                target[start:stop] = sampled
        else:
            norm_sq = scale_sq[0] * fine[0] ** 2 + scale_sq[1] * fine[1] ** 2 + scale_sq[2] * fine[2] ** 2
            stats.max_norm_sq = float(norm_sq.max())
            stats.sum_norm = float(np.sum(np.sqrt(norm_sq), dtype=np.float64))
            del norm_sq
            coordinates = fine[:3]
            for axis in range(3):
                coordinates[axis] += planes[axis]
                coordinates[axis] += np.float32(linear_in_from_out[axis, 0]) * ii
            inside = np.ones(coordinates.shape[1:], dtype=bool)
            for axis, size in enumerate(geometry_in.shape):
                inside &= _within_half_voxel(coordinates[axis], size)
            from scipy import ndimage  # deferred: 0.2 s of start-up, and the compiled kernel needs none

            for source, target in zip(stack, outputs, strict=True):
                destination = target[start:stop]
                # Edge values within half a voxel of the grid, 0 beyond (as the compiled kernel and ITK).
                ndimage.map_coordinates(source, coordinates, output=destination, order=order,
                                        mode="nearest" if order == 1 else "mirror", prefilter=False)
                destination[~inside] = 0.0
        if intensity_correction:
            determinant = fine[-1]
            stats.jacobian_min = float(determinant.min())
            stats.jacobian_max = float(determinant.max())
            stats.folded = int(np.count_nonzero(determinant <= 0.0))
            np.clip(determinant, 0.0, MAX_JACOBIAN_DETERMINANT, out=determinant)
            for target in outputs:
                target[start:stop] *= determinant
        return stats

    if workers == 1 or len(starts) == 1:
        return [work(start) for start in starts]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, starts))
