"""The volume formats trueshape writes, by name (what ``--format`` takes)."""

from __future__ import annotations

import enum

__all__ = ["OutputFormat"]


class OutputFormat(enum.StrEnum):
    """Volume formats: ``convert`` writes the files, ``correct`` also a derived DICOM series.

    Examples
    --------
    >>> OutputFormat("nrrd").suffix
    '.nrrd'
    """

    NIFTI = "nifti"  #: gzip-compressed NIfTI-1 (.nii.gz)
    NII = "nii"  #: uncompressed NIfTI-1 (.nii)
    NRRD = "nrrd"  #: gzip-encoded NRRD in LPS space
    DICOM = "dicom"  #: a derived DICOM series (a folder), for corrected DICOM series only

    @property
    def suffix(self) -> str:
        """File suffix of the format (a DICOM series is a folder: none)."""
        return {
            OutputFormat.NIFTI: ".nii.gz",
            OutputFormat.NII: ".nii",
            OutputFormat.NRRD: ".nrrd",
            OutputFormat.DICOM: "",
        }[self]
