"""The demo's page: the story told first (diagnosis, prediction, the heads measured), then every output folder.

``make demo`` ends by writing ``demo-out/report.html``: the figures of the corrections (the femoral heads as
acquired and corrected, outlined, with their diameters), of the learned model and of each learning session.
"""

from __future__ import annotations

from pathlib import Path

from trueshape.demo import DemoResult
from trueshape.reporting import Section, write_report
from trueshape.reporting._page import paragraph, table
from trueshape.synth import Contrast, FemurPhantom, Tissue

__all__ = ["write_demo_report"]


def _story(result: DemoResult) -> Section:
    """Return the story as the terminal tells it: the diagnosis, the prediction, the heads measured."""
    section = Section("The story: why does the femoral head look flattened?")
    section.blocks.append(paragraph(result.diagnosis()))
    predictions = [
        [
            "left" if p.centre_lps[0] > 0 else "right",
            f"{p.distance_from_isocentre_mm:.0f}",
            f"{p.true_ap_mm:.1f}",
            f"{p.predicted_ap_mm:.1f}",
            f"{100 * (p.predicted_ap_mm / p.true_ap_mm - 1):+.1f}%",
        ]
        for p in result.predictions
    ]
    section.blocks.append(paragraph("What the coil and the coronal series' headers predict at the femoral heads:"))
    section.blocks.append(
        table(["head", "from the isocentre (mm)", "front-back (mm)", "appears as (mm)", "change"], predictions)
    )
    rows = [
        [
            name,
            "left" if m.centre_lps[0] > 0 else "right",
            f"{m.diameters_mm[0]:.2f}",
            f"{m.diameters_mm[1]:.2f}",
            f"{m.ap_lr_ratio:.3f}",
        ]
        for name, measured in result.measurements.items()
        for m in measured
    ]
    section.blocks.append(paragraph(f"Femoral head marrow, true diameter {result.true_diameter_mm:.1f} mm:"))
    section.blocks.append(
        table(["series", "head", "left-right (mm)", "front-back (mm)", "front-back / left-right"], rows)
    )
    return section


def write_demo_report(result: DemoResult) -> Path:
    """Write ``result.folder/report.html``: the story, then the corrections, the learned model, the sessions."""
    phantom = FemurPhantom()
    levels = tuple(phantom.signal_of(tissue, Contrast.T1) for tissue in (Tissue.MARROW, Tissue.CORTEX, Tissue.MUSCLE))
    return write_report(
        result.folder,
        title="trueshape demo: why does the femoral head look flattened?",
        preface=[_story(result)],
        tissue_levels=(levels[0], levels[1], levels[2]),
    )
