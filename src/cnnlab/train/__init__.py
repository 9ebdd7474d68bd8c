"""Training: the loop, optimizers and schedules, progress."""

from .loop import Run, TrainingDiverged, fit, train_one_epoch

__all__ = ["Run", "TrainingDiverged", "fit", "train_one_epoch"]
