"""Named reference coils.

SYN-AS is the synthetic whole-body coil of the SYN-FEMUR benchmark (DESIGN.md section 7): odd orders only,
symmetric terms, R0 = 250 mm.

Examples
--------
Largest displacement length on spheres about the isocentre (100 000 random directions):

>>> import numpy as np
>>> directions = np.random.default_rng(0).normal(size=(100_000, 3))
>>> directions /= np.linalg.norm(directions, axis=1, keepdims=True)
>>> [round(float(np.linalg.norm(SYN_AS.displacement_magnet(r * directions), axis=1).max()), 2)
...  for r in (100, 150, 200, 250)]
[1.35, 4.94, 13.2, 29.86]
"""

from __future__ import annotations

from trueshape.gnl._coefficients import GradientCoefficients
from trueshape.gnl._frames import CoefficientFrame

__all__ = ["SYN_AS", "SYN_AS_R0_MM"]

#: Reference radius of SYN-AS, mm.
SYN_AS_R0_MM = 250.0

SYN_AS: GradientCoefficients = GradientCoefficients.from_terms(
    SYN_AS_R0_MM,
    {
        ("z", "A", 3, 0): -0.080,
        ("z", "A", 5, 0): -0.030,
        ("z", "A", 7, 0): +0.010,
        ("x", "A", 3, 1): -0.055,
        ("x", "A", 5, 1): -0.035,
        ("x", "A", 3, 3): -0.006,
        ("x", "A", 5, 3): +0.004,
        ("y", "B", 3, 1): -0.055,
        ("y", "B", 5, 1): -0.035,
        ("y", "B", 3, 3): +0.006,
        ("y", "B", 5, 3): +0.004,
    },
    frame=CoefficientFrame.LAI,
    coil_id="SYN-AS",
    source="trueshape reference coil SYN-AS (DESIGN.md section 7)",
    provenance={"description": "synthetic whole-body coil of the SYN-FEMUR benchmark"},
)
"""The SYN-AS reference coil (Siemens normalisation, LAI axes as gradunwarp reads ``.grad`` files)."""
