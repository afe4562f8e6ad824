"""Diffusion weighting of one image: its b-value, its gradient direction (patient LPS) and whether it is derived.

The standard MR Diffusion attributes come first: DiffusionBValue (0018,9087), DiffusionDirectionality
(0018,9075) and DiffusionGradientOrientation (0018,9089) (patient coordinates), per frame in an enhanced file's
MR Diffusion Sequence (0018,9117) or at the top level of classic files. The vendors' private tags fill in:

* GE: the b-value in (0018,9087), else (0043,1039)[0] (multi-b and synthetic-b series add 1e9 there: taken
  modulo 1e9, dcm2niix issue #602) and the direction in (0019,10BB), (0019,10BC), (0019,10BD), along the
  image's row, column and normal with the first two negated: on the corpus GE DWI series this gives the
  gradient directions dcm2niix's .bvec gives (``tests/corpus``);
* Siemens: B_value (0019,100C), DiffusionGradientDirection (0019,100E) (patient LPS) and
  DiffusionDirectionality (0019,100D), else the same names in the CSA image header (mosaics);
* Philips: the b-value (2001,1003), the direction (2005,10B0..10B2) (RL, AP, FH: patient LPS components; equal
  to (0018,9089) on the corpus DTI series) and (2001,1004), ``I`` for the isotropic image.

A derived isotropic (trace) image has a b-value but no direction: it is kept apart from the directional
volumes, as dcm2niix keeps its ``_ADC`` image apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from trueshape.dicom._csa import siemens_csa_image_tags
from trueshape.dicom.vendor import GE_PRIVATE_ACQU, GE_PRIVATE_PARM, private_value, text_values

__all__ = ["Diffusion", "read_diffusion"]

SIEMENS_CSA_HEADER = "SIEMENS CSA HEADER"
SIEMENS_MR_HEADER = "SIEMENS MR HEADER"
PHILIPS_IMAGING_001 = "Philips Imaging DD 001"
PHILIPS_MR_IMAGING_001 = "Philips MR Imaging DD 001"
#: GE adds this to the private b-value of multi-b and synthetic-b series (dcm2niix issue #602).
GE_B_VALUE_BIAS = 1_000_000_000
#: A direction shorter than this is "no direction" (a b = 0 image, or a derived isotropic one).
ZERO_DIRECTION = 1e-6


@dataclass(frozen=True)
class Diffusion:
    """The diffusion weighting of one image.

    Parameters
    ----------
    b_value : float
        s/mm^2.
    direction_lps : tuple of 3 float or None
        Unit gradient direction in patient LPS; None for b = 0, a derived isotropic image, or when the headers
        give a b-value only.
    isotropic : bool
        A derived isotropic (trace) image: a b-value above 0 and no direction by design.
    source : str
        The tags it was read from.
    """

    b_value: float
    direction_lps: tuple[float, float, float] | None
    isotropic: bool
    source: str

    @property
    def key(self) -> tuple[float, tuple[float, float, float] | None]:
        """What tells one diffusion volume from another: the b-value and the direction (rounded)."""
        direction = None if self.direction_lps is None else tuple(round(v, 4) for v in self.direction_lps)
        return round(self.b_value, 1), direction  # type: ignore[return-value]


def _number(value: Any) -> float | None:
    """Return a finite number from a value or the first of several (DS, IS, FD, FL, text, bytes), else None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    if isinstance(value, str):
        value = value.split("\\")[0]
    elif value is not None and not isinstance(value, (int, float)):
        try:
            value = value[0]
        except (TypeError, IndexError, KeyError):
            return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _vector(values: Any) -> tuple[float, float, float] | None:
    try:
        vector = tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        return None
    if len(vector) != 3 or not all(math.isfinite(v) for v in vector):
        return None
    return vector[0], vector[1], vector[2]


def _made(
    b_value: float | None, direction: tuple[float, float, float] | None, isotropic_said: bool, source: str
) -> Diffusion | None:
    """Normalise a reading: the direction to unit length (None when zero); isotropic when b > 0 and no direction."""
    if b_value is None or b_value < 0:
        return None
    length = math.sqrt(sum(v * v for v in direction)) if direction is not None else 0.0
    unit = None
    if direction is not None and length >= ZERO_DIRECTION:
        unit = (direction[0] / length, direction[1] / length, direction[2] / length)
    zero_given = direction is not None and unit is None
    isotropic = b_value > 0 and unit is None and (isotropic_said or zero_given)
    return Diffusion(float(b_value), unit if b_value > 0 else None, isotropic, source)


def _standard(holder: Dataset) -> Diffusion | None:
    """Read the standard attributes: in an MR Diffusion Sequence item, or at the top level of a classic file."""
    b_value = _number(holder.get("DiffusionBValue"))
    if b_value is None:
        return None
    directionality = str(holder.get("DiffusionDirectionality", "") or "").upper()
    direction = _vector(holder.get("DiffusionGradientOrientation"))
    gradient = holder.get("DiffusionGradientDirectionSequence")
    if direction is None and gradient:
        direction = _vector(gradient[0].get("DiffusionGradientOrientation"))
    return _made(b_value, direction, directionality == "ISOTROPIC", "DiffusionBValue (0018,9087)")


def _ge(ds: Dataset, orientation: tuple[float, ...] | None) -> Diffusion | None:
    components = [_number(private_value(ds, 0x0019, GE_PRIVATE_ACQU, element)) for element in (0xBB, 0xBC, 0xBD)]
    b_value = _number(ds.get("DiffusionBValue"))  # the public tag carries no bias
    said = "DiffusionBValue (0018,9087)"
    if b_value is None:
        said = "(0043,1039)"
        b_value = _number(private_value(ds, 0x0043, GE_PRIVATE_PARM, 0x39))
        b_value = b_value % GE_B_VALUE_BIAS if b_value is not None and b_value >= GE_B_VALUE_BIAS else b_value
    if b_value is None or any(c is None for c in components) or orientation is None:
        return None
    cosines = np.asarray(orientation, dtype=np.float64).reshape(2, 3)
    normal = np.cross(cosines[0], cosines[1])
    x, y, z = (float(c) for c in components)  # type: ignore[arg-type]
    lps = -x * cosines[0] - y * cosines[1] + z * normal
    source = f"GE b-value {said}, direction (0019,10BB-10BD) along the image axes"
    return _made(b_value, (float(lps[0]), float(lps[1]), float(lps[2])), False, source)


def _siemens(ds: Dataset) -> Diffusion | None:
    b_value = _number(private_value(ds, 0x0019, SIEMENS_MR_HEADER, 0x0C))
    source = "Siemens B_value (0019,100C)"
    direction = _vector(private_value(ds, 0x0019, SIEMENS_MR_HEADER, 0x0E))
    directionality = " ".join(text_values(private_value(ds, 0x0019, SIEMENS_MR_HEADER, 0x0D))).upper()
    if b_value is None and {"DIFFUSION", "MOSAIC"} & {t.upper() for t in text_values(ds.get("ImageType"))}:
        csa = siemens_csa_image_tags(ds)
        b_value = _number(csa.get("B_value") or None)
        direction = _vector((csa.get("DiffusionGradientDirection") or [])[:3])
        directionality = " ".join(str(v) for v in csa.get("DiffusionDirectionality") or []).upper()
        source = "Siemens CSA image header B_value"
    return _made(b_value, direction, "ISOTROPIC" in directionality, source)


def _philips(ds: Dataset) -> Diffusion | None:
    b_value = _number(private_value(ds, 0x2001, PHILIPS_IMAGING_001, 0x03))
    direction = _vector(
        [_number(private_value(ds, 0x2005, PHILIPS_MR_IMAGING_001, element)) for element in (0xB0, 0xB1, 0xB2)]
    )
    label = " ".join(text_values(private_value(ds, 0x2001, PHILIPS_IMAGING_001, 0x04))).upper()
    return _made(b_value, direction, label == "I", "Philips (2001,1003), (2005,10B0-10B2)")


def read_diffusion(
    ds: Dataset, *, per_frame_item: Dataset | None = None, orientation: tuple[float, ...] | None = None
) -> Diffusion | None:
    """Return the diffusion weighting of an image (or of one enhanced frame), None when it has none.

    ``orientation`` is the image's ImageOrientationPatient (GE records directions along the image axes).
    """
    for holder in (per_frame_item, ds.get("SharedFunctionalGroupsSequence", [None])[0]):
        sequence = holder.get("MRDiffusionSequence") if holder is not None else None
        if sequence:
            found = _standard(sequence[0])
            if found is not None:
                return found
    manufacturer = str(ds.get("Manufacturer", "") or "").upper()
    if manufacturer.startswith("GE"):
        found = _ge(ds, orientation)
        if found is not None:
            return found
    if "DiffusionBValue" in ds:
        return _standard(ds)
    if "SIEMENS" in manufacturer:
        return _siemens(ds)
    if "PHILIPS" in manufacturer:
        return _philips(ds)
    return None
