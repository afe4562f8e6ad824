"""How closely trueshape reproduces dcm2niix on the real corpus: affine difference and voxel equality per volume.

Then the diffusion series: the Philips DTI series with DICOM display values (dcm2niix -p n) and Philips' precise
values (dcm2niix's default, ``--philips-scaling precise``), its derived isotropic volume against the last volume
of dcm2niix's ``_ADC`` file, and the gradient tables (.bval equal; .bvec directions, turned into world
directions with each file's own affine, apart by at most the printed angle) of the Philips and GE series.

Run:  .venv/bin/python benchmarks/corpus_agreement.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

import trueshape

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"


def main() -> None:
    if not CORPUS.is_dir():
        print(f"real corpus not found at {CORPUS}")
        return
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    worst = 0.0
    print(f"{'reference volume':58s} {'shape':>16s} {'affine max |diff| mm':>21s} {'voxels identical':>17s}")
    with tempfile.TemporaryDirectory() as out:
        for folder, entry in manifest.items():
            for reference in entry["volumes"]:
                number = reference["file"].split("_", 1)[0]
                result = trueshape.convert(f"{CORPUS / folder / 'dicom'}#{number}", Path(out) / folder)
                (ours_path,) = [p for p in result.written if p.name.endswith(".nii.gz")]
                ours = nib.as_closest_canonical(nib.load(ours_path))
                theirs = nib.as_closest_canonical(nib.load(CORPUS / folder / "dcm2niix" / reference["file"]))
                difference = float(np.max(np.abs(ours.affine - theirs.affine)))
                same = ours.shape == theirs.shape and np.array_equal(ours.get_fdata(), theirs.get_fdata())
                worst = max(worst, difference)
                print(f"{folder + '/' + reference['file']:58.58s} {ours.shape!s:>16s} {difference:21.2e} {same!s:>17s}")
    print(f"largest affine difference: {worst:.2e} mm")
    with tempfile.TemporaryDirectory() as out:
        diffusion(Path(out))


def world_directions(nifti: Path, bvec: Path) -> np.ndarray:
    """Unit gradient directions (one row per volume, RAS) from an FSL .bvec and its NIfTI (0 for b = 0)."""
    matrix = nib.load(nifti).affine[:3, :3]
    table = np.loadtxt(bvec).reshape(3, -1)
    if np.linalg.det(matrix) > 0:
        table[0] = -table[0]
    world = ((matrix / np.linalg.norm(matrix, axis=0)) @ table).T
    lengths = np.linalg.norm(world, axis=1, keepdims=True)
    return np.divide(world, lengths, out=np.zeros_like(world), where=lengths > 0)


def gradient_agreement(ours: Path, theirs: Path) -> str:
    """Whether the .bval files beside two .nii.gz volumes agree, and the largest angle between the directions."""

    def beside(volume: Path, suffix: str) -> Path:
        return volume.with_name(volume.name.removesuffix(".nii.gz") + suffix)

    same_b = np.array_equal(np.loadtxt(beside(ours, ".bval")), np.loadtxt(beside(theirs, ".bval")))
    a = world_directions(ours, beside(ours, ".bvec"))
    b = world_directions(theirs, beside(theirs, ".bvec"))
    cosines = np.clip(np.sum(a * b, axis=1), -1.0, 1.0)[np.linalg.norm(a, axis=1) > 0]
    return f"bval identical {same_b}, bvec within {np.degrees(np.arccos(cosines)).max():.1e} degrees"


def diffusion(out: Path) -> None:
    dti = CORPUS / "philips-dti-classic-4d"
    for scaling, folder in (("display", "dcm2niix"), ("precise", "dcm2niix-precise")):
        result = trueshape.convert(dti / "dicom", out / scaling, philips_scaling=scaling)
        ours = nib.as_closest_canonical(nib.load(out / scaling / "601_dti_ax.nii.gz"))
        theirs = nib.as_closest_canonical(nib.load(dti / folder / "601_WIP_dti_ax.nii.gz"))
        adc = nib.as_closest_canonical(nib.load(dti / folder / "601_WIP_dti_ax_ADC.nii.gz")).get_fdata()
        isotropic = nib.as_closest_canonical(nib.load(out / scaling / "601_dti_ax_isotropic.nii.gz")).get_fdata()
        print(
            f"philips DTI {scaling:8s} ({len(result.written)} files): {ours.shape} affine "
            f"{float(np.max(np.abs(ours.affine - theirs.affine))):.2e} mm, voxels identical "
            f"{np.array_equal(ours.get_fdata(), theirs.get_fdata())}; isotropic = _ADC volume 17: "
            f"{np.array_equal(isotropic, adc[..., 16])}; "
            + gradient_agreement(out / scaling / "601_dti_ax.nii.gz", dti / folder / "601_WIP_dti_ax.nii.gz")
        )
    ge = CORPUS / "ge-dwi-classic-r3"
    result = trueshape.convert(ge / "dicom", out / "ge")
    (volume,) = [p for p in result.written if p.name.endswith(".nii.gz")]
    print("GE DWI: " + gradient_agreement(volume, ge / "dcm2niix" / "2_Brain_Advanced_Sequences.nii.gz"))


if __name__ == "__main__":
    main()
