"""How closely trueshape reproduces dcm2niix on the real corpus: affine difference and voxel equality per volume.

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


if __name__ == "__main__":
    main()
