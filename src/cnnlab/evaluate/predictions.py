"""RUN/evaluate/predictions.csv: one row per image evaluate scored, in the split's order.

It is what a paired comparison of two runs needs (`cnnlab compare`: which images each got right,
on the very same test images), and what a person fixing data needs (the file and the loss of each
image). One writer (`write_predictions`), one reader (`read_predictions`). Nothing here loads torch.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_text

PREDICTIONS = "predictions.csv"


@dataclass(frozen=True)
class PredictionRow:
    """One scored image."""

    index: int  # its position in the split
    file: str  # its file, for data read from files; "" for images held as arrays
    true: str  # class name
    predicted: str
    probability: float  # the model's probability of the predicted class
    loss: float  # cross-entropy of the true class

    @property
    def correct(self) -> bool:
        return self.true == self.predicted


COLUMNS = tuple(field.name for field in fields(PredictionRow))


def prediction_rows(predicted: Sequence[int], labels: Sequence[int], probabilities: Sequence[float],
                    losses: Sequence[float], class_names: Sequence[str],
                    files: Sequence[str] | None = None) -> list[PredictionRow]:
    """The rows of a split from its predicted and true class indices (in split order)."""
    files = files if files is not None else [""] * len(labels)
    return [PredictionRow(i, str(file), class_names[t], class_names[p], round(float(q), 6),
                          round(float(loss), 6))
            for i, (p, t, q, loss, file) in enumerate(zip(predicted, labels, probabilities, losses,
                                                          files, strict=True))]


def write_predictions(path: Path, rows: Sequence[PredictionRow]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(astuple(row) for row in rows)
    atomic_write_text(path, buffer.getvalue())


def read_predictions(path: Path) -> list[PredictionRow]:
    """The rows as written; a file of another layout is one clear error."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = tuple(next(reader, ()))
            if header != COLUMNS:
                raise CnnlabError(f"{path}: expected the columns {', '.join(COLUMNS)}; evaluate "
                                  f"the run again with `cnnlab evaluate {path.parent.parent}`")
            return [_row(values, path) for values in reader]
    except (OSError, UnicodeDecodeError) as error:
        raise CnnlabError(f"cannot read {path}: {error}") from None


def _row(values: list[str], path: Path) -> PredictionRow:
    try:
        index, file, true, predicted, probability, loss = values
        row = PredictionRow(int(index), file, true, predicted, float(probability), float(loss))
    except ValueError:
        raise CnnlabError(f"{path}: malformed row {values!r}"[:300]) from None
    return row
