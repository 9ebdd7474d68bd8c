"""Networks: the layer language, named networks and the classifier wrapper."""

from .build import BuiltLayer, Network
from .classifier import Classifier
from .layers import LAYERS
from .registry import ModelEntry, create_model, list_models, register_model, resolve_layers
from .spec import parse_spec, spec_to_text

__all__ = ["LAYERS", "BuiltLayer", "Classifier", "ModelEntry", "Network", "create_model",
           "list_models", "parse_spec", "register_model", "resolve_layers", "spec_to_text"]
