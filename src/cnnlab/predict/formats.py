"""Predictions as files: JSON (one object a prediction) and CSV (one row a class of each). The one
set of serializers the command, the Python API and serve use."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..run.prediction import CLASS_KEYS, PREDICTION_KEYS

if TYPE_CHECKING:
    from ..run.prediction import Prediction

FORMATS = {".json": "json", ".csv": "csv"}  # what --out's extension says


def predictions_json(results: Sequence[Prediction]) -> str:
    # allow_nan=False: a NaN would make the file invalid JSON. Probabilities are finite (inputs
    # and weights are checked) and a non-finite unknown score is written as null by to_dict.
    return json.dumps([r.to_dict() for r in results], indent=2, allow_nan=False) + "\n"


# The CSV's own columns, as scripts have read them: one row a class, the class under `class`; a
# clip's frame column says "clip". The prediction's other keys follow, on its rank-1 row.
CSV_FIRST = ("input", "frame", "time", "rank", "class", "index", "probability")
CSV_OWN = ("input", "frame", "time", "frames")  # keys the first columns already say


def predictions_csv(results: Sequence[Prediction]) -> str:
    """One row a class of each prediction (rank 1 first); the prediction's other fields (the
    gate's verdict, the unknown detector's) on its rank-1 row, in Prediction.to_dict's order, the
    columns no prediction has left out."""
    rows = [r.to_dict() for r in results]
    present = {key for row in rows for key in row}
    extra = [key for key in PREDICTION_KEYS if key in present and key not in CSV_OWN]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*CSV_FIRST, *extra])
    for row in rows:
        frame = "clip" if "frames" in row else row.get("frame", "")
        for rank, score in enumerate(row["top"], start=1):
            own = [row["input"], frame, row.get("time", ""), rank,
                   *(score[key] for key in CLASS_KEYS)]  # ClassScore's name: the `class` column
            writer.writerow([*own, *("" if rank > 1 or row.get(key) is None else row[key]
                                     for key in extra)])
    return buffer.getvalue()


def formatted(results: Sequence[Prediction], format: str) -> str:
    return predictions_json(results) if format == "json" else predictions_csv(results)
