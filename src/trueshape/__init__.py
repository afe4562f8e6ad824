"""trueshape: DICOM series with verified geometry, and MRI gradient-nonlinearity distortion explained and removed.

The package face is lazy (PEP 562): ``import trueshape`` loads nothing but this file, and each name below
loads its module on first use, so that ``import trueshape.dicom`` or the CLI's ``--help`` do not pay for
nibabel, scipy or SimpleITK.

Examples
--------
>>> import trueshape
>>> inspection = trueshape.inspect("dicom_folder")                            # doctest: +SKIP
>>> volume = trueshape.load("dicom_folder#3")                                 # doctest: +SKIP
>>> output = trueshape.correct("dicom_folder#3", "out", coefficients="coil.grad")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trueshape._version import __version__

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from trueshape.api import ConvertResult, CorrectOutput, OutputFormat, convert, correct, inspect, load

#: Public name -> the module that defines it (loaded on first use).
_LAZY = {
    "ConvertResult": "trueshape.api",
    "CorrectOutput": "trueshape.api",
    "OutputFormat": "trueshape.api",
    "convert": "trueshape.api",
    "correct": "trueshape.api",
    "inspect": "trueshape.api",
    "load": "trueshape.api",
}

__all__ = ["ConvertResult", "CorrectOutput", "OutputFormat", "__version__", "convert", "correct", "inspect", "load"]


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (and keep the name, so that this runs once per name)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trueshape' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
