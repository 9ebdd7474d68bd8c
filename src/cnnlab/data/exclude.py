"""--exclude: leave out the images a list names, a check.csv (its rows marked for exclusion) or a
plain list of files (one a line). Files are named by their path, relative to the data folder (a
CSV manifest's folder) or absolute; the images of a built-in dataset by split and index, as
`cnnlab check` names them ("train:123", "test:45", the index counted before the validation split
is held out)."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from ..base.errors import CnnlabError
from ..base.fileio import is_file
from .images import ImageReadError, open_image

log = logging.getLogger("cnnlab")

EXCLUDE_COLUMN, FILE_COLUMN = "exclude", "file"
# A file name that is not UTF-8 reaches Python as lone surrogates (U+DC80..U+DCFF, one per bad
# byte), which cnnlab's CSV files spell as the text \udcNN (base.fileio.atomic_write_text).
_ESCAPED_BYTE = re.compile(r"\\udc([89a-f][0-9a-f])")


def list_digest(path: str | Path) -> str:
    """SHA-256 of the list file: config.yaml records it beside the list's path."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _from_check_csv(rows: list[list[str]]) -> list[str]:
    header = [cell.strip().lower() for cell in rows[0]]
    if FILE_COLUMN not in header:
        raise CnnlabError(f"a CSV list needs a '{FILE_COLUMN}' column (as check.csv has)")
    file_at = header.index(FILE_COLUMN)
    marked = header.index(EXCLUDE_COLUMN) if EXCLUDE_COLUMN in header else None
    return [row[file_at].strip() for row in rows[1:]
            if len(row) > file_at and row[file_at].strip()
            and (marked is None or (len(row) > marked and row[marked].strip().lower() == "yes"))]


def read_exclude_list(path: str | Path) -> list[str]:
    """The names a list holds, each once, in order. A CSV with a header (check.csv) gives its
    `file` column, only the rows whose `exclude` column says yes where it has one."""
    path = Path(path)
    if not is_file(path):
        raise CnnlabError(f"--exclude {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CnnlabError(f"--exclude {path}: cannot read it ({error})") from None
    if path.suffix.lower() == ".csv":
        rows = [row for row in csv.reader(text.splitlines()) if row]
        names = _from_check_csv(rows) if rows else []
    else:
        names = [line.strip() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    return list(dict.fromkeys(names))


def _unescaped(name: str) -> str:
    """The name as the OS gives it, its \\udcNN escapes turned back into the bytes they stand for."""
    return _ESCAPED_BYTE.sub(lambda match: chr(0xDC00 + int(match.group(1), 16)), name)


def _spelt(name: str, root: Path) -> Path:
    """The path a listed name means: \\udcNN is the escape of a byte that is not UTF-8, unless
    only a file named by the text itself exists (a backslash is a legal character of a name)."""
    decoded = _unescaped(name)
    if decoded != name and not _exists(decoded, root) and _exists(name, root):
        decoded = name
    return Path(decoded).expanduser()


def _exists(name: str, root: Path) -> bool:
    return any(os.path.lexists(place) for place in (root / name, Path(name)))


def _real(path: Path) -> Path:
    """The path with its links followed; a symlink loop stays as it is (Path.resolve raises)."""
    return Path(os.path.realpath(path))


def _readable(path: Path) -> bool:
    """Whether training could use the image: one a list leaves out that is unreadable is not an
    image taken from training (it would be skipped anyway)."""
    try:
        open_image(path).close()
    except ImageReadError:
        return False
    return True


class Exclusion:
    """The names of one list, matched against the data as it is loaded; names that match nothing
    are an error once every split has been seen (`finish`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.names = read_exclude_list(path)
        self.matched: set[str] = set()
        self.dropped: dict[str, int] = {}
        self.unreadable: list[Path] = []  # listed, and skipped anyway: not counted as left out

    def _count(self, split: str, dropped: int) -> None:
        if dropped:
            self.dropped[split] = self.dropped.get(split, 0) + dropped

    def keep_files(self, split: str, samples: list[tuple[Path, str]],
                   root: Path) -> list[tuple[Path, str]]:
        """The samples (path, label) of one split whose files the list does not name."""
        wanted: dict[Path, str] = {}
        for name in self.names:
            candidate = _spelt(name, root)
            # relative: to the data folder (as check.csv writes them) or to the working folder
            for place in (root / candidate, candidate):
                wanted[_real(place)] = name
        kept, unreadable = [], []
        for path, label in samples:
            name = wanted.get(_real(path))
            if name is None:
                kept.append((path, label))
            else:
                self.matched.add(name)
                if not _readable(path):
                    unreadable.append(path)
        self.unreadable.extend(unreadable)
        self._count(split, len(samples) - len(kept) - len(unreadable))
        return kept

    def keep_indices(self, split: str, count: int) -> torch.Tensor:
        """Indices of the images of a built-in split ("train", "test") the list does not name."""
        keep = torch.ones(count, dtype=torch.bool)
        for name in self.names:
            prefix, _, index = name.partition(":")
            if prefix == split and index.isdigit() and int(index) < count:
                keep[int(index)] = False
                self.matched.add(name)
        self._count(split, int((~keep).sum()))
        return torch.nonzero(keep).flatten()

    def finish(self, data: str) -> dict[str, int]:
        """Refuse a list that names images the data does not have; say (and return) how many
        images of each split were left out."""
        missing = [name for name in self.names if name not in self.matched]
        if missing:
            raise CnnlabError(
                f"--exclude {self.path}: {len(missing)} of its {len(self.names)} names are not "
                f"images of {data} (e.g. {missing[0]!r}); names are paths relative to the data "
                f"folder, or split:index for a built-in dataset")
        log.warning("--exclude %s: left out %s%s", self.path, _said(self.dropped),
                    _said_unreadable(len(self.unreadable)))
        return dict(self.dropped)


def _said(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts: Iterable[str] = (f"{n} {split}" for split, n in counts.items())
    return f"{total} image{'s' if total != 1 else ''} ({', '.join(parts) or 'none'})"


def _said_unreadable(count: int) -> str:
    if count == 0:
        return ""
    if count == 1:
        return "; the other one it names is an unreadable file, skipped anyway"
    return f"; the other {count} it names are unreadable files, skipped anyway"
