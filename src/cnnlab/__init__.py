"""cnnlab: design, train, evaluate, explain, attack and ship convolutional neural networks."""

__version__ = "0.1.0"

from .api import ClassScore, LoadedModel, load, train  # noqa: E402
from .config import TrainConfig  # noqa: E402

__all__ = ["ClassScore", "LoadedModel", "TrainConfig", "__version__", "load", "train"]
