"""`cnnlab evaluate`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import DATA_HELP, DEVICE_HELP, ENGINE_HELP, ENGINES, EVAL_BATCH, QUIET_HELP, SPLITS


@dataclass(frozen=True)
class EvaluateSettings:
    data: str | None = option(None, DATA_HELP, metavar="DATA")
    split: str = option("test", "the split evaluated", choices=SPLITS, kind="split")
    # A few pixels are a tenth of a 28-px image and nothing on a 224-px photo, where the test
    # still costs 13 passes over the split (146 s of 164 on flowers12): off there by default.
    max_shift: int | None = option(None, "translation test: shift images by 0..N pixels (0 turns "
                                         "it off; default 3 for images up to 64 px trained from "
                                         "scratch, off for larger or pretrained ones)",
                                   minimum=0, maximum=16)
    # Unset is 16 images in the figure; set, the table on the terminal too.
    top_losses: int | None = option(None, "the N images of highest loss, named by file, in "
                                          "top_losses.png and the report; given here, also a table "
                                          "on the terminal (0: none; default 16)", minimum=0)
    unknown: str | None = option(None, "images of none of the run's classes (a dataset name, a "
                                       "folder or an image): how well each unknown-image score "
                                       "tells them from the known, in unknown.json and "
                                       "unknown_scores.png", metavar="DATA")
    batch_size: int = option(EVAL_BATCH, "images per forward pass", minimum=1)
    engine: str = option("auto", ENGINE_HELP, choices=ENGINES, kind="engine")
    out: str | None = option(None, "results folder (default RUN/evaluate; RUN/evaluate-val for "
                                   "--split val, RUN/evaluate-NAME for --data NAME)", metavar="DIR")
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)
