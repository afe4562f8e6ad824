"""From sessions to a scanner model: pick each session's pair, pool the estimates, check them against each other.

``model fit`` reads finished estimates (their ``model.json`` and ``estimate.json``) and pools them
(:mod:`._pool`); ``learn`` picks the pair in each session folder, estimates it and fits the model.

Pair choice, per frame of reference (the patient lying still): the moving series is the DIS2D or ND series
that reaches farthest from the isocentre (the largest distortion, whatever the coil); the reference is a
DIS3D series, or else the series nearest the isocentre that sees another part of the field.

Examples
--------
>>> choice = choose_pair(trueshape.inspect("session"))                      # doctest: +SKIP
>>> choice.reference.label, choice.moving.label, choice.reason                  # doctest: +SKIP
('2_ax_pd', '3_cor_t1', 'moving: ...; reference: ...')
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trueshape._version import __version__
from trueshape.dicom import DistortionState, PatientPosition
from trueshape.errors import EstimationError
from trueshape.estimation._field_model import SeriesView
from trueshape.estimation._inputs import check_pair, prepare_stack
from trueshape.estimation._pipeline import ESTIMATE_FILE, MODEL_FILE, EstimateOptions, EstimateOutput, estimate_pair
from trueshape.estimation._pool import COVERAGE_MARGIN_MM, PooledModel, SessionEstimate, pool_sessions
from trueshape.geometry import Inspection, Stack
from trueshape.gnl import GradientCoefficients, read_scanner_model
from trueshape.io import write_scanner_model

__all__ = ["LearnOutput", "ModelFit", "PairChoice", "choose_pair", "fit_scanner_model", "learn_sessions",
           "read_session_estimate"]


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise EstimationError(f"{path}: cannot be read ({error.strerror or error})") from None
    except ValueError as error:
        raise EstimationError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise EstimationError(f"{path}: not an estimate report (a JSON object was expected)")
    return data


def read_session_estimate(folder: str | os.PathLike[str]) -> tuple[SessionEstimate, GradientCoefficients]:
    """Read a finished estimate (a folder holding ``model.json`` and ``estimate.json``) for pooling.

    Raises
    ------
    EstimationError
        The folder is not a finished estimate, or its files lack what pooling needs.
    """
    root = Path(folder)
    if root.is_file() and root.name in (MODEL_FILE, ESTIMATE_FILE):
        root = root.parent
    model_path, report_path = root / MODEL_FILE, root / ESTIMATE_FILE
    if report_path.is_file() and not model_path.is_file() and _load_json(report_path).get("transferable") is False:
        raise EstimationError(f"{root}: a free-form estimate describes its own series' position only: it cannot be "
                              "pooled into a scanner model (estimate without --free-form)")
    if not model_path.is_file() or not report_path.is_file():
        raise EstimationError(f"{root}: not a finished estimate (it needs {MODEL_FILE} and {ESTIMATE_FILE}, written "
                              "by trueshape estimate or learn)")
    coil = read_scanner_model(model_path)
    quality = dict(coil.fit_quality)
    try:
        names = tuple(str(name) for name in quality["parameters"])
        theta = np.asarray(quality["fitted"], dtype=np.float64)
        normal = np.asarray(quality["normal_matrix"], dtype=np.float64)
        precision = np.asarray(quality["prior_precision"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise EstimationError(f"{model_path}: lacks the fit's information (parameters, fitted values, normal matrix, "
                              "prior): only a model written by trueshape estimate can be pooled") from None
    size = len(names)
    if theta.shape != (size,) or normal.shape != (size, size) or precision.shape != (size,):
        raise EstimationError(f"{model_path}: the fit's information has inconsistent sizes")
    report = _load_json(report_path)
    series = []
    for sample in report.get("samples", []):
        view = sample.get("view", {})
        try:
            built = SeriesView.build(DistortionState(view["distortion_state"]),
                                     slice_normal_lps=view.get("slice_normal_lps"),
                                     patient_position=PatientPosition(view["patient_position"]),
                                     isocentre_lps=tuple(view["isocentre_lps"]))
            points = np.asarray(sample["points_lps"], dtype=np.float64).reshape(-1, 3)
        except (KeyError, TypeError, ValueError):
            raise EstimationError(f"{report_path}: a series sample is incomplete") from None
        series.append((built, points))
    return SessionEstimate(root.name, names, theta, normal, precision, coil.r0_mm, tuple(series)), coil


@dataclass(frozen=True, eq=False)
class ModelFit:
    """A pooled scanner model and what it was made of."""

    pooled: PooledModel
    coefficients: GradientCoefficients
    path: Path
    warnings: tuple[str, ...]


def fit_scanner_model(folders: list[str | os.PathLike[str]], out: str | os.PathLike[str], *, force: bool = False,
                      prior_sd: float = 0.1, asymmetric_prior_sd: float = 0.02, coil_id: str = "") -> ModelFit:
    """Pool finished estimates into one scanner model, cross-validate it, and write it to ``out``.

    Raises
    ------
    EstimationError
        No estimates, or one that cannot be read.
    """
    from trueshape.io import check_writable

    target = Path(out)
    check_writable(target, force=force)
    if not folders:
        raise EstimationError("no estimates given: name the folders trueshape estimate (or learn) wrote")
    read = [read_session_estimate(folder) for folder in folders]
    labels = [session.label for session, _ in read]
    if len(set(labels)) < len(labels):  # folders of the same name elsewhere: keep them apart in reports
        read = [(replace(session, label=str(folder)), coil)
                for folder, (session, coil) in zip(folders, read, strict=True)]
    pooled = pool_sessions([session for session, _ in read], prior_sd=prior_sd,
                           asymmetric_prior_sd=asymmetric_prior_sd)
    warnings = [f"session {check.session} disagrees with the others where both measured: "
                f"{check.overlap_rms_difference_mm:.2f} mm RMS (another scanner or coil, or a poor estimate?)"
                for check in pooled.cross_validation if check.disagrees]
    coils = {coil.coil_id for _, coil in read if coil.coil_id and coil.coil_id != "learned"}
    if len(coils) > 1:
        warnings.append(f"the estimates name different gradient coils ({', '.join(sorted(coils))}): a scanner model "
                        "describes one coil")
    inherited = [f"{session.label}: {text}" for session, coil in read
                 for text in coil.fit_quality.get("warnings", []) or []]
    coefficients = _pooled_coefficients(pooled, read, warnings + inherited,
                                        coil_id or (coils.pop() if len(coils) == 1 else "learned"))
    path = write_scanner_model(coefficients, target, force=force)
    return ModelFit(pooled, coefficients, path, tuple(warnings))


def _pooled_coefficients(pooled: PooledModel, read: list[tuple[SessionEstimate, GradientCoefficients]],
                         warnings: list[str], coil_id: str) -> GradientCoefficients:
    """Return the pooled model's coil: written coefficients, the sessions, coverage and cross-validation."""
    identifiability = pooled.identifiability
    provenance: dict[str, object] = {
        "kind": "pooled from estimates",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "software": f"trueshape {__version__}",
        "sessions": [{"label": session.label, "series": dict(coil.provenance).get("series", [])}
                     for session, coil in read],
        "coverage": {"frame": "magnet", "margin_mm": COVERAGE_MARGIN_MM,
                     "boxes_mm": [[low.tolist(), high.tolist()] for low, high in pooled.coverage]},
    }
    fit_quality: dict[str, object] = {
        "transferable": True,
        "warnings": warnings,
        "parameters": pooled.names,
        "fitted": pooled.theta.tolist(),
        "normal_matrix": identifiability.normal.tolist(),
        "prior_precision": identifiability.prior_precision.tolist(),
        "determined_combinations": identifiability.determined_combinations,
        "undetermined": identifiability.undetermined(),
        "cross_validation": [check.to_json() for check in pooled.cross_validation],
    }
    return pooled.model.coefficients(identifiability.written_values(), coil_id=coil_id,
                                     source="trueshape model fit", provenance=provenance, fit_quality=fit_quality)


@dataclass(frozen=True)
class PairChoice:
    """The pair picked in a session, and why."""

    reference: Stack
    moving: Stack
    reason: str


def _usable(stack: Stack) -> bool:
    return not stack.is_localizer and stack.distortion_state is not DistortionState.UNKNOWN


def choose_pair(inspection: Inspection) -> PairChoice:
    """Pick the reference and the moving series of one session folder (see the module's rule).

    Raises
    ------
    EstimationError
        No series carries a residual, or none can serve as its reference (the message says what is there).
    """
    stacks = [stack for stack in inspection.stacks if _usable(stack)]
    movers = sorted((s for s in stacks if s.distortion_state is not DistortionState.FULL_3D),
                    key=lambda s: -s.max_distance_from_isocentre_mm)
    if not movers:
        raise EstimationError(f"{inspection.root}: no series that keeps a residual distortion (DIS2D or ND) with a "
                              "known correction state: nothing to learn from")
    for moving in movers:
        frame = moving.provenance().frame_of_reference_uid
        others = [s for s in stacks if s is not moving and s.provenance().frame_of_reference_uid == frame]
        corrected = [s for s in others if s.distortion_state is DistortionState.FULL_3D]
        if corrected:
            reference = min(corrected, key=lambda s: s.max_distance_from_isocentre_mm)
            why = "corrected in 3-D by the scanner"
        else:
            apart = [s for s in others if _sees_other_part(s, moving)]
            if not apart:
                continue
            reference = min(apart, key=lambda s: s.max_distance_from_isocentre_mm)
            why = "nearest the isocentre among the series in another orientation (both fields are solved)"
        reason = (f"moving: {moving.label} ({moving.distortion_state.value}, reaching "
                  f"{moving.max_distance_from_isocentre_mm:.0f} mm from the isocentre, the farthest); reference: "
                  f"{reference.label} ({reference.distortion_state.value}, {why})")
        return PairChoice(reference, moving, reason)
    listed = ", ".join(f"{s.label} ({s.distortion_state.value})" for s in stacks) or "none usable"
    raise EstimationError(f"{inspection.root}: no reference for a series with residual distortion in the same frame "
                          f"of reference (a DIS3D series, or one in another orientation); series: {listed}")


def _sees_other_part(candidate: Stack, moving: Stack) -> bool:
    """Whether ``candidate`` sees another part of the field than ``moving`` (another state or orientation).

    Two ND series see the whole field alike whatever their orientation; two DIS2D series differ when their
    slices do.
    """
    if candidate.distortion_state is not moving.distortion_state:
        return True
    if moving.distortion_state is DistortionState.NONE:
        return False
    first, second = candidate.geometry.direction[:, 2], moving.geometry.direction[:, 2]
    return abs(float(np.dot(first, second))) < 0.99


@dataclass(frozen=True, eq=False)
class LearnOutput:
    """What ``learn`` did: each session's pair and estimate (or why not), and the model."""

    choices: tuple[tuple[str, PairChoice], ...]
    estimates: tuple[tuple[str, EstimateOutput], ...]
    failures: tuple[tuple[str, str], ...]
    model: ModelFit


def learn_sessions(sessions: list[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                   options: EstimateOptions | None = None,
                   on_choice: Callable[[str, PairChoice], None] | None = None,
                   progress: Callable[[str, float], None] | None = None) -> LearnOutput:
    """Pick each session's pair, estimate it into ``out/<session>/``, and pool them into ``out/model.json``.

    A session without a usable pair, or whose estimate fails, is reported in ``failures``; the model is made
    from the others.

    Raises
    ------
    EstimationError
        No session folders, a missing one, or no session that gave an estimate.
    """
    from trueshape.dicom import scan
    from trueshape.errors import TrueshapeError
    from trueshape.geometry import IrregularPolicy, group_series, load_stack
    from trueshape.io import check_output_folder, check_writable, refuse_output_inside

    options = options if options is not None else EstimateOptions()
    check_output_folder(out)
    for session in sessions:
        refuse_output_inside(Path(session), out)
    folder = Path(out)
    if not sessions:
        raise EstimationError("no session folders given: name one folder per session (each with both scans)")
    missing = [str(s) for s in sessions if not Path(s).is_dir()]
    if missing:
        raise EstimationError(f"{missing[0]}: no such folder (a session folder holds the DICOM series of one visit)")
    check_writable(folder / MODEL_FILE, force=options.force)
    names = _session_names([Path(s) for s in sessions])
    choices, estimates, failures = [], [], []
    for session, name in zip(sessions, names, strict=True):
        try:
            inspection = group_series(scan(session), policy=IrregularPolicy.RESAMPLE)
            choice = choose_pair(inspection)
            choices.append((name, choice))
            if on_choice is not None:
                on_choice(name, choice)
            reference = prepare_stack(choice.reference, load_stack(choice.reference), option="--reference-state")
            moving = prepare_stack(choice.moving, load_stack(choice.moving), option="--moving-state")
            check_pair(reference, moving)
            estimates.append((name, estimate_pair(reference, moving, folder / name, options=options,
                                                  progress=progress)))
        except TrueshapeError as error:
            failures.append((name, str(error)))
    if not estimates:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in failures)
        raise EstimationError(f"no session gave an estimate ({reasons})")
    model = fit_scanner_model([folder / name for name, _ in estimates], folder / MODEL_FILE, force=options.force,
                              prior_sd=options.fit.prior_sd, asymmetric_prior_sd=options.fit.asymmetric_prior_sd,
                              coil_id=options.coil_id)
    return LearnOutput(tuple(choices), tuple(estimates), tuple(failures), model)


def _session_names(paths: list[Path]) -> list[str]:
    """Return a folder name per session, made unique with its position where two share a name."""
    names = [path.resolve().name or "session" for path in paths]
    return [name if names.count(name) == 1 else f"{index + 1}_{name}" for index, name in enumerate(names)]
