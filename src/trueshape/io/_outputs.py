"""What may be written where: the output folder argument, free space, and what an earlier run left.

Inputs are never changed: an output folder inside the DICOM folder being read is refused, and an earlier
run's outputs are removed only when its own sidecar lists them and they are not an input of this run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from trueshape.errors import OutputError

__all__ = ["check_free_space", "check_output_folder", "obsolete_outputs", "refuse_output_inside"]

#: Room kept beyond the outputs' estimated size (sidecars, headers, file-system overhead), bytes.
FREE_SPACE_MARGIN_BYTES = 2**20


def check_output_folder(out: str | os.PathLike[str]) -> None:
    """Refuse an empty output folder name (it would mean the current folder) or a file.

    Examples
    --------
    >>> check_output_folder(" ")
    Traceback (most recent call last):
    ...
    trueshape.errors.OutputError: an empty --out was given (an unset shell variable?): name the output folder
    """
    if not str(out).strip():
        raise OutputError("an empty --out was given (an unset shell variable?): name the output folder")
    try:
        a_file = Path(out).exists() and not Path(out).is_dir()
    except OSError:  # an unusable name is reported where the folder is made
        a_file = False
    if a_file:
        raise OutputError(f"{out}: is a file, not a folder: choose another --out")


def refuse_output_inside(source: Path, out: str | os.PathLike[str]) -> None:
    """Refuse an output folder inside the DICOM folder being read (it would change the input, and join it)."""
    if not source.is_dir():
        return  # a single file: files written beside it leave it as it was
    folder = source
    target = Path(out).resolve()
    if target == folder.resolve() or folder.resolve() in target.parents:
        raise OutputError(
            f"{out}: is inside the DICOM folder {folder} being read; inputs are never changed: "
            "choose an --out outside it"
        )


def check_free_space(folder: Path, needed_bytes: float) -> None:
    """Raise OutputError when the disk holding ``folder`` (or its nearest existing parent) has too little room."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return  # cannot tell: the writers report a full disk themselves
    if needed_bytes + FREE_SPACE_MARGIN_BYTES > free:
        raise OutputError(
            f"{folder}: the outputs need about {needed_bytes / 2**20:.0f} MB and the disk has "
            f"{free / 2**20:.0f} MB free"
        )


def obsolete_outputs(
    sidecar: Path, names: Iterable[str], *, targets: Iterable[Path], inputs: Iterable[Path]
) -> list[Path]:
    """Files an earlier run wrote beside ``sidecar`` under ``names`` that this run does not write again.

    Never one of ``targets`` or an input (a file being read, or a folder holding one).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (out / "a.json").write_text(json.dumps({"software": {"name": "trueshape"}, "outputs": ["a.nrrd"]}))
    >>> [p.name for p in obsolete_outputs(out / "a.json", {"a.nrrd", "a.nii.gz"}, targets=[out / "a.nii.gz"],
    ...                                   inputs=[])]
    ['a.nrrd']
    """
    written = set(targets)
    sources = set(inputs)
    return [
        path
        for path in _previous_outputs(sidecar, set(names))
        if path not in written and not _holds_input(path, sources)
    ]


def _previous_outputs(sidecar: Path, names: set[str]) -> list[Path]:
    """Return the files of ``names`` that an earlier trueshape run wrote beside its sidecar ``sidecar``.

    Only names this run could write for the same label count, whatever the sidecar lists (a hand-edited one
    must not point anywhere else). A sidecar listing no outputs (an older trueshape) stands for all of them;
    a file that is not trueshape's sidecar for none.
    """
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("software"), dict)
        or data["software"].get("name") != "trueshape"
    ):
        return []
    listed = data.get("outputs")
    recorded = {
        name for name in (data.get("volume_file"), data.get("acquisition_transform_file")) if isinstance(name, str)
    }
    if isinstance(listed, list):
        named = {name for name in listed if isinstance(name, str)} | recorded
    elif recorded:  # an older convert sidecar names its files
        named = recorded
    else:  # an older correction sidecar names none: this label's outputs are its run's
        named = set(names)
    return [sidecar.parent / name for name in sorted(names) if name in named]


def _holds_input(path: Path, inputs: set[Path]) -> bool:
    """Whether ``path`` is one of ``inputs`` or a folder holding one (a file being read is not an output)."""
    target = path.resolve()
    return any(target == source.resolve() or target in source.resolve().parents for source in inputs)
