"""What the catalog verbs find: a network's layer table, the datasets, the named networks, the
layers of the layer language."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import CnnlabError, suggest
from ..base.fileio import is_dir
from ..base.settings import resolve
from .settings import DatasetsSettings, LayersSettings, ModelsSettings, SummarySettings

if TYPE_CHECKING:
    from ..models.summary import Summary

DEFAULT_INPUT, DEFAULT_CLASSES = (1, 28, 28), 10


@dataclass(frozen=True)
class NetworkSummary:
    """A network's per-layer table on an input shape, and what it is called."""

    summary: Summary
    name: str
    input_shape: tuple[int, int, int]
    classes: int


def summary(model: str, settings: SummarySettings | None = None, **options: Any) -> NetworkSummary:
    """The per-layer table (output shape, parameters, FLOPs, receptive field) of a named network,
    a layer spec, a YAML file, timm:NAME, or a run folder's network on its own input."""
    from ..models.summary import summarize
    from ..run.folder import network_summary, read_card

    settings = resolve(SummarySettings, settings, options)
    shape, classes, name = DEFAULT_INPUT, DEFAULT_CLASSES, None
    architecture = model
    if is_dir(model):
        card = read_card(model)
        architecture, shape, classes = card.architecture, card.input.shape, card.num_classes
        name = f"{card.name} (run {Path(model).name})"
    shape = parse_input(settings.input) if settings.input else shape
    classes = settings.classes or classes
    if is_dir(model) and not settings.classes:
        table = network_summary(model, card, shape)
    else:
        table = summarize(architecture, shape, classes)
    return NetworkSummary(table, name or table.name, shape, classes)


def parse_input(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text.strip().lower())
    if not match:
        raise CnnlabError(f"--input must look like 1x28x28 (channels x height x width), got {text!r}")
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


@dataclass(frozen=True)
class DatasetRow:
    name: str
    present: bool
    description: str
    where: str


def datasets(settings: DatasetsSettings | None = None, **options: Any) -> list[DatasetRow]:
    """The built-in datasets, whether each is here and where (download=NAME fetches one first)."""
    from ..data import list_datasets
    from ..data.builtin import download

    settings = resolve(DatasetsSettings, settings, options)
    if settings.download:
        download(settings.download)
    return [DatasetRow(entry.name, entry.is_present(), entry.description, entry.where())
            for entry in list_datasets()]


@dataclass(frozen=True)
class NetworkListing:
    """The named networks matching a pattern, each sized for 1x28x28 and 10 classes; or, for a
    pattern timm:..., timm's names (`pretrained`: those with ImageNet weights)."""

    pattern: str
    networks: tuple[tuple[Any, Summary], ...] = ()  # (ModelEntry, its Summary)
    timm: tuple[str, ...] = ()
    pretrained: frozenset[str] = frozenset()


def models(pattern: str = "*", settings: ModelsSettings | None = None,
           **options: Any) -> NetworkListing:
    """The named networks whose names match `pattern` (a glob, or a part of the name)."""
    from ..models import list_models
    from ..models.summary import summarize

    resolve(ModelsSettings, settings, options)
    if pattern.startswith("timm:"):
        return _timm_models(pattern.removeprefix("timm:"))
    entries = list_models(pattern if glob.has_magic(pattern) else f"*{pattern}*")
    if not entries:
        names = [entry.name for entry in list_models()]
        raise CnnlabError(f"no named network matches {pattern!r}{suggest(pattern, names)}; the "
                          f"networks: {', '.join(names)} (timm's: cnnlab models 'timm:*{pattern}*')")
    return NetworkListing(pattern, tuple((entry, summarize(entry.name, DEFAULT_INPUT,
                                                           DEFAULT_CLASSES))
                                         for entry in entries))


def _timm_models(pattern: str) -> NetworkListing:
    import timm

    names = timm.list_models(pattern or "*")
    if not names:
        raise CnnlabError(f"no timm model matches {pattern!r}; try a wildcard, e.g. "
                          f"cnnlab models 'timm:*{pattern}*'")
    pretrained = {name.split(".")[0] for name in timm.list_models(pattern or "*", pretrained=True)}
    return NetworkListing(pattern, timm=tuple(names), pretrained=frozenset(pretrained))


@dataclass(frozen=True)
class LayerRow:
    name: str
    usage: str
    aliases: tuple[str, ...]


def layers(settings: LayersSettings | None = None, **options: Any) -> list[LayerRow]:
    """Every layer of the layer language, its arguments and its other names."""
    from ..models.layers import ALIASES, LAYERS

    resolve(LayersSettings, settings, options)
    return [LayerRow(name, layer.help, tuple(a for a, target in ALIASES.items() if target == name))
            for name, layer in LAYERS.items()]
