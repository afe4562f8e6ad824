"""What a coil's coefficients (or a learned model) predict for an inspected series, before correcting it.

``inspect --coef`` (or ``--model``) says how far the anatomy of each stack is displaced: inside the imaged
object (its 95th percentile and largest), at the object's edge farthest from the isocentre, and at points the
user names, with the largest over the field of view beside them. A series whose headers do not say what the
scanner corrected is predicted both ways it could be (ND and DIS2D).

Examples
--------
>>> predictions = predict_stacks(trueshape.inspect("session/dicom"), SYN_AS)          # doctest: +SKIP
>>> predictions[0].predictions[0].inside.p95_mm                                          # doctest: +SKIP
2.06
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.correction._object import ObjectDisplacement, lattice_points, object_displacement
from trueshape.dicom import DistortionState
from trueshape.geometry import Inspection, Stack, Volume, load_stack
from trueshape.gnl import GradientCoefficients, ResidualField

__all__ = ["PointDisplacement", "StackPrediction", "StatePrediction", "predict_stacks", "predict_volume"]


@dataclass(frozen=True)
class PointDisplacement:
    """The residual displacement at one point of the patient.

    Parameters
    ----------
    point_lps : tuple of 3 float
        The point, mm LPS.
    distance_from_isocentre_mm : float
        Its distance from the magnet isocentre, mm.
    displacement_lps : tuple of 3 float
        Where a structure at the point appears moved to in the image, minus the point, mm LPS.
    """

    point_lps: tuple[float, float, float]
    distance_from_isocentre_mm: float
    displacement_lps: tuple[float, float, float]

    @property
    def length_mm(self) -> float:
        """Length of the displacement, mm."""
        return float(np.linalg.norm(self.displacement_lps))


@dataclass(frozen=True)
class StatePrediction:
    """The residual displacement of one stack, for one state of what the scanner corrected.

    Parameters
    ----------
    distortion_state : DistortionState
        The state predicted for (the headers', or one of the two it could be when they do not say).
    inside : ObjectDisplacement
        Inside the imaged object, and at its edge farthest from the isocentre.
    field_of_view_max_mm : float
        The largest over the field of view (on a lattice, corners included), mm.
    points : tuple of PointDisplacement
        At the points asked for.
    assumptions : tuple of str
        What was assumed to place the magnet (patient position, isocentre) because nothing recorded it.
    """

    distortion_state: DistortionState
    inside: ObjectDisplacement
    field_of_view_max_mm: float
    points: tuple[PointDisplacement, ...]
    assumptions: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class StackPrediction:
    """A stack and what the coefficients predict for it (two predictions when its state is unknown)."""

    stack: Stack
    predictions: tuple[StatePrediction, ...]

    def to_json(self) -> dict[str, Any]:
        """Machine-readable predictions (``inspect --coef --json``): mm, LPS."""
        return {
            "selector": self.stack.selector,
            "label": self.stack.label,
            "predictions": [
                {
                    "distortion_state": state.distortion_state.value,
                    "object": asdict(state.inside),
                    "field_of_view_max_mm": state.field_of_view_max_mm,
                    "points": [asdict(point) for point in state.points],
                    "assumptions": list(state.assumptions),
                }
                for state in self.predictions
            ],
        }


def predict_volume(
    volume: Volume,
    coefficients: GradientCoefficients,
    *,
    points_lps: Sequence[tuple[float, float, float]] = (),
    distortion_state: DistortionState | None = None,
) -> StatePrediction:
    """Predict the residual displacement of ``volume`` (its state, or ``distortion_state``) with ``coefficients``.

    Examples
    --------
    >>> predict_volume(trueshape.load("session/dicom#3"), SYN_AS).inside.max_mm   # doctest: +SKIP
    4.62
    """
    residual = ResidualField.from_volume(coefficients, volume, distortion_state=distortion_state)
    geometry = volume.geometry
    # The object's points are part of this lattice: the field of view's largest is never below the object's.
    field_of_view = residual.displacement_lps(geometry.index_to_lps(lattice_points(geometry.shape)))
    asked = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    at_points = residual.displacement_lps(asked)
    distances = np.linalg.norm(residual.magnet_frame.magnet_from_lps(asked), axis=1)
    return StatePrediction(
        residual.distortion_state,
        object_displacement(volume, residual),
        float(np.linalg.norm(field_of_view, axis=1).max()),
        tuple(
            PointDisplacement(_triple(point), float(distance), _triple(moved))
            for point, distance, moved in zip(asked, distances, at_points, strict=True)
        ),
        residual.assumptions,
    )


def predict_stacks(
    inspection: Inspection,
    coefficients: GradientCoefficients,
    *,
    points_lps: Sequence[tuple[float, float, float]] = (),
) -> list[StackPrediction]:
    """Predict, for every stack of ``inspection`` but localizers, its residual displacement (see module).

    Each stack's pixels are loaded (the object is found in them). A stack whose headers do not say what the
    scanner corrected gets two predictions, as if ND and as if DIS2D; a DIS3D stack has nothing left.
    """
    predicted = []
    for stack in inspection.stacks:
        if stack.is_localizer:
            continue
        volume = load_stack(stack)
        states: tuple[DistortionState | None, ...] = (None,)
        if stack.distortion_state is DistortionState.UNKNOWN:
            states = (DistortionState.NONE, DistortionState.IN_PLANE_2D)
        predicted.append(
            StackPrediction(
                stack,
                tuple(
                    predict_volume(volume, coefficients, points_lps=points_lps, distortion_state=state)
                    for state in states
                ),
            )
        )
    return predicted


def _triple(vector: NDArray[np.float64]) -> tuple[float, float, float]:
    return float(vector[0]), float(vector[1]), float(vector[2])
