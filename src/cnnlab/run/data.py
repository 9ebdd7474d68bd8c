"""The data a trained run is measured on: its own dataset (or another with the same classes),
converted to the model's input channels and size. Shared by evaluate and attack."""

from __future__ import annotations

from pathlib import Path

from ..base.errors import CnnlabError
from ..base.settings import build
from ..config import DataConfig, load_config
from ..data import load_dataset
from ..data.splits import DatasetSplits, Split
from .contract import ModelCard
from .folder import CONFIG, export_of


def run_data_config(run: Path, card: ModelCard, data: str | None) -> DataConfig:
    """The run's own data settings, with the model's input channels and size enforced."""
    exported = export_of(run)
    if (run / CONFIG).is_file():
        config = load_config(run / CONFIG).data
    elif exported is not None:
        config = build(DataConfig, exported[0].data, "data.")
    else:
        config = DataConfig()
    if data is not None:
        config.name = data
    config.channels = card.input.channels
    config.image_size = card.input.height
    return config


def run_dataset(run: Path, card: ModelCard, data: str | None = None) -> DatasetSplits:
    """The run's data (or `data`, which must have the model's classes), as the model takes it."""
    dataset = load_dataset(run_data_config(run, card, data))
    if tuple(dataset.class_names) != card.class_names:
        raise CnnlabError(f"the data's classes {dataset.class_names[:5]}... are not the model's "
                          f"{list(card.class_names[:5])}...")
    return dataset


def pick_split(run: Path, card: ModelCard, data: str | None, split: str) -> tuple[Split, str]:
    """The `split` ("test" or "val") of the run's data; returns it and the dataset's name."""
    dataset = run_dataset(run, card, data)
    chosen = getattr(dataset, split)
    if chosen is None and split == "test":
        other = "" if "val" in card.fitted_on else "; or --split val"
        raise CnnlabError(f"{dataset.name} has no test split: train with --test-fraction 0.2 to "
                          f"hold one out (a test/ folder or test rows work too){other}")
    if chosen is None:
        raise CnnlabError(f"{dataset.name} has no {split} split; try --split test")
    return chosen, dataset.name


def held_out(card: ModelCard, data: str | None, split: str) -> bool:
    """Whether the run's model never saw the images of `split` (other data counts as held out)."""
    return data is not None or split not in card.fitted_on


NOT_HELD_OUT = ("NOT held out: the saved model was fitted on these images (the linear probe is "
                "refitted on train + val), so these figures flatter it; the test split is held out")
