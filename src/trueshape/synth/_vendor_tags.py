"""A table move as each vendor records it in its private tags, for tests and benchmarks of the isocentre.

A table moved ``d`` mm into the bore carries the patient ``d`` mm deeper: the isocentre lands ``d`` mm towards
the feet of a head-first patient (patient LPS z - d) and towards the head of a feet-first one (z + d), whatever
the roll (supine, prone, decubitus). The vendors record the move along the bore axis of the table:

* Siemens ImaRelTablePosition (0019,1014) = ``[0, 0, -d]`` (the corpus pair siemens-table-baseline /
  -moved-h20: +20 moved the isocentre 20 mm superior on the patient);
* GE (0043,10B2)[2] - (0019,107F) = ``d`` (dcm2niix PR #850: BIDS TablePosition);
* Philips MRStackTablePosLong (2005,143C) = ``-d`` (dcm2niix issue #726: a Philips table moved 60.3 mm into the
  bore gives TablePosition +60.3), at the top level or in the per-stack sequence (2001,105F) of classic files.
"""

from __future__ import annotations

import enum

from pydicom.dataset import Dataset

from trueshape.dicom.vendor import (
    GE_PRIVATE_ACQU,
    GE_PRIVATE_PARM,
    PHILIPS_IMAGING,
    PHILIPS_IMAGING_001,
    SIEMENS_MR_HEADER,
)

__all__ = ["Vendor", "record_table_move"]

#: The GE landmark (0019,107F) written with a move: any value, the difference is what counts (mm).
GE_LANDMARK_MM = -40.0


class Vendor(enum.StrEnum):
    """Whose private tags record the table position (the Manufacturer each writes)."""

    SIEMENS = "SIEMENS"
    GE = "GE MEDICAL SYSTEMS"
    PHILIPS = "Philips Medical Systems"


def record_table_move(ds: Dataset, vendor: Vendor, into_bore_mm: float, *, philips_stack_sequence: bool = True) -> None:
    """Write a table move of ``into_bore_mm`` (mm, positive into the bore) into ``ds`` as ``vendor`` does.

    Philips puts (2005,143C) in the per-stack sequence (2001,105F) of classic files (``philips_stack_sequence``),
    else at the top level.

    Examples
    --------
    >>> ds = Dataset()
    >>> record_table_move(ds, Vendor.SIEMENS, 20.0)
    >>> ds[0x00191014].value
    [0, 0, -20]
    """
    ds.Manufacturer = vendor.value
    if vendor is Vendor.SIEMENS:
        ds.private_block(0x0019, SIEMENS_MR_HEADER, create=True).add_new(0x14, "IS", [0, 0, round(-into_bore_mm)])
    elif vendor is Vendor.GE:
        position = f"956.1\\320.1\\{into_bore_mm + GE_LANDMARK_MM:.4f}\\0"
        ds.private_block(0x0043, GE_PRIVATE_PARM, create=True).add_new(0xB2, "LO", position)
        ds.private_block(0x0019, GE_PRIVATE_ACQU, create=True).add_new(0x7F, "DS", f"{GE_LANDMARK_MM:g}")
    else:
        holder = Dataset() if philips_stack_sequence else ds
        holder.private_block(0x2005, PHILIPS_IMAGING, create=True).add_new(0x3C, "FL", -into_bore_mm)
        if philips_stack_sequence:
            ds.private_block(0x2001, PHILIPS_IMAGING_001, create=True).add_new(0x5F, "SQ", [holder])
