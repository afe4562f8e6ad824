"""Write one self-contained ``report.html`` for an output folder, with each figure as a PNG beside it.

The folder is whatever ``inspect --json`` (saved as ``inspect.json``), ``convert``, ``correct``, ``estimate``,
``learn`` or ``batch`` wrote, or a folder of several of them. The page and ``report_figures/`` appear together
(one output transaction) and replace the folder's previous report: the report is a view of the folder, made
again from it each time. Patient and site identifiers appear only with ``show_identifiers``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from trueshape.errors import TrueshapeError
from trueshape.reporting._kinds import FolderKind, convert_section, correct_section, folder_kind, inspect_section
from trueshape.reporting._learned import cohort_section, estimate_section, learn_section
from trueshape.reporting._page import ReportOptions, Section, render_page

__all__ = ["FIGURES_FOLDER", "IDENTIFIERS_SHOWN", "REPORT_FILE", "write_report"]

REPORT_FILE = "report.html"
#: The folder beside the page that holds each figure as a PNG.
FIGURES_FOLDER = "report_figures"
#: What a page made with ``show_identifiers`` says (and only such a page).
IDENTIFIERS_SHOWN = "Patient identifiers are shown (--show-identifiers)."


def _sections(folder: Path, kind: FolderKind, options: ReportOptions) -> list[Section]:
    builders: dict[FolderKind, Callable[[], list[Section]]] = {
        FolderKind.COHORT: lambda: [cohort_section(folder)],
        FolderKind.LEARN: lambda: [learn_section(folder, options=options)],
        FolderKind.ESTIMATE: lambda: [estimate_section(folder, options=options)],
        FolderKind.CORRECT: lambda: [
            correct_section(p, options=options) for p in sorted(folder.glob("*_corrected.json"))
        ],
        FolderKind.INSPECT: lambda: [inspect_section(folder, options=options)],
        FolderKind.CONVERT: lambda: [convert_section(folder, options=options)],
        FolderKind.FOLDERS: lambda: _children(folder, options),
    }
    return builders[kind]()


def _children(folder: Path, options: ReportOptions) -> list[Section]:
    sections = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        kind = folder_kind(child)
        if kind is not None and kind is not FolderKind.FOLDERS:
            section = Section(f"{child.name}/ ({kind.value})")
            section.children = _sections(child, kind, options)
            sections.append(section)
    return sections


def write_report(
    folder: str | os.PathLike[str],
    *,
    show_identifiers: bool = False,
    tissue_levels: tuple[float, float, float] | None = None,
    title: str | None = None,
    preface: list[Section] | None = None,
) -> Path:
    """Write ``folder/report.html`` and ``folder/report_figures/*.png``; return the page's path.

    Parameters
    ----------
    folder : str or PathLike
        An output folder of a trueshape command (or a folder of several).
    show_identifiers : bool
        Show the patient's name, ID and birth date, the accession number and the institution (read from
        the source DICOM headers); without it none of them is read.
    tissue_levels : tuple of float, optional
        Signal inside a bright round structure, of its dark rim and around it, when known (see
        :class:`ReportOptions`); else estimated from each image.
    title : str, optional
        The page's title (default: what wrote the folder, and its name).
    preface : list of Section, optional
        Sections shown before the folder's own (the demo's story).

    Raises
    ------
    TrueshapeError
        ``folder`` is not a folder, or holds nothing trueshape wrote.
    """
    from trueshape.io import OutputTransaction, atomic_folder, atomic_path

    root = Path(folder)
    if not root.is_dir():
        raise TrueshapeError(f"{root}: is not a folder (give the output folder of a trueshape command)")
    kind = folder_kind(root)
    if kind is None:
        raise TrueshapeError(
            f"{root}: holds nothing trueshape wrote (inspect.json, a converted volume's sidecar, "
            "*_corrected.json, estimate.json, model.json or summary.csv)"
        )
    started = time.perf_counter()
    options = ReportOptions(show_identifiers, tissue_levels)
    sections = [*(preface or []), *_sections(root, kind, options)]
    note = f"Made by trueshape report in {time.perf_counter() - started:.1f} s. Self-contained: open it anywhere. " + (
        IDENTIFIERS_SHOWN
        if show_identifiers
        else "No patient identifiers: sessions are named by their folders."
    )
    pictures = _unique_names(sections)
    page = render_page(title or f"trueshape {kind.value}: {root.resolve().name}", sections, note=note)
    targets = [root / REPORT_FILE, root / FIGURES_FOLDER]
    with OutputTransaction(targets, force=True, foreign=_not_figures) as transaction:
        with atomic_path(targets[0], transaction=transaction) as staged:
            staged.write_text(page, encoding="utf-8")
        with atomic_folder(targets[1], transaction=transaction) as figures:
            for name, png in pictures.items():
                (figures / f"{name}.png").write_bytes(png)
    return targets[0]


def _not_figures(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".png")


def _unique_names(sections: list[Section]) -> dict[str, bytes]:
    """Give every figure a file name of its own (a second ``x`` becomes ``x-2``); return name -> PNG."""
    from dataclasses import replace

    from trueshape.reporting._page import Picture

    seen: dict[str, bytes] = {}

    def visit(section: Section) -> None:
        for number, block in enumerate(section.blocks):
            if isinstance(block, Picture):
                name, count = block.name, 1
                while name in seen:
                    count += 1
                    name = f"{block.name}-{count}"
                seen[name] = block.png
                section.blocks[number] = replace(block, name=name)
        for child in section.children:
            visit(child)

    for section in sections:
        visit(section)
    return seen
