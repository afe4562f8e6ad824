"""trueshape: DICOM series with verified geometry, and MRI gradient-nonlinearity distortion explained and removed.

Examples
--------
>>> import trueshape
>>> inspection = trueshape.inspect("dicom_folder")       # doctest: +SKIP
>>> volume = trueshape.load("dicom_folder#3")            # doctest: +SKIP
"""

__version__ = "0.1.0"

from trueshape.api import ConvertResult, OutputFormat, convert, inspect, load

__all__ = ["ConvertResult", "OutputFormat", "__version__", "convert", "inspect", "load"]
