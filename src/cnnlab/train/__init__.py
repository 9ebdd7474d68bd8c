"""Training: the loop, optimizers and schedules, progress.

Names load on first use (PEP 562), so `import cnnlab` stays light: torch loads with the first verb
that needs it, not with `cnnlab --version`.
"""

from ..base.lazy import lazy_names

_WHERE = {**dict.fromkeys(("EpochCallback", "Run", "TrainingDiverged", "TrainingStopped", "fit",
                           "train_one_epoch"), ".loop"),
          "DEFAULT_C": ".probe", "fit_logistic": ".probe"}  # the exact linear probe (check uses it)
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, _WHERE)
