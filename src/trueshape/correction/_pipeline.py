"""A correction from input to files: check what the input says, correct it, write every output together.

:func:`correct_stack` takes an inspected DICOM stack, :func:`correct_volume_file` a NIfTI or NRRD volume with
the facts of its JSON sidecar; both refuse what they cannot know (the distortion state, which of disagreeing
slices to trust) and hand over to :func:`write_correction`, which corrects the volume and writes the
corrected volume (or a derived DICOM series), the field as a NIfTI vector image and as an ITK transform, and
the JSON sidecar, in one :class:`~trueshape.io.OutputTransaction`.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape._version import __version__
from trueshape.correction._field import sampled_normal_range
from trueshape.correction._findings import (
    coil_mismatch,
    coil_unverified,
    model_extrapolated,
    model_fit_poor,
    outside_acquired_volume,
)
from trueshape.correction._object import object_displacement, object_points
from trueshape.correction._request import CorrectionRequest
from trueshape.correction._resample import correct_volume
from trueshape.correction._result import CorrectionDiagnostics, CorrectionMode, CorrectionResult, CorrectOutput
from trueshape.dicom import DistortionState, Frame, PhilipsScaling, scan
from trueshape.errors import DicomInputError, GeometryError, TrueshapeError, VolumeInputError
from trueshape.findings import Finding, FindingCode
from trueshape.geometry import (
    DisplacementField,
    IrregularPolicy,
    Stack,
    Volume,
    VolumeGeometry,
    group_series,
    load_stack,
    one_stack,
    parse_series_argument,
)
from trueshape.gnl import ResidualField
from trueshape.io import (
    NIFTI_XFORM_ALIGNED_ANAT,
    NIFTI_XFORM_SCANNER_ANAT,
    DerivedSeries,
    OutputFormat,
    OutputTransaction,
    SourceImage,
    is_volume_file,
    obsolete_outputs,
    read_volume_file,
    refuse_output_inside,
    sidecar_path,
    volume_stem,
    write_derived_series,
    write_field_nifti,
    write_itk_transform,
    write_json,
    write_volume,
)

__all__ = ["OUTSIDE_WARNING_FRACTION", "correct_argument", "correct_stack", "correct_volume_file", "write_correction"]

#: Share of corrected voxels left 0 (sampled beyond the acquired volume) above which ``correct`` warns.
OUTSIDE_WARNING_FRACTION = 0.05
#: Findings a GNL correction answers: the rest (slice layout, files left out, ...) still concern the result.
_CORRECTED_CODES = frozenset(
    {FindingCode.DISTORTION_2D_ONLY, FindingCode.DISTORTION_NOT_CORRECTED, FindingCode.FAR_FROM_ISOCENTRE}
)
#: Slices exactly one gap beyond what a slice sampled are not read by interpolation (float noise aside), mm.
_CITE_TOLERANCE_MM = 1e-3


def correct_argument(
    series: str | os.PathLike[str],
    request: CorrectionRequest,
    out: str | os.PathLike[str],
    *,
    irregular: IrregularPolicy,
) -> CorrectOutput:
    """Correct what a SERIES argument names: a volume file, or one DICOM stack (inspected with ``irregular``).

    Neither the series nor the ``--like`` series being read is ever written into.
    """
    if request.like is not None and not is_volume_file(request.like):
        refuse_output_inside(parse_series_argument(request.like)[0], out)
    if is_volume_file(series):
        return correct_volume_file(series, request, out)
    path, series_key, stack_index = parse_series_argument(series)
    refuse_output_inside(path, out)
    inspection = group_series(scan(path), policy=irregular)
    return correct_stack(one_stack(inspection, path, series_key, stack_index), request, out)


def correct_stack(
    stack: Stack,
    request: CorrectionRequest,
    out: str | os.PathLike[str],
    *,
    volume: Volume | None = None,
) -> CorrectOutput:
    """Correct one already-inspected stack as ``request`` says and write the outputs (see ``trueshape.correct``).

    ``volume`` is the stack's loaded Volume when the caller already has it (saves reading it again).

    Examples
    --------
    >>> request = CorrectionRequest.build(SYN_AS, coefficient_file="SYN-AS.grad")  # doctest: +SKIP
    >>> correct_stack(trueshape.inspect("session").stacks[1], request, "out")      # doctest: +SKIP

    Raises
    ------
    GeometryError
        When the stack's slices are off a regular grid and were not resampled: correcting on the wrong grid
        would put anatomy in the wrong place (use ``irregular="resample"``); or when its slices disagree on
        what the request does not settle (FRAMES_DISAGREE).
    DicomInputError
        When the headers do not say what the scanner corrected and the request does not either.
    """
    if stack.layout.acquisition is not None and not stack.layout.resampled:
        raise GeometryError(
            f"{stack.frames[0].path}: the slices of {stack.label} are off a regular grid by up to "
            f"{stack.layout.acquisition.max_offset_mm:.2f} mm; resample them first (--irregular resample)"
        )
    where = f"{Path(stack.frames[0].path).parent} ({stack.label})"
    for finding in stack.findings:
        if finding.code is FindingCode.FRAMES_DISAGREE:
            if not request.settles(str(finding.details.get("disagree_on"))):
                raise GeometryError(f"{where}: {finding.message}", findings=(finding,))
    if request.distortion_state is None and stack.distortion_state is DistortionState.UNKNOWN:
        said = f" ({stack.distortion_source})" if stack.distortion_source else ""
        raise DicomInputError(
            f"{where}: the headers do not say what the scanner corrected{said}: give --state ND, DIS2D or DIS3D"
        )
    targets = request.targets(out, stack.label)
    volume = volume if volume is not None else load_stack(stack, philips_scaling=request.philips_scaling or "display")
    first = stack.frames[0]
    template = _DicomTemplate(
        stack.layout.slices,
        first.vendor.table_position_mm,
        integer_source=volume.array.dtype.kind in "iu" and not volume.is_scaled,
    )
    record = {**stack.to_json(), "values": volume.provenance.values_json()}
    # The series being read (its first file; the folder holding it) is never an earlier run's output.
    inputs = [Path(str(name).split("#")[0]) for names in record["slice_sources"][:1] for name in names[:1]]
    output = write_correction(request, volume, record, targets, inputs=inputs, template=template, where=where)
    return replace(output, findings=(*output.findings, *(f for f in stack.findings if f.code not in _CORRECTED_CODES)))


def correct_volume_file(
    path: str | os.PathLike[str],
    request: CorrectionRequest,
    out: str | os.PathLike[str],
) -> CorrectOutput:
    """Correct a NIfTI or NRRD volume, with the facts of its JSON sidecar (see ``trueshape.correct``).

    What correction needs and the file cannot say must be given: the distortion state when no sidecar
    records it. Without any record the isocentre is taken at the patient-coordinate origin and HFS is
    assumed; the diagnostics list both assumptions.

    Raises
    ------
    VolumeInputError
        The file or its sidecar cannot be read, or a needed fact is unknown (the message says which option
        supplies it).
    """
    if request.output_format is OutputFormat.DICOM:
        raise TrueshapeError(
            f"{path}: a derived DICOM series needs a DICOM source (its patient, study and "
            "frame of reference): correct the DICOM series, or write NIfTI or NRRD"
        )
    if request.philips_scaling is PhilipsScaling.PRECISE:
        raise TrueshapeError(
            f"{path}: --philips-scaling precise chooses how a DICOM series' stored values are scaled; a volume "
            "file holds values already scaled: convert the DICOM series with --philips-scaling precise"
        )
    targets = request.targets(out, volume_stem(path))
    volume = read_volume_file(path)
    _check_volume_facts(path, volume, request)
    provenance = volume.provenance
    record = {
        "file": str(path),
        "sidecar": provenance.sidecar,
        "label": volume_stem(path),
        "shape": list(volume.geometry.shape),
        "volume_count": volume.array.shape[3] if volume.array.ndim == 4 else 1,
        **volume.geometry.to_json(),
        "distortion_state": provenance.distortion_state,
        "distortion_source": provenance.distortion_source,
        "patient_position": provenance.patient_position,
        "gradient_coil": provenance.gradient_coil,
        "isocentre_lps": list(provenance.isocentre_lps),
        "isocentre_source": provenance.isocentre_source,
        "values": {"from": "the values stored in the volume file, with its own scaling"},
    }
    # The volume and the sidecar whose facts the correction read are never an earlier run's outputs.
    inputs = [Path(str(path)), sidecar_path(str(path))]
    return write_correction(request, volume, record, targets, inputs=inputs, where=str(path))


def _check_volume_facts(path: str | os.PathLike[str], volume: Volume, request: CorrectionRequest) -> None:
    """Refuse a volume file whose facts a correction needs and neither its sidecar nor the request gives."""
    provenance = volume.provenance
    code = provenance.nifti_xform_code
    if code is not None and code not in (NIFTI_XFORM_SCANNER_ANAT, NIFTI_XFORM_ALIGNED_ANAT):
        raise VolumeInputError(
            f"{path}: its affine is in a template space (NIfTI xform code {code}); "
            "gradient distortion lives in scanner coordinates (code 1, or 2 for aligned)"
        )
    json_path = provenance.sidecar
    if request.distortion_state is None and provenance.distortion_state is DistortionState.UNKNOWN:
        known = f" ({provenance.distortion_source})" if provenance.distortion_source else ""
        reason = (
            f"its sidecar {Path(json_path).name}{known} does not say"
            if json_path
            else f"no sidecar ({sidecar_path(path).name}) says"
        )
        raise VolumeInputError(f"{path}: {reason} what the scanner corrected: give --state ND, DIS2D or DIS3D")
    for subject, message in provenance.frames_disagree.items():
        if not request.settles(subject):  # as for the DICOM series
            raise VolumeInputError(f"{path}: its sidecar says: {message}")


def write_correction(
    request: CorrectionRequest,
    volume: Volume,
    record: dict[str, Any],
    targets: list[Path],
    *,
    inputs: list[Path],
    template: _DicomTemplate | None = None,
    where: str,
) -> CorrectOutput:
    """Correct ``volume`` and write the volume, the field (NIfTI and ITK .h5) and the JSON sidecar.

    ``record`` describes the source in the sidecar; ``inputs`` are the files this run reads (never removed as
    an earlier run's outputs; the ``--like`` series is added); ``where`` names the input in messages.
    Everything is written into a hidden folder beside the targets and moved into place only when all of it
    succeeded: a failure leaves the output folder as it was.

    Examples
    --------
    >>> targets = request.targets("out", "cor")                                         # doctest: +SKIP
    >>> write_correction(request, volume, {"label": "cor"}, targets, inputs=[], where="cor")  # doctest: +SKIP
    """
    request.check_output_grid(volume, where)
    request.check_room_for_outputs(volume, targets[0].parent)
    findings = list(_coil_findings(request, volume, where))
    if request.like is not None:
        inputs = [*inputs, parse_series_argument(request.like)[0]]
    # What the earlier run wrote for this label and this run does not; never an input (the file or series
    # being read, its sidecar, the --like grid).
    label = targets[3].name[: -len("_corrected.json")]
    obsolete = obsolete_outputs(targets[3], request.output_names(label), targets=targets, inputs=inputs)
    with OutputTransaction(targets, force=request.force, obsolete=obsolete) as transaction:
        try:
            result = _write_outputs(request, volume, record, targets, transaction, template, findings, where)
        except GeometryError as error:  # e.g. through-plane asked of a grid it cannot serve: name the input
            raise GeometryError(f"{where}: {error}", findings=error.findings) from None
    return CorrectOutput(result.volume, targets, result.diagnostics, tuple(findings))


def _write_outputs(
    request: CorrectionRequest,
    volume: Volume,
    record: dict[str, Any],
    targets: list[Path],
    transaction: OutputTransaction,
    template: _DicomTemplate | None,
    findings: list[Finding],
    where: str,
) -> CorrectionResult:
    """Correct ``volume`` while its field is written, then write the corrected volume and the sidecar."""
    residual = ResidualField.from_volume(
        request.coil,
        volume,
        distortion_state=request.distortion_state,
        patient_position=request.patient_position,
        isocentre_lps=request.isocentre_lps,
    )
    findings.extend(_model_findings(request, residual, volume, where))
    coil = request.coil.coil_id  # never the file's name: a file that names no coil has no coil id
    derived: DerivedSeries | None = None
    # The field is written while the image is resampled; the writers spend their time in zlib, HDF5 and
    # write(), without the GIL.
    with ThreadPoolExecutor(max_workers=2) as pool:
        field_writes: list[Future[Path]] = []

        def write_field(field: DisplacementField) -> None:
            field_writes.append(pool.submit(write_field_nifti, field, targets[1], transaction=transaction))
            field_writes.append(pool.submit(write_itk_transform, field, targets[2], transaction=transaction))

        result = correct_volume(
            volume,
            residual,
            mode=request.mode,
            intensity_correction=request.intensity_correction,
            output_geometry=request.output_geometry,
            on_field=write_field,
        )
        findings.extend(_outside_findings(result.diagnostics.outside_fraction, volume, where))
        result = _with_object_displacement(result, volume, residual)
        if request.output_format is OutputFormat.DICOM:
            assert template is not None
            cited = template.cited_sources(sampled_normal_range(result, volume.geometry), volume.geometry)
            derived = write_derived_series(
                result.volume,
                targets[0],
                transaction=transaction,
                template=template.paths,
                source_images=cited,
                derivation=_derivation(result.diagnostics, coil),
                table_position_mm=template.table_position_mm,
                integer_source=template.integer_source,
            )
        else:
            write_volume(result.volume, targets[0], transaction=transaction)
        for future in field_writes:
            future.result()
    write_json(_sidecar(request, record, result, coil, findings, targets, derived), targets[3], transaction=transaction)
    return result


def _with_object_displacement(result: CorrectionResult, volume: Volume, residual: ResidualField) -> CorrectionResult:
    """Add the residual displacement inside the imaged object (the anatomy's, beside the field of view's)."""
    inside = object_displacement(volume, residual)
    done = replace(
        result.diagnostics, object_p95_displacement_mm=inside.p95_mm, object_max_displacement_mm=inside.max_mm
    )
    return replace(result, diagnostics=done)


def _sidecar(
    request: CorrectionRequest,
    record: dict[str, Any],
    result: CorrectionResult,
    coil: str,
    findings: list[Finding],
    targets: list[Path],
    derived: DerivedSeries | None,
) -> dict[str, Any]:
    """Return the correction's JSON sidecar: source, coil, diagnostics, output grid, findings, outputs."""
    file = request.coefficient_file
    sidecar = {
        "source": record,
        "coefficients": str(file) if file else None,
        "coil": coil or None,
        "correction": result.diagnostics.to_json(),
        "transform_convention": "ITK resampling: output (true) point p -> input (distorted) point p + d(p), LPS mm",
        "output_grid": None if request.like is None else {"like": request.like, **result.volume.geometry.to_json()},
        "findings": [finding.to_json() for finding in findings],
        "outputs": [path.name for path in targets],
        "software": {"name": "trueshape", "version": __version__},
    }
    if derived is not None:
        sidecar["dicom"] = {
            "folder": derived.folder.name,
            "files": len(derived.files),
            "series_instance_uid": derived.series_instance_uid,
            "series_number": derived.series_number,
            "rescale_slope": derived.rescale_slope,
            "rescale_intercept": derived.rescale_intercept,
            "quantization_step": derived.quantization_step,
            "nonfinite_voxels": derived.nonfinite_voxels,
        }
    return sidecar


def _derivation(done: CorrectionDiagnostics, coil: str) -> str:
    """Return the derived series' DerivationDescription: what was done, by which software and coil."""
    if done.mode is CorrectionMode.NONE:
        return f"trueshape {__version__}: copy of a {done.distortion_state} series, nothing left to correct"
    return (
        f"trueshape {__version__} gradient-nonlinearity correction of a {done.distortion_state} series "
        f"({done.mode.value} mode, {f'coil {coil}' if coil else 'coefficients naming no coil'}, "
        f"intensity {'corrected' if done.intensity_corrected else 'not corrected'})"
    )


#: Share of the field of view outside a learned model's region above which MODEL_EXTRAPOLATED is reported.
EXTRAPOLATED_FRACTION = 0.01


def _model_findings(
    request: CorrectionRequest, residual: ResidualField, volume: Volume, where: str
) -> tuple[Finding, ...]:
    """Return what a learned model says of itself: a poor fit, and whether this series reaches beyond its region."""
    findings: list[Finding] = []
    geometry = volume.geometry
    quality, provenance = dict(request.coil.fit_quality), dict(request.coil.provenance)
    warnings = [str(w) for w in quality.get("warnings", []) or []] if isinstance(quality.get("warnings"), list) else []
    if warnings:
        findings.append(model_fit_poor(where, warnings))
    coverage = provenance.get("coverage")
    if not isinstance(coverage, dict) or not coverage.get("boxes_mm"):
        return tuple(findings)
    try:
        boxes = np.asarray(coverage["boxes_mm"], dtype=np.float64).reshape(-1, 2, 3)
        margin = float(coverage.get("margin_mm", 0.0))
    except (TypeError, ValueError):
        return tuple(findings)  # an unreadable coverage says nothing: the model's coefficients still apply
    # The anatomy, not the air around it.
    magnet = residual.magnet_frame.magnet_from_lps(geometry.index_to_lps(object_points(volume)))
    # Distance of each point beyond each box (0 inside), the nearest box counting.
    beyond = np.min(
        np.linalg.norm(
            np.maximum(np.maximum(boxes[None, :, 0] - magnet[:, None], magnet[:, None] - boxes[None, :, 1]), 0.0),
            axis=2,
        ),
        axis=1,
    )
    outside = beyond > margin
    if float(outside.mean()) > EXTRAPOLATED_FRACTION:
        findings.append(model_extrapolated(where, float(outside.mean()), float(beyond.max()), margin))
    return tuple(findings)


def _coil_findings(request: CorrectionRequest, volume: Volume, where: str) -> tuple[Finding, ...]:
    """Warn when the series names another gradient coil than the coefficients do; say so when they name none.

    Names are compared by their letters and digits only ("AS82" = "as-82"). Coefficients that name no coil (a
    vendor ``coeff.grad`` whose header does not) cannot be compared: the series' coil is said instead.
    """

    def key(name: str) -> str:
        return re.sub(r"[^0-9a-z]", "", name.casefold())

    series_coil, model_coil = volume.provenance.gradient_coil or "", request.coil.coil_id or ""
    if not key(series_coil) or key(series_coil) == key(model_coil):
        return ()
    if not key(model_coil):
        model = request.coefficient_file is not None and Path(request.coefficient_file).suffix.lower() == ".json"
        return (coil_unverified(where, series_coil, "scanner model" if model else "coefficient file"),)
    return (coil_mismatch(where, series_coil, model_coil),)


def _outside_findings(fraction: float, volume: Volume, where: str) -> tuple[Finding, ...]:
    """Warn when the correction samples much of the image beyond the acquired volume (left 0 there)."""
    single = volume.geometry.shape[2] == 1
    if not (fraction >= OUTSIDE_WARNING_FRACTION or (single and fraction > 0.0)):
        return ()
    why = (
        f"a single slice is {float(volume.geometry.spacing[2]):g} mm thick and the residual moves part of it "
        "further through its plane"
        if single
        else "the residual moves them beyond the acquired volume"
    )
    return (outside_acquired_volume(where, fraction, why, OUTSIDE_WARNING_FRACTION),)


@dataclass(frozen=True)
class _DicomTemplate:
    """The source series' frames (``slices[k][t]``) and facts a derived DICOM series carries over."""

    slices: tuple[tuple[Frame, ...], ...]
    table_position_mm: tuple[float, float, float] | None
    integer_source: bool

    @property
    def paths(self) -> tuple[str, ...]:
        """The file of each volume's first slice: where per-volume attributes are read."""
        return tuple(frame.path for frame in self.slices[0])

    def cited_sources(self, ranges: NDArray[np.float64], geometry: VolumeGeometry) -> list[list[list[SourceImage]]]:
        """``[t][k]``: the source frames output slice k of volume t was computed from.

        ``ranges`` (K, 2) is what each output slice sampled along ``geometry``'s slice normal (see
        :func:`~trueshape.correction.sampled_normal_range`); interpolation also reaches the slices within one
        slice gap of it (the larger of the volume's spacing and the source's widest gap, for resampled
        stacks), which are cited too.
        """
        normal = geometry.direction[:, 2]
        along = np.array([float(np.dot(normal, frames[0].image_position or (0.0, 0.0, 0.0))) for frames in self.slices])
        gaps = np.diff(along)
        reach = max(float(geometry.spacing[2]), float(gaps.max()) if gaps.size else 0.0) - _CITE_TOLERANCE_MM
        cited: list[list[list[SourceImage]]] = [[] for _ in self.slices[0]]
        for low, high in ranges:
            within = np.nonzero((along > low - reach) & (along < high + reach))[0]
            for t, per_volume in enumerate(cited):
                frames = [self.slices[k][t] for k in within]
                per_volume.append(
                    [
                        SourceImage(
                            f.sop_class_uid,
                            f.sop_instance_uid,
                            f.pixels.frame_index + 1 if "#frame" in f.label and f.pixels is not None else None,
                        )
                        for f in frames
                        if f.sop_class_uid and f.sop_instance_uid
                    ]
                )
        return cited
