"""Stage: accuracy, top-k, per-class metrics, confusion matrix, calibration and mistakes of a run.

`cnnlab.evaluate` is the function (cnnlab/api.py); this package is its module, loaded first so
that the function replaces it as an attribute of cnnlab.
"""

from ..base.lazy import lazy_names

__all__ = [*("Evaluation", "evaluate_run")]
__getattr__ = lazy_names(__name__, dict.fromkeys(__all__, ".run"))
