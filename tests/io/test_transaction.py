"""Output transactions: outputs appear together or not at all, errors name them, the lock works everywhere."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import trueshape.io._transaction as transaction_module
from trueshape.errors import OutputError, OutputExistsError
from trueshape.io import OutputTransaction, atomic_folder, atomic_path, write_json


def test_outputs_appear_together_and_a_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    targets = [out / "a.json", out / "b.json"]
    with pytest.raises(RuntimeError), OutputTransaction(targets) as transaction:
        write_json({"a": 1}, targets[0], transaction=transaction)
        assert not targets[0].exists()  # staged until the block succeeds
        raise RuntimeError("interrupted")
    assert not out.exists()  # the folder it made is gone too
    with OutputTransaction(targets) as transaction:
        for target in targets:
            write_json({"name": target.name}, target, transaction=transaction)
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]


def test_errors_name_the_final_path_not_the_staging_folder(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    with (
        pytest.raises(OutputError) as raised,
        OutputTransaction([target, tmp_path / "b.txt"]) as transaction,
        atomic_path(target, transaction=transaction),
    ):
        raise OSError(28, "No space left on device")
    assert str(raised.value) == f"{target}: writing failed (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_existing_targets_are_replaced_only_with_force_and_obsolete_files_go_with_them(tmp_path: Path) -> None:
    target, obsolete = tmp_path / "a.txt", tmp_path / "old.txt"
    target.write_text("old")
    obsolete.write_text("old")
    with pytest.raises(OutputExistsError, match="already exists"), atomic_path(target):
        pass
    with OutputTransaction([target, tmp_path / "b.txt"], force=True, obsolete=[obsolete]) as transaction:
        for name in ("a.txt", "b.txt"):
            with atomic_path(tmp_path / name, transaction=transaction) as staged:
                staged.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    assert target.read_text() == "new"


def test_a_folder_target_holding_foreign_files_is_not_replaced(tmp_path: Path) -> None:
    series = tmp_path / "series"
    series.mkdir()
    (series / "notes.txt").write_text("mine")
    with (
        pytest.raises(OutputError, match=r"holds files trueshape did not write \(notes.txt\)"),
        OutputTransaction([series, tmp_path / "x.json"], force=True) as transaction,
    ):
        with atomic_folder(series, transaction=transaction) as staged:
            (staged / "IM00001.dcm").write_bytes(b"")
        write_json({}, tmp_path / "x.json", transaction=transaction)
    assert (series / "notes.txt").read_text() == "mine" and not (tmp_path / "x.json").exists()


def test_a_path_outside_the_transaction_is_refused(tmp_path: Path) -> None:
    with OutputTransaction([tmp_path / "a.txt"]) as transaction:
        with pytest.raises(ValueError, match="is not an output of this transaction"):
            transaction.staged(tmp_path / "b.txt")
        (transaction.staged(tmp_path / "a.txt")).write_text("x")


@pytest.mark.parametrize("platform", ["lock file", "msvcrt"])
def test_the_lock_works_without_fcntl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str) -> None:
    class FakeMsvcrt:  # what Windows offers: a byte-range lock on an open file
        LK_NBLCK, LK_UNLCK = 2, 0

        def __init__(self) -> None:
            self.held: set[str] = set()

        def locking(self, descriptor: int, mode: int, _length: int) -> None:
            name = str(Path(f"/proc/self/fd/{descriptor}").resolve())
            if mode == self.LK_NBLCK:
                if name in self.held:
                    raise OSError(36, "Resource deadlock avoided")
                self.held.add(name)
            else:
                self.held.discard(name)

    monkeypatch.setattr(transaction_module, "fcntl", None)
    monkeypatch.setattr(transaction_module, "msvcrt", FakeMsvcrt() if platform == "msvcrt" else None)
    monkeypatch.setattr(transaction_module, "_LOCK_POLL_S", 0.01)
    monkeypatch.setattr(transaction_module.tempfile, "gettempdir", lambda: str(tmp_path))
    order: list[str] = []
    lock = transaction_module._FolderLock(tmp_path)

    def second() -> None:
        with transaction_module._FolderLock(tmp_path):
            order.append("second")

    with lock:
        waiting = threading.Thread(target=second)
        waiting.start()
        time.sleep(0.1)
        order.append("first")
    waiting.join(timeout=5)
    assert order == ["first", "second"]
    with atomic_path(tmp_path / "out" / "a.txt") as staged:
        staged.write_text("written")
    assert (tmp_path / "out" / "a.txt").read_text() == "written"
    if platform == "lock file":
        assert not list(tmp_path.glob("trueshape-*.lock"))  # released: removed


def test_import_works_where_fcntl_does_not_exist() -> None:
    code = "import sys; sys.modules['fcntl'] = None; import trueshape, trueshape.io, trueshape.api; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
