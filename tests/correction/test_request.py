"""What a correction request accepts and refuses before any work, and the outputs it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from trueshape.correction import CorrectionMode, CorrectionRequest
from trueshape.dicom import DistortionState, PatientPosition
from trueshape.errors import OutputExistsError, TrueshapeError
from trueshape.gnl import SYN_AS
from trueshape.io import OutputFormat


def test_choices_are_enums_whatever_their_case() -> None:
    request = CorrectionRequest.build(
        SYN_AS,
        mode="THROUGH-PLANE",
        distortion_state="dis2d",
        patient_position="ffs",
        fmt="NII",
        isocentre_lps=(0, 0, -120),
    )
    assert request.mode is CorrectionMode.THROUGH_PLANE
    assert request.distortion_state is DistortionState.IN_PLANE_2D
    assert request.patient_position is PatientPosition.FFS
    assert request.output_format is OutputFormat.NII
    assert request.isocentre_lps == (0.0, 0.0, -120.0)
    assert request.settles("patient_position") and request.settles("table_position")
    assert not CorrectionRequest.build(SYN_AS).settles("patient_position")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"distortion_state": "DIS4D"}, "--state 'DIS4D' is not one of: ND, DIS2D, DIS3D, UNKNOWN"),
        ({"isocentre_lps": (0.0, float("nan"), 0.0)}, "--isocentre needs three finite numbers"),
        ({"isocentre_lps": (0.0, 0.0, 9000.0)}, "no scanner table moves that far"),
        ({"mode": "none"}, "--mode none is what a correction reports"),
    ],
)
def test_impossible_choices_are_refused(options: dict, message: str) -> None:
    with pytest.raises(TrueshapeError, match=message):
        CorrectionRequest.build(SYN_AS, **options)


def test_outputs_are_named_by_format_and_refused_when_they_exist(tmp_path: Path) -> None:
    nii = CorrectionRequest.build(SYN_AS, fmt="nii").targets(tmp_path, "4_cor")
    assert [p.name for p in nii] == [
        "4_cor_corrected.nii",
        "4_cor_residual_field.nii",
        "4_cor_residual.h5",
        "4_cor_corrected.json",
    ]
    dicom = CorrectionRequest.build(SYN_AS, fmt="dicom").targets(tmp_path, "4_cor")
    assert dicom[0].name == "4_cor_corrected" and dicom[1].name == "4_cor_residual_field.nii.gz"
    (tmp_path / "4_cor_residual.h5").write_text("an earlier run")
    with pytest.raises(OutputExistsError, match="already exists"):
        CorrectionRequest.build(SYN_AS).targets(tmp_path, "4_cor")
    assert CorrectionRequest.build(SYN_AS, force=True).targets(tmp_path, "4_cor")[2].name == "4_cor_residual.h5"
