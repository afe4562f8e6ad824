"""Long commands show a progress bar on a terminal, and write nothing of it when their output is a file or pipe.

Each command runs in a process of its own whose standard error is a pseudo-terminal (what a user's shell
gives it), or a pipe (what a script or ``batch`` gives it).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import write_coronal_session

pytestmark = pytest.mark.slow


def _run(arguments: list[str], *, terminal: bool) -> tuple[int, str]:
    """Run ``trueshape ARGUMENTS``; return its exit code and what it wrote to standard error."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("TTY_", "FORCE_COLOR", "NO_COLOR"))
    } | {"TERM": "xterm", "COLUMNS": "120"}
    command = [sys.executable, "-c", "from trueshape.cli import main; main()", *arguments]
    if not terminal:
        done = subprocess.run(command, capture_output=True, env=environment, check=False)
        return done.returncode, done.stderr.decode("utf-8", "replace")
    reader, writer = pty.openpty()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=writer, stdin=subprocess.DEVNULL, env=environment
    )
    os.close(writer)
    seen = b""
    while True:
        ready, _, _ = select.select([reader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(reader, 1 << 16)
            except OSError:  # the command closed the terminal's other end
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    process.wait()
    os.close(reader)
    return process.returncode, seen.decode("utf-8", "replace")


@pytest.mark.parametrize("command, bar", [("correct", "correcting"), ("convert", "converting"), ("batch", "jobs")])
def test_a_bar_on_a_terminal_and_none_in_a_pipe(tmp_path: Path, command: str, bar: str) -> None:
    dicom, coil = write_coronal_session(tmp_path, matrix=(16, 16), slices=6)
    (tmp_path / "cohort.csv").write_text(f"path,action,options\ns/dicom#4,correct,--coef {coil.name}\n")
    arguments = {
        "correct": ["correct", f"{dicom}#4", "--coef", str(coil)],
        "convert": ["convert", str(dicom)],
        "batch": ["batch", str(tmp_path / "cohort.csv"), "--workers", "1"],
    }[command]
    code, terminal = _run([*arguments, "--out", str(tmp_path / "on_terminal")], terminal=True)
    assert code == 0, terminal
    assert bar in terminal and "━" in terminal  # the bar's text and its bar
    code, piped = _run([*arguments, "--out", str(tmp_path / "in_pipe")], terminal=False)
    assert code == 0, piped
    assert bar not in piped and "━" not in piped and "\x1b[" not in piped
