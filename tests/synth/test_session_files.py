"""A synthetic session is written whole: a rerun never mixes its files with an earlier run's."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from tests.conftest import tree_digest

from trueshape.dicom import DistortionState
from trueshape.errors import OutputError, OutputExistsError
from trueshape.gnl import SYN_AS
from trueshape.synth import Acquisition, FemurPhantom, Plane, write_session


def _acquisition(slices: int) -> Acquisition:
    return Acquisition(
        plane=Plane.AXIAL,
        fov_mm=(60.0, 60.0),
        matrix=(12, 12),
        slices=slices,
        slice_thickness_mm=5.0,
        centre_lps=(95.0, 0.0, 0.0),
        distortion_state=DistortionState.NONE,
        in_plane_samples=1,
        slice_samples=1,
        series_number=2,
        description="ax",
    )


def test_a_rerun_replaces_the_whole_session(tmp_path) -> None:
    folder = tmp_path / "session"
    first = write_session(folder, FemurPhantom(), SYN_AS, (_acquisition(6),))
    assert len(list(first.series[0].dicom_folder.glob("*.dcm"))) == 6
    with pytest.raises(OutputExistsError, match="already exists and is not empty"):
        write_session(folder, FemurPhantom(), SYN_AS, (_acquisition(4),))
    again = write_session(folder, FemurPhantom(), SYN_AS, (_acquisition(4),), force=True)
    files = sorted(again.series[0].dicom_folder.glob("*.dcm"))
    assert len(files) == 4  # not 4 new slices beside 2 stale ones of another study
    assert len({pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in files}) == 1
    assert again.series[0].truth_nifti.is_file() and (folder / "session.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_folder_holding_other_files_is_not_replaced(tmp_path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    before = tree_digest(folder)
    with pytest.raises(OutputError, match=r"holds notes\.txt besides a synthetic session"):
        write_session(folder, FemurPhantom(), SYN_AS, (_acquisition(3),), force=True)
    assert tree_digest(folder) == before
    # ... however deep the file lies.
    session = tmp_path / "session"
    write_session(session, FemurPhantom(), SYN_AS, (_acquisition(3),))
    (session / "dicom" / "02_ax" / "notes.txt").write_text("keep me too")
    before = tree_digest(session)
    with pytest.raises(OutputError, match=r"holds dicom/02_ax/notes\.txt besides a synthetic session"):
        write_session(session, FemurPhantom(), SYN_AS, (_acquisition(3),), force=True)
    assert tree_digest(session) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        write_session(tmp_path / "file", FemurPhantom(), SYN_AS, (_acquisition(3),))


def test_inverse_map_refuses_points_where_the_field_cannot_be_inverted() -> None:
    from trueshape.errors import GeometryError
    from trueshape.gnl import MagnetFrame, ResidualField
    from trueshape.synth import inverse_map

    field = ResidualField(SYN_AS, MagnetFrame(), DistortionState.NONE).displacement_lps
    inside = np.array([[100.0, 50.0, -80.0], [0.0, 0.0, 200.0]])
    x = inverse_map(field, inside)
    np.testing.assert_allclose(x + field(x), inside, atol=1e-5)
    with pytest.raises(GeometryError, match=r"cannot be inverted at 1 of 2 points, e.g. LPS \[400.0, 0.0, 0.0\]"):
        inverse_map(field, np.array([[0.0, 0.0, 10.0], [400.0, 0.0, 0.0]]))
