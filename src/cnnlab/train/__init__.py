"""Training: the loop, optimizers and schedules, progress.

Names load on first use (PEP 562), so `import cnnlab` stays light: torch loads with the first verb
that needs it, not with `cnnlab --version`.
"""

from importlib import import_module

_FROM_LOOP = ("EpochCallback", "Run", "TrainingDiverged", "fit", "train_one_epoch")
__all__ = list(_FROM_LOOP)


def __getattr__(name: str):
    if name in _FROM_LOOP:
        return getattr(import_module(".loop", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
