"""Stage: accuracy, top-k, per-class metrics, confusion matrix, calibration and mistakes of a run.

`cnnlab.evaluate` is the function (cnnlab/api.py); this package is its module, loaded first so
that the function replaces it as an attribute of cnnlab.
"""

from ..base.lazy import lazy_names

_WHERE = {"Evaluation": ".run", "evaluate_run": ".run", "confusion_matrix_figure": ".figures",
          "PREDICTIONS": ".predictions", "PredictionRow": ".predictions",
          "read_predictions": ".predictions", "read_top_losses": ".top_losses"}
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, _WHERE)
