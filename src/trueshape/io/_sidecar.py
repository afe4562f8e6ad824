"""JSON sidecars: every fact about a written volume, beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from trueshape.io._transaction import OutputTransaction, atomic_path

__all__ = ["to_jsonable", "write_json"]


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, enums and paths inside ``value`` to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(
    data: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    transaction: OutputTransaction | None = None,
) -> Path:
    """Write ``data`` as indented JSON, atomically (as one output of ``transaction``)."""
    target = Path(path)
    with atomic_path(target, force=force, transaction=transaction) as temporary:
        temporary.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
    return target
