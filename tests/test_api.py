"""The Python API called directly (not through the CLI runner): one function per command, a lazy face."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trueshape
from tests.conftest import write_coronal_session
from trueshape.correction import CorrectionDiagnostics, CorrectionMode
from trueshape.dicom import DistortionState
from trueshape.errors import DicomInputError, OutputError, TrueshapeError
from trueshape.synth import regular_planes


def test_import_trueshape_loads_no_layer_until_a_name_is_used() -> None:
    code = (
        "import sys, trueshape; loaded = sorted(m for m in sys.modules if m.startswith('trueshape')); "
        "print(loaded); trueshape.inspect; print('trueshape.api' in sys.modules, 'nibabel' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = done.stdout.splitlines()
    assert first == "['trueshape', 'trueshape._lazy', 'trueshape._version']"
    assert second == "True False"  # inspect needs neither nibabel nor the correction pipeline


def test_the_package_face_lists_the_commands() -> None:
    assert trueshape.correct is trueshape.api.correct  # the function, not a module of that name
    assert {"inspect", "load", "convert", "correct"} <= set(dir(trueshape))
    with pytest.raises(AttributeError, match="no attribute 'no_such_command'"):
        trueshape.no_such_command  # noqa: B018


def test_inspect_load_and_convert(write_series, tmp_path: Path) -> None:
    folder = write_series(regular_planes(slices=5), series_number=7, series_description="ax")
    inspection = trueshape.inspect(folder)
    assert [stack.selector for stack in inspection.stacks] == ["7:1"]
    volume = trueshape.load(f"{folder}#7:1")
    assert volume.array.shape == (10, 8, 5)
    result = trueshape.convert(folder, tmp_path / "out", fmt="NRRD")
    assert result.ok and sorted(p.name for p in result.written) == ["7_ax.json", "7_ax.nrrd"]
    with pytest.raises(TrueshapeError, match="--format 'tiff' is not one of: nifti, nii, nrrd, dicom"):
        trueshape.convert(folder, tmp_path / "out2", fmt="tiff")


def test_correct_returns_typed_diagnostics(tmp_path: Path) -> None:
    dicom, coil = write_coronal_session(tmp_path)
    output = trueshape.correct(f"{dicom}#4", tmp_path / "out", coefficients=coil)
    diagnostics = output.diagnostics
    assert isinstance(diagnostics, CorrectionDiagnostics)
    assert diagnostics.mode is CorrectionMode.THROUGH_PLANE
    assert diagnostics.distortion_state is DistortionState.IN_PLANE_2D
    assert diagnostics.max_displacement_mm > 0.1 and np.isfinite(diagnostics.mean_displacement_mm)
    assert [p.name for p in output.written] == [
        "4_cor_corrected.nii.gz",
        "4_cor_residual_field.nii.gz",
        "4_cor_residual.h5",
        "4_cor_corrected.json",
    ]
    assert output.volume.provenance.distortion_state is DistortionState.FULL_3D
    stated = trueshape.correct(
        f"{dicom}#4",
        tmp_path / "full",
        coefficients=coil,
        mode=CorrectionMode.FULL,
        distortion_state=DistortionState.NONE,
        fmt="nii",
    )
    assert stated.diagnostics.mode is CorrectionMode.FULL
    assert stated.diagnostics.distortion_state is DistortionState.NONE


def test_correct_refuses_what_it_cannot_do_before_any_work(tmp_path: Path) -> None:
    dicom, coil = write_coronal_session(tmp_path)
    with pytest.raises(TrueshapeError, match="give exactly one of --coef"):
        trueshape.correct(f"{dicom}#4", tmp_path / "out")
    with pytest.raises(TrueshapeError, match="--mode none is what a correction reports when nothing is left"):
        trueshape.correct(f"{dicom}#4", tmp_path / "out", coefficients=coil, mode="none")
    with pytest.raises(TrueshapeError, match=r"--mode 'side' is not one of: auto, full, through-plane$"):
        trueshape.correct(f"{dicom}#4", tmp_path / "out", coefficients=coil, mode="side")
    with pytest.raises(OutputError, match="is inside the DICOM folder"):
        trueshape.correct(f"{dicom}#4", dicom / "out", coefficients=coil)
    with pytest.raises(DicomInputError, match="no stack matches series '9'"):
        trueshape.correct(f"{dicom}#9", tmp_path / "out", coefficients=coil)
    assert not (tmp_path / "out").exists()


def test_a_correction_loads_no_module_it_does_not_use(tmp_path: Path) -> None:
    """numpy.ma (loaded by np.unique) costs every correction start-up time (geometry/_statistics.py); none needs it."""
    dicom, coil = write_coronal_session(tmp_path)
    code = (
        "import sys, trueshape; "
        f"trueshape.correct({str(dicom) + '#4'!r}, {str(tmp_path / 'out')!r}, coefficients={str(coil)!r}); "
        "print('numpy.ma' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]
