"""Top losses: the images a model gets most wrong, named by file so a person can fix the data
(fastai's plot_top_losses; users ask for the file names, fastai2 issue 185).

They are the rows of predictions.csv with the highest loss: evaluate ranks the rows it has just
written, and the report ranks the rows it reads back, so both show the same images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .predictions import PredictionRow

TOP_LOSSES = "top_losses.png"
TOP_LOSSES_SHOWN = 16  # the report's table


def worst(rows: Sequence[PredictionRow], count: int) -> list[PredictionRow]:
    """The `count` rows of highest loss, worst first (ties in split order)."""
    return sorted(rows, key=lambda row: (-row.loss, row.index))[:count]


def short_name(row: PredictionRow) -> str:
    """The image as a person finds it: class folder and file name, or its index in the split for
    images held as arrays (built-in datasets)."""
    if not row.file:
        return f"#{row.index}"
    path = Path(row.file)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def shown_path(row: PredictionRow) -> str:
    """The file relative to the working folder where it lies under it (shorter on a terminal)."""
    if not row.file:
        return f"#{row.index}"
    try:
        return os.path.relpath(row.file) if not os.path.relpath(row.file).startswith("..") \
            else row.file
    except ValueError:  # another drive on Windows
        return row.file


def caption(row: PredictionRow) -> str:
    """Under each image of the figure: its file, true and predicted class, and the loss."""
    verdict = "correct" if row.correct else f"pred: {row.predicted} ({row.probability:.0%})"
    return f"{short_name(row)}, loss {row.loss:.2f}\ntrue: {row.true}\n{verdict}"


def table_rows(rows: Sequence[PredictionRow]) -> list[list[str]]:
    """The terminal's and the report's table: rank, file, true, predicted, probability, loss."""
    return [[str(rank), shown_path(row), row.true, row.predicted, f"{row.probability:.1%}",
             f"{row.loss:.3f}"] for rank, row in enumerate(rows, start=1)]


TABLE_COLUMNS = ["#", "file (or #index in the split)", "true", "predicted", "probability",
                 "loss"]


def read_top_losses(folder: Path) -> tuple[list[str], list[list[str]]] | None:
    """An evaluation folder's images of highest loss, read back from its predictions.csv as the
    table's columns and rows (as many as the figure shows); None where it has no such figure."""
    from .predictions import PREDICTIONS, read_predictions

    if not (folder / PREDICTIONS).is_file() or not (folder / TOP_LOSSES).is_file():
        return None
    return TABLE_COLUMNS, table_rows(worst(read_predictions(folder / PREDICTIONS), TOP_LOSSES_SHOWN))
