"""The report page: sections of tables, figures and slice scrollers, rendered as one self-contained HTML file.

Nothing on the page is fetched: figures are embedded as ``data:`` URIs (and also written as PNG files beside
the page), styles and the scroller's script are inline. Every text taken from a folder is escaped.

Examples
--------
>>> section = Section("demo", [table(["a", "b"], [["1", "<2>"]])])
>>> "&lt;2&gt;" in render_page("title", [section])
True
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_OPTIONS",
    "Picture",
    "ReportOptions",
    "Scroller",
    "Section",
    "findings_table",
    "paragraph",
    "render_page",
    "table",
]

SEVERITY_COLOURS = {"info": "#2b7bb9", "warning": "#c77700", "error": "#c0262d", "ok": "#2e7d32", "failed": "#c0262d"}


@dataclass(frozen=True)
class ReportOptions:
    """What a report shows beyond the folder's files."""

    #: Show the patient's name, ID and birth date, the accession number and the institution.
    show_identifiers: bool = False
    #: Signal of a bright round structure, of its dark rim and of what surrounds it (inside, rim, surround),
    #: when known (the demo's phantom); else each is estimated from the image.
    tissue_levels: tuple[float, float, float] | None = None


#: No identifiers, levels estimated from the images.
DEFAULT_OPTIONS = ReportOptions()


@dataclass(frozen=True)
class Picture:
    """A figure: its PNG (written beside the page as ``name.png`` and embedded in it) and its caption."""

    name: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Scroller:
    """Slices one steps through with a range input; one set of pictures per version (as acquired, corrected)."""

    name: str
    caption: str
    slices: Sequence[int]
    versions: dict[str, list[bytes]]


@dataclass
class Section:
    """A titled part of the page: HTML blocks (already escaped), figures and scrollers, then sub-sections."""

    title: str
    blocks: list[str | Picture | Scroller] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def pictures(self) -> Iterable[Picture]:
        """Every figure of this section and its sub-sections."""
        for block in self.blocks:
            if isinstance(block, Picture):
                yield block
        for child in self.children:
            yield from child.pictures()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def paragraph(text: str, *, css: str = "") -> str:
    """One escaped paragraph."""
    return f'<p class="{_e(css)}">{_e(text)}</p>' if css else f"<p>{_e(text)}</p>"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, css: str = "", links: int | None = None) -> str:
    """Return an escaped table; a cell given as ``(text, href)`` in column ``links`` becomes a link."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for number, cell in enumerate(row):
            if number == links and isinstance(cell, tuple):
                text, href = cell
                cells.append(f'<td><a href="{_e(href)}">{_e(text)}</a></td>' if href else f"<td>{_e(text)}</td>")
            elif isinstance(cell, str) and cell in SEVERITY_COLOURS:
                cells.append(f'<td class="severity-{cell}">{_e(cell)}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{_e(css)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def findings_table(findings: Iterable[tuple[str, dict[str, object]]]) -> str:
    """Return the findings (where, finding record) with severity colours and their numbers."""
    rows = []
    for where, finding in findings:
        measured = finding.get("measured")
        tolerance = finding.get("tolerance")
        unit = finding.get("unit") or ""
        number = "" if measured is None else f"{_number(measured)} {unit}".strip()
        if tolerance is not None:
            number += f" (tolerance {_number(tolerance)} {unit})".rstrip()
        rows.append(
            [where, str(finding.get("severity", "")), finding.get("code", ""), finding.get("message", ""), number]
        )
    if not rows:
        return paragraph("No findings: every check passed.", css="quiet")
    return table(["where", "severity", "code", "finding", "measured"], rows, css="findings")


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _render_block(block: str | Picture | Scroller) -> str:
    if isinstance(block, Picture):
        return (
            f'<figure id="{_e(block.name)}"><img alt="{_e(block.caption)}" src="{_uri(block.png)}">'
            f'<figcaption>{_e(block.caption)} <a href="report_figures/{_e(block.name)}.png">(PNG)</a>'
            "</figcaption></figure>"
        )
    if isinstance(block, Scroller):
        data = {
            "slices": list(block.slices),
            "versions": {
                name: [base64.b64encode(p).decode("ascii") for p in pictures]
                for name, pictures in block.versions.items()
            },
        }
        toggle = '<button type="button" class="toggle"></button>' if len(block.versions) > 1 else ""
        payload = json.dumps(data).replace("</", "<\\/")
        return (
            f'<figure class="scroller" id="{_e(block.name)}"><div class="controls">'
            f'<input type="range" min="0" max="{len(block.slices) - 1}" value="{len(block.slices) // 2}">'
            f'<span class="slice-label"></span>{toggle}</div><img alt="{_e(block.caption)}">'
            f'<script type="application/json">{payload}</script>'
            f"<figcaption>{_e(block.caption)}</figcaption></figure>"
        )
    return block


def _render_section(section: Section, depth: int) -> str:
    level = min(depth + 2, 6)
    parts = [f"<section><h{level}>{_e(section.title)}</h{level}>"]
    parts.extend(_render_block(block) for block in section.blocks)
    parts.extend(_render_section(child, depth + 1) for child in section.children)
    parts.append("</section>")
    return "\n".join(parts)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #1d1d1f; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
section section { margin-left: 0.8em; border-left: 3px solid #eef1f6; padding-left: 0.8em; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
.scroller img { width: 512px; max-width: 100%; image-rendering: pixelated; background: #000; }
.controls { display: flex; gap: 1em; align-items: center; margin-bottom: 0.4em; }
.controls input { width: 320px; }
.quiet { color: #666; }
.warning { color: #c77700; }
"""
_STYLE += "".join(
    f".severity-{name} {{ color: {colour}; font-weight: bold; }}\n" for name, colour in SEVERITY_COLOURS.items()
)

# Plain JavaScript: a range input steps through the embedded slices; the button toggles the version shown.
_SCRIPT = """
document.querySelectorAll('figure.scroller').forEach(function (box) {
  var data = JSON.parse(box.querySelector('script[type="application/json"]').textContent);
  var names = Object.keys(data.versions);
  var which = 0;
  var range = box.querySelector('input[type=range]');
  var image = box.querySelector('img');
  var label = box.querySelector('.slice-label');
  var toggle = box.querySelector('button.toggle');
  function show() {
    var index = Number(range.value);
    image.src = 'data:image/png;base64,' + data.versions[names[which]][index];
    label.textContent = names[which] + ', slice ' + (data.slices[index] + 1);
    if (toggle) { toggle.textContent = 'show ' + names[(which + 1) % names.length]; }
  }
  range.addEventListener('input', show);
  if (toggle) { toggle.addEventListener('click', function () { which = (which + 1) % names.length; show(); }); }
  show();
});
"""


def render_page(title: str, sections: Sequence[Section], *, note: str = "") -> str:
    """Return the whole page: a title, an optional note, then each section."""
    body = "\n".join(_render_section(section, 0) for section in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        f"style-src 'unsafe-inline'; script-src 'unsafe-inline'\"><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>{paragraph(note, css='quiet') if note else ''}"
        f"{body}<script>{_SCRIPT}</script></body></html>\n"
    )
