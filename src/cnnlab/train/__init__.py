"""Training: the loop, optimizers and schedules, progress.

Names load on first use (PEP 562), so `import cnnlab` stays light: torch loads with the first verb
that needs it, not with `cnnlab --version`.
"""

from ..base.lazy import lazy_names

_WHERE = {**dict.fromkeys(("EpochCallback", "Run", "TrainingDiverged", "TrainingStopped", "fit",
                           "train_one_epoch"), ".loop"),
          # the exact linear probe (check and explain's depth probe use it)
          **dict.fromkeys(("DEFAULT_C", "fit_logistic", "linear_probe", "Probe"), ".probe")}
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, _WHERE)
