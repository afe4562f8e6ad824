"""Shared fixtures: synthetic DICOM series written by trueshape itself, and the optional real corpus."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from trueshape.io import SeriesMetadata, SlicePlane, write_dicom_slices

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"


@pytest.fixture
def write_series(tmp_path: Path) -> Callable[..., Path]:
    """Write planes as a classic series into a fresh sub-folder and return the folder."""
    counter = iter(range(10_000))

    def _write(planes: Sequence[SlicePlane], folder: Path | None = None, **metadata: Any) -> Path:
        target = folder or tmp_path / f"series{next(counter)}"
        write_dicom_slices(target, planes, SeriesMetadata(**metadata), file_prefix=f"S{next(counter)}_")
        return target

    return _write


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove inputs are never modified)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"real DICOM corpus not found at {CORPUS} (../shared/corpus is absent)"
)
