"""Recipes: the settings that depend on what is trained, filled in where the user left them unset.

Three kinds of training want different defaults:
- scratch: a small CNN learns everything (the default recipe, tuned on Fashion-MNIST);
- fine-tune: an ImageNet-pretrained backbone adapts to a small photo set (tuned on flowers12);
- probe: a frozen pretrained backbone, whose head is fitted to convergence on cached features.

A setting the user gave (flag, YAML or Python) always wins. The run's config.yaml records the
settings after this step, so `--config RUN/config.yaml` reproduces the run without guessing.
"""

from __future__ import annotations

import copy
from typing import Any

from ..config import TrainConfig
from ..config.common import DEFAULT_INTERPOLATION
from ..config.training_text import FINE_TUNE_LR, RECIPES
from ..data.registry import photo_shape
from ..models.pretrained import TIMM_PREFIX, pretrained_input, stages_down_to
from ..run.folder import read_card

SCRATCH_MODEL = "fast"
PHOTO_MODEL = "timm:efficientnet_lite0"
PHOTO_MIN_SIDE = 64  # RGB images this large are photos that ImageNet features suit

# Fine-tuning trains on crops of 6/7 of the input side (192 of 224) and tests on the whole input:
# a network trained on random resized crops is best tested at about 1.15x its training resolution
# (Touvron et al., 2019, "Fixing the train-test resolution discrepancy"; flowers12 in BENCHMARKS.md).
FINE_TUNE_CROP = 6 / 7
# Fine-tuning keeps the stem and the stages at 1/8 of the input side or finer as ImageNet trained
# them: their features are the most generic (edges, textures), and with no gradients through them
# a step costs half as much, their many pixels being where the backward pass spends most
# (EfficientNet-Lite0 on flowers12: 4 epochs reach 98.33% with them kept, BENCHMARKS.md).
FINE_TUNE_KEPT_REDUCTION = 8


def choose_model(config: TrainConfig) -> tuple[TrainConfig, str | None]:
    """Fill in the model: a folder of RGB photos fine-tunes the pretrained EfficientNet-Lite0,
    anything else (and built-in datasets) trains the small CNN. Returns the config and, when the
    choice is not the plain default, one line that says so."""
    if config.model is not None:
        return config, None
    chosen = copy.deepcopy(config)
    if config.init:
        card = read_card(config.init)
        chosen.model, chosen.pretrained = card.architecture, card.pretrained
        return chosen, f"--init {config.init}: its network, {card.name}"
    if config.pretrained:
        chosen.model = PHOTO_MODEL
        return chosen, f"--pretrained without --model: using {PHOTO_MODEL}"
    shape = photo_shape(config.data)
    if shape is None or shape[0] != 3 or min(shape[1:]) < PHOTO_MIN_SIDE:
        chosen.model = SCRATCH_MODEL
        return chosen, None
    chosen.model, chosen.pretrained = PHOTO_MODEL, True
    found = (f"{config.data.name} holds RGB photos (the smallest sampled is {shape[2]}x{shape[1]})")
    if config.freeze == "backbone":
        return chosen, (f"{found}: a linear probe on the ImageNet-pretrained EfficientNet-Lite0's "
                        f"features ({PHOTO_MODEL} --pretrained --freeze backbone)")
    return chosen, (f"{found}: fine-tuning the ImageNet-pretrained EfficientNet-Lite0 "
                    f"({PHOTO_MODEL} --pretrained). Choose otherwise with --model (e.g. --model "
                    f"{SCRATCH_MODEL} to train a small CNN from scratch) or --freeze backbone (a "
                    f"linear probe on the pretrained features, faster)")


def recipe_name(config: TrainConfig) -> str:
    if not config.pretrained:
        return "scratch"
    return "probe" if config.freeze == "backbone" else "fine-tune"


def apply_recipe(config: TrainConfig) -> TrainConfig:
    """Every unset (None) setting that a recipe decides, from the recipe that fits the config."""
    name = recipe_name(config)
    values: dict[str, Any] = {**RECIPES[name], "data.interpolation": DEFAULT_INTERPOLATION}
    if name == "fine-tune":
        values["lr"] = FINE_TUNE_LR.get(config.optimizer)
        side = config.data.image_size
        values["augment.crop_size"] = round(side * FINE_TUNE_CROP / 8) * 8 if side else None
        values["freeze_stages"] = (stages_down_to(config.model.removeprefix(TIMM_PREFIX),
                                                  FINE_TUNE_KEPT_REDUCTION)
                                   if config.model.startswith(TIMM_PREFIX) else 0)
    resolved = copy.deepcopy(config)
    for key, value in values.items():
        section, _, field = key.rpartition(".")
        target = getattr(resolved, section) if section else resolved
        if getattr(target, field) is None:
            setattr(target, field, value)
    return resolved


def resolve(config: TrainConfig) -> tuple[TrainConfig, str | None]:
    """The model, its input and the recipe's settings, in that order (each needs the one before)."""
    config, message = choose_model(config)
    return apply_recipe(pretrained_input(config)), message
