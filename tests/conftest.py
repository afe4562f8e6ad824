"""Shared fixtures: synthetic DICOM series written by trueshape itself, and the optional real corpus."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import trueshape
from trueshape.findings import FindingCode
from trueshape.io import SeriesMetadata, SlicePlane, write_dicom_slices

if TYPE_CHECKING:
    from trueshape.geometry import Stack

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


def write_coronal_session(root: Path, **changes: Any) -> tuple[Path, Path]:
    """Write the tests' DIS2D coronal series (SYN-FEMUR, table moved to isocentre z = -120 mm, series 4 "cor")
    and the SYN-AS coil under ``root``; ``changes`` replace Acquisition fields. Return (DICOM root, coil file).
    """
    from trueshape.dicom import DistortionState
    from trueshape.gnl import SYN_AS, format_siemens_grad
    from trueshape.synth import Acquisition, FemurPhantom, Plane, write_session

    settings: dict[str, Any] = {
        "plane": Plane.CORONAL,
        "fov_mm": (120.0, 120.0),
        "matrix": (32, 32),
        "slices": 10,
        "slice_thickness_mm": 5.0,
        "centre_lps": (95.0, 0.0, -100.0),
        "isocentre_lps": (0.0, 0.0, -120.0),
        "distortion_state": DistortionState.IN_PLANE_2D,
        "in_plane_samples": 1,
        "slice_samples": 1,
        "series_number": 4,
        "description": "cor",
    }
    write_session(root / "s", FemurPhantom(), SYN_AS, (Acquisition(**(settings | changes)),))
    (root / "SYN-AS.grad").write_text(format_siemens_grad(SYN_AS))
    return root / "s" / "dicom", root / "SYN-AS.grad"


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove inputs are never modified)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def in_ci() -> bool:
    """Whether the environment variable CI is set (to anything but 0/false/no): missing tools then fail tests."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def dciodvfy_errors(path: Path) -> list[str]:
    """Run dicom3tools' dciodvfy on one file and return its ``Error`` lines (skipped without it, failed in CI)."""
    if shutil.which("dciodvfy") is None:
        message = "dciodvfy (Debian dicom3tools) is not installed"
        if in_ci():
            pytest.fail(f"{message}: .ci/run installs it (apt-get install dicom3tools)")
        pytest.skip(message)
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]


needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"real DICOM corpus not found at {CORPUS} (../shared/corpus is absent)"
)


# Stack findings (tests/geometry): the one non-localizer stack of a folder, one finding of a code, all codes.


def only_stack(path, **kwargs) -> Stack:
    stacks = [s for s in trueshape.inspect(path, **kwargs).stacks if not s.is_localizer]
    assert len(stacks) == 1, [s.label for s in stacks]
    return stacks[0]


def finding(stack: Stack, code: FindingCode):
    matches = [f for f in stack.findings if f.code is code]
    assert len(matches) == 1, [f.code for f in stack.findings]
    return matches[0]


def codes(stack: Stack) -> set[FindingCode]:
    return {f.code for f in stack.findings}


GEOMETRY_CODES = {
    FindingCode.SPACING_IRREGULAR,
    FindingCode.SLICES_MISSING,
    FindingCode.POSITIONS_DUPLICATED,
    FindingCode.GANTRY_TILT,
    FindingCode.CORNERS_MISMATCH,
}
