"""Predictions as files: JSON (one object a prediction) and CSV (one row a class of each). The one
set of serializers the command, the Python API and serve use."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .predictor import Prediction

FORMATS = {".json": "json", ".csv": "csv"}  # what --out's extension says


def predictions_json(results: Sequence[Prediction]) -> str:
    # allow_nan=False: a NaN would make the file invalid JSON (loading refuses such weights anyway)
    return json.dumps([r.to_dict() for r in results], indent=2, allow_nan=False) + "\n"


def predictions_csv(results: Sequence[Prediction]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    gated = any(r.accepted is not None for r in results)  # --min-prob / --min-precision
    detected = any(r.known is not None for r in results)  # the model's unknown detector
    writer.writerow(["input", "frame", "time", "rank", "class", "index", "probability",
                     *(["accepted"] if gated else []),
                     *(["known", "unknown_score"] if detected else [])])
    for r in results:
        frame = "clip" if r.frames is not None else ("" if r.frame is None else r.frame)
        for rank, score in enumerate(r.top, start=1):
            first = rank == 1
            writer.writerow([r.input, frame, "" if r.time is None else r.time, rank, score.name,
                             score.index, score.probability,
                             *([r.accepted if first else ""] if gated else []),
                             *(([r.known, r.unknown_score] if first else ["", ""])
                               if detected else [])])
    return buffer.getvalue()


def formatted(results: Sequence[Prediction], format: str) -> str:
    return predictions_json(results) if format == "json" else predictions_csv(results)
