"""How output files are named after a stack, and how series whose names would coincide are told apart.

A stack's label is ``<SeriesNumber>_<SeriesDescription>[_stack<n>]`` (:attr:`Stack.label`); when two series
would get the same label, each gets a short readable distinction (its folder, when it was acquired, else the
tail of its SeriesInstanceUID) that its sidecar explains.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trueshape.geometry._series import Series

__all__ = ["disambiguate", "file_safe"]


#: Longest series description a file name carries (DICOM's LO length); a longer one is cut and keeps a hash.
MAX_LABEL_DESCRIPTION = 64


def file_safe(description: str) -> str:
    """Return the series description as file names carry it (other characters: one underscore per run).

    Never a hidden name, and at most :data:`MAX_LABEL_DESCRIPTION` characters: a longer description is cut
    and ends in a hash of the whole, so that two long descriptions stay apart.

    Examples
    --------
    >>> file_safe("T1 (ax) / post"), file_safe("..")
    ('T1_ax_post', 'series')
    >>> len(file_safe("A" * 1000))
    64
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", description).strip("_").lstrip(".").strip("_") or "series"
    if len(safe) > MAX_LABEL_DESCRIPTION:
        digest = hashlib.sha1(description.encode("utf-8", errors="replace")).hexdigest()[:8]
        safe = safe[: MAX_LABEL_DESCRIPTION - 9] + "_" + digest
    return safe


def disambiguate(series_list: list[Series]) -> list[Series]:
    """Give series whose labels would coincide distinct, readable labels; name series sharing a number by UID.

    Two series can share number and description (two subjects' series 3, copies re-sent with a new UID) or
    differ only in characters a file name cannot carry or in case ("T1 (ax)" and "t1 [ax]"): their output
    files would otherwise overwrite each other, on a case-insensitive disk too. Each gets the shortest
    distinction that tells them apart (see :func:`_distinctions`), explained in its sidecar.
    """

    def key(series: Series) -> tuple[int | None, str]:
        return series.series_number, file_safe(series.series_description).casefold()

    names: dict[tuple[int | None, str], list[Series]] = {}
    numbers: dict[int | None, int] = {}
    for series in series_list:
        names.setdefault(key(series), []).append(series)
        numbers[series.series_number] = numbers.get(series.series_number, 0) + 1
    told: dict[int, tuple[str, str]] = {}
    for group in names.values():
        if len(group) > 1:
            told.update(zip(map(id, group), _distinctions(group), strict=True))
    result = []
    for series in series_list:
        suffix, why = told.get(id(series), ("", ""))
        shared = numbers[series.series_number] > 1
        if not suffix and not shared:
            result.append(series)
            continue
        stacks = tuple(
            replace(stack, disambiguator=suffix, distinction=why, number_shared=shared) for stack in series.stacks
        )
        result.append(replace(series, stacks=stacks))
    return result


def _distinctions(group: list[Series]) -> list[tuple[str, str]]:
    """Return, per series of ``group`` (whose labels coincide), a label suffix and the sentence explaining it.

    The first that tells every series apart: the folder each lies in (the first path component that differs),
    when each was acquired, or the tail of its SeriesInstanceUID.
    """
    first = [series.stacks[0].frames[0] if series.stacks else None for series in group]
    shared = f"{len(group)} series share number {group[0].series_number} and description "
    shared += f"{group[0].series_description!r} (as file names)"
    folders = [Path(frame.path).parent if frame else None for frame in first]
    if all(folders):
        common = Path(os.path.commonpath([str(f) for f in folders]))
        parts = [(f.relative_to(common).parts or (f.name,))[0] for f in folders if f is not None]
        said = [(file_safe(part)[:24], f"{shared}: this one lies in folder {part!r}") for part in parts]
        if _distinct(said):
            return said
    times = [frame.acquisition_time_s if frame else None for frame in first]
    if all(t is not None for t in times):
        said = [(_time_text(t), f"{shared}: this one was acquired at {_time_text(t, readable=True)}") for t in times]
        if _distinct(said):
            return said
    tails = [re.sub(r"[^0-9]", "", s.series_instance_uid)[-8:] or "x" for s in group]
    if len({tail.casefold() for tail in tails}) < len(tails):  # UIDs that end alike (or none): numbered as found
        return [
            (f"{tail}-{number}", f"{shared}: this one's SeriesInstanceUID ends in {tail}; it is number {number} found")
            for number, tail in enumerate(tails, start=1)
        ]
    return [(tail, f"{shared}: this one's SeriesInstanceUID ends in {tail}") for tail in tails]


def _distinct(said: list[tuple[str, str]]) -> bool:
    suffixes = [suffix.casefold() for suffix, _ in said]
    return all(suffixes) and len(set(suffixes)) == len(suffixes)


def _time_text(seconds: float | None, *, readable: bool = False) -> str:
    """``20240301T093512`` (or ``2024-03-01 09:35:12``) from a Frame's acquisition time (date too when known)."""
    assert seconds is not None
    day, within = divmod(seconds, 86400.0)  # the day is a proleptic Gregorian ordinal (0: no date)
    dated = day >= 1
    moment = datetime.datetime.fromordinal(int(day) if dated else 1) + datetime.timedelta(seconds=within)
    if readable:
        return moment.strftime("%Y-%m-%d %H:%M:%S" if dated else "%H:%M:%S")
    return moment.strftime("%Y%m%dT%H%M%S" if dated else "T%H%M%S")
