"""Run configs as YAML files and keyword overrides: nested sections, dotted keys, presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..base.errors import CnnlabError, suggest
from ..base.settings import build
from ..base.yamlload import load_yaml
from .data import AugmentConfig, DataConfig
from .training import TrainConfig

CONFIG_SECTIONS = {"data": DataConfig, "augment": AugmentConfig}
SECTION_SHORTHAND = {"data": "name"}  # `data: digits` means `data: {name: digits}`


def _section(name: str, values: Any) -> Any:
    if name in SECTION_SHORTHAND and isinstance(values, str):
        values = {SECTION_SHORTHAND[name]: values}
    if not isinstance(values, dict):
        raise CnnlabError(f"setting {name!r} must be a mapping")
    return build(CONFIG_SECTIONS[name], values, f"{name}.")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from nested dicts, refusing unknown keys with a suggestion and values of
    the wrong type with the type expected."""
    if not isinstance(values, dict):
        raise CnnlabError("a run config must be a mapping of settings")
    values = dict(values)
    sections = {name: _section(name, values.pop(name, None) or {}) for name in CONFIG_SECTIONS}
    config = build(TrainConfig, values)
    config.data, config.augment = sections["data"], sections["augment"]
    return config


def flat_key(name: str) -> str:
    """The dotted key of a setting given by its flat name, as the CLI flags name them:
    'image_size' -> 'data.image_size', 'epochs' -> 'epochs'."""
    if name in {f.name for f in dataclasses.fields(TrainConfig)}:
        return name
    for section, cls in CONFIG_SECTIONS.items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            return f"{section}.{name}"
    return name  # an unknown name: config_from_dict refuses it with a suggestion


PRESETS = Path(__file__).parent.parent / "presets"


def preset_names() -> list[str]:
    """Named recipes shipped with cnnlab: `--config NAME` runs one."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_config(path: str | Path) -> TrainConfig:
    """A run config from a YAML file, or the preset of that name."""
    path = Path(path)
    if not path.is_file() and str(path) in preset_names():
        path = PRESETS / f"{path}.yaml"
    if not path.is_file():
        raise CnnlabError(f"config file {path} does not exist (presets: "
                          f"{', '.join(preset_names())}){suggest(str(path), preset_names())}")
    values = load_yaml(path.read_text(encoding="utf-8"), f"config file {path}") or {}
    return config_from_dict(values)


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Set dotted keys ('data.name', 'epochs') on a copy of the config."""
    values = config.to_dict()
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (values[section] if section else values)[name] = value
    return config_from_dict(values)


def with_settings(config: TrainConfig, settings: dict[str, Any]) -> TrainConfig:
    """The config with keyword settings applied, by flag name (image_size=16) or by section
    (data={"image_size": 16}; data="digits" names the data)."""
    overrides: dict[str, Any] = {}
    for key, value in settings.items():
        if key in SECTION_SHORTHAND and isinstance(value, str):
            overrides[f"{key}.{SECTION_SHORTHAND[key]}"] = value
        elif key in CONFIG_SECTIONS and isinstance(value, dict):
            overrides.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            overrides[flat_key(key)] = value
    return apply_overrides(config, overrides)
