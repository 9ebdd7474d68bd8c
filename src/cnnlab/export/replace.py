"""An export folder replaced in one step: the new export is written into a hidden sibling folder,
then the two are swapped by renames. A kill at any moment leaves the old folder whole at its path,
or the new one; what the kill left beside it is removed by the next export.

On Linux the swap is one renameat2(RENAME_EXCHANGE). Elsewhere it takes two renames, and a kill
between them leaves the old folder whole under a hidden name, which the next export puts back.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path

from ..base.errors import CnnlabError

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def _new_name(folder: Path) -> str:
    return f".{folder.name}.new-"


def _old_name(folder: Path) -> str:
    return f".{folder.name}.old-"


def _leftovers(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.parent.glob(f"{prefix}*.tmp"), key=lambda path: path.stat().st_mtime)


def remove_leftovers(folder: Path) -> None:
    """Put back an old folder a kill left under its hidden name, then delete every hidden sibling
    an interrupted export left. Call only while no other export of `folder` runs."""
    old = _leftovers(folder, _old_name(folder))
    if old and not folder.exists():
        os.rename(old[-1], folder)
    for leftover in _leftovers(folder, _old_name(folder)) + _leftovers(folder, _new_name(folder)):
        shutil.rmtree(leftover, ignore_errors=True)


def check_replaceable(folder: Path, manifest_name: str, chosen: bool) -> None:
    """Only an export folder or an empty one is replaced as a whole: a folder the user `chosen`
    (--out) that holds other files would be deleted with it."""
    if folder.exists() and not folder.is_dir():
        raise CnnlabError(f"{folder} is a file, not a folder; give a folder name")
    if (chosen and folder.is_dir() and not (folder / manifest_name).is_file()
            and any(folder.iterdir())):
        raise CnnlabError(f"--out {folder} holds files and no {manifest_name}: give a new or "
                          f"empty folder, or an earlier export's, which the export replaces")


@contextmanager
def replacing(folder: Path, own: tuple[str, ...]) -> Iterator[Path]:
    """A new, empty sibling folder to write the export into; when the block ends without an
    error, it takes `folder`'s place in one step. Entries of the old folder that match none of the
    glob patterns `own` (what the export writes, and its temporary files) are kept: another verb's
    results, hard-linked into the new folder first."""
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
    and the swap would hand them to the export)."""
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
    leave a folder of empty files where the old export stood)."""
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
