"""Synthetic series are valid MR Image instances with one study time and the acquisition type asked for."""

from __future__ import annotations

import pydicom
import pytest
from tests.conftest import dciodvfy_errors

from trueshape.dicom import DistortionState
from trueshape.gnl import SYN_AS
from trueshape.synth import Acquisition, FemurPhantom, Plane, write_session

#: Every attribute the MR Image IOD requires (Type 1 and 2) that a writer can forget.
MR_IOD_REQUIRED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "Laterality",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "ImageType",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "RepetitionTime",
    "EchoTime",
    "EchoTrainLength",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
)


def _acquisition(number: int, plane: Plane, three_d: bool | None) -> Acquisition:
    return Acquisition(
        plane=plane,
        fov_mm=(60.0, 60.0),
        matrix=(12, 12),
        slices=3,
        slice_thickness_mm=5.0,
        centre_lps=(95.0, 0.0, 0.0),
        distortion_state=DistortionState.NONE,
        in_plane_samples=1,
        slice_samples=1,
        series_number=number,
        description=f"s{number}",
        three_d=three_d,
    )


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iod")
    return write_session(
        folder, FemurPhantom(), SYN_AS, (_acquisition(2, Plane.CORONAL, True), _acquisition(3, Plane.AXIAL, False))
    )


def test_files_hold_every_required_mr_attribute_and_one_study_time(session) -> None:
    datasets = [
        pydicom.dcmread(path, stop_before_pixels=True)
        for series in session.series
        for path in sorted(series.dicom_folder.glob("*.dcm"))
    ]
    for ds in datasets:
        missing = [keyword for keyword in MR_IOD_REQUIRED if keyword not in ds]
        assert not missing, missing
    assert len({(ds.StudyDate, ds.StudyTime) for ds in datasets}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1  # same patient position: one frame
    assert [ds.MRAcquisitionType for ds in datasets[:: len(datasets) - 1]] == ["3D", "2D"]  # as asked, not by plane
    assert float(datasets[0].RepetitionTime) > float(datasets[0].EchoTime) > 0


def test_a_new_patient_position_is_a_new_frame_of_reference(tmp_path) -> None:
    from dataclasses import replace

    from trueshape.dicom import PatientPosition

    first = _acquisition(2, Plane.AXIAL, None)
    turned = replace(first, series_number=3, patient_position=PatientPosition.FFS)
    session = write_session(tmp_path, FemurPhantom(), SYN_AS, (first, replace(first, series_number=4), turned))
    frames = [
        pydicom.dcmread(next(s.dicom_folder.glob("*.dcm")), stop_before_pixels=True).FrameOfReferenceUID
        for s in session.series
    ]
    assert frames[0] == frames[1] != frames[2]


def test_dciodvfy_finds_no_errors(session) -> None:
    errors = dciodvfy_errors(next(session.series[0].dicom_folder.glob("*.dcm")))
    assert not errors, errors
