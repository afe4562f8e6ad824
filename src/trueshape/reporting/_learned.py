"""Report sections for what was learned and what was run many times: ``estimate``, ``learn`` and cohorts.

- an estimate: the pair, the fit, reference against moving (checkerboard and difference, before and after), the
  estimated field by distance from the isocentre, the coefficients with their uncertainty, and each series it
  corrected (:func:`~trueshape.reporting._kinds.correct_section`);
- a learned model: the leave-one-session-out table, the pooled coefficients, then each session's estimate;
- a cohort (``batch``): one row per job with its status, reason and figures, linking to its own report.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from trueshape.errors import TrueshapeError
from trueshape.geometry import Volume
from trueshape.reporting._figures import checkerboard_figure, distance_bins_figure, terms_figure
from trueshape.reporting._kinds import _coil, _slug, correct_section, read_json
from trueshape.reporting._page import DEFAULT_OPTIONS, Picture, ReportOptions, Section, paragraph, table
from trueshape.reporting._series import magnet_picture, series_table

__all__ = ["cohort_section", "estimate_section", "learn_section"]

#: The report a cohort row links to, relative to its job folder.
REPORT_FILE = "report.html"


def _record(volume: Volume, label: str) -> dict[str, Any]:
    """Return a series record (what the magnet figure needs) for a loaded volume."""
    provenance = volume.provenance
    return {
        "label": label,
        "affine_lps": volume.geometry.lps_from_ijk.tolist(),
        "shape": list(volume.geometry.shape[:3]),
        "patient_position": provenance.patient_position,
        "isocentre_lps": list(provenance.isocentre_lps),
    }


def _load(argument: str | None) -> Volume | None:
    """Load a SERIES argument as estimate recorded it (a series, or a volume file); None when gone."""
    from trueshape.dicom import scan
    from trueshape.geometry import group_series, load_stack, one_stack, parse_series_argument
    from trueshape.io import is_volume_file, read_volume_file

    if not argument:
        return None
    try:
        if is_volume_file(argument):
            return read_volume_file(argument)
        path, series_key, stack_index = parse_series_argument(argument)
        return load_stack(one_stack(group_series(scan(path)), path, series_key, stack_index))
    except (TrueshapeError, OSError):
        return None


def _normalised(values: np.ndarray) -> np.ndarray:
    scale = float(np.percentile(values[values > 0], 99.5)) if np.any(values > 0) else 1.0
    return np.asarray(values, dtype=np.float64) / scale


def _checkerboard(
    reference: tuple[Volume, Volume], moving: Volume, corrected: Volume, name: str
) -> tuple[Picture, tuple[float, float]]:
    """Draw the reference resampled onto the moving series' middle slice, against it before and after correction.

    ``reference`` is the reference as acquired and as corrected (the same volume when it keeps no residual).
    Returns the figure and the RMS difference before and after, where both series have voxels (each series'
    brightness scaled to its own 99.5th percentile).
    """
    from scipy import ndimage

    geometry = moving.geometry
    middle = geometry.shape[2] // 2
    index = (
        np.stack(
            np.meshgrid(np.arange(geometry.shape[0]), np.arange(geometry.shape[1]), [middle], indexing="ij"), axis=-1
        )
        .reshape(-1, 3)
        .astype(np.float64)
    )
    points = geometry.index_to_lps(index)

    def plane(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        values = volume.values(np.float32)
        values = values[..., 0] if values.ndim == 4 else values
        where = volume.geometry.lps_to_index(points)
        inside = np.all((where > -0.5) & (where < np.asarray(values.shape[:3]) - 0.5), axis=-1)
        sampled = ndimage.map_coordinates(values, where.T, order=1, mode="nearest")
        shape = (geometry.shape[0], geometry.shape[1])
        return _normalised(np.where(inside, sampled, 0.0).reshape(shape).T), inside.reshape(shape).T

    (before_reference, overlap), (after_reference, _) = plane(reference[0]), plane(reference[1])
    before, after = plane(moving)[0], plane(corrected)[0]
    png, rms = checkerboard_figure((before_reference, after_reference), before, after, (0.0, 1.0), overlap=overlap)
    picture = Picture(
        f"{name}_checkerboard",
        "Reference against moving on the moving series' middle slice, each scaled to its own brightness: "
        "checkerboards (top) and differences where both have voxels (bottom), before and after the estimated "
        f"correction. RMS difference {rms[0]:.3f} before, {rms[1]:.3f} after (different contrasts never reach 0).",
        png,
    )
    return picture, rms


def estimate_section(folder: Path, *, options: ReportOptions = DEFAULT_OPTIONS) -> Section:
    """Show what ``estimate`` wrote: the pair, the fit, the images compared, the field, the coefficients."""
    data = read_json(folder / "estimate.json")
    name = _slug(folder)
    if data.get("kind") == "pair":
        title = f"Estimated from {data['reference'].get('label')} and {data['moving'].get('label')}"
    else:
        title = f"Estimated from a phantom: {data.get('moving', {}).get('label', '')}"
    section = Section(f"{title} ({folder.name})")
    series = [data[key] for key in ("reference", "moving") if isinstance(data.get(key), dict)]
    section.blocks.append(series_table(series))
    section.blocks.append(table(["fit", ""], _fit_rows(data), css="fit"))
    section.blocks += [paragraph(f"poor fit: {warning}", css="warning") for warning in data.get("warnings", [])]
    volumes = {key: _load(record.get("source")) for key, record in zip(("reference", "moving"), series, strict=False)}
    records = [_record(volume, str(data[key].get("label"))) for key, volume in volumes.items() if volume is not None]
    section.blocks.append(magnet_picture(f"{name}_magnet", records, _coil(str(folder / "model.json"))))
    corrected_sidecars = sorted(folder.glob("*_corrected.json"))
    reference, moving = volumes.get("reference"), volumes.get("moving")
    corrected = _corrected(corrected_sidecars, data.get("moving", {}).get("label"))
    if reference is not None and moving is not None and corrected is not None:
        reference_after = _corrected(corrected_sidecars, data.get("reference", {}).get("label")) or reference
        section.blocks.append(_checkerboard((reference, reference_after), moving, corrected, name)[0])
    fields = {label: f.get("by_distance_from_isocentre", []) for label, f in data.get("field", {}).items()}
    if any(fields.values()):
        section.blocks.append(
            Picture(
                f"{name}_by_distance",
                "The estimated residual displacement by distance from the isocentre.",
                distance_bins_figure(fields),
            )
        )
    terms = data.get("identifiability", {}).get("terms", [])
    if terms:
        section.blocks.append(_terms_picture(name, terms))
    section.children += [correct_section(p, options=options) for p in corrected_sidecars]
    return section


def _corrected(sidecars: list[Path], label: object) -> Volume | None:
    """Read the corrected version of the series ``label`` from its ``*_corrected.json``; None when there is none."""
    from trueshape.reporting._kinds import _read_output

    sidecar = next((p for p in sidecars if label and p.name == f"{label}_corrected.json"), None)
    outputs = read_json(sidecar).get("outputs", []) if sidecar is not None else []
    return _read_output(sidecar.parent / outputs[0]) if sidecar is not None and outputs else None


def _fit_rows(data: dict[str, Any]) -> list[list[str]]:
    fit = data.get("fit", {})
    rows = []
    if fit:
        rows.append(
            [
                "harmonics",
                f"degrees {fit.get('lowest_order')} to {fit.get('order')}, similarity "
                f"{fit.get('similarity')}, iterations {fit.get('iterations')}, "
                f"{'converged' if fit.get('converged') else 'not converged'}",
            ]
        )
        rows.append(
            [
                "agreement of the series",
                f"{100 * fit.get('agreement_before', 0):.1f}% before, {100 * fit.get('agreement_after', 0):.1f}% after",
            ]
        )
    motion = data.get("motion_reference_to_moving")
    if motion:
        rows.append(["motion found", f"{motion.get('shift_mm', 0):.2f} mm, {motion.get('angle_deg', 0):.2f} deg"])
    for label, field in data.get("field", {}).items():
        rows.append(
            [
                f"estimated residual of {label}",
                f"RMS {field.get('rms_mm', 0):.2f} mm, max "
                f"{field.get('max_mm', 0):.2f} mm (uncertainty "
                f"{field.get('uncertainty_rms_mm', 0):.3f} mm RMS)",
            ]
        )
    identifiability = data.get("identifiability", {})
    if identifiability:
        rows.append(
            [
                "coefficients determined",
                f"{identifiability.get('determined_combinations')} of "
                f"{len(identifiability.get('terms', []))} combinations",
            ]
        )
    rows.append(["run time", f"{data.get('seconds', 0):.1f} s"])
    return rows


def _terms_picture(name: str, terms: list[dict[str, Any]]) -> Picture:
    png = terms_figure(
        [t["term"] for t in terms],
        [t["value"] for t in terms],
        [t.get("standard_error", 0.0) for t in terms],
        [bool(t.get("determined", True)) for t in terms],
    )
    return Picture(
        f"{name}_terms",
        "The coefficients and their standard error (formal, from the image noise); "
        "grey ones the data do not determine (written as 0).",
        png,
    )


def learn_section(folder: Path, *, options: ReportOptions = DEFAULT_OPTIONS) -> Section:
    """Show a learned scanner model: leave-one-session-out checks, the pooled coefficients, each session."""
    from trueshape.estimation import Identifiability

    model = read_json(folder / "model.json")
    quality = model.get("fit_quality", {})
    section = Section(f"Learned scanner model ({folder.name}/model.json)")
    checks = quality.get("cross_validation", [])
    rows = [
        [
            c.get("session"),
            f"{c.get('rms_field_mm', 0):.3f}",
            f"{c.get('rms_difference_mm', 0):.3f}",
            f"{c.get('rigid_adjusted_rms_mm', 0):.3f}",
            f"{c.get('max_difference_mm', 0):.3f}",
            f"{c.get('overlap_rms_difference_mm', 0):.3f} ({100 * c.get('overlap_fraction', 0):.0f}%)",
        ]
        for c in checks
    ]
    section.blocks.append(
        paragraph("Leave-one-session-out: the model of the other sessions against each session's own estimate, mm.")
    )
    section.blocks.append(
        table(
            [
                "session",
                "its field RMS",
                "difference RMS",
                "up to a rigid motion",
                "max",
                "where the others measured: RMS",
            ],
            rows,
            css="cross-validation",
        )
    )
    section.blocks += [paragraph(f"warning: {w}", css="warning") for w in quality.get("warnings", [])]
    names, fitted = quality.get("parameters", []), quality.get("fitted", [])
    if names and quality.get("normal_matrix"):
        identifiability = Identifiability.from_normal(
            names,
            np.asarray(fitted),
            np.asarray(quality["normal_matrix"]),
            prior_precision=np.asarray(quality["prior_precision"]),
        )
        section.blocks.append(_terms_picture(_slug(folder), [t.to_json() for t in identifiability.terms]))
    for child in sorted(p for p in folder.iterdir() if (p / "estimate.json").is_file()):
        section.children.append(estimate_section(child, options=options))
    return section


def cohort_section(folder: Path) -> Section:
    """Show a cohort: one row per job of ``summary.csv``, linking to the job's own report."""
    path = folder / "summary.csv"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error) as error:
        raise TrueshapeError(f"{path}: cannot be read ({error})") from None
    columns = [c for c in (rows[0].keys() if rows else []) if c not in ("folder",)]
    failed = sum(1 for r in rows if r.get("status") != "ok")
    section = Section(f"Cohort: {len(rows)} job(s), {len(rows) - failed} ok, {failed} failed")
    body = []
    for row in rows:
        report = folder / row.get("folder", "") / REPORT_FILE
        link = f"{row.get('folder')}/{REPORT_FILE}" if row.get("folder") and report.is_file() else ""
        body.append([(row.get("folder") or row.get("row", ""), link), *(row.get(c, "") for c in columns)])
    section.blocks.append(table(["job", *columns], body, css="cohort", links=0))
    return section
