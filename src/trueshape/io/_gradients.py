"""A diffusion series' gradient table as FSL reads it: ``.bval`` and ``.bvec`` beside the volume (as dcm2niix).

``.bval`` holds one b-value (s/mm^2) per volume; ``.bvec`` three rows, the unit gradient direction of each
volume along the volume's own voxel axes i, j, k, with the first component negated when the voxel-to-world
matrix has a positive determinant (FSL's radiological convention, which dcm2niix follows). Values are
tab-separated, as dcm2niix writes them. A b = 0 volume, and one whose headers give no direction, has
``0 0 0``.

Examples
--------
>>> from trueshape.geometry import VolumeGeometry
>>> grid = VolumeGeometry.from_components(shape=(2, 2, 2), origin=(0, 0, 0), spacing=(1, 1, 1))
>>> fsl_directions(grid, [(1.0, 0.0, 0.0), None]).tolist()
[[-1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trueshape.geometry import Stack, VolumeGeometry
from trueshape.io._transaction import OutputTransaction, atomic_path

__all__ = ["BVEC_CONVENTION", "fsl_directions", "gradient_table_paths", "write_gradient_table"]

BVEC_CONVENTION = (
    "FSL: unit directions along this file's voxel axes i, j, k, the first negated when the affine's determinant is "
    "positive (as dcm2niix)"
)


def fsl_directions(
    geometry: VolumeGeometry, directions_lps: Sequence[tuple[float, float, float] | None]
) -> NDArray[np.float64]:
    """Return the directions (patient LPS unit vectors, None for none) as FSL bvecs of ``geometry``, shape (3, T)."""
    table = np.zeros((3, len(directions_lps)))
    for index, direction in enumerate(directions_lps):
        if direction is not None:
            table[:, index] = geometry.direction.T @ np.asarray(direction, dtype=np.float64)
    if np.linalg.det(geometry.lps_from_ijk[:3, :3]) > 0:
        table[0] = -table[0]
    return np.asarray(table + 0.0, dtype=np.float64)  # no negative zeros in the text


def gradient_table_paths(stack: Stack, base: Path) -> list[Path]:
    """``<base>.bval`` and ``<base>.bvec`` for a diffusion-weighted stack (none for a derived isotropic one)."""
    weights = stack.diffusion
    if weights is None or all(w is not None and w.isotropic for w in weights):
        return []
    return [base.with_name(base.name + ".bval"), base.with_name(base.name + ".bvec")]


def write_gradient_table(
    stack: Stack, geometry: VolumeGeometry, paths: list[Path], transaction: OutputTransaction
) -> dict[str, Any]:
    """Write the ``.bval`` and ``.bvec`` (``paths``) of the volume on ``geometry``; return the sidecar's words."""
    weights = stack.diffusion or ()
    b_values = [w.b_value if w is not None else 0.0 for w in weights]
    table = fsl_directions(geometry, [w.direction_lps if w is not None else None for w in weights])
    texts = ["\t".join(f"{b:g}" for b in b_values), *("\t".join(f"{v:.6g}" for v in row) for row in table)]
    for path, text in zip(paths, (texts[0] + "\n", "\n".join(texts[1:]) + "\n"), strict=True):
        with atomic_path(path, transaction=transaction) as temporary:
            temporary.write_text(text)
    record: dict[str, Any] = {
        "bval_file": paths[0].name,
        "bvec_file": paths[1].name,
        "bvec_convention": BVEC_CONVENTION,
    }
    unknown = [t for t, w in enumerate(weights) if w is None or (w.b_value > 0 and w.direction_lps is None)]
    if unknown:
        record["volumes_without_direction"] = unknown
    return record
