"""Gather the sections, fill in what is missing with --full, render one HTML file."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from ..base.fileio import atomic_write_text
from ..base.settings import resolve
from ..run.contract import ModelCard
from ..run.folder import read_card
from .cost import cost
from .datacheck import data_checked
from .sections import (
    Section,
    baselines,
    hierarchy,
    quality,
    robustness,
    trained,
    training,
    unknowns,
    why,
)
from .settings import ReportSettings

EXPLAINED_IMAGES = 4  # test images --full explains, one per class
# The sections whose inputs --full makes (cnnlab.report); the others name their own command only.
MADE_BY_FULL = ("quality", "why", "hierarchy", "robustness", "baselines")


def explained_images(run: Path) -> list:
    """The first test image of each of the first EXPLAINED_IMAGES classes."""
    from ..run.data import pick_split

    split, _ = pick_split(run, read_card(run), None, "test")
    chosen: dict[int, Any] = {}
    for images, labels in split.batches(256):
        for image, label in zip(images, labels.tolist(), strict=True):
            chosen.setdefault(label, image)
        if len(chosen) >= EXPLAINED_IMAGES:
            break
    return [chosen[label] for label in sorted(chosen)[:EXPLAINED_IMAGES]]


def sections(run: Path) -> list[Section]:
    card = read_card(run)
    return [trained(run, card), data_checked(run, card), training(run, card), quality(run),
            unknowns(run, card), why(run), hierarchy(run),
            robustness(run),
            cost(run, card), baselines(run)]


def headline(card: ModelCard, parts: list[Section]) -> list[tuple[str, str]]:
    """The figures of the first screen: accuracy, then each section's own (macro F1, robustness,
    cost, the best classic method)."""
    shown = [("test accuracy", f"{card.test_accuracy:.2%}")] if card.test_accuracy is not None else []
    return shown + [entry for part in parts for entry in part.headline]


def render(run: Path, parts: list[Section]) -> str:
    environment = Environment(loader=PackageLoader("cnnlab", "report"),
                              autoescape=select_autoescape(["html"]))
    card = read_card(run)
    return environment.get_template("template.html").render(
        run=run.name, card=card, sections=parts, headline=headline(card, parts),
        made_by_full=MADE_BY_FULL,
        made=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))


def write_report(run: str | Path, settings: ReportSettings | None = None,
                 **options: Any) -> Path:
    """Write RUN/report.html (or `out`) from what the run folder holds: one file, every figure
    inside it (cnnlab.report with full=True first runs what is missing)."""
    settings = resolve(ReportSettings, settings, options)
    run = Path(run)
    path = Path(settings.out) if settings.out else run / "report.html"
    atomic_write_text(path, render(run, sections(run)))
    return path
