"""Named networks (timm-style registry) and `create_model` for names, spec strings and YAML files."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import CnnlabError, unknown
from ..base.fileio import is_file
from ..base.yamlload import load_yaml
from .build import BuiltLayer, build_network
from .classifier import Classifier, zero_head
from .pretrained import TIMM_PREFIX, create_timm_model
from .spec import Layer, parse_spec, parse_yaml_layers, spec_to_text


@dataclass(frozen=True)
class ModelEntry:
    name: str
    spec: str
    description: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, description: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register a function that returns a layer spec under `name`; duplicate names raise."""

    def decorate(make_spec: Callable[[], str]) -> Callable[[], str]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelEntry(name, make_spec(), description)
        return make_spec

    return decorate


def list_models(pattern: str = "*") -> list[ModelEntry]:
    _load_zoo()
    return [entry for name, entry in sorted(_MODELS.items()) if fnmatch.fnmatch(name, pattern)]


def _load_zoo() -> None:
    from . import zoo  # noqa: F401  (registers the named networks)


def _looks_like_spec(text: str) -> bool:
    return "(" in text or " " in text.strip()


def resolve_layers(model: str) -> tuple[str, list[Layer]]:
    """Turn a registry name, a .yaml/.yml file or an inline spec into (name, layers)."""
    _load_zoo()
    if model in _MODELS:
        return model, parse_spec(_MODELS[model].spec)
    if model.endswith((".yaml", ".yml")):
        return _layers_from_yaml(Path(model))
    if _looks_like_spec(model):
        return "custom", parse_spec(model)
    raise unknown("model", model, _MODELS)


def _layers_from_yaml(path: Path) -> tuple[str, list[Layer]]:
    if not is_file(path):
        raise CnnlabError(f"model file {path} does not exist")
    document = load_yaml(path.read_text(encoding="utf-8"), f"model file {path}")
    if isinstance(document, dict) and "layers" in document:
        return str(document.get("name", path.stem)), parse_yaml_layers(document["layers"])
    if isinstance(document, list):
        return path.stem, parse_yaml_layers(document)
    raise CnnlabError(f"model file {path} must hold a list of layers or a mapping with 'layers'")




def create_model(model: str, *, input_shape: Sequence[int], num_classes: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 pretrained: bool = False) -> tuple[Classifier, str, list[BuiltLayer]]:
    """Build a classifier for (C, H, W) inputs. Returns (model, canonical spec, layer report).

    `model` is a named network, a layer spec, a YAML file, or `timm:<name>` for any timm model
    (with ImageNet weights when `pretrained`); the layer report is empty for timm models.
    """
    channels = input_shape[0]
    if model.startswith(TIMM_PREFIX):
        network = create_timm_model(model[len(TIMM_PREFIX):], num_classes=num_classes,
                                    in_chans=channels, pretrained=pretrained)
        return Classifier(network, mean or [0.5] * channels, std or [0.5] * channels), model, []
    if pretrained:
        raise CnnlabError(f"--pretrained needs a timm model, e.g. --model timm:efficientnet_lite0; "
                          f"{model!r} is trained from scratch")
    _, layers = resolve_layers(model)
    network, built = build_network(layers, tuple(input_shape), num_classes)
    zero_head(network.get_classifier())
    classifier = Classifier(network, mean or [0.5] * channels, std or [0.5] * channels)
    return classifier, spec_to_text(layers), built
