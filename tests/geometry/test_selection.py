"""Selecting stacks and the strictness policy over their geometry findings."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import trueshape
from trueshape.errors import DicomInputError, GeometryError
from trueshape.geometry import describe_empty, one_stack, parse_series_argument, select_stacks
from trueshape.synth import AXIAL, CORONAL, regular_planes


def test_a_series_argument_names_a_folder_a_series_and_a_stack(tmp_path: Path) -> None:
    assert parse_series_argument("dicom#3:2") == (Path("dicom"), "3", 2)
    assert parse_series_argument("dicom#1.2.840.5") == (Path("dicom"), "1.2.840.5", None)
    (tmp_path / "a#b").mkdir()
    assert parse_series_argument(tmp_path / "a#b") == (tmp_path / "a#b", None, None)  # exists whole: a folder
    with pytest.raises(DicomInputError, match="the stack after ':' must be a number"):
        parse_series_argument("dicom#3:x")
    with pytest.raises(DicomInputError, match="an empty path was given"):
        parse_series_argument(" ")


def test_stacks_are_selected_by_number_or_uid_and_one_is_resolved(write_series) -> None:
    folder = write_series(
        regular_planes(slices=6, orientation=AXIAL)
        + regular_planes(slices=5, orientation=CORONAL, origin=(0.0, -10.0, 20.0)),
        series_number=3,
    )
    inspection = trueshape.inspect(folder)
    assert [s.selector for s in select_stacks(inspection, "3", None)] == ["3:1", "3:2"]
    uid = inspection.stacks[0].series_instance_uid
    assert [s.selector for s in select_stacks(inspection, uid, 2)] == ["3:2"]
    with pytest.raises(
        DicomInputError,
        match=r"no stack matches series '4' \(available: 3:1 \(3_synthetic_stack1\), 3:2 \(3_synthetic_stack2\)\)",
    ):
        select_stacks(inspection, "4", None)
    with pytest.raises(DicomInputError, match=r"2 stacks match; name one as .*\(choices: 3:1 \(3_synthetic_stack1\), "):
        one_stack(inspection, folder, None, None)
    assert one_stack(inspection, folder, "3", 2).shape == (10, 8, 5)


def test_stacks_are_selected_by_description_or_label(write_series, tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    write_series(regular_planes(slices=4), root / "a", series_number=3, series_description="T1 cor: hips")
    write_series(regular_planes(slices=5), root / "b", series_number=4, series_description="t2_ax")
    inspection = trueshape.inspect(root)
    assert [s.label for s in select_stacks(inspection, "t1 cor: hips", None)] == ["3_T1_cor_hips"]
    assert [s.label for s in select_stacks(inspection, "T2_AX", None)] == ["4_t2_ax"]
    assert [s.label for s in select_stacks(inspection, "3_T1_cor_hips", 1)] == ["3_T1_cor_hips"]
    # The description may hold ':'; after a number or UID, ':' starts the stack index.
    assert parse_series_argument(f"{root}#T1 cor: hips") == (root, "T1 cor: hips", None)
    assert parse_series_argument(f"{root}#t2_ax:1") == (root, "t2_ax", 1)
    assert trueshape.load(f"{root}#t2_ax").array.shape[2] == 5


def test_series_sharing_a_number_are_told_apart_readably(write_series, tmp_path: Path) -> None:
    # Two subjects' folders each hold a series 3 t1_fl2d_sag: each is named after its folder, which its
    # sidecar explains, and picked by that name (or its UID), never offered as two identical choices.
    root = tmp_path / "visits"
    for subject, slices in (("subject01", 4), ("subject02", 5)):
        write_series(
            regular_planes(slices=slices), root / subject / "dicom", series_number=3, series_description="t1_fl2d_sag"
        )
    inspection = trueshape.inspect(root)
    labels = [s.label for s in inspection.stacks]
    assert sorted(labels) == ["3_t1_fl2d_sag_subject01", "3_t1_fl2d_sag_subject02"]
    stack = next(s for s in inspection.stacks if s.label.endswith("subject02"))
    assert stack.to_json()["label_distinction"] == (
        "2 series share number 3 and description 't1_fl2d_sag' (as file names): this one lies in folder 'subject02'"
    )
    assert stack.selector == f"{stack.series_instance_uid}:1"
    with pytest.raises(
        DicomInputError,
        match=r"2 stacks match; .*\(choices: 3_t1_fl2d_sag_subject0[12], 3_t1_fl2d_sag_subject0[12]\)",
    ):
        one_stack(inspection, root, "3", None)
    assert one_stack(inspection, root, "3_t1_fl2d_sag_subject02", None).shape[2] == 5


def test_copies_in_one_folder_are_told_apart_by_acquisition_time(write_series, tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    for hour in (9, 10):
        write_series(
            regular_planes(slices=3),
            root,
            series_number=5,
            series_description="copy",
            acquired_at=datetime.datetime(2024, 3, 1, hour, 35, 12),
        )
    labels = sorted(s.label for s in trueshape.inspect(root).stacks)
    assert labels == ["5_copy_20240301T093512", "5_copy_20240301T103512"]


def test_an_empty_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images")
    inspection = trueshape.inspect(tmp_path)
    assert describe_empty(inspection) == f"{tmp_path}: no DICOM images found (1 other file(s) skipped)"
    with pytest.raises(DicomInputError, match="no DICOM images found"):
        one_stack(inspection, tmp_path, None, None)


def test_load_warns_ignores_or_raises_on_geometry_findings(write_series):
    from trueshape.settings import TrueshapeWarning

    planes = regular_planes(slices=10)
    del planes[3]
    folder = write_series(planes)
    with pytest.warns(TrueshapeWarning, match="SLICES_MISSING: 1 slice"):
        trueshape.load(folder)
    assert trueshape.load(folder, validation="ignore").array.shape == (10, 8, 9)
    with pytest.raises(GeometryError, match="SLICES_MISSING"):
        trueshape.load(folder, validation="raise")
    result = trueshape.convert(folder, folder.parent / "out", validation="raise")
    assert not result.written and "SLICES_MISSING" in result.errors[0]
