"""How stored pixel values become the values a user gets: DICOM display values, or Philips' precise values.

trueshape writes DICOM display values (``stored * RescaleSlope + RescaleIntercept``), as pydicom and 3D Slicer
do. Philips also records a private scale slope SS (2005,100E); the "precise" floating-point value of a pixel is
``(stored * RescaleSlope + RescaleIntercept) / (RescaleSlope * SS)`` (Chenevert et al. 2014), which dcm2niix
writes by default, and so most Philips BIDS datasets hold. The two differ by a factor ``RescaleSlope * SS``
(about 1/280 on the corpus DTI series), and phase images then come in radian-like units. Precise values are
computed in single precision exactly as dcm2niix does (``value(1) - value(0)`` and ``value(0)``), so that the
NIfTI scaling fields agree with dcm2niix's bit for bit.

Examples
--------
>>> scaling = ValueScaling.for_frame(1.08205128205128, 0.0, 0.003298636991530657, PhilipsScaling.PRECISE)
>>> float(scaling.slope), float(scaling.intercept), scaling.applied.value
(303.155517578125, 0.0, 'precise')
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_RESCALE", "PhilipsScaling", "ValueScaling"]

#: Largest rescale slope or intercept accepted: any 32-bit stored value times it stays within float32.
MAX_RESCALE = 1e20

DISPLAY_FORMULA = "stored * RescaleSlope (0028,1053) + RescaleIntercept (0028,1052)"
PRECISE_FORMULA = (
    "(stored * RescaleSlope (0028,1053) + RescaleIntercept (0028,1052)) "
    "/ (RescaleSlope * Philips scale slope (2005,100E))"
)


class PhilipsScaling(enum.StrEnum):
    """Which values a Philips image gives: DICOM display values, or Philips' precise floating-point values."""

    DISPLAY = "display"  #: stored * RescaleSlope + RescaleIntercept (DICOM, pydicom, 3D Slicer; dcm2niix -p n)
    PRECISE = "precise"  #: display values / (RescaleSlope * (2005,100E)) (dcm2niix's default)


@dataclass(frozen=True)
class ValueScaling:
    """The linear map from stored to user values of one image, and which scaling it is.

    Parameters
    ----------
    slope, intercept : float
        ``value = stored * slope + intercept`` (float32 for precise values, as dcm2niix computes them).
    applied : PhilipsScaling
        The scaling applied: PRECISE only when asked for and the image has a usable Philips scale slope.
    requested : PhilipsScaling
        What the caller asked for.
    philips_scale_slope : float or None
        The image's (2005,100E), when it has one.
    """

    slope: float
    intercept: float
    applied: PhilipsScaling
    requested: PhilipsScaling
    philips_scale_slope: float | None = None

    @classmethod
    def for_frame(
        cls, rescale_slope: float, rescale_intercept: float, philips_scale_slope: float | None, mode: PhilipsScaling
    ) -> ValueScaling:
        """Return the scaling of an image with these tags when ``mode`` is asked for."""
        usable = philips_scale_slope is not None and math.isfinite(philips_scale_slope) and philips_scale_slope != 0
        if mode is PhilipsScaling.DISPLAY or not usable:
            return cls(rescale_slope, rescale_intercept, PhilipsScaling.DISPLAY, mode, philips_scale_slope)
        assert philips_scale_slope is not None
        rs, ri, ss = np.float32(rescale_slope), np.float32(rescale_intercept), np.float32(philips_scale_slope)
        with np.errstate(all="ignore"):  # a degenerate product is refused by the caller's range check
            denominator = np.float32(rs * ss)
            at_zero = np.float32(ri / denominator)
            at_one = np.float32((rs + ri) / denominator)
            slope = np.float32(at_one - at_zero)
        return cls(float(slope), float(at_zero), PhilipsScaling.PRECISE, mode, philips_scale_slope)

    @property
    def usable(self) -> bool:
        """Whether the slope and intercept are finite and small enough for float32 values."""
        return all(math.isfinite(v) and abs(v) <= MAX_RESCALE for v in (self.slope, self.intercept))

    def to_json(self) -> dict[str, Any]:
        """Return what a sidecar says: the scaling applied, asked for, its formula and numbers."""
        record: dict[str, Any] = {
            "philips_scaling": self.applied.value,
            "formula": PRECISE_FORMULA if self.applied is PhilipsScaling.PRECISE else DISPLAY_FORMULA,
            "slope": self.slope,
            "intercept": self.intercept,
        }
        if self.philips_scale_slope is not None:
            record["philips_scale_slope"] = self.philips_scale_slope
        if self.requested is not self.applied:
            record["requested"] = self.requested.value
            record["note"] = "no usable Philips scale slope (2005,100E) in the headers: display values"
        return record
