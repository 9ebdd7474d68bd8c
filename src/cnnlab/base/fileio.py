"""Atomic file writes: a crash never leaves a half-written file where a good one stood, nor a
folder of results (an export, a check) half of one writing and half of another."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
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
    # JSON has no NaN or Infinity (Python's json writes them, other readers refuse the file):
    # a value that is not a number raises here, before anything is written.
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


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


# A folder replaced in one step: the new results are written into a hidden sibling folder, then the
# two are swapped by renames. A kill at any moment leaves the old folder whole at its path, or the
# new one; what the kill left beside it is removed by the next writer. On Linux the swap is one
# renameat2(RENAME_EXCHANGE). Elsewhere it takes two renames, and a kill between them leaves the old
# folder whole under a hidden name, which the next writer puts back.

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def _new_name(folder: Path) -> str:
    return f".{folder.name}.new-"


def _old_name(folder: Path) -> str:
    return f".{folder.name}.old-"


def _leftovers(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.parent.glob(f"{prefix}*.tmp"), key=lambda path: path.stat().st_mtime)


def remove_leftovers(folder: Path) -> None:
    """Put back an old folder a kill left under its hidden name, then delete every hidden sibling
    an interrupted replacement left. Call only while nothing else replaces `folder`."""
    old = _leftovers(folder, _old_name(folder))
    if old and not folder.exists():
        os.rename(old[-1], folder)
    for leftover in _leftovers(folder, _old_name(folder)) + _leftovers(folder, _new_name(folder)):
        shutil.rmtree(leftover, ignore_errors=True)


def check_replaceable(folder: Path, manifest_name: str, chosen: bool) -> None:
    """Only a folder of earlier results (it holds `manifest_name`) or an empty one is replaced as
    a whole: a folder the user `chosen` (--out) that holds other files would be deleted with it."""
    if folder.exists() and not folder.is_dir():
        raise CnnlabError(f"{folder} is a file, not a folder; give a folder name")
    if (chosen and folder.is_dir() and not (folder / manifest_name).is_file()
            and any(folder.iterdir())):
        raise CnnlabError(f"--out {folder} holds files and no {manifest_name}: give a new or "
                          f"empty folder, or one the same command wrote before, which it replaces")


@contextmanager
def replacing(folder: Path, own: tuple[str, ...]) -> Iterator[Path]:
    """A new, empty sibling folder to write into; when the block ends without an error, it takes
    `folder`'s place in one step (with an error, `folder` stays as it was). Entries of the old
    folder that match none of the glob patterns `own` (what the writer writes, and its temporary
    files) are kept: another verb's results, hard-linked into the new folder first."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder)
    work = _hidden_sibling(folder, _new_name(folder))
    try:
        yield work
        if folder.is_dir():
            _keep_others(folder, work, own)
        _sync(work)
        _swap(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the old folder after a swap, else the new one


def _hidden_sibling(folder: Path, prefix: str) -> Path:
    """A new empty folder beside `folder`, with the usual permissions (mkdtemp's are owner-only,
    and the swap would hand them to the results)."""
    path = folder.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}.tmp"
    path.mkdir()
    return path


def _keep_others(old: Path, new: Path, own: tuple[str, ...]) -> None:
    for entry in old.iterdir():
        if any(fnmatch(entry.name, pattern) for pattern in own) or (new / entry.name).exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, new / entry.name)


def _link_or_copy(source: Path | str, target: Path | str) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(source, target, follow_symlinks=False)


def _sync(folder: Path) -> None:
    """The new files reach the disk before the rename that publishes them (a power cut must not
    leave a folder of empty files where the old results stood)."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _swap(work: Path, folder: Path) -> None:
    """`work` becomes `folder`; the old folder, if any, ends up at `work` (to be deleted)."""
    if not folder.exists():
        os.rename(work, folder)
    elif not _exchange(work, folder):
        old = _hidden_sibling(folder, _old_name(folder))
        os.replace(folder, old)  # onto the empty folder just made: a rename in one step
        os.rename(work, folder)
        os.rename(old, work)
    _sync_folder(folder.parent)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with this id still runs (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
