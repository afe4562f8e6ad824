"""The README documents every finding code and keeps exactly the two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from trueshape.findings import FINDING_CODES, FindingCode

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_finding_code_is_in_the_readme_table():
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    assert documented == {code.value for code in FindingCode}
    assert set(FINDING_CODES) == set(FindingCode)


def test_quick_start_is_make_demo_and_make_test():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick_start, flags=re.MULTILINE)
    assert commands == ["make demo", "make test"]
