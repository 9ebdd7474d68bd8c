"""Training: the loop, optimizers and schedules, progress.

Names load on first use (PEP 562), so `import cnnlab` stays light: torch loads with the first verb
that needs it, not with `cnnlab --version`.
"""

from ..base.lazy import lazy_names

__all__ = [*("EpochCallback", "Run", "TrainingDiverged", "TrainingStopped", "fit", "train_one_epoch")]
__getattr__ = lazy_names(__name__, dict.fromkeys(__all__, ".loop"))
