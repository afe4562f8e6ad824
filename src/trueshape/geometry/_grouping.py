"""Which images of a series make one stack: the grouping key, orientation classes, localizers and lone images.

Frames are split into stacks by frame of reference, pixel grid, echo, complex component (magnitude / phase),
multi-frame StackID, image type, derived isotropic diffusion, localizer type and orientation (within
:data:`ORIENTATION_GROUP_TOLERANCE`); every split other than by orientation or localizers is explained by one
SERIES_SPLIT finding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import Frame
from trueshape.findings import Finding
from trueshape.geometry._findings import localizer_excluded, orientation_mixed, series_split

__all__ = [
    "ISOTROPIC",
    "LONE_IMAGE_MAX",
    "NEAR_ORIENTATION_DEGREES",
    "ORIENTATION_GROUP_TOLERANCE",
    "Grouping",
    "group_key",
    "orientation_text",
    "split_enhanced_echoes",
    "split_finding",
    "split_orientations",
]

#: Largest difference of any ImageOrientationPatient component within one stack (dcm2niix uses 1e-4).
ORIENTATION_GROUP_TOLERANCE = 1e-4
#: A lone image whose orientation is within this of its series' stack is a mis-written slice, not a
#: localizer (localizers are orthogonal or steeply tilted to the stack), degrees.
NEAR_ORIENTATION_DEGREES = 1.0
#: An orientation group this small beside a larger one is treated as a localizer (medio PR #23 case).
LONE_IMAGE_MAX = 2


def split_enhanced_echoes(groups: dict[tuple[Any, ...], list[Frame]]) -> dict[tuple[Any, ...], list[Frame]]:
    """Split an enhanced file's frames by echo time when every echo has the same number of frames (>= 2).

    Enhanced frames are grouped without their echo time (a lone frame must not become a stack of its own);
    a multi-echo file, though, would otherwise interleave echoes with time points on one unlabelled 4th axis.
    """
    result: dict[tuple[Any, ...], list[Frame]] = {}
    for key, members in groups.items():
        echoes: dict[float | None, list[Frame]] = {}
        for frame in members:
            enhanced = "#frame" in frame.label
            echo = round(frame.echo_time, 3) if enhanced and frame.echo_time is not None else None
            echoes.setdefault(echo, []).append(frame)
        counts = {len(part) for part in echoes.values()}
        if len(echoes) > 1 and None not in echoes and len(counts) == 1 and counts.pop() >= 2:
            for echo, part in sorted(echoes.items(), key=lambda item: float(item[0] or 0.0)):
                result[(*key[:5], echo, *key[6:])] = part
        else:
            result[key] = members
    return result


def group_key(frame: Frame) -> tuple[Any, ...]:
    assert frame.pixel_spacing is not None
    # Classic files without EchoNumbers are told apart by EchoTime; frames of an enhanced file never are
    # (all of them alike, the first one included: it must not become a stack of its own).
    enhanced = "#frame" in frame.label
    echo = (
        frame.echo_number
        if frame.echo_number is not None
        else (
            round(frame.echo_time, 3) if frame.echo_time is not None and not enhanced and not frame.stack_id else None
        )
    )
    return (
        frame.frame_of_reference_uid,
        frame.rows,
        frame.columns,
        round(frame.pixel_spacing[0], 4),
        round(frame.pixel_spacing[1], 4),
        echo,
        frame.complex_component,
        frame.stack_id,
        # A derived image (MPR, map) at the positions of the acquisition is not its next time point.
        frame.image_type[0] if frame.image_type else "",
        # A derived isotropic (trace) diffusion image is not a diffusion direction: kept apart, as dcm2niix does.
        ISOTROPIC if frame.diffusion is not None and frame.diffusion.isotropic else "",
        frame.is_localizer,
    )


#: How a field of :func:`group_key` reads (fields sharing a name are said together), and which fields make
#: a different grid or kind of image (a warning) rather than a second echo or component (information).
_KEY_NAMES = (
    "frame of reference",
    "matrix",
    "matrix",
    "pixel spacing",
    "pixel spacing",
    "echo",
    "component",
    "stack",
    "image type",
    "diffusion",
    None,
)
_GRID_NAMES = frozenset({"frame of reference", "matrix", "pixel spacing", "image type"})
#: The group key's mark of derived isotropic diffusion images, and the label suffix of their stack.
ISOTROPIC = "isotropic"
_COMPONENTS = {"M": "magnitude", "P": "phase", "R": "real", "I": "imaginary", "": "unspecified"}


def _describe_key(key: tuple[Any, ...], names: list[str]) -> str:
    said = {
        "frame of reference": f"frame of reference ...{str(key[0])[-8:]}",
        "matrix": f"matrix {key[1]} x {key[2]}",
        "pixel spacing": f"pixel spacing {key[3]:g} x {key[4]:g} mm",
        "echo": f"echo {key[5]}",
        "component": _COMPONENTS.get(str(key[6]), str(key[6])),
        "stack": f"stack {key[7]}",
        "image type": str(key[8]) or "no image type",
        "diffusion": "derived isotropic diffusion" if key[9] else "diffusion-weighted or none",
    }
    return ", ".join(said[name] for name in names)


def split_finding(groups: dict[tuple[Any, ...], list[Frame]]) -> Finding | None:
    """Explain a series that became several stacks for reasons other than orientation or localizers."""
    keys = [key for key in groups if not key[-1]]
    if len(keys) < 2:
        return None
    names: list[str] = []
    for index, name in enumerate(_KEY_NAMES):
        if name and name not in names and len({key[index] for key in keys}) > 1:
            names.append(name)
    if not names:
        return None
    parts = [
        f"{_describe_key(key, names)} ({len(groups[key])} image{'s' if len(groups[key]) > 1 else ''})" for key in keys
    ]
    return series_split(
        names,
        parts,
        grid_changes=bool(_GRID_NAMES.intersection(names)),
        where=tuple(groups[key][0].where for key in keys),
    )


def split_orientations(frames: Sequence[Frame]) -> list[list[Frame]]:
    groups: dict[int, list[Frame]] = {}
    for frame, number in zip(frames, _orientation_classes(frames), strict=True):
        groups.setdefault(number, []).append(frame)
    return list(groups.values())


def orientation_text(frame: Frame) -> str:
    normal = np.cross(np.asarray(frame.image_orientation[:3]), np.asarray(frame.image_orientation[3:]))  # type: ignore[index]
    return ["sagittal", "coronal", "axial"][int(np.argmax(np.abs(normal)))]


@dataclass(frozen=True, eq=False)
class Grouping:
    """A series' frame groups sorted into volumes and localizers (ImageType, or lone images of another orientation).

    ``orientation_of`` numbers the orientation of each volume group as first grouped (lone ones included), so
    that every split is explained with the tolerance that made it.
    """

    volumes: list[list[Frame]]
    localizers: list[list[Frame]]
    lone: list[list[Frame]]
    orientation_of: dict[int, int]

    @classmethod
    def of(cls, groups: dict[tuple[Any, ...], list[Frame]]) -> Grouping:
        """Split each group by orientation; a small group beside a larger one of another orientation is lone."""
        candidates = [
            (orientation_group, bool(key[-1]))
            for key, members in groups.items()
            for orientation_group in split_orientations(members)
        ]
        volumes = [g for g, localizer in candidates if not localizer]
        largest = max((len(g) for g in volumes), default=0)
        orientation_of = dict(zip(map(id, volumes), _orientation_classes([g[0] for g in volumes]), strict=True))
        lone: list[list[Frame]] = []
        if len(set(orientation_of.values())) > 1 and largest > LONE_IMAGE_MAX:
            main = {orientation_of[id(g)] for g in volumes if len(g) > LONE_IMAGE_MAX}
            lone = [g for g in volumes if len(g) <= LONE_IMAGE_MAX and orientation_of[id(g)] not in main]
        localizers = [g for g, localizer in candidates if localizer] + lone
        volumes = [g for g in volumes if not any(g is lone_group for lone_group in lone)]
        return cls(volumes, localizers, lone, orientation_of)

    def findings(self) -> list[Finding]:
        """LOCALIZER_EXCLUDED and ORIENTATION_MIXED, shared by every volume stack of the series."""
        shared: list[Finding] = []
        excluded = [f for g in self.localizers for f in g]
        if excluded and self.volumes:
            shared.append(self._excluded_finding(excluded))
        main_orientations = {self.orientation_of[id(g)] for g in self.volumes}
        if len(main_orientations) > 1:
            described = sorted({f"{orientation_text(g[0])} ({len(g)} images)" for g in self.volumes})
            normals = [_normal(g[0]) for g in self.volumes]
            widest = max(_angle_degrees(a, b) for a in normals for b in normals)
            shared.append(
                orientation_mixed(
                    len(main_orientations),
                    described,
                    widest,
                    tuple(g[0].where for g in self.volumes),
                    tolerance=ORIENTATION_GROUP_TOLERANCE,
                )
            )
        return shared

    def _excluded_finding(self, excluded: list[Frame]) -> Finding:
        reason = (
            "ImageType says LOCALIZER"
            if any(f.is_localizer for f in excluded)
            else "a lone image with another orientation, typical of a localizer"
        )
        # A localizer is tilted far from the stack; a lone image within a degree of it is a slice of the
        # stack whose orientation was written slightly differently, and the volume lacks it.
        tilts = [min(_orientation_difference_degrees(g[0], main[0]) for main in self.volumes) for g in self.lone]
        nearly = [tilt for tilt in tilts if tilt < NEAR_ORIENTATION_DEGREES]
        if nearly and not any(f.is_localizer for f in excluded):
            # Beside a slice the stack has, it is an extra image; elsewhere, a slice the volume now lacks.
            kept = np.array([f.image_position for g in self.volumes for f in g if f.image_position is not None])
            extra = all(
                kept.size and float(np.min(np.linalg.norm(kept - np.asarray(f.image_position), axis=1))) < 0.5
                for g in self.lone
                for f in g
                if f.image_position is not None
            )
            what = (
                "an extra image at a position the stack already has"
                if extra
                else "probably one of its slices, which the volume now lacks"
            )
            reason = (
                f"a lone image whose orientation differs by only {max(nearly):.2g} degrees from the stack's: {what}"
            )
        return localizer_excluded(excluded, reason, near_stack=bool(nearly))


def _orientation_classes(frames: Sequence[Frame]) -> list[int]:
    """Return an orientation number per frame: equal when ImageOrientationPatient agrees within tolerance.

    Frames are numbered in order of first appearance, each against the first frame of its orientation.
    """
    representatives: list[NDArray[np.float64]] = []
    classes = []
    for frame in frames:
        orientation = np.asarray(frame.image_orientation, dtype=np.float64)
        for number, reference in enumerate(representatives):
            if float(np.max(np.abs(reference - orientation))) <= ORIENTATION_GROUP_TOLERANCE:
                classes.append(number)
                break
        else:
            representatives.append(orientation)
            classes.append(len(representatives) - 1)
    return classes


def _orientation_difference_degrees(first: Frame, second: Frame) -> float:
    """Largest angle between the two frames' row directions and between their column directions, degrees."""
    a = np.asarray(first.image_orientation, dtype=np.float64).reshape(2, 3)
    b = np.asarray(second.image_orientation, dtype=np.float64).reshape(2, 3)
    cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).max())


def _angle_degrees(first: NDArray[np.float64], second: NDArray[np.float64]) -> float:
    """Angle between two slice normals, degrees (0-90: a flipped normal is the same plane)."""
    return math.degrees(math.acos(min(1.0, abs(float(np.dot(first, second))))))


def _normal(frame: Frame) -> NDArray[np.float64]:
    orientation = np.asarray(frame.image_orientation, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)
