"""check.json as a type: what a check found (its summary and every finding), with one writer
(`CheckReport.write`) and one reader (`CheckReport.read`, base.typed's). Other stages (the run's
report) read a check through this, never as a raw dict. Nothing here imports torch or NumPy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.fileio import atomic_write_json, is_file
from ..base.typed import json_field, read_typed, read_typed_in, to_json_dict

if TYPE_CHECKING:
    from .settings import CheckSettings

CHECK_JSON, CHECK_CSV, CHECK_PAGE = "check.json", "check.csv", "check.html"
LABEL_ISSUES_FIGURE = "label_issues.png"
WORST = 10  # the label issues and copies a table shows (check.csv has every finding)


@dataclass
class Finding:
    """One row of check.csv: what is wrong with which image, and whether --exclude drops it."""

    kind: str
    file: str
    split: str
    label: str
    suggested: str = ""
    score: float | None = None  # label quality (low: likely wrong); similarity; outlier distance
    other_file: str = ""
    other_split: str = ""
    other_label: str = ""
    match: str = ""  # duplicates: exact | near
    exclude: str = "no"
    note: str = ""
    index: int = json_field(-1, repr=False, stored=False)  # the image's row in Items
    other: int = json_field(-1, repr=False, stored=False)


@dataclass(frozen=True)
class ClassBalance:
    """Images per split and class, and how uneven the training classes are."""

    counts: dict[str, dict[str, int]]  # split -> class -> images
    imbalance: float | None  # largest training class / smallest; None where one has no images
    imbalanced: bool


@dataclass(frozen=True)
class PairCounts:
    """Copy pairs by where they sit, and how many are exact."""

    leak: int
    within_train: int = json_field(key="within train")
    within_test: int = json_field(key="within test")
    exact: int
    leaked_test_images: int = json_field(key="test images with a copy in train")


@dataclass(frozen=True)
class CheckReport:
    """check.json: the check's summary, and every finding (check.csv's rows)."""

    data: str
    images: int
    images_read: int = json_field(key="read")  # the images that could be decoded
    splits: dict[str, int]
    classes: int
    counts: dict[str, int]  # findings by kind
    pairs_with_different_labels: int
    marked_exclude: int  # files --exclude drops
    embedding: str
    copies_embedding: str | None  # None: a check from before copies had an embedding of their own
    folds: int
    folds_note: str
    label_model: str
    similarity: float
    hash_bits: int
    balance: ClassBalance
    modes: dict[str, int]
    duplicate_pairs: PairCounts
    seconds: float
    findings: tuple[Finding, ...]
    folder: Path | None = json_field(None, stored=False)  # where it was read from or written to

    @classmethod
    def of(cls, summary: dict[str, Any], findings: list[Finding]) -> CheckReport:
        """The report of a check just run: its CheckResult's summary and findings."""
        report = read_typed(cls, {**summary, "findings": []}, "the check's summary")
        return dataclasses.replace(report, findings=tuple(findings))

    def write(self, folder: Path) -> CheckReport:
        """check.json in `folder`, whole or not at all; the report with its folder."""
        atomic_write_json(Path(folder) / CHECK_JSON, to_json_dict(self))
        return dataclasses.replace(self, folder=Path(folder))

    @classmethod
    def read(cls, folder: Path) -> CheckReport:
        """The check.json in `folder`; a missing or malformed field is one line naming it."""
        return read_typed_in(cls, folder, CHECK_JSON)

    @classmethod
    def found_in(cls, folder: Path) -> CheckReport | None:
        """The check in `folder`, or None where none was written there."""
        return cls.read(folder) if is_file(Path(folder) / CHECK_JSON) else None

    @property
    def label_issues(self) -> list[Finding]:
        """The likely label errors, worst (lowest label quality) first."""
        return [finding for finding in self.findings if finding.kind == "label-issue"]

    @property
    def worst_label_issues(self) -> list[Finding]:
        """As many of the worst label issues as the terminal shows."""
        return self.label_issues[:WORST]

    @property
    def page(self) -> Path | None:
        """check.html beside check.json (None for a report not read from or written to a folder)."""
        return self.folder / CHECK_PAGE if self.folder is not None else None

    @property
    def table(self) -> Path | None:
        """check.csv beside check.json: every finding."""
        return self.folder / CHECK_CSV if self.folder is not None else None

    @property
    def label_issues_figure(self) -> Path | None:
        """label_issues.png beside check.json, where the check drew one."""
        path = self.folder / LABEL_ISSUES_FIGURE if self.folder is not None else None
        return path if path is not None and is_file(path) else None


def default_folder(data: str, settings: CheckSettings | None = None) -> Path:
    """--out, else RUN/check with --run, else checks/NAME (NAME: the data's last path part)."""
    if settings is not None and settings.out:
        return Path(settings.out)
    if settings is not None and settings.run:
        return Path(settings.run) / "check"
    name = Path(data.rstrip("/")).name
    return Path("checks") / (Path(name).stem if name.lower().endswith(".csv") else name)

