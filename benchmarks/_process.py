"""Child processes as a user's shell starts them: with compiled bytecode, whatever this shell says.

A user's installed Python packages run from cached bytecode (pip compiles on install; an editable install
writes it on first import). A shell with ``PYTHONDONTWRITEBYTECODE`` set (some containers and CI images set
it) never writes the cache, so every command would compile trueshape's modules from source again: 0.1 s or
more of CPU per command that no user pays. :func:`user_environment` compiles the caches once and returns an
environment without the variable, for every timed child process.
"""

from __future__ import annotations

import compileall
import os
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def user_environment(*extra_prefixes: Path) -> dict[str, str]:
    """Compile the bytecode of trueshape's sources and of the venvs' packages; the environment to time in.

    ``extra_prefixes`` are other venvs whose packages a timed command imports (the peers'); this venv's
    site-packages and ``src/`` are always compiled. Quick when the caches exist (only timestamps are read).
    """
    folders = [ROOT / "src", Path(sysconfig.get_paths()["purelib"])]
    for prefix in extra_prefixes:
        folders.extend(prefix.glob("lib/python3*/site-packages"))
    for folder in folders:
        compileall.compile_dir(folder, quiet=2, workers=0)
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


if __name__ == "__main__":
    user_environment()
    print(f"bytecode compiled for {sys.prefix} and {ROOT / 'src'}")
