"""`cnnlab predict`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import DEVICE_HELP, ENGINE_HELP, ENGINES, EVAL_BATCH, UNKNOWN_HELP
from ..run.prediction import TOPK


@dataclass(frozen=True)
class PredictSettings:
    topk: int = option(TOPK, "how many classes to list per input", minimum=1)
    format: str | None = option(None, "table | json | csv (default: a table on the terminal, or "
                                      "what --out's extension says)",
                                choices=("table", "json", "csv"), kind="format")
    out: str | None = option(None, "write the predictions to this .json or .csv file", metavar="FILE")
    batch_size: int = option(EVAL_BATCH, "images per forward pass", minimum=1)
    workers: int = option(2, "DataLoader workers that decode image files", minimum=0, maximum=256)
    fps: float = option(1.0, "video frames sampled per second", above=0)
    # A plain floor on the top probability, or per-class thresholds that evaluate measured.
    min_prob: float | None = option(None, "call an input 'unknown' when its top probability is "
                                          "below X", minimum=0, maximum=1)
    min_precision: float | None = option(
        None, "call an input 'unknown' when its top class's probability is below the threshold "
              "that gave that class this precision in the run's evaluation (0.9, 0.95 or 0.99; "
              "from RUN/evaluate-val when there is one, else RUN/evaluate)", above=0, maximum=1)
    unknown: bool = option(True, UNKNOWN_HELP)
    engine: str = option("auto", ENGINE_HELP, choices=ENGINES, kind="engine")
    device: str = option("auto", DEVICE_HELP)
