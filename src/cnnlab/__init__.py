"""cnnlab: design, train, evaluate, explain, attack and ship convolutional neural networks."""

__version__ = "0.1.0"

from importlib import import_module  # noqa: E402

# Nothing here loads torch, timm, Captum or matplotlib: they load with the first function that
# needs them, so `import cnnlab` and `cnnlab --version` are quick. The subpackages cnnlab.train,
# cnnlab.attack, cnnlab.export, cnnlab.explain and cnnlab.report (light: their names load on use) are imported
# first, so that the functions below replace them as attributes for good: a later
# `import cnnlab.train.loop` does not set them again.
# The module behind cnnlab.evaluate(...) is cnnlab.evaluation, for the same reason.
import_module(".train", __name__)
import_module(".attack", __name__)
import_module(".export", __name__)
import_module(".explain", __name__)
import_module(".report", __name__)
from .api import attack, baselines, evaluate, explain, export, load, report, train  # noqa: E402
from .config import TrainConfig  # noqa: E402

_FROM_PREDICT = ("ClassScore", "Prediction", "Predictor")

__all__ = ["ClassScore", "Prediction", "Predictor", "TrainConfig", "__version__", "attack", "baselines",
           "evaluate", "explain", "export", "load", "report", "train"]


def __getattr__(name: str):
    if name in _FROM_PREDICT:
        from . import predict

        return getattr(predict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
