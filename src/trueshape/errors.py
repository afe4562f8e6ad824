"""The exception tree every trueshape layer raises from.

The CLI maps :class:`TrueshapeError` to exit code 2 and prints its message on one line, so every
message names the file (or tag) and the problem.
"""

from __future__ import annotations

__all__ = [
    "CoefficientFileError",
    "DicomInputError",
    "EstimationError",
    "GeometryError",
    "OutputError",
    "OutputExistsError",
    "TrueshapeError",
    "VolumeInputError",
]


class TrueshapeError(Exception):
    """Base of every error trueshape raises on purpose."""


class DicomInputError(TrueshapeError):
    """A file or folder cannot be read as the DICOM the caller asked for."""


class VolumeInputError(TrueshapeError):
    """A NIfTI or NRRD volume, or the JSON sidecar beside it, cannot be read or does not fit the volume."""


class GeometryError(TrueshapeError, ValueError):
    """Slice geometry is missing, inconsistent, or rejected by the chosen policy.

    ``findings`` holds the findings that caused a policy rejection (empty otherwise).
    """

    def __init__(self, message: str, *, findings: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings


class CoefficientFileError(TrueshapeError, ValueError):
    """A gradient coefficient or scanner-model file is malformed (the message names the line)."""


class EstimationError(TrueshapeError):
    """An estimator could not produce a trustworthy result."""


class OutputExistsError(TrueshapeError, FileExistsError):
    """An output file already exists and overwriting was not requested."""


class OutputError(TrueshapeError, OSError):
    """An output file or folder cannot be written (the message names the path and the reason)."""
