"""cnnlab: design, train, evaluate, explain, attack and ship convolutional neural networks."""

__version__ = "0.1.0"

from importlib import import_module  # noqa: E402

# Nothing here loads torch, timm, Captum or matplotlib: they load with the first function that
# needs them, so `import cnnlab` and `cnnlab --version` are quick. The stage packages named like
# the functions below (light: their names load on use) are imported first, so that the functions
# replace them as attributes for good: a later `import cnnlab.train.loop` does not set them again.
for _stage in ("train", "attack", "export", "explain", "report", "evaluate", "baselines", "check",
               "tune", "calibrate"):
    import_module(f".{_stage}", __name__)
from .api import (  # noqa: E402
    attack,
    baselines,
    calibrate,
    check,
    compare,
    evaluate,
    explain,
    export,
    load,
    lr_find,
    report,
    runs,
    train,
    tune,
)
from .config import TrainConfig  # noqa: E402

_FROM_PREDICT = ("ClassScore", "Prediction", "Predictor")

__all__ = ["ClassScore", "Prediction", "Predictor", "TrainConfig", "__version__", "attack", "baselines",
           "calibrate", "check", "compare", "evaluate", "explain", "export", "load", "lr_find",
           "report", "runs", "train", "tune"]


def __getattr__(name: str):
    if name in _FROM_PREDICT:
        from .predict import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
