"""Stage: probabilities that mean what they say, and "none of my classes". Temperature scaling
fitted on a run's validation split, and an unknown-image detector (a score and its threshold)
stored with the model, so every verb that predicts can say "unknown"."""

from ..base.lazy import lazy_names

__all__ = ["CalibrationResult", "calibrate_run"]
__getattr__ = lazy_names(__name__, dict.fromkeys(__all__, ".run"))
