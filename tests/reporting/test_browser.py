"""The report as people see it: rendered by headless Chromium, every image decoded, the scroller working.

The demo's page (quick scans) is opened in a real browser; a screenshot of the femoral heads' before/after
figure is kept in ``artefacts/`` (``TRUESHAPE_ARTEFACTS``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

#: Where the tests keep what they saw (screenshots), for people to look at after a run.
ARTEFACTS = Path(os.environ.get("TRUESHAPE_ARTEFACTS", Path(__file__).resolve().parents[2] / "artefacts"))
IMAGES = "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"


def _problems(browser: Any, page: Path) -> list[str]:
    """What is wrong with ``page`` in the browser: undecoded images and script or console errors."""
    browser.open(page)
    broken = [
        f"image not decoded: {alt!r}"
        for alt, complete, width, height in browser.evaluate(IMAGES)
        if not (complete and width > 0 and height > 0)
    ]
    return broken + browser.errors()


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trueshape.demo import run_demo
    from trueshape.demo_report import write_demo_report

    return write_demo_report(run_demo(tmp_path_factory.mktemp("demo"), quick=True))


def test_the_demo_report_renders_whole_in_a_browser(browser: Any, demo_report: Path) -> None:
    assert _problems(browser, demo_report) == []
    images = browser.evaluate(IMAGES)
    assert len(images) >= 10  # figures of the corrections, the learned model, each session; the scrollers
    text = browser.evaluate("document.body.innerText")
    for expected in (
        "DISTORTION_2D_ONLY",
        "FAR_FROM_ISOCENTRE",
        "Femoral head marrow, true diameter 43.0 mm",
        "Leave-one-session-out",
        "front-back / left-right",
        "Not the loader",
    ):
        assert expected in text, expected
    # The page fetches nothing: every image is embedded.
    sources = browser.evaluate("Array.from(document.images).map(i => i.src.slice(0, 22))")
    assert set(sources) == {"data:image/png;base64,"}
    figure = browser.evaluate("document.querySelector('figure[id$=\"_slices\"]').id")
    shot = browser.screenshot(ARTEFACTS / "demo_report_femoral_heads.png", f"#{figure}")
    assert shot.stat().st_size > 20_000


def test_the_scroller_steps_through_slices_and_toggles_before_and_after(browser: Any, demo_report: Path) -> None:
    browser.open(demo_report)
    scroller = "document.querySelector('figure.scroller')"
    state = (
        f"(() => {{ const s = {scroller}; return [s.querySelector('img').src, "
        "s.querySelector('.slice-label').textContent]; })()"
    )
    first_source, first_label = browser.evaluate(state)
    moved = browser.evaluate(
        f"(async () => {{ const s = {scroller}; const r = s.querySelector('input'); "
        "r.value = 0; r.dispatchEvent(new Event('input')); const i = s.querySelector('img'); "
        "await i.decode(); return [i.src, i.naturalWidth, "
        "s.querySelector('.slice-label').textContent]; })()"
    )
    assert moved[0] != first_source and moved[1] > 0
    assert moved[2].endswith("slice 1") and moved[2] != first_label
    toggled = browser.evaluate(
        f"(async () => {{ const s = {scroller}; s.querySelector('button.toggle').click(); "
        "const i = s.querySelector('img'); await i.decode(); "
        "return [i.src, s.querySelector('.slice-label').textContent]; })()"
    )
    assert toggled[0] != moved[0]
    assert toggled[1].split(",")[0] != moved[2].split(",")[0]  # "as acquired" <-> "corrected"
    assert browser.errors() == []


def test_a_missing_image_or_a_script_error_is_caught(browser: Any, demo_report: Path, tmp_path: Path) -> None:
    page = demo_report.read_text(encoding="utf-8")
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(page[:start] + "bm90IGEgcGljdHVyZQ==" + page[page.index('"', start) :], encoding="utf-8")
    assert any(p.startswith("image not decoded") for p in _problems(browser, broken))
    failing = tmp_path / "failing.html"
    failing.write_text(page.replace("<script>", "<script>undefinedFunction();", 1), encoding="utf-8")
    assert any("undefinedFunction" in p for p in _problems(browser, failing))
    # The scroller's data are JSON: a page whose data break is a script error too.
    spoiled = tmp_path / "spoiled.html"
    spoiled.write_text(
        page.replace('<script type="application/json">{', '<script type="application/json">{,', 1), encoding="utf-8"
    )
    assert any(p.startswith("script error") for p in _problems(browser, spoiled)), json.dumps(browser.errors())
