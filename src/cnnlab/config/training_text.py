"""The recipes: the training settings that depend on what is trained, and the help text that
says them."""

from __future__ import annotations

from typing import Any

# The recipes: the settings that depend on what is trained, filled in by train/recipes.py where the
# user left them unset. Declared here, beside the fields, so that each field's help says them from
# this one table. Keys in dotted form, as config overrides take them; the measurements behind the
# values are in BENCHMARKS.md.
RECIPES: dict[str, dict[str, Any]] = {
    "scratch": {"epochs": 15, "batch_size": 128, "ema": 0.99, "tta": True, "backbone_lr": 1.0,
                "augment.resized_crop": 0.0, "freeze_stages": 0},
    "probe": {"epochs": 15, "batch_size": 128, "ema": 0.0, "tta": False, "backbone_lr": 1.0,
              "augment.resized_crop": 0.0, "freeze_stages": 0},
    "fine-tune": {"epochs": 4, "batch_size": 32, "ema": 0.0, "tta": False, "backbone_lr": 0.2,
                  "augment.resized_crop": 0.35},  # freeze_stages: by network, train/recipes.py
}
DEFAULT_LR = {"sgd": 0.1, "adam": 5e-3, "adamw": 5e-3}  # from scratch, by optimizer
FINE_TUNE_LR = {"adam": 5e-4, "adamw": 5e-4, "sgd": 0.01}


def by_recipe(key: str) -> str:
    """'default: 15 from scratch, 15 probe, 6 fine-tune', from RECIPES."""
    def shown(value: Any) -> str:
        return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"

    return "default: " + ", ".join(f"{shown(recipe[key])} {name}" for name, recipe in RECIPES.items())


def lr_by_recipe() -> str:
    def rates(table: dict[str, float]) -> str:
        return f"{table['adamw']:g} adam/adamw, {table['sgd']:g} sgd"

    return f"default: {rates(DEFAULT_LR)} from scratch; {rates(FINE_TUNE_LR)} fine-tuning"

