"""Which stack a SERIES argument names, and whether its geometry may be used.

A SERIES argument is a folder, a file, or ``FOLDER#<SeriesInstanceUID or SeriesNumber>[:stack]``. An
inspection's stacks are selected by it; a command that needs one stack gets exactly one or is told what to
type instead, and never a stack one of whose files could not be read.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from trueshape.dicom import FileProblem
from trueshape.errors import DicomInputError, GeometryError
from trueshape.findings import Finding, FindingCode, Severity
from trueshape.geometry._naming import file_safe
from trueshape.geometry._series import Inspection, Stack
from trueshape.settings import ValidationMode, settings, warn_and_log

__all__ = [
    "GEOMETRY_WARNING_CODES",
    "apply_validation",
    "describe_empty",
    "geometry_problems",
    "input_errors",
    "input_warnings",
    "one_stack",
    "parse_series_argument",
    "refuse_incomplete",
    "restrict",
    "select_stacks",
    "series_argument",
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
    """Split ``FOLDER#<series>[:stack]`` into (path, series, stack).

    ``<series>`` is a SeriesNumber, a SeriesInstanceUID, a SeriesDescription or an output label (see
    :func:`select_stacks`). A path that exists whole (a folder whose name holds ``#``) is taken as it is.

    Examples
    --------
    >>> parse_series_argument("dicom#3:2")
    (PosixPath('dicom'), '3', 2)
    >>> parse_series_argument("dicom#t1 cor: hips")
    (PosixPath('dicom'), 't1 cor: hips', None)
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
    series, colon, stack = selector.rpartition(":")
    if not colon:  # no stack index
        series, stack = selector, ""
    elif not stack.isdigit():
        if series.strip() and series.replace(".", "").isdigit():  # a number or UID: what follows is a stack
            raise DicomInputError(f"{text}: the stack after ':' must be a number (1, 2, ...), got {stack!r}")
        series, stack = selector, ""  # a description holding ':'
    return Path(path), series or None, int(stack) if stack else None


def select_stacks(inspection: Inspection, series: str | None, stack: int | None) -> list[Stack]:
    """Pick stacks by SeriesNumber or SeriesInstanceUID, else by SeriesDescription or label (and 1-based stack).

    A description or label is compared without regard to case, as typed or as file names carry it
    (``T1 cor`` matches ``3_T1_cor``).

    Examples
    --------
    >>> [s.selector for s in select_stacks(trueshape.inspect("dicom"), "3", None)]  # doctest: +SKIP
    ['3:1', '3:2']
    >>> [s.label for s in select_stacks(trueshape.inspect("dicom"), "t1 cor", None)]  # doctest: +SKIP
    ['3_t1_cor']

    Raises
    ------
    DicomInputError
        When nothing matches (the message lists what is there).
    """
    stacks = inspection.stacks
    if series is not None:
        stacks = [s for s in inspection.stacks if series in (s.series_instance_uid, str(s.series_number))]
        if not stacks:
            typed = {series.casefold(), file_safe(series).casefold()}
            stacks = [
                s
                for s in inspection.stacks
                if typed
                & {s.series_description.casefold(), file_safe(s.series_description).casefold(), s.label.casefold()}
            ]
    if stack is not None:
        stacks = [s for s in stacks if s.index == stack]
    if not stacks:
        available = ", ".join(_choice(s) for s in inspection.stacks) or "none"
        raise DicomInputError(
            f"{inspection.root}: no stack matches series {series!r}"
            + (f" stack {stack}" if stack is not None else "")
            + f" (available: {available})"
        )
    return stacks


def series_argument(root: str, inspection: Inspection, stack: Stack, *, restricted: bool = False) -> str:
    """Return the SERIES argument naming ``stack`` of ``inspection`` of ``root``: ``root`` alone when it holds one.

    ``root#<SeriesNumber>`` for a series of one volume stack, ``root#<number>:<stack>`` for one of several, and
    ``root#<label>`` when another series shares the number. ``restricted``: ``inspection`` holds only some of
    ``root``'s stacks (a ``#`` selector chose them), so ``root`` alone never names one.

    Examples
    --------
    >>> series_argument("session/dicom", trueshape.inspect("session/dicom"), stack)  # doctest: +SKIP
    'session/dicom#3'
    """
    volumes = [s for s in inspection.stacks if not s.is_localizer]
    if not restricted and (volumes == [stack] or inspection.stacks == [stack]):
        return root
    if stack.number_shared or stack.series_number is None:
        return f"{root}#{stack.label}"
    siblings = [s for s in volumes if s.series_instance_uid == stack.series_instance_uid]
    return f"{root}#{stack.series_number}" + (f":{stack.index}" if siblings != [stack] else "")


def _choice(stack: Stack) -> str:
    """How to name ``stack`` after ``#``, and what it is: ``3:1 (3_cor_t1)``; its label when its number is shared."""
    if stack.number_shared or stack.series_number is None:
        return stack.label
    return f"{stack.selector} ({stack.label})"


def restrict(inspection: Inspection, series: str | None, stack: int | None) -> Inspection:
    """Return ``inspection`` with only the stacks a ``#<series>[:stack]`` selector names (all when both are None).

    File problems of other series are left out; those whose series cannot be told stay.

    Raises
    ------
    DicomInputError
        When nothing matches (as :func:`select_stacks`).
    """
    if series is None and stack is None:
        return inspection
    chosen = {id(s) for s in select_stacks(inspection, series, stack)}
    kept = tuple(
        replace(s, stacks=tuple(t for t in s.stacks if id(t) in chosen))
        for s in inspection.series
        if any(id(t) in chosen for t in s.stacks)
    )
    uids = {s.series_instance_uid for s in kept}
    problems = tuple(p for p in inspection.problems if p.series_instance_uid in uids or not p.series_instance_uid)
    return replace(inspection, series=kept, problems=problems, errors=())


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
            f"(choices: {', '.join(_choice(s) for s in stacks)})"
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
    if Path(inspection.root).is_file():
        what = "not a DICOM file" if inspection.skipped_non_dicom else "a DICOM object without an image"
        return f"{inspection.root}: {what} (inspect and convert read DICOM; correct also takes NIfTI and NRRD volumes)"
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


def geometry_problems(stack: Stack) -> list[Finding]:
    """Return the stack's findings that mean its voxel grid departs from where the slices were.

    Findings about slices off the grid do not count once the stack was resampled or split onto its true grid.
    """
    on_grid = stack.layout.resampled or stack.layout.acquisition is None  # resampled or split: grid is true
    return [
        f
        for f in stack.findings
        if f.code in GEOMETRY_WARNING_CODES
        and f.severity is not Severity.INFO
        and not (on_grid and f.code in _OFF_GRID_CODES)
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
    problems = geometry_problems(stack)
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
