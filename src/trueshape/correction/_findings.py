"""The correction's findings: one constructor per sentence (the pipeline decides when each applies)."""

from __future__ import annotations

from trueshape.findings import Finding, FindingCode, Severity

__all__ = ["coil_mismatch", "coil_unverified", "model_extrapolated", "model_fit_poor", "outside_acquired_volume"]


def coil_mismatch(where: str, series_coil: str, model_coil: str) -> Finding:
    """COIL_MISMATCH: the series was acquired on another gradient coil than the coefficients describe."""
    return Finding(
        FindingCode.COIL_MISMATCH,
        Severity.WARNING,
        f"{where} was acquired on gradient coil {series_coil!r}, but the coefficients describe "
        f"{model_coil!r}: a scanner model corrects only series of its own coil",
        details={"series_coil": series_coil, "model_coil": model_coil},
    )


def coil_unverified(where: str, series_coil: str, what: str) -> Finding:
    """COIL_UNVERIFIED: the series names its gradient coil, the coefficients (``what``: file or model) none."""
    return Finding(
        FindingCode.COIL_UNVERIFIED,
        Severity.INFO,
        f"{where}: the {what} names no coil; the series was acquired on {series_coil} - make sure it belongs to "
        "this scanner",
        details={"series_coil": series_coil, "model_coil": None},
    )


def outside_acquired_volume(where: str, fraction: float, why: str, tolerance: float) -> Finding:
    """OUTSIDE_ACQUIRED_VOLUME: a ``fraction`` of the corrected voxels sampled beyond the input (left 0)."""
    return Finding(
        FindingCode.OUTSIDE_ACQUIRED_VOLUME,
        Severity.WARNING,
        f"{where}: about {100 * fraction:.1f}% of the corrected voxels take their value from outside "
        f"the acquired volume and are left 0 ({why}); acquire more slices, or a thicker slab, to keep "
        "them",
        measured=fraction,
        tolerance=tolerance,
        unit="fraction",
    )


def model_extrapolated(where: str, fraction: float, beyond_mm: float, margin_mm: float) -> Finding:
    """MODEL_EXTRAPOLATED: part of the anatomy lies outside the region the learned model was measured in."""
    return Finding(
        FindingCode.MODEL_EXTRAPOLATED,
        Severity.WARNING,
        f"{where}: {100 * fraction:.0f}% of the imaged anatomy lies outside the region of the magnet where the "
        f"scanner model was learned, up to {beyond_mm:.0f} mm beyond it: the correction extrapolates there; learn "
        "from sessions that reach as far from the isocentre",
        measured=beyond_mm,
        tolerance=margin_mm,
        unit="mm",
        details={"fraction_outside": fraction},
    )


def model_fit_poor(where: str, warnings: list[str]) -> Finding:
    """MODEL_FIT_POOR: the learned model carries the warnings of a poor fit."""
    return Finding(
        FindingCode.MODEL_FIT_POOR,
        Severity.WARNING,
        f"{where}: the scanner model comes from a fit judged poor: {'; '.join(warnings)}",
        details={"warnings": warnings},
    )
