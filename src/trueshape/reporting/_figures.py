"""The report's figures (matplotlib, drawn off-screen): each function returns one PNG.

- :func:`magnet_figure`: where each field of view sits in the magnet (sagittal and coronal), with the
  isocentre and, when a coil or model is known, contours of the displacement it predicts;
- :func:`before_after_figure`: orthogonal slices as acquired and corrected, the fitted outline of a bright
  round structure (femoral head) and its diameters on both;
- :func:`checkerboard_figure`: reference against moving, checkerboard and difference, before and after;
- :func:`displacement_figure`: the displacement's magnitude and its size against distance from the isocentre;
- :func:`terms_figure`: a model's coefficients with their uncertainty.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from trueshape.geometry import Volume
from trueshape.gnl import GradientCoefficients
from trueshape.reporting._metrics import SphereMeasurement

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FieldOfView",
    "before_after_figure",
    "checkerboard_figure",
    "displacement_figure",
    "distance_bins_figure",
    "magnet_figure",
    "terms_figure",
]

#: Contour levels of the predicted displacement in the magnet figure, mm.
CONTOUR_LEVELS_MM = (1.0, 2.0, 5.0, 10.0, 20.0)
#: Sampling step of the planes cut through a volume for display, mm (at least).
PLANE_STEP_MM = 1.0
_AXES = ("x (left)", "y (posterior)", "z (superior)")
_PLANES = (("axial", 2, (0, 1)), ("coronal", 1, (0, 2)), ("sagittal", 0, (1, 2)))


@dataclass(frozen=True)
class FieldOfView:
    """A series' field of view in the magnet: its 8 corners in magnet coordinates (mm) and its name."""

    label: str
    corners_magnet: NDArray[np.float64]


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90, layout="constrained")


def magnet_figure(fields_of_view: Sequence[FieldOfView], coil: GradientCoefficients | None) -> bytes:
    """Draw each field of view (its outline) in the magnet, sagittal and coronal, with displacement contours."""
    from scipy.spatial import ConvexHull

    figure = _figure(10, 4.6)
    reach = max([250.0] + [float(np.max(np.abs(f.corners_magnet))) + 20 for f in fields_of_view])
    for axis, (title, (u, v)) in zip(
        figure.subplots(1, 2), (("sagittal (Y-Z)", (1, 2)), ("coronal (X-Z)", (0, 2))), strict=True
    ):
        if coil is not None:
            grid = np.linspace(-reach, reach, 121)
            a, b = np.meshgrid(grid, grid, indexing="xy")
            points = np.zeros((*a.shape, 3))
            points[..., u], points[..., v] = a, b
            magnitude = np.linalg.norm(_coil_displacement(coil, points.reshape(-1, 3)), axis=-1).reshape(a.shape)
            lines = axis.contour(b, a, magnitude, levels=CONTOUR_LEVELS_MM, cmap="autumn_r", linewidths=1)
            axis.clabel(lines, fmt="%g mm", fontsize=7)
        for number, fov in enumerate(fields_of_view):
            corners = fov.corners_magnet[:, [v, u]]
            hull = corners[ConvexHull(corners, qhull_options="QJ").vertices]
            colour = f"C{number % 10}"
            axis.fill(hull[:, 0], hull[:, 1], alpha=0.12, color=colour)
            axis.plot(*np.vstack([hull, hull[:1]]).T, color=colour, label=fov.label)
        axis.plot([0], [0], marker="+", color="black", markersize=14, mew=2)
        axis.annotate("isocentre", (0, 0), textcoords="offset points", xytext=(6, 6), fontsize=8)
        axis.set(
            title=title, xlabel="Z, along the bore (mm)", xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal"
        )
    figure.axes[0].set_ylabel("Y, vertical (mm)")
    figure.axes[1].set_ylabel("X, horizontal (mm)")
    figure.axes[1].legend(loc="lower right", fontsize=7)
    return _png(figure)


def _coil_displacement(coil: GradientCoefficients, points_magnet: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return the coil's full displacement at magnet points (mm): the magnet frame at the landmark, HFS."""
    from trueshape.dicom import DistortionState
    from trueshape.gnl import ResidualField

    return ResidualField(coil, distortion_state=DistortionState.NONE).full_displacement_lps(points_magnet)


def plane_through(
    volume: Volume, centre_lps: NDArray[np.float64], normal_axis: int, values: NDArray[np.generic]
) -> tuple[NDArray[np.float64], tuple[float, float, float, float]]:
    """Sample ``volume`` on the patient plane through ``centre_lps`` normal to LPS axis ``normal_axis``.

    ``values`` are the volume's voxels (its first volume when 4-D). Returns the plane (rows along the second
    in-plane axis, columns along the first) and its extent in mm (left, right, bottom, top) for ``imshow``;
    outside the volume the plane is 0.
    """
    from scipy import ndimage

    geometry = volume.geometry
    in_plane = [a for a in range(3) if a != normal_axis]
    corners = geometry.index_to_lps(
        np.array(np.meshgrid(*([0, n - 1] for n in geometry.shape[:3]), indexing="ij"))
        .reshape(3, -1)
        .T.astype(np.float64)
    )
    low, high = corners.min(axis=0), corners.max(axis=0)
    step = max(PLANE_STEP_MM, float(np.min(geometry.spacing)))
    u = np.arange(low[in_plane[0]], high[in_plane[0]] + step / 2, step)
    v = np.arange(low[in_plane[1]], high[in_plane[1]] + step / 2, step)
    points = np.zeros((v.size, u.size, 3))
    points[..., normal_axis] = centre_lps[normal_axis]
    points[..., in_plane[0]], points[..., in_plane[1]] = np.meshgrid(u, v, indexing="xy")
    index = geometry.lps_to_index(points.reshape(-1, 3)).T
    plane = ndimage.map_coordinates(values, index, order=1, mode="constant", cval=0.0).reshape(v.size, u.size)
    return plane, (float(u[0]), float(u[-1]), float(v[0]), float(v[-1]))


def before_after_figure(
    volumes: Sequence[tuple[str, Volume, Sequence[SphereMeasurement]]], window: tuple[float, float]
) -> bytes:
    """Orthogonal slices (axial, coronal, sagittal) through the first structure, one row per volume.

    Each row draws the fitted outline (the ellipse of the measured diameters) of every structure found in
    that volume and prints its diameters: left-right, front-back (AP) and head-foot (SI), mm.
    """
    from matplotlib.patches import Ellipse

    rows = len(volumes)
    figure = _figure(12, 4.0 * rows)
    centre = next((m[0].centre_lps for _, _, m in volumes if m), None)
    for row, (title, volume, measured) in zip(np.atleast_2d(figure.subplots(rows, 3)), volumes, strict=True):
        point = (
            centre
            if centre is not None
            else volume.geometry.index_to_lps((np.asarray(volume.geometry.shape[:3], dtype=np.float64) - 1) / 2)
        )
        values = volume.array[..., 0] if volume.array.ndim == 4 else volume.array
        for axis, (name, normal, (a, b)) in zip(row, _PLANES, strict=True):
            plane, extent = plane_through(volume, point, normal, values)
            axis.imshow(plane, cmap="gray", vmin=window[0], vmax=window[1], extent=extent, origin="lower")
            for structure in measured:
                if abs(structure.centre_lps[normal] - point[normal]) < structure.diameters_mm[normal] / 2:
                    axis.add_patch(
                        Ellipse(
                            (structure.centre_lps[a], structure.centre_lps[b]),
                            structure.diameters_mm[a],
                            structure.diameters_mm[b],
                            fill=False,
                            color="#00e0ff",
                            linewidth=1.5,
                        )
                    )
            axis.set(title=f"{title}: {name}", xlabel=_AXES[a], ylabel=_AXES[b])
            if name == "axial":
                axis.invert_yaxis()  # anterior up, as radiologists look at axial slices
        text = (
            "; ".join(
                f"LR {m.diameters_mm[0]:.1f} x AP {m.diameters_mm[1]:.1f} x SI {m.diameters_mm[2]:.1f} mm "
                f"(AP/LR {m.ap_lr_ratio:.3f})"
                for m in measured
            )
            or "no bright round structure found"
        )
        row[1].text(0.5, -0.22, text, transform=row[1].transAxes, ha="center", va="top", fontsize=9, color="#003366")
    return _png(figure)


def checkerboard_figure(
    reference: tuple[NDArray[np.float64], NDArray[np.float64]],
    before: NDArray[np.float64],
    after: NDArray[np.float64],
    window: tuple[float, float],
    *,
    overlap: NDArray[np.bool_],
    squares: int = 8,
) -> tuple[bytes, tuple[float, float]]:
    """Draw reference against the moving series before and after: checkerboards (top) and differences (bottom).

    The planes are the same slice of the moving series' grid (rows j, columns i); ``reference`` is the
    reference before and after correction, ``overlap`` where the reference has voxels. Differences are drawn
    and measured only there; returns the PNG and the RMS difference before and after.
    """
    figure = _figure(9, 8)
    rows, columns = before.shape
    board = ((np.arange(rows)[:, None] * squares // rows + np.arange(columns)[None, :] * squares // columns) % 2) == 0
    spread = float(window[1] - window[0])
    rms = []
    for column, (name, fixed, moving) in enumerate((("before", reference[0], before), ("after", reference[1], after))):
        top = figure.add_subplot(2, 2, 1 + column)
        top.imshow(np.where(board, fixed, moving), cmap="gray", vmin=window[0], vmax=window[1])
        top.set(title=f"checkerboard, {name}", xticks=[], yticks=[])
        bottom = figure.add_subplot(2, 2, 3 + column)
        difference = np.where(overlap, moving - fixed, np.nan)
        shown = bottom.imshow(difference, cmap="RdBu_r", vmin=-0.5 * spread, vmax=0.5 * spread)
        rms.append(float(np.sqrt(np.nanmean(difference**2))) if np.any(overlap) else float("nan"))
        bottom.set(title=f"moving - reference, {name} (RMS {rms[-1]:.3f})", xticks=[], yticks=[])
    figure.colorbar(shown, ax=figure.axes[-1], shrink=0.7)
    return _png(figure), (rms[0], rms[1])


def displacement_figure(
    magnitude: NDArray[np.float64] | None,
    distances_mm: NDArray[np.float64],
    displacement_mm: NDArray[np.float64],
    *,
    label: str = "per voxel",
) -> bytes:
    """Draw the displacement's magnitude (middle slice, mm) and its size against distance from the isocentre."""
    figure = _figure(11, 4.2)
    left, right = figure.subplots(1, 2)
    if magnitude is not None:
        shown = left.imshow(magnitude.T, cmap="magma", origin="upper")
        figure.colorbar(shown, ax=left, label="|displacement| (mm)")
        left.set(title="magnitude, middle slice", xticks=[], yticks=[])
    else:
        left.set_axis_off()
    right.plot(distances_mm, displacement_mm, ".", markersize=2, alpha=0.4, color="C3", label=label)
    right.legend(loc="upper left", fontsize=7, markerscale=4)
    right.set(
        title="against distance from the isocentre",
        xlabel="distance from the isocentre (mm)",
        ylabel="|displacement| (mm)",
    )
    right.grid(alpha=0.3)
    return _png(figure)


def terms_figure(
    names: Sequence[str], values: Sequence[float], errors: Sequence[float], determined: Sequence[bool]
) -> bytes:
    """Draw the coefficients with their standard error (1 sigma); undetermined ones grey."""
    figure = _figure(11, 4)
    axis = figure.subplots()
    x = np.arange(len(names))
    colours = ["C0" if d else "0.6" for d in determined]
    axis.bar(x, values, color=colours)
    axis.errorbar(x, values, yerr=errors, fmt="none", ecolor="black", capsize=2, linewidth=1)
    axis.set_xticks(x, names, rotation=90, fontsize=7)
    axis.set(ylabel="coefficient (Siemens normalisation)", title="coefficients +- standard error (grey: undetermined)")
    axis.axhline(0, color="black", linewidth=0.5)
    return _png(figure)


def distance_bins_figure(bins_by_series: dict[str, list[dict[str, float]]]) -> bytes:
    """Draw an estimated field's RMS and maximum per band of distance from the isocentre, with its uncertainty."""
    figure = _figure(8, 4)
    axis = figure.subplots()
    for number, (label, bins) in enumerate(bins_by_series.items()):
        centres = [(b["from_mm"] + b["to_mm"]) / 2 for b in bins]
        axis.errorbar(
            centres,
            [b["rms_mm"] for b in bins],
            yerr=[b.get("uncertainty_rms_mm", 0.0) for b in bins],
            marker="o",
            color=f"C{number}",
            label=f"{label}: RMS",
        )
        axis.plot(
            centres, [b["max_mm"] for b in bins], linestyle="--", marker=".", color=f"C{number}", label=f"{label}: max"
        )
    axis.set(
        xlabel="distance from the isocentre (mm)",
        ylabel="estimated displacement (mm)",
        title="the estimated field by distance from the isocentre (bars: uncertainty)",
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return _png(figure)
