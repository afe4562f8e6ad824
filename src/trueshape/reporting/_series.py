"""What a report shows of a series: its table, findings, magnet position and images.

The images are orthogonal slices with the bright round structures outlined, and a slice scroller.

A series is described by the record trueshape writes for a stack (``inspect --json``, the sidecars of
``convert`` and ``correct``): its grid, distortion state, patient position and isocentre. Patient identifiers
are never in those records; :func:`identifiers` reads them from a source file only when asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trueshape.dicom import PatientPosition
from trueshape.geometry import Volume
from trueshape.gnl import GradientCoefficients, MagnetFrame
from trueshape.reporting._figures import FieldOfView, before_after_figure, magnet_figure
from trueshape.reporting._images import grey_window, scroller_slices
from trueshape.reporting._metrics import SphereMeasurement
from trueshape.reporting._page import Picture, Scroller, findings_table, table
from trueshape.reporting._spheres import find_bright_spheres

__all__ = [
    "IDENTIFYING_KEYWORDS",
    "field_of_view",
    "identifiers",
    "image_blocks",
    "load_source",
    "magnet_picture",
    "series_table",
    "stack_findings",
]

#: The header attributes that identify a patient or a site: never in a report without ``show_identifiers``.
IDENTIFYING_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName")

Record = Mapping[str, Any]


def _vector(values: Sequence[float] | None) -> str:
    return "-" if values is None else "(" + ", ".join(f"{float(v):.1f}" for v in values) + ")"


def series_table(records: Sequence[Record]) -> str:
    """One row per series: grid, spacing, what the scanner corrected, position, isocentre, farthest point."""
    rows = []
    for record in records:
        state = str(record.get("distortion_state") or "UNKNOWN")
        source = record.get("distortion_source")
        distance = record.get("max_distance_from_isocentre_mm")
        rows.append(
            [
                record.get("label", "?"),
                " x ".join(str(n) for n in record.get("shape", [])),
                " x ".join(f"{float(s):.3g}" for s in record.get("spacing", record.get("spacing_mm", []))),
                state + (f" (from {source})" if source else ""),
                record.get("patient_position") or "-",
                _vector(record.get("isocentre_lps")),
                "-" if distance is None else f"{float(distance):.0f} mm",
            ]
        )
    header = [
        "series",
        "grid",
        "spacing (mm)",
        "distortion correction by the scanner",
        "patient position",
        "isocentre (LPS mm)",
        "farthest point from the isocentre",
    ]
    return table(header, rows, css="series")


def stack_findings(records: Sequence[Record]) -> list[tuple[str, dict[str, Any]]]:
    """Every finding of the records, with the series it belongs to."""
    return [
        (str(record.get("label", "?")), dict(finding)) for record in records for finding in record.get("findings", [])
    ]


def findings_block(records: Sequence[Record], extra: Sequence[tuple[str, dict[str, Any]]] = ()) -> str:
    """Return the findings table of ``records`` and any ``extra`` findings."""
    return findings_table([*stack_findings(records), *extra])


def field_of_view(record: Record) -> FieldOfView | None:
    """Return a series' field of view in magnet coordinates (its voxels' outer corners), or None without a grid."""
    affine, shape = record.get("affine_lps"), record.get("shape")
    if affine is None or shape is None:
        return None
    corners = np.array(np.meshgrid(*([-0.5, n - 0.5] for n in shape[:3]), indexing="ij")).reshape(3, -1).T
    lps = corners @ np.asarray(affine, dtype=np.float64)[:3, :3].T + np.asarray(affine, dtype=np.float64)[:3, 3]
    frame = MagnetFrame(
        PatientPosition(str(record.get("patient_position") or "HFS")),
        np.asarray(record.get("isocentre_lps") or (0.0, 0.0, 0.0), dtype=np.float64),
    )
    return FieldOfView(str(record.get("label", "?")), frame.magnet_from_lps(lps))


def magnet_picture(name: str, records: Sequence[Record], coil: GradientCoefficients | None) -> Picture:
    """Where each series' field of view sits in the magnet, with the coil's displacement when it is known."""
    fields = [fov for fov in (field_of_view(r) for r in records) if fov is not None]
    said = (
        "contours: the displacement the coil predicts before any correction"
        if coil is not None
        else ("no coil or model known: no displacement contours")
    )
    return Picture(
        name, f"Where each field of view sits in the magnet (+: the isocentre); {said}.", magnet_figure(fields, coil)
    )


def identifiers(record: Record) -> list[list[str]]:
    """Return the patient and site identifiers of a series' first source file (only for ``show_identifiers``)."""
    import pydicom

    sources = record.get("slice_sources") or []
    first = next((str(name).split("#")[0] for names in sources for name in names), None)
    if first is None or not Path(first).is_file():
        return []
    dataset = pydicom.dcmread(first, stop_before_pixels=True, specific_tags=list(IDENTIFYING_KEYWORDS))
    return [[keyword, str(dataset.get(keyword, ""))] for keyword in IDENTIFYING_KEYWORDS]


def load_source(record: Record) -> Volume | None:
    """Load the series a record describes (its DICOM series, or its volume file), None when it is gone."""
    from trueshape.dicom import scan
    from trueshape.errors import TrueshapeError
    from trueshape.geometry import group_series, load_stack, one_stack
    from trueshape.io import read_volume_file

    try:
        if record.get("file"):
            return read_volume_file(record["file"]) if Path(record["file"]).is_file() else None
        sources = record.get("slice_sources") or []
        first = next((Path(str(name).split("#")[0]) for names in sources for name in names), None)
        if first is None or not first.is_file():
            return None
        folder = first.parent
        stack = one_stack(
            group_series(scan(folder)), folder, str(record["series_instance_uid"]), int(record.get("stack", 1))
        )
        return load_stack(stack)
    except TrueshapeError:
        return None


def image_blocks(
    name: str, versions: Sequence[tuple[str, Volume]], *, levels: tuple[float, float, float] | None = None
) -> list[Picture | Scroller | str]:
    """Orthogonal slices of each version (as acquired, corrected) with the round structures outlined, a scroller.

    The structures are found in the last version (the corrected one) and measured in each with one set of
    signal ``levels`` (inside, rim, surround: given, or measured around each structure in the last version).
    """
    from trueshape.reporting._page import paragraph

    last = versions[-1][1]
    window = grey_window(last.array)
    found = find_bright_spheres(last)
    # One intensity scale for every version: the structure's where it is least distorted.
    each = [levels if levels is not None else _levels(last, s) for s in found]
    measured = [(title, volume, _measure(volume, found, each)) for title, volume in versions]
    caption = (
        "Orthogonal slices through the brightest round structure (a femoral head): its fitted outline, and "
        "its diameters left-right, front-back (AP) and head-foot (SI)"
    )
    blocks: list[Picture | Scroller | str] = [
        Picture(f"{name}_slices", caption, before_after_figure(measured, window)),
        _spheres_table(measured) if found else paragraph("No bright round structure found to measure.", css="quiet"),
        _scroller(name, versions, window),
    ]
    return blocks


def _measure(
    volume: Volume, found: Sequence[SphereMeasurement], levels: Sequence[tuple[float, float, float]]
) -> list[SphereMeasurement]:
    """Measure each structure ``found`` (one set of signal levels each) in ``volume``; skip what cannot be."""
    from trueshape.reporting._metrics import measure_bright_sphere

    own = []
    for structure, level in zip(found, levels, strict=True):
        try:
            own.append(
                measure_bright_sphere(
                    volume,
                    structure.centre_lps,
                    float(max(structure.diameters_mm)) / 2,
                    inside_level=level[0],
                    outside_level=level[1],
                    surround_level=level[2],
                )
            )
        except ValueError:
            continue
    return own


def _spheres_table(measured: Sequence[tuple[str, Volume, Sequence[SphereMeasurement]]]) -> str:
    """Return the table of each version's structures: centre, diameters and front-back / left-right."""
    rows = [
        [
            title,
            f"{m.centre_lps[0]:+.0f}, {m.centre_lps[1]:+.0f}, {m.centre_lps[2]:+.0f}",
            f"{m.diameters_mm[0]:.2f}",
            f"{m.diameters_mm[1]:.2f}",
            f"{m.diameters_mm[2]:.2f}",
            f"{m.ap_lr_ratio:.3f}",
        ]
        for title, _, ms in measured
        for m in ms
    ]
    header = [
        "version",
        "centre (LPS mm)",
        "left-right (mm)",
        "front-back (mm)",
        "head-foot (mm)",
        "front-back / left-right",
    ]
    return table(header, rows, css="spheres")


def _levels(volume: Volume, structure: SphereMeasurement) -> tuple[float, float, float]:
    from trueshape.reporting._spheres import ball_values

    inside, shell = ball_values(
        volume,
        volume.array[..., 0] if volume.array.ndim == 4 else volume.array,
        structure.centre_lps,
        float(max(structure.diameters_mm)) / 2,
    )
    return float(np.median(inside)), float(np.percentile(shell, 1)), float(np.median(shell))


def _scroller(name: str, versions: Sequence[tuple[str, Volume]], window: tuple[float, float]) -> Scroller:
    pictures: dict[str, list[bytes]] = {}
    shown: list[int] = []
    slices = versions[-1][1].geometry.shape[2]
    for title, volume in versions:
        if volume.geometry.shape[2] != slices:  # another grid (correct --like): no slice-for-slice toggle
            continue
        values = volume.array[..., 0] if volume.array.ndim == 4 else volume.array
        spacing = volume.geometry.spacing
        shown, pictures[title] = scroller_slices(values, (float(spacing[0]), float(spacing[1])), window)
    return Scroller(
        f"{name}_scroller",
        "Step through the slices as acquired (the slider); the button switches between the versions.",
        shown,
        pictures,
    )
