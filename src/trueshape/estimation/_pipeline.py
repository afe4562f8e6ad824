"""An estimate from input to files: fit, judge the fit, write the model, the corrected series and the report.

``estimate`` writes into its output folder, all checked writable before any work:

* ``model.json`` - the scanner model (the format ``correct --model`` reads): the determined coefficients (the
  undetermined ones 0, listed), where in the magnet the data came from, and what pooling needs (the fitted
  values, the data's normal matrix and the prior);
* for each series that carries a residual, what ``correct`` writes with that model (corrected volume, field,
  ITK transform, sidecar);
* ``estimate.json`` last - the series and assumptions, the motion found, how well the series agree before and
  after, the estimated displacement by distance from the isocentre, its uncertainty, warnings, run time;
  its presence marks a finished estimate.

A fit that is poor (not converged, uncertain, at the limits, series that still disagree) still writes every
output, and says so in a warning, in ``estimate.json`` and in the model (which every later correction with it
repeats).

Examples
--------
>>> output = estimate_pair(reference, moving, "out", options=EstimateOptions())   # doctest: +SKIP
>>> output.warnings, [path.name for path in output.written]                     # doctest: +SKIP
((), ['model.json', 'cor_corrected.nii.gz', ..., 'estimate.json'])
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape._version import __version__
from trueshape.correction import CorrectionRequest, CorrectOutput, correct_stack, correct_volume_file
from trueshape.dicom import DistortionState
from trueshape.errors import EstimationError, TrueshapeError
from trueshape.estimation._field_model import FieldModel, SeriesView
from trueshape.estimation._freeform import FreeFormBasis, FreeFormField
from trueshape.estimation._identify import Identifiability
from trueshape.estimation._inputs import PreparedSeries, check_pair, prepare_argument
from trueshape.estimation._markers import MarkerFit, detect_markers, fit_markers, read_marker_csv
from trueshape.estimation._pairwise import FitOptions, PairFit, fit_pair
from trueshape.estimation._pool import COVERAGE_MARGIN_MM
from trueshape.gnl import FieldSource, GradientCoefficients
from trueshape.io import OutputFormat, check_writable, write_json, write_scanner_model

__all__ = [
    "DISTANCE_BIN_MM",
    "ESTIMATE_FILE",
    "MODEL_FILE",
    "POOR_AGREEMENT",
    "POOR_UNCERTAINTY_MM",
    "EstimateOptions",
    "EstimateOutput",
    "estimate_arguments",
    "estimate_pair",
    "estimate_phantom",
]

#: The scanner model an estimate writes.
MODEL_FILE = "model.json"
#: The estimate's report, written last: its presence marks a finished estimate.
ESTIMATE_FILE = "estimate.json"
#: Bins of distance from the isocentre in which the estimated displacement is summarised, mm.
DISTANCE_BIN_MM = 25.0
#: A fit whose field is this uncertain (RMS standard deviation over the object, mm) is reported as poor.
POOR_UNCERTAINTY_MM = 0.1
#: A fit after which the series share less of their intensity variance than this is reported as poor.
POOR_AGREEMENT = 0.5
#: A field beyond this many times its prior standard deviation somewhere in the object is "at the limits".
LIMIT_PRIOR_SDS = 3.0


@dataclass(frozen=True)
class EstimateOptions:
    """What the user asked of an estimate (the fit's own choices are in ``fit``).

    Parameters
    ----------
    fit : FitOptions
        Order, similarity, motion, prior, resolution levels.
    output_format : OutputFormat
        Format of the corrected series.
    force : bool
        Replace earlier outputs.
    strict : bool
        Callers (the CLI) exit with 3 after a poor fit.
    coil_id : str
        The model's coil name; default the series' gradient coil, else ``"learned"``.
    """

    fit: FitOptions = field(default_factory=FitOptions)
    output_format: OutputFormat = OutputFormat.NIFTI
    force: bool = False
    strict: bool = False
    coil_id: str = ""


@dataclass(frozen=True, eq=False)
class EstimateOutput:
    """What an estimate found and wrote.

    Parameters
    ----------
    coefficients : FieldSource
        The model as written (undetermined coefficients 0), or the free-form field.
    identifiability : Identifiability
        Per-coefficient estimates and the spectrum of what the data determine.
    report : dict
        The content of ``estimate.json``.
    corrections : tuple of CorrectOutput
        The corrected series.
    written : list of Path
        Every file written.
    warnings : tuple of str
        Why the fit is poor, if it is.
    """

    coefficients: FieldSource
    identifiability: Identifiability
    report: dict[str, Any]
    corrections: tuple[CorrectOutput, ...]
    written: list[Path]
    warnings: tuple[str, ...] = ()

    @property
    def poor(self) -> bool:
        """Whether the fit was judged poor (``--strict`` turns that into exit code 3)."""
        return bool(self.warnings)


def _correction_request(coil: FieldSource, model_file: Path | None, options: EstimateOptions) -> CorrectionRequest:
    return CorrectionRequest.build(coil, coefficient_file=model_file, fmt=options.output_format, force=options.force)


def _check_outputs(out: Path, series: list[PreparedSeries], options: EstimateOptions) -> None:
    """Refuse before any work what cannot be written (an earlier estimate's outputs without ``force``)."""
    for name in (MODEL_FILE, ESTIMATE_FILE):
        check_writable(out / name, force=options.force)
    request = _correction_request(GradientCoefficients.from_terms(250.0, {("x", "A", 1, 1): 0.0}), None, options)
    for prepared in series:
        if prepared.sees_field:
            request.targets(out, prepared.label)
            if prepared.path is not None and options.output_format is OutputFormat.DICOM:
                raise EstimationError(f"{prepared.path}: a derived DICOM series needs a DICOM source: estimate from "
                                      "the DICOM series, or write NIfTI or NRRD")


def estimate_pair(reference: PreparedSeries, moving: PreparedSeries, out: str | os.PathLike[str], *,
                  options: EstimateOptions = EstimateOptions(),
                  progress: Callable[[str, float], None] | None = None) -> EstimateOutput:
    """Learn the field from a reference and a moving series of one session, and write every output.

    Raises
    ------
    EstimationError
        A pair that cannot determine a field (see :func:`~trueshape.estimation.check_pair`), series that do not
        overlap in the object; or outputs that exist (without ``force``).
    """
    started = time.perf_counter()
    folder = Path(out)
    check_pair(reference, moving, same_frame=True)  # the frame of reference was checked by the caller
    _check_outputs(folder, [reference, moving], options)
    fit = fit_pair(reference.image, moving.image, options=options.fit, progress=progress)
    identifiability = Identifiability.from_normal(fit.model.labels(), fit.theta, fit.normal_matrix,
                                                  prior_precision=fit.prior_precision)
    seen = [s for s in (moving, reference) if s.sees_field]
    samples = {s.label: fit.sample_points_lps for s in seen}
    warnings = _judge(fit.model, identifiability, seen, samples, options.fit, converged=fit.converged,
                      agreement=fit.agreement_after)
    report = {
        "kind": "pair",
        "reference": reference.to_json(),
        "moving": moving.to_json(),
        "fit": _fit_json(fit, options.fit),
        "motion_reference_to_moving": fit.motion.to_json(),
    }
    return _finish(folder, fit.model, identifiability, seen, samples, report, warnings, options, started)


def estimate_phantom(markers_mm: NDArray[np.float64], moving: PreparedSeries, out: str | os.PathLike[str], *,
                     options: EstimateOptions = EstimateOptions(), marker_radius_mm: float = 3.0,
                     markers_in_lps: bool = False) -> EstimateOutput:
    """Learn the field from a marker phantom scan: find, match and fit the markers, and write every output.

    Raises
    ------
    EstimationError
        A series with no residual (DIS3D), too few markers found or matched, or existing outputs.
    """
    started = time.perf_counter()
    folder = Path(out)
    if not moving.sees_field:
        raise EstimationError(f"{moving.label} was corrected in 3-D by the scanner (DIS3D): a phantom scan shows the "
                              "field only without that correction (ND, or DIS2D for its through-plane part)")
    _check_outputs(folder, [moving], options)
    found = detect_markers(moving.image.values, moving.image.geometry, marker_radius_mm=marker_radius_mm)
    fit = fit_markers(markers_mm, found, moving.image.view, order=options.fit.order,
                      lowest_order=options.fit.lowest_order, r0_mm=options.fit.r0_mm, prior_sd=options.fit.prior_sd,
                      asymmetric_prior_sd=options.fit.asymmetric_prior_sd, known_in_lps=markers_in_lps)
    identifiability = Identifiability.from_normal(fit.model.labels(), fit.theta, fit.normal_matrix,
                                                  prior_precision=fit.prior_precision)
    samples = {moving.label: fit.true_lps}
    warnings = _judge(fit.model, identifiability, [moving], samples, options.fit, converged=True, agreement=None)
    warnings += _marker_warnings(fit)
    report = {"kind": "phantom", "moving": moving.to_json(), "markers": _markers_json(fit, marker_radius_mm)}
    return _finish(folder, fit.model, identifiability, [moving], samples, report, warnings, options, started)


def estimate_arguments(moving: str | os.PathLike[str], out: str | os.PathLike[str], *,
                       reference: str | os.PathLike[str] | None = None, phantom: str | os.PathLike[str] | None = None,
                       options: EstimateOptions | None = None, same_frame: bool = False,
                       reference_state: DistortionState | None = None, moving_state: DistortionState | None = None,
                       marker_radius_mm: float = 3.0, markers_in_lps: bool = False,
                       progress: Callable[[str, float], None] | None = None) -> EstimateOutput:
    """Run ``trueshape estimate`` on what the user typed: SERIES arguments, or a moving series and a marker CSV.

    Raises
    ------
    TrueshapeError
        Neither or both of ``reference`` and ``phantom``; and what :func:`estimate_pair`,
        :func:`estimate_phantom` and the series preparation refuse.
    """
    from trueshape.geometry import parse_series_argument
    from trueshape.io import check_output_folder, refuse_output_inside

    check_output_folder(out)
    for series in (moving, reference):
        if series is not None:
            refuse_output_inside(parse_series_argument(series)[0], out)
    if (reference is None) == (phantom is None):
        raise TrueshapeError("give exactly one of --reference SERIES (a series of the same session) or --phantom "
                             "MARKERS.csv (a phantom's marker positions)")
    chosen = options if options is not None else EstimateOptions()
    moving_series = prepare_argument(moving, distortion_state=moving_state, option="--moving-state")
    if phantom is not None:
        return estimate_phantom(read_marker_csv(phantom), moving_series, out, options=chosen,
                                marker_radius_mm=marker_radius_mm, markers_in_lps=markers_in_lps)
    assert reference is not None
    reference_series = prepare_argument(reference, distortion_state=reference_state, option="--reference-state")
    check_pair(reference_series, moving_series, same_frame=same_frame)
    return estimate_pair(reference_series, moving_series, out, options=chosen, progress=progress)


def _finish(folder: Path, model: FieldModel, identifiability: Identifiability, seen: list[PreparedSeries],
            samples: dict[str, NDArray[np.float64]], report: dict[str, Any], warnings: list[str],
            options: EstimateOptions, started: float) -> EstimateOutput:
    """Write the model, each series corrected with it, and the report (last).

    A free-form field has no model file: it describes these images' position only, and the report says so.
    """
    field: FieldSource
    if isinstance(model.basis, FreeFormBasis):
        field = FreeFormField(model.basis, model.table(identifiability.written_values()),
                              fit_quality={"transferable": False, "warnings": warnings})
        written: list[Path] = []
        request = _correction_request(field, None, options)
        report["transferable"] = False
        report["why_not_transferable"] = ("a free-form field has no physics to carry it to another table or patient "
                                          "position; it corrects these series only")
    else:
        field = _model_coefficients(model, identifiability, seen, samples, report, warnings, options)
        model_file = write_scanner_model(field, folder / MODEL_FILE, force=options.force)
        written = [model_file]
        request = _correction_request(field, model_file, options)
        report["transferable"] = True
    corrections = []
    for prepared in seen:
        if prepared.stack is not None:
            corrections.append(correct_stack(prepared.stack, request, folder, volume=prepared.volume))
        elif prepared.path is not None:
            corrections.append(correct_volume_file(prepared.path, request, folder))
    written += [path for c in corrections for path in c.written]
    report.update({
        "field": {s.label: _by_distance(model, identifiability, s.image.view, samples[s.label]) for s in seen},
        "identifiability": identifiability.to_json(),
        "model_file": MODEL_FILE if report["transferable"] else None,
        "warnings": warnings,
        "seconds": time.perf_counter() - started,
        "samples": [{"label": s.label, "view": _view_json(s), "points_lps": np.round(samples[s.label], 2).tolist()}
                    for s in seen],
        "outputs": [path.name for path in written] + [ESTIMATE_FILE],
        "software": {"name": "trueshape", "version": __version__},
    })
    written.append(write_json(report, folder / ESTIMATE_FILE, force=options.force))
    return EstimateOutput(field, identifiability, report, tuple(corrections), written, tuple(warnings))


def _view_json(series: PreparedSeries) -> dict[str, Any]:
    """How a series sees the field, as ``model fit`` reads it back to cross-validate."""
    frame = series.frame.magnet_frame
    return {"distortion_state": series.frame.distortion_state.value,
            "patient_position": frame.patient_position.value, "isocentre_lps": frame.isocentre_lps.tolist(),
            "slice_normal_lps": None if series.frame.slice_normal_lps is None else
            series.frame.slice_normal_lps.tolist()}


def _fit_json(fit: PairFit, options: FitOptions) -> dict[str, Any]:
    return {
        "order": options.order, "lowest_order": options.lowest_order, "r0_mm": options.r0_mm,
        "similarity": options.similarity.value, "motion_fitted": options.motion,
        "prior_sd": options.prior_sd, "asymmetric_prior_sd": options.asymmetric_prior_sd,
        "iterations": list(fit.iterations), "converged": fit.converged, "points": fit.points,
        "agreement_before": fit.agreement_before, "agreement_after": fit.agreement_after,
        "residual_sd": fit.residual_sd, "seconds": fit.seconds,
    }


def _markers_json(fit: MarkerFit, radius_mm: float) -> dict[str, Any]:
    return {
        "marker_radius_mm": radius_mm, "found": fit.found, "matched": fit.matched,
        "residual_mean_mm": float(fit.residual_mm.mean()), "residual_max_mm": float(fit.residual_mm.max()),
        "distortion_mean_mm": float(fit.distortion_mm.mean()), "distortion_max_mm": float(fit.distortion_mm.max()),
        "pose": fit.pose.to_json(),
    }


def _by_distance(model: FieldModel, identifiability: Identifiability, view: SeriesView,
                 points: NDArray[np.float64]) -> dict[str, Any]:
    """Summarise the estimated residual over the object, in bins of distance from the isocentre (mm)."""
    lengths = np.linalg.norm(model.residual(view, identifiability.written_values(), points), axis=1)
    spread = np.sqrt(model.residual_variance(view, identifiability.covariance, points))
    distance = np.linalg.norm(view.magnet_frame.magnet_from_lps(points), axis=1)
    bins = []
    for low in np.arange(0.0, float(distance.max()) + DISTANCE_BIN_MM, DISTANCE_BIN_MM) if points.size else []:
        inside = (distance >= low) & (distance < low + DISTANCE_BIN_MM)
        if inside.any():
            bins.append({"from_mm": float(low), "to_mm": float(low + DISTANCE_BIN_MM), "points": int(inside.sum()),
                         "rms_mm": float(np.sqrt(np.mean(lengths[inside] ** 2))),
                         "max_mm": float(lengths[inside].max()),
                         "uncertainty_rms_mm": float(np.sqrt(np.mean(spread[inside] ** 2)))})
    return {
        "rms_mm": float(np.sqrt(np.mean(lengths**2))) if lengths.size else 0.0,
        "max_mm": float(lengths.max()) if lengths.size else 0.0,
        "uncertainty_rms_mm": float(np.sqrt(np.mean(spread**2))) if spread.size else 0.0,
        "by_distance_from_isocentre": bins,
    }


def _judge(model: FieldModel, identifiability: Identifiability, seen: list[PreparedSeries],
           samples: dict[str, NDArray[np.float64]], options: FitOptions, *, converged: bool,
           agreement: float | None) -> list[str]:
    """Why a fit is poor: not converged, series that still disagree, an uncertain field, one at the limits."""
    warnings = []
    if not converged:
        warnings.append("the fit did not converge: the field kept changing at the last level (more iterations, a "
                        "lower --order or --similarity ncc may help)")
    if agreement is not None and np.isfinite(agreement) and agreement < POOR_AGREEMENT:
        warnings.append(f"after the fit the series share only {100 * agreement:.0f}% of their intensity variance: "
                        "a contrast the map cannot follow, motion within a series, or a distortion the harmonic model "
                        "does not describe")
    for series in seen:
        spread = np.sqrt(model.residual_variance(series.image.view, identifiability.covariance, samples[series.label]))
        rms = float(np.sqrt(np.mean(spread**2))) if spread.size else 0.0
        if rms > POOR_UNCERTAINTY_MM:
            warnings.append(f"the field of {series.label} is uncertain: {rms:.2f} mm RMS standard deviation over the "
                            f"object (more than {POOR_UNCERTAINTY_MM} mm)")
    # At the limits: somewhere in the object the field is far beyond what the prior (a coil's typical
    # coefficients) makes likely there - it absorbs something else. Judged on the field, not on single
    # coefficients, which a small object may spread over several terms harmlessly.
    prior_covariance = np.diag(1.0 / identifiability.prior_precision)
    theta = identifiability.written_values()
    for series in seen:
        points = samples[series.label]
        if not points.size:
            continue
        lengths = np.linalg.norm(model.residual(series.image.view, theta, points), axis=1)
        typical = np.sqrt(model.residual_variance(series.image.view, prior_covariance, points))
        ratio = float(np.max(lengths / np.maximum(typical, 1e-9)))
        if ratio > LIMIT_PRIOR_SDS:
            warnings.append(f"the field of {series.label} is at the limits of what a gradient coil does ({ratio:.1f} "
                            "times its typical size somewhere in the object): it may absorb something else")
    return warnings


def _marker_warnings(fit: MarkerFit) -> list[str]:
    warnings = []
    if fit.matched < 0.5 * fit.found:
        warnings.append(f"only {fit.matched} of the {fit.found} markers found were matched to known positions")
    mean = float(fit.residual_mm.mean()) if fit.residual_mm.size else 0.0
    if mean > 0.5:
        warnings.append(f"the markers sit {mean:.2f} mm from where the fitted field puts them, on average")
    return warnings


def _coverage(seen: list[PreparedSeries], samples: dict[str, NDArray[np.float64]]) -> list[list[list[float]]]:
    """Magnet-frame boxes (low, high corners, mm) of the object points each series measured the field at."""
    boxes = []
    for series in seen:
        points = samples[series.label]
        if points.size:
            magnet = series.image.view.magnet_frame.magnet_from_lps(points)
            boxes.append([magnet.min(axis=0).tolist(), magnet.max(axis=0).tolist()])
    return boxes


def _model_coefficients(model: FieldModel, identifiability: Identifiability, seen: list[PreparedSeries],
                        samples: dict[str, NDArray[np.float64]], report: dict[str, Any], warnings: list[str],
                        options: EstimateOptions) -> GradientCoefficients:
    """Return the model file's coil: written coefficients, provenance (series, coverage) and what pooling needs."""
    coils = {s.volume.provenance.gradient_coil for s in seen if s.volume.provenance.gradient_coil}
    coil_id = options.coil_id or (coils.pop() if len(coils) == 1 else "learned")
    provenance: dict[str, object] = {
        "kind": "learned from images" if report["kind"] == "pair" else "learned from a marker phantom",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "software": f"trueshape {__version__}",
        "series": [s.to_json() for s in seen] + ([report["reference"]] if report["kind"] == "pair"
                                                  and report["reference"]["label"] not in {s.label for s in seen}
                                                  else []),
        "coverage": {"frame": "magnet", "margin_mm": COVERAGE_MARGIN_MM, "boxes_mm": _coverage(seen, samples)},
    }
    fit_quality: dict[str, object] = {
        "transferable": True,
        "warnings": warnings,
        "order": options.fit.order,
        "lowest_order": options.fit.lowest_order,
        "parameters": model.labels(),
        "fitted": [term.value for term in identifiability.terms],
        "normal_matrix": identifiability.normal.tolist(),
        "prior_precision": identifiability.prior_precision.tolist(),
        "determined_combinations": identifiability.determined_combinations,
        "undetermined": identifiability.undetermined(),
    }
    return model.coefficients(identifiability.written_values(), coil_id=coil_id, source="trueshape estimate",
                              provenance=provenance, fit_quality=fit_quality)

