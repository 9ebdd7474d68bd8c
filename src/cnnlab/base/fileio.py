"""Atomic file writes: a crash never leaves a half-written file where a good one stood."""

from __future__ import annotations

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold FOLDER/.lock (with this process id) while the block runs; a second holder is refused
    with one line, and a lock left by a dead process is taken over."""
    lock = Path(folder) / ".lock"
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            text = lock.read_text(encoding="utf-8", errors="replace").strip()
            if text.isdigit() and _alive(int(text)) and int(text) != os.getpid():
                raise CnnlabError(f"{folder} is in use: {what} by process {text} (remove "
                                  f"{lock} if that process is gone)") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise CnnlabError(f"cannot take the lock {lock}")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


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
