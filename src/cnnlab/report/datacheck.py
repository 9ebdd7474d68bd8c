"""The report's data section: what `cnnlab check` found in the data the run was trained on, read
from the check's own files, and how many images --exclude left out of this run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base.fileio import is_dir, is_file
from ..check.settings import CheckSettings
from ..config import DataConfig, load_config
from ..run.contract import ModelCard
from ..run.folder import CONFIG
from .sections import Section, Table, figure, read_json

CHECK_JSON, CHECK_PAGE = "check.json", "check.html"


def data_checked(run: Path, card: ModelCard) -> Section:
    section = Section("data", "The data it was trained on")
    data = _run_data(run)
    name = data.name if data is not None else card.dataset or "DATA"
    exclude = data.exclude if data is not None else None
    found = find_check(run, name, exclude)
    if found is None:
        section.facts = [("data", name), _left_out(card, exclude)]
        section.missing = f"cnnlab check {name} --run {run}"
        return section
    folder, summary = found
    section.facts = [("data", name), *_found(summary), _left_out(card, exclude),
                     ("the check", str(folder / CHECK_PAGE))]
    _show_label_issues(section, folder, summary)
    return section


def _show_label_issues(section: Section, folder: Path, summary: dict[str, Any]) -> None:
    """The worst label issues as a table, and the check's figure of them where it drew one."""
    from ..check.figure import LABEL_ISSUES_FIGURE
    from ..check.run import WORST  # as many as the terminal shows

    issues = [row for row in summary.get("findings", []) if row["kind"] == "label-issue"]
    if issues:
        section.tables.append(Table(
            f"worst label issues (of {len(issues)}; {folder / 'check.csv'} lists every finding)",
            ["file", "given", "suggested", "label quality"],
            [[row["file"], row["label"], row["suggested"], f"{row['score']:.3f}"]
             for row in issues[:WORST]]))
    if is_file(folder / LABEL_ISSUES_FIGURE):
        section.figures.append(figure(folder / LABEL_ISSUES_FIGURE, "likely label errors, lowest "
                                      "label quality first, each with its given and suggested "
                                      "label"))


def _run_data(run: Path) -> DataConfig | None:
    """The data settings the run was trained with (None for a run folder without config.yaml)."""
    return load_config(run / CONFIG).data if is_file(run / CONFIG) else None


def find_check(run: Path, data: str, exclude: str | None) -> tuple[Path, dict[str, Any]] | None:
    """A check of `data`, and its check.json: the run's own (RUN/check), the one whose check.csv
    --exclude read, or the default folder of `cnnlab check DATA` (checks/NAME here)."""
    from ..check.run import default_folder

    places = [run / "check"]
    if exclude and Path(exclude).suffix.lower() == ".csv":
        places.append(Path(exclude).expanduser().parent)
    places.append(default_folder(data, CheckSettings()))
    for folder in places:
        summary = read_json(folder / CHECK_JSON)
        if summary is not None and same_data(str(summary.get("data", "")), data):
            return folder, summary
    return None


def same_data(checked: str, trained: str) -> bool:
    """Two names of the same data: a dataset's name, or the same folder or CSV however written."""
    if checked == trained:
        return True
    paths = [Path(name).expanduser() for name in (checked, trained)]
    if not all(is_dir(path) or is_file(path) for path in paths):
        return False
    return paths[0].resolve() == paths[1].resolve()


def _found(summary: dict[str, Any]) -> list[tuple[str, str]]:
    counts, pairs = summary.get("counts", {}), summary.get("duplicate_pairs", {})
    leaks = pairs.get("test images with a copy in train", counts.get("leak", 0))
    copies = (pairs.get("within train", 0) + pairs.get("within test", 0)) if pairs \
        else counts.get("duplicate", 0)
    return [("images checked", f"{summary.get('read', 0):,} read of {summary.get('images', 0):,}"),
            ("likely label errors", f"{counts.get('label-issue', 0):,}"),
            ("leaks", f"{leaks:,} test images with a copy in train"),
            ("copies within a split", f"{copies:,} pairs"),
            ("outliers", f"{counts.get('outlier', 0):,}"),
            ("marked exclude", f"{_images(summary.get('marked_exclude', 0))} (train --exclude "
                               f"check.csv leaves them out)")]


def _left_out(card: ModelCard, exclude: str | None) -> tuple[str, str]:
    if card.excluded:
        splits = ", ".join(f"{count:,} {split}" for split, count in card.excluded.items())
        by = f", by --exclude {exclude}" if exclude else ""
        return ("left out of this run", f"{_images(sum(card.excluded.values()))} ({splits}){by}")
    if exclude:  # a list that marks nothing, or a run made before the card counted them
        return ("left out of this run", f"no images recorded on the model card (--exclude "
                                        f"{exclude})")
    return ("left out of this run", "none (trained without --exclude)")


def _images(count: int) -> str:
    return f"{count:,} image{'' if count == 1 else 's'}"
