"""cnnlab: design, train, evaluate, explain, attack and ship convolutional neural networks."""

from .base.version import VERSION as __version__  # noqa: I001 (at the top, where one looks for it)

from importlib import import_module  # noqa: E402
from importlib.util import find_spec  # noqa: E402

from . import api  # noqa: E402
from .config import TrainConfig  # noqa: E402

# Nothing here loads torch, timm, Captum or matplotlib: they load with the first function that
# needs them, so `import cnnlab` and `cnnlab --version` are quick. cnnlab.VERB is the verb's
# function (api.py); where a package has the verb's name (cnnlab/evaluate/), it is imported
# first, so that the function replaces it as an attribute for good: a later
# `import cnnlab.evaluate.run` does not set it again.
_VERB_FUNCTIONS = api.functions()
for _name, _function in _VERB_FUNCTIONS.items():
    if find_spec(f".{_name}", __name__) is not None:
        import_module(f".{_name}", __name__)
    globals()[_name] = _function
load = api.load

_FROM_PREDICT = ("ClassScore", "Prediction", "Predictor")

__all__ = [*_FROM_PREDICT, "TrainConfig", "__version__", "load", *sorted(_VERB_FUNCTIONS)]


def __getattr__(name: str):
    if name in _FROM_PREDICT:
        from .run import predictor  # the predictor and its answers live in the run room

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
