"""The settings several stages share, just above the base: a run's training, data and
augmentation settings (TrainConfig), the YAML files and presets they come from, and the words and
choices every verb's settings use (the device, the split, the engine). A verb's own settings live
in its stage's folder (evaluate/settings.py, ...)."""

from .data import AugmentConfig, DataConfig
from .files import apply_overrides, config_from_dict, flat_key, load_config, preset_names
from .training import TrainConfig

__all__ = ["AugmentConfig", "DataConfig", "TrainConfig", "apply_overrides", "config_from_dict",
           "flat_key", "load_config", "preset_names"]
