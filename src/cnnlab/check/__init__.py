"""Stage: data health. Likely label errors (cleanlab's confident learning on out-of-sample
probabilities), duplicates and train/test leaks, outliers and other oddities.

`cnnlab.check` is the function (cnnlab/api.py); this package is loaded first so that the function
replaces it as an attribute of cnnlab for good.
"""

from ..base.lazy import lazy_names

_FROM_RUN = ("CheckResult", "run_check", "write_check")
# check.json's type and where a check writes it: light (no torch), for the stages that read a check
_FROM_REPORT = ("CheckReport", "Finding", "default_folder")
__all__ = [*_FROM_RUN, *_FROM_REPORT]
__getattr__ = lazy_names(__name__, {**dict.fromkeys(_FROM_RUN, ".run"),
                                    **dict.fromkeys(_FROM_REPORT, ".report")})
