"""Group frames into series and stacks, and run every check.

Series = SeriesInstanceUID. Within a series, frames are split into stacks by frame of reference,
orientation (within :data:`ORIENTATION_GROUP_TOLERANCE`), pixel grid, echo, complex component (magnitude /
phase), multi-frame StackID and localizer type. Localizers never join a volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import DistortionState, FileProblem, Frame, ScanResult
from trueshape.errors import GeometryError
from trueshape.findings import Finding, Severity
from trueshape.geometry._affine import orientation_usable
from trueshape.geometry._distortion import distortion_findings
from trueshape.geometry._findings import (
    files_unreadable,
    geometry_missing,
    localizer_excluded,
    orientation_mixed,
    series_split,
)
from trueshape.geometry._naming import disambiguate, file_safe
from trueshape.geometry._stack import IrregularPolicy, StackLayout, layout_stack
from trueshape.geometry._volume import Provenance, VolumeGeometry

__all__ = ["ORIENTATION_GROUP_TOLERANCE", "Inspection", "Series", "Stack", "group_series"]

#: Largest difference of any ImageOrientationPatient component within one stack (dcm2niix uses 1e-4).
ORIENTATION_GROUP_TOLERANCE = 1e-4
#: A lone image whose orientation is within this of its series' stack is a mis-written slice, not a
#: localizer (localizers are orthogonal or steeply tilted to the stack), degrees.
NEAR_ORIENTATION_DEGREES = 1.0
#: An orientation group this small beside a larger one is treated as a localizer (medio PR #23 case).
LONE_IMAGE_MAX = 2


@dataclass(frozen=True, eq=False)
class Stack:
    """A volume-to-be: frames on one grid, with everything the checks found.

    ``index`` is 1-based within its series; ``label`` is what output files are named after.
    """

    series_instance_uid: str
    series_number: int | None
    series_description: str
    index: int
    layout: StackLayout
    findings: tuple[Finding, ...]
    is_localizer: bool
    distortion_state: DistortionState
    distortion_source: str
    isocentre_lps: NDArray[np.float64]
    isocentre_source: str
    max_distance_from_isocentre_mm: float
    stack_count_in_series: int = 1
    #: Appended to the label when another series would share it: a short readable distinction (its folder, when
    #: it was acquired, else the tail of its SeriesInstanceUID), explained by ``distinction``.
    disambiguator: str = ""
    distinction: str = ""
    #: Another series has the same SeriesNumber: the selector names this one by its SeriesInstanceUID.
    number_shared: bool = False

    @property
    def geometry(self) -> VolumeGeometry:
        """The grid of the volume a user gets."""
        return self.layout.geometry

    @property
    def shape(self) -> tuple[int, ...]:
        """Volume shape, with the 4th axis when the stack repeats positions in time/echo."""
        t = self.layout.volume_count
        return (*self.geometry.shape, t) if t > 1 else self.geometry.shape

    @property
    def frames(self) -> list[Frame]:
        """Every frame, slice-major."""
        return [f for s in self.layout.slices for f in s]

    @property
    def label(self) -> str:
        """A file-name-safe name: ``<SeriesNumber>_<SeriesDescription>[_stack<n>]``."""
        description = file_safe(self.series_description)
        number = f"{self.series_number}_" if self.series_number is not None else ""
        suffix = f"_stack{self.index}" if self.stack_count_in_series > 1 else ""
        unique = f"_{self.disambiguator}" if self.disambiguator else ""
        return f"{number}{description}{suffix}{unique}" + ("_localizer" if self.is_localizer else "")

    @property
    def selector(self) -> str:
        """How to name this stack on the command line: ``<SeriesNumber or SeriesInstanceUID>:<index>``."""
        numbered = self.series_number is not None and not self.number_shared
        series = self.series_number if numbered else self.series_instance_uid
        return f"{series}:{self.index}"

    def provenance(self) -> Provenance:
        """Provenance record for a Volume built from this stack."""
        first = self.layout.slices[0][0]
        return Provenance(
            series_instance_uid=self.series_instance_uid,
            series_number=self.series_number,
            series_description=self.series_description,
            modality=first.modality,
            manufacturer=first.manufacturer,
            study_instance_uid=first.study_instance_uid,
            frame_of_reference_uid=first.frame_of_reference_uid,
            slice_sources=tuple(tuple(f.label for f in s) for s in self.layout.slices),
            slice_normal_lps=_as_triple(self.geometry.direction[:, 2]),
            distortion_state=self.distortion_state,
            distortion_source=self.distortion_source,
            isocentre_lps=(float(self.isocentre_lps[0]), float(self.isocentre_lps[1]), float(self.isocentre_lps[2])),
            isocentre_source=self.isocentre_source,
            table_offset_mm=first.vendor.table_position_mm,
            table_source=first.vendor.table_source,
            patient_position=first.vendor.patient_position,
            gradient_coil=first.vendor.gradient_coil,
            slice_thickness_mm=first.slice_thickness,
            spacing_between_slices_mm=first.spacing_between_slices,
            echo_time_ms=first.echo_time,
        )

    def to_json(self) -> dict[str, Any]:
        """Machine-readable facts: shape, affine, spacing, distortion state, isocentre, findings."""
        first = self.layout.slices[0][0]
        geometry = self.geometry.to_json()
        return {
            "series_instance_uid": self.series_instance_uid,
            "series_number": self.series_number,
            "series_description": self.series_description,
            "stack": self.index,
            "selector": self.selector,
            "label": self.label,
            "label_distinction": self.distinction or None,
            "is_localizer": self.is_localizer,
            "modality": first.modality,
            "shape": list(self.shape),
            "affine_lps": geometry["affine_lps"],
            "spacing": geometry["spacing"],
            "origin_lps": geometry["origin_lps"],
            "direction_lps": geometry["direction_lps"],
            "slice_count": self.geometry.shape[2],
            "volume_count": self.layout.volume_count,
            "resampled": self.layout.resampled,
            # Only a stack kept off its true slice positions has (and needs) an acquisition transform.
            "has_acquisition_transform": self.layout.acquisition is not None and not self.layout.resampled,
            "slice_thickness_mm": first.slice_thickness,
            "spacing_between_slices_mm": first.spacing_between_slices,
            "distortion_state": self.distortion_state.value,
            "distortion_source": self.distortion_source,
            "patient_position": first.vendor.patient_position.value if first.vendor.patient_position else None,
            "gradient_coil": first.vendor.gradient_coil,
            "table_position_mm": list(first.vendor.table_position_mm) if first.vendor.table_position_mm else None,
            "table_source": first.vendor.table_source,
            "isocentre_lps": [float(v) for v in self.isocentre_lps],
            "isocentre_source": self.isocentre_source,
            "max_distance_from_isocentre_mm": self.max_distance_from_isocentre_mm,
            "findings": [f.to_json() for f in self.findings],
            "slice_sources": [
                [f.path + (f.label[f.label.index("#") :] if "#" in f.label else "") for f in s]
                for s in self.layout.slices
            ],
        }


@dataclass(frozen=True, eq=False)
class Series:
    """All stacks of one SeriesInstanceUID, plus series-level findings (frames that could not be placed)."""

    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    stacks: tuple[Stack, ...]
    findings: tuple[Finding, ...] = ()
    problems: tuple[FileProblem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Machine-readable series record."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "series_number": self.series_number,
            "series_description": self.series_description,
            "modality": self.modality,
            "stacks": [s.to_json() for s in self.stacks],
            "findings": [f.to_json() for f in self.findings],
            "problems": [{"file": p.path, "message": p.message} for p in self.problems],
        }


@dataclass(frozen=True, eq=False)
class Inspection:
    """Everything ``trueshape inspect`` knows about a folder."""

    root: str
    series: tuple[Series, ...]
    problems: tuple[FileProblem, ...] = ()
    skipped_non_dicom: int = 0
    skipped_non_image: int = 0
    errors: tuple[str, ...] = field(default_factory=tuple)

    @property
    def stacks(self) -> list[Stack]:
        """Every stack of every series."""
        return [stack for series in self.series for stack in series.stacks]

    def to_json(self) -> dict[str, Any]:
        """Machine-readable inspection (the ``--json`` output)."""
        return {
            "root": self.root,
            "series": [s.to_json() for s in self.series],
            "problems": [{"file": p.path, "message": p.message} for p in self.problems],
            "errors": list(self.errors),
            "skipped_non_dicom_files": self.skipped_non_dicom,
            "skipped_non_image_dicom": self.skipped_non_image,
        }


def _has_geometry(frame: Frame) -> bool:
    return (
        frame.image_position is not None
        and orientation_usable(frame.image_orientation)
        and frame.pixel_spacing is not None
        and min(frame.pixel_spacing) > 0
    )


def _split_enhanced_echoes(groups: dict[tuple[Any, ...], list[Frame]]) -> dict[tuple[Any, ...], list[Frame]]:
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


def _group_key(frame: Frame) -> tuple[Any, ...]:
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
        frame.is_localizer,
    )


#: How a field of :func:`_group_key` reads (fields sharing a name are said together), and which fields make
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
    None,
)
_GRID_NAMES = frozenset({"frame of reference", "matrix", "pixel spacing", "image type"})
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
    }
    return ", ".join(said[name] for name in names)


def _split_finding(groups: dict[tuple[Any, ...], list[Frame]]) -> Finding | None:
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


def _split_orientations(frames: Sequence[Frame]) -> list[list[Frame]]:
    groups: dict[int, list[Frame]] = {}
    for frame, number in zip(frames, _orientation_classes(frames), strict=True):
        groups.setdefault(number, []).append(frame)
    return list(groups.values())


def _orientation_text(frame: Frame) -> str:
    normal = np.cross(np.asarray(frame.image_orientation[:3]), np.asarray(frame.image_orientation[3:]))  # type: ignore[index]
    return ["sagittal", "coronal", "axial"][int(np.argmax(np.abs(normal)))]


def group_series(scan: ScanResult, *, policy: IrregularPolicy = IrregularPolicy.WARN) -> Inspection:
    """Group a scan into series and stacks and run every geometry and distortion check.

    Parameters
    ----------
    scan : ScanResult
        Frames from :func:`trueshape.dicom.scan`.
    policy : IrregularPolicy
        Irregular-spacing policy (``fail`` turns irregular stacks into per-series errors).

    Returns
    -------
    Inspection
        Series (ordered by SeriesNumber, then UID), stacks, findings, file problems.
    """
    # SeriesNumber splits too: copies of a series re-sent under new numbers keep their UID (dcm2niix agrees).
    by_series: dict[tuple[str, int | None], list[Frame]] = {}
    for frame in scan.frames:
        by_series.setdefault((frame.series_instance_uid, frame.series_number), []).append(frame)
    problems_by_series: dict[str, list[FileProblem]] = {}
    for problem in scan.problems:
        problems_by_series.setdefault(problem.series_instance_uid, []).append(problem)
    series_list: list[Series] = []
    errors: list[str] = []
    for (uid, _), frames in by_series.items():
        try:
            series_list.append(_build_series(uid, frames, problems_by_series.get(uid, []), policy))
        except GeometryError as error:
            errors.append(str(error))
            first = frames[0]
            # the findings that made the policy refuse the series, as errors (a bare error gets no code)
            rejected = tuple(replace(f, severity=Severity.ERROR) for f in error.findings if isinstance(f, Finding))
            series_list.append(
                Series(
                    uid,
                    first.series_number,
                    first.series_description,
                    first.modality,
                    (),
                    rejected,
                    tuple(problems_by_series.get(uid, [])),
                )
            )
    series_list = disambiguate(series_list)
    # By number, then by name: series sharing a number are listed by their distinction (subject01 before 02).
    series_list.sort(
        key=lambda s: (
            s.series_number if s.series_number is not None else 1 << 30,
            s.stacks[0].label.casefold() if s.stacks else "",
            s.series_instance_uid,
        )
    )
    return Inspection(
        root=scan.root,
        series=tuple(series_list),
        problems=scan.problems,
        skipped_non_dicom=len(scan.skipped_non_dicom),
        skipped_non_image=len(scan.skipped_non_image),
        errors=tuple(errors),
    )


def _build_series(uid: str, frames: list[Frame], problems: list[FileProblem], policy: IrregularPolicy) -> Series:
    """One series: what could not be placed, its stacks (grouped, split by orientation, localizers apart)."""
    first = frames[0]
    unplaced = [f for f in frames if not _has_geometry(f)]
    series_findings = [geometry_missing(unplaced)] if unplaced else []
    if problems:
        series_findings.append(files_unreadable(problems))
    groups: dict[tuple[Any, ...], list[Frame]] = {}
    for frame in frames:
        if _has_geometry(frame):
            groups.setdefault(_group_key(frame), []).append(frame)
    groups = _split_enhanced_echoes(groups)
    grouping = _Grouping.of(groups)
    shared = grouping.findings()
    split = _split_finding(groups)
    if split is not None:
        shared.append(split)
    layouts: list[tuple[StackLayout, bool]] = []
    for group in grouping.volumes:
        layouts.extend((layout, False) for layout in layout_stack(group, policy=policy))
    for group in grouping.localizers:
        for orientation_group in _split_orientations(group):
            layouts.extend((layout, True) for layout in layout_stack(orientation_group, policy=IrregularPolicy.WARN))
    layouts.sort(key=lambda item: (item[1], _layout_order(item[0])))
    stacks = tuple(
        _make_stack(uid, layout, index + 1, len(layouts), localizer, [] if localizer else shared)
        for index, (layout, localizer) in enumerate(layouts)
    )
    return Series(
        uid,
        first.series_number,
        first.series_description,
        first.modality,
        stacks,
        tuple(series_findings),
        tuple(problems),
    )


@dataclass(frozen=True, eq=False)
class _Grouping:
    """A series' frame groups sorted into volumes and localizers (ImageType, or lone images of another orientation).

    ``orientation_of`` numbers the orientation of each volume group as first grouped (lone ones included), so
    that every split is explained with the tolerance that made it.
    """

    volumes: list[list[Frame]]
    localizers: list[list[Frame]]
    lone: list[list[Frame]]
    orientation_of: dict[int, int]

    @classmethod
    def of(cls, groups: dict[tuple[Any, ...], list[Frame]]) -> _Grouping:
        """Split each group by orientation; a small group beside a larger one of another orientation is lone."""
        candidates = [
            (orientation_group, bool(key[-1]))
            for key, members in groups.items()
            for orientation_group in _split_orientations(members)
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
            described = sorted({f"{_orientation_text(g[0])} ({len(g)} images)" for g in self.volumes})
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


def _as_triple(vector: NDArray[np.float64]) -> tuple[float, float, float]:
    return float(vector[0]), float(vector[1]), float(vector[2])


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


def _layout_order(layout: StackLayout) -> tuple[Any, ...]:
    first = layout.slices[0][0]
    return (
        first.echo_number or 0,
        first.echo_time or 0.0,
        first.complex_component,
        first.stack_id,
        first.instance_number or 0,
    )


def _make_stack(uid: str, layout: StackLayout, index: int, count: int, localizer: bool, shared: list[Finding]) -> Stack:
    frames = [f for s in layout.slices for f in s]
    first = frames[0]
    isocentre, isocentre_source = first.vendor.isocentre_lps()
    state, source, distance, findings = distortion_findings(
        frames,
        corners_lps=layout.geometry.corner_points(),
        normal=layout.geometry.direction[:, 2],
        isocentre_lps=isocentre,
        isocentre_source=isocentre_source,
    )
    if localizer:
        findings = []
    return Stack(
        series_instance_uid=uid,
        series_number=first.series_number,
        series_description=first.series_description,
        index=index,
        layout=layout,
        findings=(*shared, *layout.findings, *findings),
        is_localizer=localizer,
        distortion_state=state,
        distortion_source=source,
        isocentre_lps=isocentre,
        isocentre_source=isocentre_source,
        max_distance_from_isocentre_mm=distance,
        stack_count_in_series=count,
    )
