"""Stage: classic methods (logistic regression, HOG + linear SVM, random forest, PCA + RBF SVM) on
the same split as a run's CNN.

`cnnlab.baselines` is the function (cnnlab/api.py); this package is loaded first so that the
function replaces it as an attribute of cnnlab for good.
"""

from ..base.lazy import lazy_names

__all__ = ["TABLE_COLUMNS", "BaselineResult", "Baselines", "baselines", "measure_baselines", "table_row"]
__getattr__ = lazy_names(__name__, dict.fromkeys(__all__, ".classic"))
