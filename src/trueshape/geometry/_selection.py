"""Which stack a SERIES argument names, and whether its geometry may be used.

A SERIES argument is a folder, a file, or ``FOLDER#<SeriesInstanceUID or SeriesNumber>[:stack]``. An
inspection's stacks are selected by it; a command that needs one stack gets exactly one or is told what to
type instead, and never a stack one of whose files could not be read.
"""

from __future__ import annotations

import os
from pathlib import Path

from trueshape.dicom import FileProblem
from trueshape.errors import DicomInputError, GeometryError
from trueshape.findings import FindingCode, Severity
from trueshape.geometry._series import Inspection, Stack
from trueshape.settings import ValidationMode, settings, warn_and_log

__all__ = [
    "GEOMETRY_WARNING_CODES",
    "apply_validation",
    "describe_empty",
    "input_errors",
    "input_warnings",
    "one_stack",
    "parse_series_argument",
    "refuse_incomplete",
    "select_stacks",
    "unreadable_slices",
]

#: Findings that mean the voxel grid departs from where the slices really were.
GEOMETRY_WARNING_CODES = frozenset(
    {
        FindingCode.SPACING_IRREGULAR,
        FindingCode.SLICES_MISSING,
        FindingCode.POSITIONS_DUPLICATED,
        FindingCode.GANTRY_TILT,
        FindingCode.ORIENTATION_NOT_ORTHONORMAL,
        FindingCode.CORNERS_MISMATCH,
        FindingCode.SPACING_TAG_MISMATCH,
        FindingCode.ORIENTATION_MIXED,
    }
)
#: Findings about slices off the grid: answered when the stack was resampled or split onto its true grid.
_OFF_GRID_CODES = frozenset({FindingCode.SLICES_MISSING, FindingCode.SPACING_IRREGULAR, FindingCode.GANTRY_TILT})


def parse_series_argument(argument: str | os.PathLike[str]) -> tuple[Path, str | None, int | None]:
    """Split ``FOLDER#<SeriesInstanceUID or SeriesNumber>[:stack]`` into (path, series, stack).

    A path that exists whole (a folder whose name holds ``#``) is taken as it is.

    Examples
    --------
    >>> parse_series_argument("dicom#3:2")
    (PosixPath('dicom'), '3', 2)
    >>> parse_series_argument("dicom")
    (PosixPath('dicom'), None, None)
    """
    text = str(argument)
    if not text.strip():
        raise DicomInputError("an empty path was given (an unset shell variable?): name a DICOM file or folder")
    try:
        whole = "#" not in text or Path(text).exists()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise DicomInputError(f"{text}: cannot be read ({error.strerror or error})") from None
    if whole:
        return Path(text), None, None
    path, _, selector = text.rpartition("#")
    series, _, stack = selector.partition(":")
    if stack and not stack.isdigit():
        raise DicomInputError(f"{text}: the stack after ':' must be a number (1, 2, ...), got {stack!r}")
    return Path(path), series or None, int(stack) if stack else None


def select_stacks(inspection: Inspection, series: str | None, stack: int | None) -> list[Stack]:
    """Pick stacks by SeriesInstanceUID or SeriesNumber (and 1-based stack index).

    Examples
    --------
    >>> [s.selector for s in select_stacks(trueshape.inspect("dicom"), "3", None)]  # doctest: +SKIP
    ['3:1', '3:2']

    Raises
    ------
    DicomInputError
        When nothing matches (the message lists what is there).
    """
    stacks = inspection.stacks
    if series is not None:
        stacks = [s for s in stacks if series in (s.series_instance_uid, str(s.series_number))]
    if stack is not None:
        stacks = [s for s in stacks if s.index == stack]
    if not stacks:
        available = ", ".join(s.selector for s in inspection.stacks) or "none"
        raise DicomInputError(
            f"{inspection.root}: no stack matches series {series!r}"
            + (f" stack {stack}" if stack is not None else "")
            + f" (available: {available})"
        )
    return stacks


def one_stack(
    inspection: Inspection,
    path: Path,
    series_key: str | None,
    stack_index: int | None,
    *,
    include_localizers: bool = False,
) -> Stack:
    """Resolve a SERIES argument to exactly one stack, or say why not (and what to type instead).

    Localizers are left out when other stacks match, unless ``include_localizers``.

    Raises
    ------
    DicomInputError
        No stack, several, or one of whose files could not be read (:func:`refuse_incomplete`).
    GeometryError
        The only series was refused by the irregular-slice policy.

    Examples
    --------
    >>> path, series, stack = parse_series_argument("session/dicom#3")
    >>> one_stack(trueshape.inspect(path), path, series, stack).selector   # doctest: +SKIP
    '3:1'
    """
    if not inspection.stacks:
        if inspection.errors:
            raise GeometryError(inspection.errors[0])
        raise DicomInputError(describe_empty(inspection))
    stacks = select_stacks(inspection, series_key, stack_index)
    if not include_localizers and len(stacks) > 1:
        stacks = [s for s in stacks if not s.is_localizer] or stacks
    if len(stacks) > 1:
        raise DicomInputError(
            f"{path}: {len(stacks)} stacks match; name one as {path}#<series>[:stack] "
            f"(choices: {', '.join(s.selector for s in stacks)})"
        )
    stack = stacks[0]
    refuse_incomplete(inspection, stack)
    return stack


def unreadable_slices(inspection: Inspection, stack: Stack) -> list[FileProblem]:
    """Return the files that could not be used and may hold slices of ``stack`` that no other file supplies.

    A file of this series (or one whose series cannot be told, beside or below its slices) that could not be
    used would leave a slice to be interpolated or the series short. A damaged copy of a file whose slice
    another file holds whole (:attr:`FileProblem.copy_of`) is not one of them.
    """
    folders = {Path(frame.path).parent for frame in stack.frames}
    return [
        p
        for p in inspection.problems
        if p.may_be_slice
        and not p.copy_of
        and (
            p.series_instance_uid == stack.series_instance_uid
            or (not p.series_instance_uid and _beside_or_below(Path(p.path), folders))
        )
    ]


def refuse_incomplete(inspection: Inspection, stack: Stack) -> None:
    """Raise DicomInputError when a file that may hold slices of ``stack`` could not be used.

    The rest would be a silently wrong volume; the message says which slice, when the file's header does.
    """
    unusable = unreadable_slices(inspection, stack)
    if unusable:
        more = f" (and {len(unusable) - 1} more)" if len(unusable) > 1 else ""
        raise DicomInputError(
            f"{unusable[0].message}{more}; it may hold {unusable[0].slice_text} of {stack.label}, which no other file "
            "supplies: make it readable or move it out of the folder"
        )


def _beside_or_below(path: Path, folders: set[Path]) -> bool:
    """Whether the unreadable file ``path`` is in or under one of ``folders``, where a slice could be.

    An unreadable folder (say a data disk's lost+found) is reported by inspect but does not stop a series.
    """
    if path.is_dir():
        return False
    return any(folder in path.parents for folder in folders)


def describe_empty(inspection: Inspection) -> str:
    """Say in one line why a path gave no loadable stack (the first problem, or that nothing was found)."""
    if inspection.problems:
        return inspection.problems[0].message
    if inspection.errors:
        return inspection.errors[0]
    for series in inspection.series:
        for finding in series.findings:
            return f"{finding.where[0] if finding.where else inspection.root}: {finding.message}"
    skipped = inspection.skipped_non_dicom + inspection.skipped_non_image
    return f"{inspection.root}: no DICOM images found" + (f" ({skipped} other file(s) skipped)" if skipped else "")


def input_errors(inspection: Inspection) -> list[str]:
    """Return what of the input could not be used: unreadable files, refused series, images without geometry.

    A damaged copy of a file whose slice another file holds whole is a warning (:func:`input_warnings`).
    """
    errors = [p.message for p in inspection.problems if not p.copy_of] + list(inspection.errors)
    for series in inspection.series:
        for finding in series.findings:
            if finding.severity is Severity.ERROR and finding.code is FindingCode.GEOMETRY_MISSING:
                errors.append(f"{finding.where[0]}: {finding.message}")
    return errors


def input_warnings(inspection: Inspection) -> list[str]:
    """Return the damaged copies left out because another file holds their slice whole, one sentence each."""
    return [
        f"{p.message}; left out: {p.path} names {p.slice_text} (SOPInstanceUID {p.sop_instance_uid}), which "
        f"{p.copy_of} holds whole"
        for p in inspection.problems
        if p.copy_of
    ]


def apply_validation(stack: Stack, validation: ValidationMode | str | None) -> None:
    """Apply the strictness policy to a stack's geometry findings: ignore, warn (default) or raise.

    ``None`` means the process-wide :data:`trueshape.settings.settings`. Findings about slices off the
    grid do not count once the stack was resampled or split onto its true grid.

    Raises
    ------
    GeometryError
        With ``raise``, when the stack has geometry warnings (they are its ``findings``).

    Examples
    --------
    >>> apply_validation(trueshape.inspect("dicom").stacks[0], "raise")  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    trueshape.errors.GeometryError: dicom/IM00001.dcm: SLICES_MISSING: 1 slice(s) missing: ...
    """
    mode = ValidationMode(validation) if validation is not None else settings.validation_mode
    on_grid = stack.layout.resampled or stack.layout.acquisition is None  # resampled or split: grid is true
    problems = [
        f
        for f in stack.findings
        if f.code in GEOMETRY_WARNING_CODES
        and f.severity is not Severity.INFO
        and not (on_grid and f.code in _OFF_GRID_CODES)
    ]
    if not problems or mode is ValidationMode.IGNORE:
        return
    if mode is ValidationMode.RAISE:
        raise GeometryError(
            f"{stack.frames[0].path}: "
            + " ".join(f"{f.code.value}: {f.message}" for f in problems)
            + " (validation mode raise)",
            findings=tuple(problems),
        )
    for finding in problems:
        warn_and_log(f"{stack.label}: {finding.code.value}: {finding.message}", stacklevel=3)
