"""What an inspected stack means, and what to do next: one diagnosis line per stack, from its headers alone.

Anatomy that looks squashed or stretched has one of three causes (README): 1. the loader got the geometry
wrong (the voxel grid departs from where the slices were: missing slices, uneven gaps, tilt, ...); 2. the
scanner corrected gradient distortion within each slice only (DIS2D), so the part through the slices remains;
3. it corrected none of it (ND). A diagnosis says, for one stack, which of them apply, how far its field of
view reaches from the isocentre (where the distortion grows), and the command that deals with it.

Examples
--------
>>> diagnosis = diagnose(trueshape.inspect("session/dicom").stacks[1])    # doctest: +SKIP
>>> diagnosis.next_step, diagnosis.command("session/dicom#3")              # doctest: +SKIP
(<NextStep.CORRECT: 'correct'>, 'trueshape correct session/dicom#3 --coef coeff.grad --out corrected')
"""

from __future__ import annotations

import enum
import re
import shlex
from dataclasses import dataclass
from typing import Any

from trueshape.dicom import DistortionState
from trueshape.findings import FindingCode
from trueshape.geometry._distortion import anatomical_axis_name
from trueshape.geometry._selection import geometry_problems
from trueshape.geometry._series import Inspection, Stack

__all__ = ["TYPICAL_DISPLACEMENT_MM", "Diagnosis", "NextStep", "diagnose", "inspection_json", "shell_word"]

#: How far an uncorrected whole-body coil typically displaces anatomy at a distance from the isocentre, mm
#: (distance, displacement): the reference coil SYN-AS of DESIGN.md section 4, like the vendors' coils.
TYPICAL_DISPLACEMENT_MM = ((100.0, 1.5), (150.0, 5.0), (200.0, 13.0), (250.0, 30.0))
#: Findings about slices off a regular grid: ``convert`` then resamples them onto their true grid.
_OFF_GRID = frozenset({FindingCode.SLICES_MISSING, FindingCode.SPACING_IRREGULAR, FindingCode.GANTRY_TILT})


class NextStep(enum.StrEnum):
    """What to do with a stack after its diagnosis."""

    CORRECT = "correct"  #: remove the residual with the coil's coefficients or a learned model
    STATE_NEEDED = "state-needed"  #: correct, once it is known what the scanner corrected (--state)
    CONVERT = "convert"  #: nothing to correct; write it as a volume whose grid is where the slices were
    NONE = "none"  #: a localizer: nothing to do


@dataclass(frozen=True)
class Diagnosis:
    """One stack's diagnosis: the causes that apply, in one sentence, and the next step.

    Parameters
    ----------
    sentence : str
        The loader, what the scanner corrected, and how far the field of view reaches from the isocentre.
    next_step : NextStep
        What to do next (:meth:`command` writes it out).
    loader_codes : tuple of FindingCode
        Findings that mean the voxel grid departs from where the slices were (cause 1).
    distortion_state : DistortionState
        What the scanner corrected.
    reach_mm : float
        Largest distance of the field of view from the isocentre, mm.
    off_grid : bool
        Slices off a regular grid: ``convert`` resamples them (``--irregular resample``).
    """

    sentence: str
    next_step: NextStep
    loader_codes: tuple[FindingCode, ...]
    distortion_state: DistortionState
    reach_mm: float
    off_grid: bool = False

    def command(self, series: str, *, coefficients: str | None = None, model: str | None = None) -> str:
        """Return the next command for ``series`` (the SERIES argument), ready to paste; ``""`` when none.

        ``coefficients`` or ``model`` (paths) go into a correction; without either, the command names
        ``coeff.grad``, the vendor file a site physicist provides.

        Examples
        --------
        >>> Diagnosis("", NextStep.CORRECT, (), DistortionState.IN_PLANE_2D, 200.0).command("dicom dir#3")
        "trueshape correct 'dicom dir#3' --coef coeff.grad --out corrected"
        """
        argument = shell_word(series)
        if self.next_step is NextStep.NONE:
            return ""
        if self.next_step is NextStep.CONVERT:
            resample = " --irregular resample" if self.off_grid else ""
            return f"trueshape convert {argument}{resample} --out converted"
        source = f"--model {shell_word(model)}" if model else f"--coef {shell_word(coefficients or 'coeff.grad')}"
        state = " --state DIS2D" if self.next_step is NextStep.STATE_NEEDED else ""
        return f"trueshape correct {argument}{state} {source} --out corrected"

    def to_json(self) -> dict[str, Any]:
        """Machine-readable diagnosis (``inspect --json``)."""
        return {
            "sentence": self.sentence,
            "next_step": self.next_step.value,
            "loader_codes": [code.value for code in self.loader_codes],
            "distortion_state": self.distortion_state.value,
            "reach_mm": self.reach_mm,
        }


def inspection_json(inspection: Inspection) -> dict[str, Any]:
    """Return ``inspection.to_json()`` with each stack's diagnosis beside its facts (``inspect --json``)."""
    record = inspection.to_json()
    for series, series_record in zip(inspection.series, record["series"], strict=True):
        for stack, stack_record in zip(series.stacks, series_record["stacks"], strict=True):
            stack_record["diagnosis"] = diagnose(stack).to_json()
    return record


def shell_word(text: str) -> str:
    """Return ``text`` as one word a POSIX shell reads back as is (quoted only when it has to be).

    ``#`` inside a word is no comment, so ``dicom#3`` stays as it is.

    Examples
    --------
    >>> shell_word("session/dicom#3"), shell_word("my scans/dicom#3")
    ('session/dicom#3', "'my scans/dicom#3'")
    """
    if text and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-][A-Za-z0-9_@%+=:,./#-]*", text):
        return text
    return shlex.quote(text)


def diagnose(stack: Stack) -> Diagnosis:
    """Diagnose one stack from its headers: the loader, what the scanner corrected, the reach from the isocentre.

    Examples
    --------
    >>> diagnose(trueshape.inspect("session/dicom").stacks[1]).sentence       # doctest: +SKIP
    'Not the loader: every slice lies where its header says (30 slices). Cause 2: ...'
    """
    state, reach = stack.distortion_state, stack.max_distance_from_isocentre_mm
    if stack.is_localizer:
        return Diagnosis(
            "A localizer (a planning image): not a volume to measure or correct.", NextStep.NONE, (), state, reach
        )
    problems = geometry_problems(stack)
    codes = tuple(dict.fromkeys(f.code for f in problems))
    off_grid = bool(_OFF_GRID.intersection(codes))
    if codes:
        loader = (
            f"Cause 1, the loader: {', '.join(codes)} - the voxel grid other tools build departs from where "
            "the slices were (trueshape loads them where they were)."
        )
    else:
        loader = f"Not the loader: every slice lies where its header says ({stack.geometry.shape[2]} slices)."
    modality = stack.frames[0].modality.upper()
    if modality not in ("MR", ""):
        step = NextStep.CONVERT
        return Diagnosis(f"{loader} {modality}: no gradient distortion.", step, codes, state, reach, off_grid)
    scanner, step = _scanner_part(stack, state)
    return Diagnosis(f"{loader} {scanner} {_reach_part(state, reach)}", step, codes, state, reach, off_grid)


def _scanner_part(stack: Stack, state: DistortionState) -> tuple[str, NextStep]:
    """Say what the scanner corrected, and what that leaves to do."""
    if state is DistortionState.FULL_3D:
        return "The scanner corrected this in 3-D (DIS3D): no gradient distortion is left to remove.", NextStep.CONVERT
    if state is DistortionState.IN_PLANE_2D:
        axis = anatomical_axis_name(stack.geometry.direction[:, 2]).split(" (")[0]
        return (
            f"Cause 2: the scanner corrected gradient distortion within each slice only (DIS2D); the {axis} "
            "part, through the slices, is still in the images.",
            NextStep.CORRECT,
        )
    if state is DistortionState.NONE:
        return (
            "Cause 3: the scanner did not correct gradient distortion (ND); all of it is still in the images.",
            NextStep.CORRECT,
        )
    return (
        "The headers do not say what the scanner corrected: ask whether the protocol's distortion correction "
        "was off (ND), 2D (DIS2D) or 3D (DIS3D), and say it with --state.",
        NextStep.STATE_NEEDED,
    )


def _reach_part(state: DistortionState, reach_mm: float) -> str:
    """Say how far the field of view reaches from the isocentre, and what a coil typically does there."""
    said = f"The field of view reaches {reach_mm:.0f} mm from the isocentre"
    if state is DistortionState.FULL_3D:
        return said + "."
    nearer = [(r, d) for r, d in TYPICAL_DISPLACEMENT_MM if r <= reach_mm]
    if not nearer:
        radius, displacement = TYPICAL_DISPLACEMENT_MM[0]
        return (
            f"{said}: close to it, where an uncorrected whole-body coil displaces anatomy by less than "
            f"{displacement:g} mm (about that at {radius:.0f} mm)."
        )
    radius, displacement = nearer[-1]
    return (
        f"{said}, beyond {radius:.0f} mm, where an uncorrected whole-body coil typically displaces anatomy by "
        f"{displacement:g} mm or more."
    )
