"""Group frames into series and stacks, and run every check.

Series = SeriesInstanceUID (and SeriesNumber). Within a series, frames are split into stacks as
``_grouping`` says (frame of reference, orientation, pixel grid, echo, component, StackID, image type, derived
isotropic diffusion, localizer type). Localizers never join a volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.dicom import Diffusion, DistortionState, FileProblem, Frame, ScanResult
from trueshape.errors import GeometryError
from trueshape.findings import Finding, Severity
from trueshape.geometry._affine import MAX_POSITION_MM, MAX_SPACING_MM, MIN_SPACING_MM, orientation_usable
from trueshape.geometry._distortion import distortion_findings
from trueshape.geometry._findings import (
    damaged_copy_skipped,
    files_unreadable,
    geometry_missing,
)
from trueshape.geometry._grouping import (
    ISOTROPIC,
    ORIENTATION_GROUP_TOLERANCE,
    Grouping,
    group_key,
    split_enhanced_echoes,
    split_finding,
    split_orientations,
)
from trueshape.geometry._naming import disambiguate, file_safe
from trueshape.geometry._stack import IrregularPolicy, StackLayout, layout_stack
from trueshape.geometry._volume import Provenance, VolumeGeometry

__all__ = ["ORIENTATION_GROUP_TOLERANCE", "Inspection", "Series", "Stack", "group_series"]


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
        """A file-name-safe name: ``<SeriesNumber>_<SeriesDescription>[_stack<n>]``.

        A localizer ends in ``_localizer``, a derived isotropic diffusion image in ``_isotropic`` (numbered apart
        from the series' other stacks: the main stack of a DTI series keeps the plain name, as with dcm2niix).
        """
        description = file_safe(self.series_description)
        number = f"{self.series_number}_" if self.series_number is not None else ""
        suffix = f"_stack{self.index}" if self.stack_count_in_series > 1 else ""
        unique = f"_{self.disambiguator}" if self.disambiguator else ""
        kind = "_localizer" if self.is_localizer else f"_{ISOTROPIC}" if _is_isotropic(self.layout) else ""
        return f"{number}{description}{suffix}{unique}{kind}"

    @property
    def diffusion(self) -> tuple[Diffusion | None, ...] | None:
        """The diffusion weighting of each volume (its first slice's), None when no image of the stack has one."""
        weights = tuple(frame.diffusion for frame in self.layout.slices[0])
        return weights if any(w is not None for w in weights) else None

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
            "diffusion": _diffusion_json(self.diffusion),
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
            "problems": [_problem_json(p) for p in self.problems],
        }


def _diffusion_json(weights: tuple[Diffusion | None, ...] | None) -> dict[str, Any] | None:
    """Return the b-value and direction (patient LPS) of each volume, and the tags they came from."""
    if weights is None:
        return None
    return {
        "b_values_s_per_mm2": [w.b_value if w is not None else None for w in weights],
        "directions_lps": [list(w.direction_lps) if w is not None and w.direction_lps else None for w in weights],
        "isotropic": all(w is not None and w.isotropic for w in weights),
        "source": next(w.source for w in weights if w is not None),
    }


def _problem_json(problem: FileProblem) -> dict[str, Any]:
    record: dict[str, Any] = {"file": problem.path, "message": problem.message}
    if problem.copy_of:
        record["copy_of"] = problem.copy_of  # left out: another file holds its slice whole
    return record


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
            "problems": [_problem_json(p) for p in self.problems],
            "errors": list(self.errors),
            "skipped_non_dicom_files": self.skipped_non_dicom,
            "skipped_non_image_dicom": self.skipped_non_image,
        }


def _has_geometry(frame: Frame) -> bool:
    return (
        frame.image_position is not None
        and max(abs(v) for v in frame.image_position) <= MAX_POSITION_MM
        and orientation_usable(frame.image_orientation)
        and frame.pixel_spacing is not None
        and MIN_SPACING_MM <= min(frame.pixel_spacing)
        and max(frame.pixel_spacing) <= MAX_SPACING_MM
    )


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
            refused, message = _refused_series(uid, frames, problems_by_series.get(uid, []), error)
            series_list.append(refused)
            errors.append(message)
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


def _refused_series(uid: str, frames: list[Frame], problems: list[FileProblem], error: GeometryError
                    ) -> tuple[Series, str]:
    """Return a series the geometry refused (listed without stacks) and the one line that says why, naming a file."""
    # Every message names a file: one raised deep in the geometry (an affine check) gets the series' first.
    message = str(error)
    if not any(frame.path in message for frame in frames):
        message = f"{frames[0].where}: {message}"
    first = frames[0]
    # the findings that made the policy refuse the series, as errors (a bare error gets no code)
    rejected = tuple(replace(f, severity=Severity.ERROR) for f in error.findings if isinstance(f, Finding))
    series = Series(uid, first.series_number, first.series_description, first.modality, (), rejected, tuple(problems))
    return series, message


def _build_series(uid: str, frames: list[Frame], problems: list[FileProblem], policy: IrregularPolicy) -> Series:
    """One series: what could not be placed, its stacks (grouped, split by orientation, localizers apart)."""
    first = frames[0]
    unplaced = [f for f in frames if not _has_geometry(f)]
    series_findings = [geometry_missing(unplaced)] if unplaced else []
    unreadable = [p for p in problems if not p.copy_of]
    if unreadable:
        series_findings.append(files_unreadable(unreadable))
    copies = [p for p in problems if p.copy_of]
    if copies:
        series_findings.append(damaged_copy_skipped(copies))
    groups: dict[tuple[Any, ...], list[Frame]] = {}
    for frame in frames:
        if _has_geometry(frame):
            groups.setdefault(group_key(frame), []).append(frame)
    groups = split_enhanced_echoes(groups)
    grouping = Grouping.of(groups)
    shared = grouping.findings()
    split = split_finding(groups)
    if split is not None:
        shared.append(split)
    layouts: list[tuple[StackLayout, bool]] = []
    for group in grouping.volumes:
        layouts.extend((layout, False) for layout in layout_stack(group, policy=policy))
    for group in grouping.localizers:
        for orientation_group in split_orientations(group):
            layouts.extend((layout, True) for layout in layout_stack(orientation_group, policy=IrregularPolicy.WARN))
    layouts.sort(key=lambda item: (item[1], _is_isotropic(item[0]), _layout_order(item[0])))
    isotropic = sum(_is_isotropic(layout) for layout, _ in layouts)
    stacks = tuple(
        _make_stack(
            uid,
            layout,
            index + 1,
            isotropic if _is_isotropic(layout) else len(layouts) - isotropic,  # each kind is numbered apart
            localizer,
            [] if localizer else shared,
        )
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


def _is_isotropic(layout: StackLayout) -> bool:
    """Whether a layout holds derived isotropic diffusion images (a stack of its own, labelled ``_isotropic``)."""
    diffusion = layout.slices[0][0].diffusion
    return diffusion is not None and diffusion.isotropic


def _as_triple(vector: NDArray[np.float64]) -> tuple[float, float, float]:
    return float(vector[0]), float(vector[1]), float(vector[2])


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
