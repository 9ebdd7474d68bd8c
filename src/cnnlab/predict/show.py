"""`cnnlab predict` on the terminal: a table, or CSV/JSON on stdout, and a line per failed input."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..base.errors import printable
from ..base.show import console, error_line, print_table
from .formats import formatted

if TYPE_CHECKING:
    from ..run.prediction import Prediction
    from .run import Predictions
    from .settings import PredictSettings


def show_predictions(result: Predictions, settings: PredictSettings) -> int:
    """1 when an input failed (each said in a line of its own)."""
    for failure in result.failures:
        error_line(f"{failure.input}: {failure.reason}")
    if result.format == "table":
        if result.results:  # every input failed: their error lines say it all
            _print_table(result.results)
    elif result.written is not None:
        count = len(result.results)
        console.print(f"{count} prediction{'s' * (count != 1)} written to {result.written}")
    else:
        sys.stdout.write(formatted(result.results, result.format))
    return 1 if result.failures else 0


def _label(result: Prediction) -> str:
    name = printable(result.input)  # a file name's escape sequences are shown, not obeyed
    if result.frames is not None:
        return f"{name} (clip, {result.frames} frames)"
    if result.frame is not None:
        return f"{name} @ {result.time:.2f}s"
    return name


def _print_table(results: list[Prediction]) -> None:
    rows = [[_label(r), f"unknown (closest: {r.top[0].name})" if r.is_unknown else r.top[0].name,
             f"{r.top[0].probability:.1%}",
             ", ".join(f"{s.name} {s.probability:.1%}" for s in r.top[1:])] for r in results]
    print_table("predictions", ["input", "class", "probability", "next"], rows)
