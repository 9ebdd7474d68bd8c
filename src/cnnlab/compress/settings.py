"""`cnnlab compress`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import QUIET_HELP


@dataclass(frozen=True)
class CompressSettings:
    HELP_GROUPS = {"the budget": ("target_ms", "speedup", "max_drop"),
                   "the candidates": ("sizes", "prune", "tta", "epochs", "temperature", "weight",
                                      "int8")}

    target_ms: float | None = option(None, "the latency to reach: milliseconds for one image on "
                                           "ONNX Runtime with one thread (default: the fastest "
                                           "within --max-drop)", above=0, metavar="MS")
    speedup: float | None = option(None, "or: this many times the teacher's one-image speed on one "
                                         "thread", above=1, metavar="N")
    max_drop: float = option(1.5, "the accuracy budget: points of validation accuracy the "
                                  "compressed model may lose against the teacher", minimum=0,
                             maximum=100, metavar="POINTS")
    sizes: str | None = option(None, "input sides to try, comma-separated (default: the "
                                     "teacher's, and 3/4 and 4/7 of it where the network pools "
                                     "globally and the side is 64 or more)", metavar="SIDES")
    prune: str = option("0,0.3,0.5", "shares of the channels inside each block to prune, "
                                     "comma-separated (0: none)", metavar="SHARES")
    tta: bool = option(True, "a teacher with flip test-time augmentation: also measure each "
                             "candidate without it (one forward pass instead of two)")
    epochs: int | None = option(None, "distillation epochs per candidate (default: the "
                                      "teacher's, and at least 8)", minimum=1)
    temperature: float = option(4.0, "distillation temperature", above=0, maximum=100)
    weight: float = option(0.5, "distillation: the share of the loss that follows the teacher",
                           minimum=0, maximum=1)
    int8: bool = option(True, "quantize the chosen model to static int8 (ONNX Runtime) and keep "
                              "it where it is faster and within the budget")
    timing: float = option(1.0, "seconds spent timing each latency (more: steadier numbers)",
                           above=0, maximum=600, metavar="SECONDS")
    keep_candidates: bool = option(False, "keep every candidate's run folder (in OUT/candidates)")
    out: str | None = option(None, "the compressed run folder (default runs/<teacher>-compressed, "
                                   "numbered)", metavar="DIR")
    seed: int = option(0, "random seed of the candidates' training", minimum=0)
    quiet: bool = option(False, QUIET_HELP)
