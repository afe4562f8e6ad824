"""The README: every finding code documented, the two set-up commands, and every shell command it shows runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trueshape.findings import FINDING_CODES, FindingCode

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
#: Sections whose shell blocks set up a machine (a virtual environment, make): shown, not run here.
SET_UP_SECTIONS = ("Install", "Quick start")
#: A fenced block of shell commands (```sh); output shown in the README is fenced as ```text.
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)


def sections() -> list[tuple[str, str]]:
    """Return the README's ``## `` sections as (heading, text)."""
    parts = re.split(r"^## ", README, flags=re.MULTILINE)[1:]
    return [(part.split("\n", 1)[0].strip(), part) for part in parts]


def test_every_finding_code_is_in_the_readme_table():
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    assert documented == {code.value for code in FindingCode}
    assert set(FINDING_CODES) == set(FindingCode)


def test_quick_start_is_make_demo_and_make_test():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick_start, flags=re.MULTILINE)
    assert commands == ["make demo", "make test"]


def test_nothing_outside_the_repository_is_linked():
    assert "../" not in README
    assert not re.findall(r"\]\((?!https?://)([^)#]+)\)", README), "links to files: keep them inside the repository"


def test_the_recipe_comes_first_then_the_reference():
    headings = [heading for heading, _ in sections()]
    assert headings[:4] == ["Install", "Quick start", "My series looks squashed: five steps", "Reference"], headings


@pytest.mark.skipif(shutil.which("bash") is None, reason="the README's shell blocks are run with bash")
def test_every_shell_command_of_the_recipe_and_reference_runs_on_the_demo_data(tmp_path: Path) -> None:
    """Run each ```sh block outside the set-up sections, in order, in one folder, as a user would.

    The demo that writes the data is made with ``--quick`` (the same session on coarser voxels): the
    commands are what is checked here, the demo's figures are checked in tests/cli/test_correct_and_demo.py.
    """
    blocks = [
        (heading, block)
        for heading, text in sections()
        if heading not in SET_UP_SECTIONS
        for block in SHELL_BLOCK.findall(text)
    ]
    commands = [line for _, block in blocks for line in block.splitlines() if line.strip().startswith("trueshape")]
    assert commands[0].startswith("trueshape demo demo-out"), "the recipe starts by writing the demo data"
    shown = {command.split()[1] for command in commands}
    assert shown >= {"demo", "inspect", "convert", "correct", "estimate", "model", "learn", "--version"}, shown
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for heading, block in blocks:
        script = re.sub(r"^(\s*trueshape demo demo-out)", r"\1 --quick", block, flags=re.MULTILINE)
        result = subprocess.run(
            ["bash", "-e", "-u", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"README section {heading!r}:\n{block}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
    # What the recipe promises to be there for 3D Slicer.
    assert (tmp_path / "out" / "corrected" / "3_cor_t1_widefov_dis2d_corrected.nii.gz").is_file()
    assert (tmp_path / "out" / "corrected" / "3_cor_t1_widefov_dis2d_residual.h5").is_file()
