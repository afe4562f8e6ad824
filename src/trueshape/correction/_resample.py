"""Remove gradient-nonlinearity distortion from a Volume by pull-back resampling.

``corrected(r) = distorted(r + d_res(r))``, optionally times ``det(I + grad d_res)`` (DESIGN.md section 3),
with ``d_res`` the residual field of the series (:class:`~trueshape.gnl.ResidualField`). The field is
evaluated exactly on a coarse grid aligned with the output grid and upsampled by separable cubic splines
(j and k once, i row by row); the image is sampled by trilinear (or cubic B-spline) interpolation. When the
residual is through-plane only (DIS2D) and the slice normal is the grid's k axis, sampling is 1-D along k.

Trilinear sampling runs in the compiled kernel ``trueshape._warp`` (upsampling, sampling and intensity
factor in one pass per voxel) when it was built, else in numpy and scipy with the same results
(tests/correction/test_kernel.py). ``benchmarks/gnl_correct.py`` measures both against gradunwarp.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from trueshape.correction import _kernel
from trueshape.correction._fallback import FallbackSampler, cubic_footprint, nearest_finite, prefilter
from trueshape.correction._field import (
    DEFAULT_FIELD_SPACING_MM,
    correction_interpolant,
    outside_fraction,
    residual_displacement_field,
    trilinear_field_error,
)
from trueshape.correction._kernel import SlabStatistics
from trueshape.correction._result import CorrectionDiagnostics, CorrectionMode, CorrectionResult
from trueshape.dicom.vendor import DistortionState
from trueshape.errors import GeometryError
from trueshape.geometry import DisplacementField, Volume, VolumeGeometry
from trueshape.gnl import (
    DEFAULT_COARSE_SPACING_MM,
    GradientCoefficients,
    GridInterpolant,
    ResidualField,
    SlabUpsampler,
)

__all__ = [
    "MAX_JACOBIAN_DETERMINANT",
    "MAX_PLAUSIBLE_DISPLACEMENT_MM",
    "NORMAL_PARALLEL_TOLERANCE",
    "SLAB_VOXELS",
    "correct_volume",
]

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


def _available_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _resolve_mode(
    mode: CorrectionMode, residual: ResidualField, geometry_in: VolumeGeometry, geometry_out: VolumeGeometry
) -> CorrectionMode:
    """Return the path a request takes: NONE when nothing is left to correct, THROUGH_PLANE when it can (AUTO)."""
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

    Examples
    --------
    >>> from trueshape.gnl import SYN_AS, MagnetFrame
    >>> grid = VolumeGeometry.from_components(shape=(8, 8, 4), origin=(-35, -35, 90), spacing=(10, 10, 10))
    >>> residual = ResidualField(SYN_AS, MagnetFrame(), DistortionState.IN_PLANE_2D, grid.direction[:, 2])
    >>> result = correct_volume(Volume(np.ones((8, 8, 4), np.float32), grid), residual)
    >>> result.diagnostics.mode, round(result.diagnostics.max_displacement_mm, 2)
    (<CorrectionMode.THROUGH_PLANE: 'through-plane'>, 2.37)
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
    interpolant = _plausible_coarse_field(
        residual,
        geometry_out,
        coarse_spacing_mm=coarse_spacing_mm,
        field_spacing_mm=field_spacing_mm,
        intensity_correction=intensity_correction,
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
    field_error = trilinear_field_error(field, residual, geometry_out)

    work = _WorkingOrder.of(volume, geometry_out, interpolant)
    outputs, stats = _pull_back_volumes(
        work, used, order=order, intensity_correction=intensity_correction, workers=workers
    )
    merged = _merged(stats)
    if not intensity_correction and used is not CorrectionMode.NONE:
        # Folding is a geometry failure with or without intensity correction: measure it all the same.
        merged.jacobian_min, merged.jacobian_max, merged.folded = _determinant_range(
            correction_interpolant(
                residual,
                geometry_out,
                coarse_spacing_mm=coarse_spacing_mm,
                field_spacing_mm=field_spacing_mm,
                intensity_correction=True,
            )
        )
    elif not intensity_correction:
        merged.jacobian_min = merged.jacobian_max = 1.0
    field_spacing = [float(s) for s in field.geometry.spacing]
    diagnostics = CorrectionDiagnostics(
        mode=used,
        distortion_state=residual.distortion_state,
        max_displacement_mm=float(np.sqrt(merged.max_norm_sq)),
        mean_displacement_mm=merged.sum_norm / int(np.prod(geometry_out.shape)),
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
        outside_fraction=0.0 if used is CorrectionMode.NONE else outside_fraction(interpolant, geometry_in),
        read_from_headers=residual.read_from_headers,
        given=residual.given,
    )
    corrected_volumes = [target.T if work.reverse else target for target in outputs]
    corrected = corrected_volumes[0] if volume.array.ndim == 3 else np.stack(corrected_volumes, axis=-1)
    provenance = replace(
        volume.provenance,
        distortion_state=DistortionState.FULL_3D,
        distortion_source=f"trueshape GNL correction of a {residual.distortion_state.value} series",
    )
    return CorrectionResult(Volume(corrected, geometry_out, provenance=provenance), field, diagnostics, interpolant)


def _plausible_coarse_field(
    residual: ResidualField,
    geometry_out: VolumeGeometry,
    *,
    coarse_spacing_mm: float,
    field_spacing_mm: float,
    intensity_correction: bool,
) -> GridInterpolant:
    """Return the exact coarse field on the output grid, refused when no gradient coil could produce it."""
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
    return interpolant


@dataclass(frozen=True, eq=False)
class _WorkingOrder:
    """The input volumes, grids and field in the order the slabs are processed (the slowest memory axis first).

    Slabs run along the slowest memory axis so that sampling reads the input with short strides; a
    Fortran-ordered array (as NIfTI files load) is processed as its C-ordered transpose, without a copy.
    """

    stack: list[NDArray[np.float32]]
    geometry_in: VolumeGeometry
    geometry_out: VolumeGeometry
    interpolant: GridInterpolant
    reverse: bool

    @property
    def through_axis(self) -> int:
        """The input k axis (the slice normal of the 1-D path) in working order."""
        return 0 if self.reverse else 2

    @classmethod
    def of(cls, volume: Volume, geometry_out: VolumeGeometry, interpolant: GridInterpolant) -> _WorkingOrder:
        """Arrange ``volume`` (and the coarse field on ``geometry_out``) for slabs along its slowest axis."""
        sources = _three_dimensional_float32(volume)
        geometry_in = volume.geometry
        if all(source.flags.f_contiguous and not source.flags.c_contiguous for source in sources):
            reversed_interpolant = GridInterpolant(
                _reversed_geometry(geometry_out),
                interpolant.nodes[::-1],
                np.ascontiguousarray(interpolant.values.transpose(2, 1, 0, 3)),
            )
            return cls(
                [source.T for source in sources],
                _reversed_geometry(geometry_in),
                _reversed_geometry(geometry_out),
                reversed_interpolant,
                True,
            )
        return cls([np.ascontiguousarray(source) for source in sources], geometry_in, geometry_out, interpolant, False)


def _pull_back_volumes(
    work: _WorkingOrder, used: CorrectionMode, *, order: int, intensity_correction: bool, workers: int
) -> tuple[list[NDArray[np.float32]], list[SlabStatistics]]:
    """Return the corrected arrays (working order) of every volume, and the statistics of each slab."""
    # Every path below writes every output voxel, so the arrays need no zeroing.
    outputs = [np.empty(work.geometry_out.shape, dtype=np.float32) for _ in work.stack]
    if used is CorrectionMode.NONE:
        for target, source in zip(outputs, work.stack, strict=True):
            target[...] = source
        return outputs, [SlabStatistics(jacobian_min=1.0, jacobian_max=1.0)]
    stack = work.stack
    unusable: list[NDArray[np.float32] | None] = [None] * len(stack)
    if order == 3:
        axes = (work.through_axis,) if used is CorrectionMode.THROUGH_PLANE else (0, 1, 2)
        # The spline prefilter runs along whole lines: one NaN would spread to nearly every voxel. Filter
        # with the nearest finite value in its place, and mark afterwards what the cubic footprint of a
        # non-finite voxel reaches.
        unusable = [cubic_footprint(source, axes) for source in stack]
        stack = [
            prefilter(nearest_finite(source) if mark is not None else source, axes)
            for source, mark in zip(stack, unusable, strict=True)
        ]
    stats = _resample(
        stack, outputs, work, used, order=order, intensity_correction=intensity_correction, workers=workers
    )
    for target, mark in zip(outputs, unusable, strict=True):
        if mark is not None:
            reached = np.empty(work.geometry_out.shape, dtype=np.float32)
            _resample([mark], [reached], work, used, order=1, intensity_correction=False, workers=workers)
            target[reached > 0.0] = np.nan
    return outputs, stats


def _merged(stats: list[SlabStatistics]) -> SlabStatistics:
    """One correction's statistics from its slabs'."""
    return SlabStatistics(
        max_norm_sq=max(s.max_norm_sq for s in stats),
        sum_norm=sum(s.sum_norm for s in stats),
        jacobian_min=min(s.jacobian_min for s in stats),
        jacobian_max=max(s.jacobian_max for s in stats),
        folded=sum(s.folded for s in stats),
    )


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


def _resample(
    stack: list[NDArray[np.float32]],
    outputs: list[NDArray[np.float32]],
    work: _WorkingOrder,
    mode: CorrectionMode,
    *,
    order: int,
    intensity_correction: bool,
    workers: int,
) -> list[SlabStatistics]:
    """Pull back every volume of ``stack`` into ``outputs``, slab by slab along axis 0 (working order)."""
    geometry_in, geometry_out = work.geometry_in, work.geometry_out
    size_i, size_j, size_k = geometry_out.shape
    linear_in_from_out = geometry_in.ijk_from_lps @ geometry_out.lps_from_ijk
    through_axis = work.through_axis if mode is CorrectionMode.THROUGH_PLANE else None
    upsampler = _index_upsampler(work.interpolant, geometry_in, through_axis, intensity_correction)
    scale_sq = (geometry_in.spacing**2).astype(np.float32)
    slab = max(1, SLAB_VOXELS // (size_j * size_k))
    starts = list(range(0, size_i, slab))

    if order == 1 and _kernel.KERNEL is not None:
        work_slab = _compiled_slab_worker(
            stack,
            outputs,
            upsampler,
            linear_in_from_out,
            through_axis,
            scale_sq,
            intensity_correction=intensity_correction,
            slab=slab,
            size_i=size_i,
        )
    else:
        sampler = _fallback_sampler(
            stack,
            outputs,
            upsampler,
            linear_in_from_out,
            through_axis,
            scale_sq,
            geometry_in.shape,
            (size_j, size_k),
            order=order,
            intensity_correction=intensity_correction,
        )

        def work_slab(start: int) -> SlabStatistics:
            return sampler.slab(start, min(start + slab, size_i))

    if workers == 1 or len(starts) == 1:
        return [work_slab(start) for start in starts]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work_slab, starts))


def _fallback_sampler(
    stack: list[NDArray[np.float32]],
    outputs: list[NDArray[np.float32]],
    upsampler: SlabUpsampler,
    linear_in_from_out: NDArray[np.float64],
    through_axis: int | None,
    scale_sq: NDArray[np.float32],
    input_shape: tuple[int, int, int],
    slab_shape: tuple[int, int],
    *,
    order: int,
    intensity_correction: bool,
) -> FallbackSampler:
    """Return the numpy/scipy sampler, with the base map over a slab's (j, k) computed once."""
    size_j, size_k = slab_shape
    jj = np.arange(size_j, dtype=np.float32)[None, :, None]
    kk = np.arange(size_k, dtype=np.float32)[None, None, :]
    # Input index of each output voxel without displacement: a[0] i + (a[1] j + a[2] k + a[3]).
    planes = [
        (linear_in_from_out[axis, 1] * jj + linear_in_from_out[axis, 2] * kk + linear_in_from_out[axis, 3]).astype(
            np.float32
        )
        for axis in range(3)
    ]
    return FallbackSampler(
        stack,
        outputs,
        upsampler,
        through_axis,
        order,
        intensity_correction,
        MAX_JACOBIAN_DETERMINANT,
        linear_in_from_out,
        input_shape,
        scale_sq,
        planes,
        kk,
    )


def _compiled_slab_worker(
    stack: list[NDArray[np.float32]],
    outputs: list[NDArray[np.float32]],
    upsampler: SlabUpsampler,
    linear_in_from_out: NDArray[np.float64],
    through_axis: int | None,
    scale_sq: NDArray[np.float32],
    *,
    intensity_correction: bool,
    slab: int,
    size_i: int,
) -> Callable[[int], SlabStatistics]:
    """Return the compiled kernel's work for the slab of rows starting at a given row (statistics of volume 0)."""
    row_interval = np.ascontiguousarray(upsampler.row_interval, dtype=np.int64)
    row_weights = np.ascontiguousarray(upsampler.row_weights, dtype=np.float32)
    # The 1-D path is the same loop with one displacement component; the grids are equal there, so the
    # base map is the identity exactly and untouched axes sample at whole indices.
    base_map = tuple(float(a) for a in (np.eye(4)[:3] if through_axis is not None else linear_in_from_out[:3]).ravel())
    spacing_sq = (float(scale_sq[0]), float(scale_sq[1]), float(scale_sq[2]))

    def work_slab(start: int) -> SlabStatistics:
        stop = min(start + slab, size_i)
        stats = SlabStatistics()
        for number, (source, target) in enumerate(zip(stack, outputs, strict=True)):
            measured = _kernel.pull_back(
                source=source,
                node_values=upsampler.node_values,
                node_moments=upsampler.node_moments,
                row_interval=row_interval,
                row_weights=row_weights,
                out=target,
                start=start,
                stop=stop,
                through_axis=through_axis,
                base_map=base_map,
                spacing_squared=spacing_sq,
                intensity_correction=intensity_correction,
                max_jacobian_determinant=MAX_JACOBIAN_DETERMINANT,
            )
            if number == 0:
                stats = measured
        return stats

    return work_slab


def _index_upsampler(
    interpolant: GridInterpolant, geometry_in: VolumeGeometry, through_axis: int | None, intensity_correction: bool
) -> SlabUpsampler:
    """Return the field's upsampler in input index units: 3 components (or 1 along ``through_axis``), the factor."""
    index_from_lps = geometry_in.ijk_from_lps[:3, :3]
    coarse = interpolant.values
    delta = coarse[..., :3] @ index_from_lps.T  # displacement in input index units
    components = [delta[..., through_axis : through_axis + 1]] if through_axis is not None else [delta]
    if intensity_correction:
        components.append(coarse[..., 3:4])
    return interpolant.with_values(np.concatenate(components, axis=-1)).upsampler()
