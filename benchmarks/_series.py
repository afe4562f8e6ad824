"""Synthetic benchmark series written by trueshape (cached under benchmarks/_work)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trueshape.io import SeriesMetadata, SlicePlane, write_dicom_slices

WORK = Path(__file__).resolve().parent / "_work"


def large_classic_series(rows: int = 512, columns: int = 512, slices: int = 400) -> Path:
    """A classic axial MR series with smooth, noisy anatomy-like content (compresses like real data)."""
    folder = WORK / f"classic_{columns}x{rows}x{slices}"
    if folder.is_dir() and len(list(folder.glob("*.dcm"))) == slices:
        return folder
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:rows, 0:columns]
    body = ((x - columns / 2) / (0.42 * columns)) ** 2 + ((y - rows / 2) / (0.35 * rows)) ** 2 < 1
    planes = []
    for k in range(slices):
        texture = 800 + 300 * np.sin(x / 17.0 + k / 9.0) * np.cos(y / 23.0)
        noise = rng.normal(0, 20, size=(rows, columns))
        plane = np.where(body, texture + noise, rng.normal(5, 3, size=(rows, columns))).clip(0, 4095)
        planes.append(
            SlicePlane(
                plane.astype(np.uint16),
                (-0.5 * columns * 0.5, -0.5 * rows * 0.5, k * 0.6),
                (1, 0, 0, 0, 1, 0),
                (0.5, 0.5),
            )
        )
    write_dicom_slices(folder, planes, SeriesMetadata(series_description="bench", slice_thickness_mm=0.6), force=True)
    return folder
