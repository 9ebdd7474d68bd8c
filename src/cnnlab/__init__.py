"""cnnlab: design, train, evaluate, explain, attack and ship convolutional neural networks."""

__version__ = "0.1.0"

# Importing api loads the cnnlab.train and cnnlab.attack packages first, so the names below are the
# functions: cnnlab.train(...) and cnnlab.attack(...). The module behind cnnlab.evaluate(...) is
# cnnlab.evaluation, so that loading it later cannot replace the function with a module.
from .api import attack, evaluate, load, train  # noqa: E402
from .config import TrainConfig  # noqa: E402
from .predict import ClassScore, Prediction, Predictor  # noqa: E402

__all__ = ["ClassScore", "Prediction", "Predictor", "TrainConfig", "__version__", "attack", "evaluate",
           "load", "train"]
