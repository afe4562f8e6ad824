"""Atomic output: write to a temporary file beside the target, then rename over it in one step.

A crash or a full disk never leaves a half-written file under the final name, and an existing file is
only replaced when the caller asked for it (``force``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trueshape.errors import OutputError, OutputExistsError

__all__ = ["atomic_path", "check_writable"]


def check_writable(path: Path, *, force: bool) -> None:
    """Raise OutputExistsError when ``path`` exists and ``force`` is false (OutputError when it cannot be)."""
    try:
        exists = path.exists()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise OutputError(f"{path}: cannot write here ({error.strerror or error})") from None
    if exists and not force:
        raise OutputExistsError(f"{path}: already exists (use --force to overwrite)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` when the block succeeds.

    The temporary name keeps the target's suffixes (writers choose formats by them).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    target = Path(path)
    check_writable(target, force=force)
    suffix = "".join(target.suffixes)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{suffix}", dir=target.parent)
    except OSError as error:
        raise OutputError(f"{target}: cannot write here ({error.strerror or error})") from None
    os.close(handle)
    temporary = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the user's usual permissions
    try:
        try:
            yield temporary
        except (OutputExistsError, OutputError):  # already says which file and what went wrong
            raise
        except OSError as error:  # disk full, permissions, ... while writing: name the file the user asked for
            raise OutputError(f"{target}: writing failed ({error.strerror or error})") from None
        if not force and target.exists():
            raise OutputExistsError(f"{target}: appeared while writing (use --force to overwrite)")
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
