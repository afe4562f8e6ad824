"""Scanner-model files: trueshape's own JSON for a coil's harmonic coefficients."""

from __future__ import annotations

import os
from pathlib import Path

from trueshape.gnl import GradientCoefficients, scanner_model_json
from trueshape.io._transaction import OutputTransaction, atomic_path

__all__ = ["write_scanner_model"]


def write_scanner_model(
    coefficients: GradientCoefficients,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    transaction: OutputTransaction | None = None,
) -> Path:
    """Write the scanner-model JSON (one term per line, so read errors can name the line), atomically."""
    target = Path(path)
    with atomic_path(target, force=force, transaction=transaction) as temporary:
        temporary.write_text(scanner_model_json(coefficients), encoding="utf-8")
    return target
