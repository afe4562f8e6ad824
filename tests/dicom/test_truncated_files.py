"""A DICOM file cut at any byte is named as a problem: never skipped as "not an image", never a crash."""

from __future__ import annotations

import warnings

import pytest

import trueshape
from trueshape.io import SeriesMetadata, write_dicom_slices
from trueshape.synth import regular_planes


@pytest.mark.parametrize("phase", range(4))
def test_every_cut_is_named(tmp_path, phase: int) -> None:
    paths = write_dicom_slices(tmp_path / "s", regular_planes(slices=5), SeriesMetadata())
    data = paths[2].read_bytes()
    silent = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cut in range(phase, len(data), 4 * 9):  # 4 phases x every 9th byte: a cut inside every element
            paths[2].write_bytes(data[:cut])
            inspection = trueshape.inspect(tmp_path / "s")
            if not any("IM00003.dcm" in problem.message for problem in inspection.problems):
                silent.append(cut)
    assert not silent, f"cuts at bytes {silent} of {len(data)} were skipped silently"
