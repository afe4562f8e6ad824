"""Real scanner series (dcm_qa family, BSD-2) against the dcm2niix reference volumes beside them.

Each volume is converted by trueshape, reoriented to the closest canonical RAS orientation (as the
manifest was) and compared: same shape, affine within 1e-3 mm, identical voxel values.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from tests.conftest import CORPUS, needs_corpus, tree_digest

import trueshape
from trueshape.dicom import DistortionState
from trueshape.findings import FindingCode

pytestmark = [needs_corpus, pytest.mark.corpus]


def _reference_volumes() -> list[tuple[str, str]]:
    if not CORPUS.is_dir():
        return [("corpus-absent", "none")]
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    return [(folder, volume["file"]) for folder, entry in manifest.items() for volume in entry["volumes"]]


@pytest.mark.parametrize(("folder", "reference"), _reference_volumes())
def test_matches_dcm2niix(folder, reference, tmp_path):
    series_number = reference.split("_", 1)[0]
    source = CORPUS / folder / "dicom"
    before = tree_digest(source)
    result = trueshape.convert(f"{source}#{series_number}", tmp_path)
    assert result.ok, result.errors
    (ours_path,) = [p for p in result.written if p.name.endswith(".nii.gz")]
    ours = nib.as_closest_canonical(nib.load(ours_path))
    theirs = nib.as_closest_canonical(nib.load(CORPUS / folder / "dcm2niix" / reference))
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    assert tree_digest(source) == before


def _stack(folder: str):
    stacks = [s for s in trueshape.inspect(CORPUS / folder / "dicom").stacks if not s.is_localizer]
    assert len(stacks) == 1
    return stacks[0]


def test_2d_sagittal_dis2d_spacing_not_thickness():
    stack = _stack("siemens-t1-2d-sag-dis2d")
    assert stack.geometry.spacing[2] == pytest.approx(4.8, abs=1e-3)
    codes = {f.code: f for f in stack.findings}
    assert codes[FindingCode.THICKNESS_NE_SPACING].measured == pytest.approx(0.8, abs=1e-3)
    assert codes[FindingCode.THICKNESS_NE_SPACING].details["slice_thickness_mm"] == 4.0
    assert FindingCode.DISTORTION_2D_ONLY in codes
    assert stack.distortion_state is DistortionState.IN_PLANE_2D
    assert "left-right" in codes[FindingCode.DISTORTION_2D_ONLY].message  # sagittal normal


def test_table_move_shifts_isocentre_20_mm_along_z():
    baseline = _stack("siemens-table-baseline")
    moved = _stack("siemens-table-moved-h20")
    np.testing.assert_allclose(moved.isocentre_lps - baseline.isocentre_lps, [0.0, 0.0, 20.0], atol=1e-6)
    assert "ImaRelTablePosition (0019,1014)" in moved.isocentre_source


# The table-moved series of the corpus, with the isocentre the physics puts them at (LPS mm, head first supine):
# the bore-axis table offset, which dcm2niix 1.0.20260724 writes negated as TablePosition (0, 0, -20) and
# (0, 0, 17.9108) in their sidecars (dcm2niix -b o). The Siemens pair's phantom confirms the sign
# (test_table_move_keeps_the_phantom_and_moves_the_field_of_view).
TABLE_MOVED = [
    ("siemens-table-moved-h20", (0.0, 0.0, 20.0), "ImaRelTablePosition (0019,1014)"),
    ("ge-dwi-classic-r3", (0.0, 0.0, -17.9108), "GE TablePosition -((0043,10B2)[2] - (0019,107F))"),
]


@pytest.mark.parametrize(("folder", "isocentre_lps", "source"), TABLE_MOVED)
def test_every_table_moved_series_has_its_isocentre_within_1_mm(folder, isocentre_lps, source):
    stack = _stack(folder)
    assert np.linalg.norm(stack.isocentre_lps - np.array(isocentre_lps)) <= 1.0
    assert stack.isocentre_source.startswith(f"table offset (0, 0, {isocentre_lps[2]:g}) mm from {source}")
    assert FindingCode.ISOCENTRE_ASSUMED not in {f.code for f in stack.findings}


def test_xa30_enhanced_state_from_private_per_frame_sequence():
    stack = _stack("siemens-xa30-t1-3d-enhanced")
    assert stack.distortion_state is DistortionState.IN_PLANE_2D
    assert stack.distortion_source == "ImageTypeText (0021,1175) in the Siemens per-frame sequence (0021,11FE)"
    assert stack.layout.slices[0][0].image_type == ("ORIGINAL", "PRIMARY", "M", "NONE")  # no token in ImageType


def test_xa10_epi_is_four_dimensional_and_uncorrected():
    stack = _stack("siemens-xa10-epi-enhanced-4d")
    assert stack.shape == (64, 64, 6, 4)
    assert stack.distortion_state is DistortionState.NONE


def test_mosaic_slices_placed_from_the_protocol():
    stack = _stack("siemens-epi-mosaic-ax")
    assert stack.shape == (64, 64, 36, 2)
    assert FindingCode.SPACING_FROM_PROTOCOL in {f.code for f in stack.findings}
    assert stack.geometry.spacing[2] == pytest.approx(3.6, abs=1e-3)
    assert stack.layout.slices[0][0].vendor.gradient_coil == "AS092"


def _object_area_per_slice(volume) -> np.ndarray:
    """Fraction of each slice inside the phantom: phase varies smoothly there and randomly in air."""
    from scipy import ndimage

    phase = volume.values(np.float64)
    roughness = np.abs(np.diff(phase, axis=0))[:, :-1] + np.abs(np.diff(phase, axis=1))[:-1, :]
    roughness = ndimage.uniform_filter(roughness, size=(5, 5, 1))
    return (roughness < np.percentile(roughness, 50)).mean(axis=(0, 1))


def test_table_move_keeps_the_phantom_and_moves_the_field_of_view():
    """The evidence for reading ImaRelTablePosition as the isocentre offset (not its negative)."""
    baseline = trueshape.load(CORPUS / "siemens-table-baseline" / "dicom")
    moved = trueshape.load(CORPUS / "siemens-table-moved-h20" / "dicom")
    shift_mm = moved.geometry.origin[2] - baseline.geometry.origin[2]
    assert shift_mm == pytest.approx(20.0, abs=1e-4)  # the field of view moved 20 mm superior
    a, b = _object_area_per_slice(baseline), _object_area_per_slice(moved)

    def agreement(offset: int) -> float:  # moved slice k against baseline slice k + offset
        first, last = max(0, -offset), min(b.size, a.size - offset)
        return float(np.corrcoef(a[first + offset : last + offset], b[first:last])[0, 1])

    best = max(range(-10, 11), key=agreement)
    expected = shift_mm / baseline.geometry.spacing[2]  # 6.67 slices if the phantom stayed put
    assert abs(best - expected) < 1.0
    assert agreement(best) > agreement(0) + 0.05


def _world_directions(nifti, bvec) -> np.ndarray:
    """Gradient directions (RAS, one row per volume) from an FSL .bvec and the NIfTI it belongs to."""
    matrix = nib.load(nifti).affine[:3, :3]
    table = np.loadtxt(bvec).reshape(3, -1)
    if np.linalg.det(matrix) > 0:  # FSL: x negated for a positive determinant
        table[0] = -table[0]
    world = ((matrix / np.linalg.norm(matrix, axis=0)) @ table).T
    # Unit length: dcm2niix copies GE's vectors as they are (lengths 0.9995 to 1.0004 on the corpus series).
    lengths = np.linalg.norm(world, axis=1, keepdims=True)
    return np.divide(world, lengths, out=np.zeros_like(world), where=lengths > 0)


def _canonical(path) -> np.ndarray:
    return nib.as_closest_canonical(nib.load(path)).get_fdata()


@pytest.mark.parametrize("scaling", ["display", "precise"])
def test_philips_dti_matches_both_dcm2niix_volumes_and_its_gradient_table(tmp_path, scaling):
    folder = CORPUS / "philips-dti-classic-4d"
    reference = folder / ("dcm2niix-precise" if scaling == "precise" else "dcm2niix")
    before = tree_digest(folder / "dicom")
    result = trueshape.convert(folder / "dicom", tmp_path, philips_scaling=scaling)
    assert result.ok, result.errors
    assert sorted(p.name for p in result.written) == [
        "601_dti_ax.bval",
        "601_dti_ax.bvec",
        "601_dti_ax.json",
        "601_dti_ax.nii.gz",
        "601_dti_ax_isotropic.json",
        "601_dti_ax_isotropic.nii.gz",
    ]
    ours = nib.as_closest_canonical(nib.load(tmp_path / "601_dti_ax.nii.gz"))
    theirs = nib.as_closest_canonical(nib.load(reference / "601_WIP_dti_ax.nii.gz"))
    assert ours.shape == theirs.shape == (80, 80, 40, 16)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    # dcm2niix's _ADC file repeats the 16 volumes, then holds the derived isotropic one: ours is that volume.
    adc = _canonical(reference / "601_WIP_dti_ax_ADC.nii.gz")
    np.testing.assert_array_equal(adc[..., :16], ours.get_fdata())
    np.testing.assert_array_equal(_canonical(tmp_path / "601_dti_ax_isotropic.nii.gz"), adc[..., 16])
    np.testing.assert_array_equal(
        np.loadtxt(tmp_path / "601_dti_ax.bval"), np.loadtxt(reference / "601_WIP_dti_ax.bval")
    )
    np.testing.assert_allclose(
        _world_directions(tmp_path / "601_dti_ax.nii.gz", tmp_path / "601_dti_ax.bvec"),
        _world_directions(reference / "601_WIP_dti_ax.nii.gz", reference / "601_WIP_dti_ax.bvec"),
        atol=1e-5,
    )
    sidecar = json.loads((tmp_path / "601_dti_ax.json").read_text())
    assert sidecar["values"]["philips_scaling"] == scaling
    assert sidecar["diffusion"]["bvec_file"] == "601_dti_ax.bvec"
    if scaling == "precise":  # display values (slope RescaleSlope 1.082) over RescaleSlope * (2005,100E): x 280
        assert sidecar["values"]["slope"] / 1.08205128205128 == pytest.approx(280.17, abs=0.01)
    isotropic = json.loads((tmp_path / "601_dti_ax_isotropic.json").read_text())["diffusion"]
    assert isotropic["isotropic"] and isotropic["b_values_s_per_mm2"] == [2000.0]
    assert tree_digest(folder / "dicom") == before


def test_ge_dwi_gradient_table_matches_dcm2niix(tmp_path):
    folder = CORPUS / "ge-dwi-classic-r3"
    result = trueshape.convert(folder / "dicom", tmp_path)
    assert result.ok, result.errors
    (stack,) = result.stacks
    assert FindingCode.POSITIONS_DUPLICATED not in {f.code for f in stack.findings}  # b-value and direction tell
    reference = folder / "dcm2niix" / "2_Brain_Advanced_Sequences"
    np.testing.assert_array_equal(
        np.loadtxt(tmp_path / f"{stack.label}.bval"), np.loadtxt(reference.with_suffix(".bval"))
    )
    np.testing.assert_allclose(
        _world_directions(tmp_path / f"{stack.label}.nii.gz", tmp_path / f"{stack.label}.bvec"),
        _world_directions(reference.with_suffix(".nii.gz"), reference.with_suffix(".bvec")),
        atol=1e-5,
    )
