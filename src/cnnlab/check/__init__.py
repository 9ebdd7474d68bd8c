"""Stage: data health. Likely label errors (cleanlab's confident learning on out-of-sample
probabilities), duplicates and train/test leaks, outliers and other oddities.

`cnnlab.check` is the function (cnnlab/api.py); this package is loaded first so that the function
replaces it as an attribute of cnnlab for good.
"""

from ..base.lazy import lazy_names

__all__ = [*("CheckResult", "Finding", "run_check", "write_check")]
__getattr__ = lazy_names(__name__, dict.fromkeys(__all__, ".run"))
