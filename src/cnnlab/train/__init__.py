"""Training: the loop, optimizers and schedules, progress."""

from .loop import EpochCallback, Run, TrainingDiverged, fit, train_one_epoch

__all__ = ["EpochCallback", "Run", "TrainingDiverged", "fit", "train_one_epoch"]
