"""Atomic file writes: a crash never leaves a half-written file where a good one stood."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import CnnlabError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes files readable by their owner only; give them the usual permissions instead.
_FILE_MODE = 0o666 & ~_current_umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, fsync, then rename over `path` in one step.

    The temp file lives in the same folder so os.replace stays on one filesystem (atomic).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(_FILE_MODE)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:  # a full disk's error names no file: name the one being written
        if error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    # A file name that is not UTF-8 reaches Python as lone surrogates; written as \udcff it keeps
    # the file valid UTF-8 instead of losing every other row to a UnicodeEncodeError.
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8",
                                                         errors="backslashreplace"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files atomic_write leaves when its process is killed mid-write (the
    finished file was never replaced by them). Call only while no writer runs in `folder`."""
    stale = [path for path in Path(folder).glob(".*.tmp") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks (model files may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _holder(lock: Path) -> str:
    """Who holds a lock, as its file says (nothing while the holder has not written it yet)."""
    try:
        text = lock.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return f"process {text}" if text.isdigit() else "another process"


def _still_at(descriptor: int, path: Path) -> bool:
    """Whether the open file is still the one at `path`: a holder that lets go deletes the file
    first, so a process that opened it just before has locked a file nobody will see."""
    try:
        here, there = os.fstat(descriptor), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _take_lock(lock: Path, folder: Path, what: str) -> int:
    """An open descriptor of `lock`, exclusively flock'ed. The kernel drops a flock when its
    process dies, so a lock left by a crash is free, and two processes can never both hold one
    (a check-then-delete of a stale pid file lets two in). POSIX only, as fcntl is."""
    import fcntl

    for _ in range(100):  # each retry means another holder let go meanwhile
        descriptor = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise CnnlabError(f"{folder} is in use: {what} by {_holder(lock)} (wait for it to "
                              f"end)") from None
        if _still_at(descriptor, lock):
            return descriptor
        os.close(descriptor)
    raise CnnlabError(f"cannot take the lock {lock}")


@contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold FOLDER/.lock while the block runs (the file names the holder's process id); a second
    holder is refused with one line. A lock left by a process that died is taken over."""
    lock = Path(folder) / ".lock"
    descriptor = _take_lock(lock, Path(folder), what)
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        yield
    finally:
        lock.unlink(missing_ok=True)  # before letting go: see _still_at
        os.close(descriptor)


def is_dir(path: str | Path) -> bool:
    """Path.is_dir that says False for a name the OS cannot take (ENAMETOOLONG and the like): a long
    layer spec or input name is not a folder, and must not crash the lookup."""
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def is_file(path: str | Path) -> bool:
    """Path.is_file, False for a name the OS cannot take (see is_dir)."""
    try:
        return Path(path).is_file()
    except OSError:
        return False


def read_json_file(path: Path) -> Any:
    """A result file's parsed JSON; unreadable or malformed is one clear error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CnnlabError(f"cannot read {path}: {error}") from None
