"""The report's data section: what `cnnlab check` found in the data the run was trained on, read
from the check's own files, and how many images --exclude left out of this run."""

from __future__ import annotations

from pathlib import Path

from ..base.fileio import is_dir, is_file
from ..check import CheckReport, default_folder
from ..config import DataConfig, load_config
from ..run.contract import ModelCard
from ..run.folder import CONFIG
from .sections import Section, Table, figure


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
    section.facts = [("data", name), *_found(found), _left_out(card, exclude),
                     ("the check", str(found.page))]
    _show_label_issues(section, found)
    return section


def _show_label_issues(section: Section, report: CheckReport) -> None:
    """The worst label issues as a table, and the check's figure of them where it drew one."""
    if report.label_issues:
        section.tables.append(Table(
            f"worst label issues (of {len(report.label_issues)}; {report.table} lists every "
            f"finding)", ["file", "given", "suggested", "label quality"],
            [[row.file, row.label, row.suggested, f"{row.score:.3f}"]
             for row in report.worst_label_issues]))
    if report.label_issues_figure is not None:
        section.figures.append(figure(report.label_issues_figure, "likely label errors, lowest "
                                      "label quality first, each with its given and suggested "
                                      "label"))


def _run_data(run: Path) -> DataConfig | None:
    """The data settings the run was trained with (None for a run folder without config.yaml)."""
    return load_config(run / CONFIG).data if is_file(run / CONFIG) else None


def find_check(run: Path, data: str, exclude: str | None) -> CheckReport | None:
    """A check of `data`: the run's own (RUN/check), the one whose check.csv --exclude read, or
    the default folder of `cnnlab check DATA` (checks/NAME here)."""
    places = [run / "check"]
    if exclude and Path(exclude).suffix.lower() == ".csv":
        places.append(Path(exclude).expanduser().parent)
    places.append(default_folder(data))
    for folder in places:
        report = CheckReport.found_in(folder)
        if report is not None and same_data(report.data, data):
            return report
    return None


def same_data(checked: str, trained: str) -> bool:
    """Two names of the same data: a dataset's name, or the same folder or CSV however written."""
    if checked == trained:
        return True
    paths = [Path(name).expanduser() for name in (checked, trained)]
    if not all(is_dir(path) or is_file(path) for path in paths):
        return False
    return paths[0].resolve() == paths[1].resolve()


def _found(report: CheckReport) -> list[tuple[str, str]]:
    counts, pairs = report.counts, report.duplicate_pairs
    return [("images checked", f"{report.images_read:,} read of {report.images:,}"),
            ("likely label errors", f"{counts.get('label-issue', 0):,}"),
            ("leaks", f"{pairs.leaked_test_images:,} test images with a copy in train"),
            ("copies within a split", f"{pairs.within_train + pairs.within_test:,} pairs"),
            ("outliers", f"{counts.get('outlier', 0):,}"),
            ("marked exclude", f"{_images(report.marked_exclude)} (train --exclude "
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
