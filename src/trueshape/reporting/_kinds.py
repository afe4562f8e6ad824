"""One report section per kind of output folder: what ``inspect --json``, ``convert`` and ``correct`` wrote.

The kind is recognised by the files trueshape writes (:func:`folder_kind`); ``estimate``, ``learn``, cohorts
and folders of several outputs are in :mod:`trueshape.reporting._learned`.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import numpy as np

from trueshape.errors import TrueshapeError
from trueshape.geometry import Volume
from trueshape.gnl import GradientCoefficients
from trueshape.reporting._figures import displacement_figure
from trueshape.reporting._page import DEFAULT_OPTIONS, Picture, ReportOptions, Section, paragraph, table
from trueshape.reporting._series import (
    findings_block,
    identifiers,
    image_blocks,
    load_source,
    magnet_picture,
    series_table,
)

__all__ = ["FolderKind", "convert_section", "correct_section", "folder_kind", "inspect_section", "read_json"]

#: What ``inspect --json`` is saved as in a folder (``inspect --report`` and ``batch`` write it).
INSPECT_FILE = "inspect.json"
#: Points of a field drawn against their distance from the isocentre, at most.
MAX_FIELD_POINTS = 20_000


class FolderKind(enum.Enum):
    """What wrote an output folder."""

    COHORT = "batch"
    LEARN = "learn"
    ESTIMATE = "estimate"
    CORRECT = "correct"
    CONVERT = "convert"
    INSPECT = "inspect"
    FOLDERS = "folders"  #: several outputs in sub-folders (the demo's folder)


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file trueshape wrote; a broken one is an error naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TrueshapeError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(data, dict):
        raise TrueshapeError(f"{path}: is not a JSON object")
    return data


def _convert_sidecars(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.glob("*.json")
        if p.name != INSPECT_FILE
        and "volume_file" in p.read_text(encoding="utf-8", errors="replace")[-4000:]
        and not p.name.endswith("_corrected.json")
    )


def folder_kind(folder: Path) -> FolderKind | None:
    """Recognise what wrote ``folder`` by its files; None when nothing trueshape wrote is there."""
    if (folder / "summary.csv").is_file():
        return FolderKind.COHORT
    if (folder / "estimate.json").is_file():
        return FolderKind.ESTIMATE
    if (folder / "model.json").is_file() and any((child / "estimate.json").is_file() for child in folder.iterdir()):
        return FolderKind.LEARN
    if any(folder.glob("*_corrected.json")):
        return FolderKind.CORRECT
    if (folder / INSPECT_FILE).is_file():
        return FolderKind.INSPECT
    if _convert_sidecars(folder):
        return FolderKind.CONVERT
    if any(child.is_dir() and folder_kind(child) is not None for child in sorted(folder.iterdir())):
        return FolderKind.FOLDERS
    return None


def _identifier_block(records: list[dict[str, Any]], options: ReportOptions) -> list[str | Picture]:
    if not options.show_identifiers:
        return []
    rows = next((rows for rows in (identifiers(r) for r in records) if rows), [])
    return [table(["identifier", "value"], rows, css="identifiers")] if rows else []


def inspect_section(folder: Path, *, options: ReportOptions = DEFAULT_OPTIONS) -> Section:
    """Show the series of ``inspect --json`` (saved as ``inspect.json``): table, findings, the magnet."""
    data = read_json(folder / INSPECT_FILE)
    records = [stack for series in data.get("series", []) for stack in series.get("stacks", [])]
    series_findings = [
        (f"series {series.get('series_number')}", finding)
        for series in data.get("series", [])
        for finding in series.get("findings", [])
    ]
    section = Section(f"Inspected: {len(records)} stack(s) in {len(data.get('series', []))} series")
    section.blocks += _identifier_block(records, options)
    section.blocks += [
        series_table(records),
        findings_block(records, series_findings),
        magnet_picture(f"{_slug(folder)}_magnet", records, None),
    ]
    section.blocks += [paragraph(f"error: {message}", css="warning") for message in data.get("errors", [])]
    return section


def convert_section(folder: Path, *, options: ReportOptions = DEFAULT_OPTIONS) -> Section:
    """Show the volumes ``convert`` wrote: table, findings, the magnet, and each volume's slices."""
    from trueshape.io import read_volume_file

    sidecars = _convert_sidecars(folder)
    records = [read_json(path) for path in sidecars]
    section = Section(f"Converted: {len(records)} volume(s)")
    section.blocks += _identifier_block(records, options)
    section.blocks += [
        series_table(records),
        findings_block(records),
        magnet_picture(f"{_slug(folder)}_magnet", records, None),
    ]
    for record in records:
        volume_file = folder / str(record.get("volume_file", ""))
        if volume_file.is_file():
            child = Section(f"{record.get('label')}")
            child.blocks += image_blocks(
                _slug(folder, record.get("label")),
                [("as converted", read_volume_file(volume_file))],
                levels=options.tissue_levels,
            )
            section.children.append(child)
    return section


def _coil(path: str | None) -> GradientCoefficients | None:
    from trueshape.gnl import read_coefficients

    if not path or not Path(path).is_file():
        return None
    try:
        return read_coefficients(path)
    except TrueshapeError:
        return None


def _read_output(path: Path) -> Volume | None:
    """Read a corrected volume (a volume file, or a derived DICOM series folder)."""
    from trueshape.dicom import scan
    from trueshape.geometry import group_series, load_stack
    from trueshape.io import is_volume_file, read_volume_file

    if path.is_file() and is_volume_file(path):
        return read_volume_file(path)
    if path.is_dir():
        stacks = group_series(scan(path)).stacks
        return load_stack(stacks[0]) if stacks else None
    return None


def correct_section(sidecar: Path, *, options: ReportOptions = DEFAULT_OPTIONS) -> Section:
    """One corrected series: table, findings, what the correction did, the magnet, before/after, the field."""
    data = read_json(sidecar)
    folder = sidecar.parent
    source = data.get("source", {})
    correction = data.get("correction", {})
    section = Section(f"Corrected: {source.get('label', sidecar.stem)}")
    section.blocks += _identifier_block([source], options)
    section.blocks.append(series_table([source]))
    section.blocks.append(findings_block([source], [(str(source.get("label")), f) for f in data.get("findings", [])]))
    jacobian = (correction.get("jacobian_min"), correction.get("jacobian_max"))
    rows = [
        ["coil", data.get("coil") or "-"],
        ["mode", correction.get("mode", "-")],
        [
            "residual displacement",
            f"up to {correction.get('max_displacement_mm', 0):.2f} mm, mean "
            f"{correction.get('mean_displacement_mm', 0):.2f} mm",
        ],
        ["intensity factor (Jacobian)", "-" if None in jacobian else f"{jacobian[0]:.3f} to {jacobian[1]:.3f}"],
    ]
    rows += [["assumed", text] for text in correction.get("assumptions", [])]
    section.blocks.append(table(["correction", ""], rows, css="correction"))
    name = _slug(folder, source.get("label"))
    section.blocks.append(magnet_picture(f"{name}_magnet", [source], _coil(data.get("coefficients"))))
    outputs = [folder / str(o) for o in data.get("outputs", [])]
    after = _read_output(outputs[0]) if outputs else None
    before = load_source(source)
    versions = [(title, volume) for title, volume in (("as acquired", before), ("corrected", after)) if volume]
    if versions:
        section.blocks += image_blocks(name, versions, levels=options.tissue_levels)
    if before is None:
        section.blocks.append(
            paragraph(
                "The series as acquired was not found where the sidecar says it was read "
                "from: only the corrected version is shown.",
                css="quiet",
            )
        )
    transform = next((o for o in outputs if o.name.endswith("_residual.h5") and o.is_file()), None)
    if transform is not None:
        section.blocks.append(_field_picture(transform, source, name))
    return section


def _field_picture(transform: Path, source: dict[str, Any], name: str) -> Picture:
    from trueshape.io import read_itk_displacement_field

    field = read_itk_displacement_field(transform)
    magnitude = np.linalg.norm(field.vectors, axis=-1)
    grid = field.geometry
    index = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij"), axis=-1).reshape(-1, 3)
    pick = np.random.default_rng(0).choice(index.shape[0], min(index.shape[0], MAX_FIELD_POINTS), replace=False)
    isocentre = np.asarray(source.get("isocentre_lps") or (0.0, 0.0, 0.0), dtype=np.float64)
    distance = np.linalg.norm(grid.index_to_lps(index[pick].astype(np.float64)) - isocentre, axis=-1)
    png = displacement_figure(
        magnitude[:, :, grid.shape[2] // 2], distance, magnitude.reshape(-1)[pick], label="residual field nodes"
    )
    return Picture(
        f"{name}_displacement",
        "The residual displacement the correction removed: its size in the "
        "middle slice, and against the distance from the isocentre.",
        png,
    )


def _slug(folder: Path, label: object = None) -> str:
    text = folder.name + (f"_{label}" if label else "")
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "report"
