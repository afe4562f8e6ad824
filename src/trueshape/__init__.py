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
>>> page = trueshape.report("out")                                            # doctest: +SKIP
>>> cohort = trueshape.batch("cohort.csv", "cohort-out", workers=2)             # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trueshape._lazy import lazy_names
from trueshape._version import __version__

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from trueshape.api import (
        ConvertResult,
        CorrectOutput,
        OutputFormat,
        convert,
        correct,
        estimate,
        fit_model,
        inspect,
        learn,
        load,
        report,
    )
    from trueshape.batching import batch

#: Public name -> the module that defines it (loaded on first use).
_ORIGINS = {
    "ConvertResult": "trueshape.api",
    "batch": "trueshape.batching",
    "CorrectOutput": "trueshape.api",
    "OutputFormat": "trueshape.api",
    "convert": "trueshape.api",
    "correct": "trueshape.api",
    "estimate": "trueshape.api",
    "fit_model": "trueshape.api",
    "learn": "trueshape.api",
    "inspect": "trueshape.api",
    "load": "trueshape.api",
    "report": "trueshape.api",
}

__all__ = [
    "ConvertResult",
    "CorrectOutput",
    "OutputFormat",
    "__version__",
    "batch",
    "convert",
    "correct",
    "estimate",
    "fit_model",
    "inspect",
    "learn",
    "load",
    "report",
]


__getattr__, __dir__ = lazy_names(__name__, _ORIGINS, namespace=globals())
