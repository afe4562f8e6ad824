"""Output transactions: every file trueshape writes appears whole, with its companions, or not at all.

An :class:`OutputTransaction` stages its targets (files, or folders such as a derived DICOM series) in a
hidden folder beside them, and on success moves them into place together, under a lock on the output
folder, with Ctrl-C and SIGTERM held until the moves (or their undoing) are done. Existing targets are
replaced only with ``force``; the previous run's obsolete outputs (``obsolete``) go with them, under the
same rules. A failure leaves the folder as it was. Writers take the final path and the transaction
(:func:`atomic_path`, :func:`atomic_folder`), so every error names the file the user asked for.
:func:`atomic_path` without a transaction is the one-file case.

The lock is ``flock`` on the folder where ``fcntl`` exists, ``msvcrt.locking`` on a lock file in the
temporary folder on Windows, and an exclusive lock file elsewhere.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with OutputTransaction([folder / "a.txt", folder / "b.txt"]) as transaction:
...     for name in ("a.txt", "b.txt"):
...         with atomic_path(folder / name, transaction=transaction) as staged:
...             _ = staged.write_text(name)
>>> sorted(p.name for p in folder.iterdir())
['a.txt', 'b.txt']
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from trueshape.errors import OutputError, OutputExistsError, TrueshapeError


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


#: ``flock`` (POSIX) and ``locking`` (Windows), whichever the platform has.
fcntl: Any = _optional_module("fcntl")
msvcrt: Any = _optional_module("msvcrt")

__all__ = [
    "TRUESHAPE_FOLDER_FILE",
    "OutputTransaction",
    "atomic_folder",
    "atomic_path",
    "check_writable",
    "files_not_written_by_trueshape",
]

#: Files trueshape writes into an output folder (a derived DICOM series): a folder target holding anything
#: else is not replaced.
TRUESHAPE_FOLDER_FILE = re.compile(r"IM\d{5}\.dcm")
#: How often a lock held by another process is tried again where only a lock file works, seconds.
_LOCK_POLL_S = 0.05
#: A lock file older than this was left by a process that died while holding it (moves take milliseconds), s.
_STALE_LOCK_S = 60.0


def files_not_written_by_trueshape(folder: Path) -> list[str]:
    """Name what ``folder`` holds beside the files trueshape writes into one (:data:`TRUESHAPE_FOLDER_FILE`)."""
    return sorted(p.name for p in folder.iterdir() if not TRUESHAPE_FOLDER_FILE.fullmatch(p.name))


def check_writable(path: Path, *, force: bool) -> None:
    """Raise OutputExistsError when ``path`` exists and ``force`` is false (OutputError when it cannot be)."""
    try:
        exists = path.exists()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise OutputError(f"{path}: cannot write here ({error.strerror or error})") from None
    if exists and not force:
        raise OutputExistsError(f"{path}: already exists (use --force to overwrite)")


class OutputTransaction:
    """Stage ``targets`` (all in one folder) and move them into place together when the block succeeds.

    Parameters
    ----------
    targets : sequence of path
        Final paths of the files or folders to write, in one folder.
    force : bool
        Replace existing targets (a folder target only if ``foreign`` finds nothing in it).
    obsolete : sequence of path
        Files an earlier run wrote that this one does not: removed with the old targets, under the same rules.
    foreign : callable
        Names what an existing folder target holds that trueshape did not write there (default: anything but
        :data:`TRUESHAPE_FOLDER_FILE` files); such a folder is never replaced.

    Notes
    -----
    Errors while staging name the target (one target) or the folder (several). Moving into place first
    moves every old target aside, then every new one in; if a move fails, those done are undone.
    """

    def __init__(
        self,
        targets: Sequence[str | os.PathLike[str]],
        *,
        force: bool = False,
        obsolete: Sequence[Path] = (),
        foreign: Callable[[Path], Sequence[str]] = files_not_written_by_trueshape,
    ) -> None:
        self.targets = tuple(Path(target) for target in targets)
        if not self.targets or len({target.parent for target in self.targets}) != 1:
            raise ValueError(f"an output transaction writes into one folder, got {list(self.targets)}")
        self.folder = self.targets[0].parent
        self.force = force
        self.obsolete = tuple(obsolete)
        self.foreign = foreign
        self._staging: Path | None = None
        self._created = False

    @property
    def _where(self) -> Path:
        return self.targets[0] if len(self.targets) == 1 else self.folder

    def __enter__(self) -> OutputTransaction:
        for target in (*self.targets, *(p for p in self.obsolete if p.exists())):
            check_writable(target, force=self.force)
        if len(self.targets) > 1 and self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.folder}: is a file, not a folder: choose another --out")
        self._created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=".trueshape-", suffix=".part", dir=self.folder))
        except OSError as error:
            raise OutputError(f"{self._where}: cannot write here ({error.strerror or error})") from None
        return self

    def staged(self, path: str | os.PathLike[str]) -> Path:
        """Where ``path`` (a target, or a file inside a folder target) is written until the moves."""
        if self._staging is None:
            raise RuntimeError("the output transaction has not started (use it in a with block)")
        final = Path(path)
        for target in self.targets:
            if final == target:
                return self._staging / target.name
            if target in final.parents:
                return self._staging / target.name / final.relative_to(target)
        raise ValueError(f"{final} is not an output of this transaction ({', '.join(map(str, self.targets))})")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        staging, self._staging = self._staging, None
        assert staging is not None
        succeeded = False
        try:
            if kind is None:
                self._commit(staging)
                succeeded = True
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if self._created and not succeeded:
                with contextlib.suppress(OSError):
                    self.folder.rmdir()  # only if still empty: a failed first run leaves no empty folder behind

    def _commit(self, staging: Path) -> None:
        staged = [staging / target.name for target in self.targets]
        for path, target in zip(staged, self.targets, strict=True):
            if not path.exists():
                raise OutputError(f"{target}: was not written")
        stale = [path for path in self.obsolete if path.exists()]
        with _FolderLock(self.folder):
            for path, target in zip(staged, self.targets, strict=True):
                if target.exists() and not self.force:
                    raise OutputExistsError(f"{target}: appeared while writing (use --force to overwrite)")
                self._check_replaceable(path, target)
            for path in stale:
                self._check_replaceable(path, path)
            if len(self.targets) == 1 and not stale and not staged[0].is_dir():
                try:  # one file: a single rename replaces it, nothing to undo
                    os.replace(staged[0], self.targets[0])
                except OSError as error:
                    raise OutputError(
                        f"{self.targets[0]}: moving it into place failed ({error.strerror or error})"
                    ) from None
                return
            # Ctrl-C or a scheduler's SIGTERM waits until the moves (or their undoing) are done: between moving
            # the old outputs aside and the new ones in, an interruption would lose both.
            with _signals_deferred():
                self._swap(staging, staged, stale)

    @classmethod
    @contextlib.contextmanager
    def join(
        cls, transaction: OutputTransaction | None, target: str | os.PathLike[str], *, force: bool = False
    ) -> Iterator[OutputTransaction]:
        """Yield ``transaction`` (``target`` must be one of its outputs), or a new one for ``target`` alone."""
        if transaction is not None:
            transaction.staged(target)  # refuses a path outside the transaction
            yield transaction
            return
        with cls([target], force=force) as own:
            yield own

    def _check_replaceable(self, path: Path, target: Path) -> None:
        """Refuse to replace ``target`` with ``path`` without force, by another kind, or holding others' files."""
        check_writable(target, force=self.force)
        if target.exists() and target.is_dir() != path.is_dir():
            kind = "a folder" if target.is_dir() else "a file"
            raise OutputError(
                f"{target}: is {kind}; trueshape writes {'a folder' if path.is_dir() else 'a file'} "
                "there (move it away or choose another --out)"
            )
        if target.is_dir():
            foreign = self.foreign(target)
            if foreign:
                raise OutputError(
                    f"{target}: holds files trueshape did not write ({', '.join(foreign[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}); --force replaces the whole folder, "
                    "so move them away first"
                )

    def _swap(self, staging: Path, staged: list[Path], stale: list[Path]) -> None:
        moved_aside: list[tuple[Path, Path]] = []
        moved_in: list[Path] = []
        try:
            for target in [*self.targets, *stale]:
                if target.exists():
                    aside = staging / f"replaced-{target.name}"
                    os.replace(target, aside)
                    moved_aside.append((aside, target))
            for path, target in zip(staged, self.targets, strict=True):
                os.replace(path, target)
                moved_in.append(target)
        except BaseException as error:
            for target in reversed(moved_in):
                with contextlib.suppress(OSError):
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
            for aside, target in reversed(moved_aside):
                with contextlib.suppress(OSError):
                    os.replace(aside, target)
            if not isinstance(error, OSError):
                raise
            raise OutputError(
                f"{self.folder}: moving the outputs into place failed "
                f"({error.strerror or error}); the folder is as it was"
            ) from None


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, force: bool = False, transaction: OutputTransaction | None = None
) -> Iterator[Path]:
    """Yield where to write the file ``path``; it appears under its name only when the block succeeds.

    With ``transaction`` the file is one of its outputs (or a file inside one of its folder targets) and
    moves into place with the others; without, it is a transaction of its own. The path yielded keeps the
    target's name (writers choose formats by suffix). An OSError while writing becomes an OutputError
    naming ``path``.

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
    with OutputTransaction.join(transaction, target, force=force) as joined:
        staged = joined.staged(target)
        try:
            staged.parent.mkdir(parents=True, exist_ok=True)  # a file inside a folder target's subfolder
            yield staged
        except TrueshapeError:  # already says which file and what went wrong
            raise
        except OSError as error:  # disk full, permissions, ... while writing: name the file the user asked for
            raise OutputError(f"{target}: writing failed ({error.strerror or error})") from None


@contextlib.contextmanager
def atomic_folder(
    path: str | os.PathLike[str], *, force: bool = False, transaction: OutputTransaction | None = None
) -> Iterator[Path]:
    """Yield an empty folder that becomes ``path`` when the block succeeds (see :func:`atomic_path`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> series = pathlib.Path(tempfile.mkdtemp()) / "series"
    >>> with atomic_folder(series) as staged:
    ...     _ = (staged / "IM00001.dcm").write_bytes(b"")
    >>> [p.name for p in series.iterdir()]
    ['IM00001.dcm']
    """
    target = Path(path)
    with OutputTransaction.join(transaction, target, force=force) as joined:
        staged = joined.staged(target)
        try:
            staged.mkdir()
            yield staged
        except TrueshapeError:
            raise
        except OSError as error:
            raise OutputError(f"{target}: writing failed ({error.strerror or error})") from None


class _FolderLock:
    """An exclusive lock on an output folder, between processes and threads that take it the same way."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._descriptor: int | None = None
        self._lock_file: Path | None = None

    def __enter__(self) -> None:
        try:
            if fcntl is not None:
                self._descriptor = os.open(self.folder, os.O_RDONLY)
                fcntl.flock(self._descriptor, fcntl.LOCK_EX)
            else:
                self._lock_file = _lock_file_for(self.folder)
                self._descriptor = _acquire_lock_file(self._lock_file)
        except BaseException:
            self._release()
            raise

    def __exit__(self, *_exception: object) -> None:
        self._release()

    def _release(self) -> None:
        try:
            if self._descriptor is not None:
                if msvcrt is not None and self._lock_file is not None:
                    with contextlib.suppress(OSError):
                        msvcrt.locking(self._descriptor, msvcrt.LK_UNLCK, 1)
                os.close(self._descriptor)  # closing releases a flock
                if msvcrt is None and self._lock_file is not None:
                    with contextlib.suppress(OSError):
                        self._lock_file.unlink()
        finally:
            self._descriptor = self._lock_file = None


def _lock_file_for(folder: Path) -> Path:
    """Return a lock file for ``folder`` in the temporary folder (nothing is added to the output folder)."""
    key = hashlib.sha256(str(folder.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / f"trueshape-{key}.lock"


def _acquire_lock_file(path: Path) -> int:
    """Lock ``path`` for this process: ``msvcrt.locking`` on Windows, else create it exclusively."""
    while True:
        if msvcrt is not None:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
                return descriptor
            except OSError:
                os.close(descriptor)
        else:
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                with contextlib.suppress(OSError):
                    if time.time() - path.stat().st_mtime > _STALE_LOCK_S:
                        path.unlink()
                        continue
        time.sleep(_LOCK_POLL_S)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first one that came.

    Python runs signal handlers in the main thread, so a handler that only notes the signal holds it there
    whichever thread the kernel gave it to (blocking it with pthread_sigmask would not: numpy's BLAS threads
    would take it). Elsewhere than the main thread handlers cannot be set, and nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def note(number: int, _frame: object) -> None:
        arrived.append(number)

    previous = {number: signal.signal(number, note) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if arrived:
            signal.raise_signal(arrived[0])  # now handled as it would have been (KeyboardInterrupt, exit, ...)
