"""The search space: which training settings a sweep tries, written short and checked at once.

One part per setting, separated by spaces (the `--search` flag), or a `search:` mapping in a YAML
config with the part after `=` as its value (or a list of choices):

    lr=1e-4..3e-2:log        a float range, sampled on a log scale
    label_smoothing=0..0.2   a float range, uniform
    epochs=3..10             an integer range (the setting is a whole number)
    crop_padding=0..4:step=2 a range on a grid
    batch_size=32|64|128     choices (numbers, true/false and names: model=fast|lenet5)

Each part is checked against the setting it names (its type and bounds, as a flag would be), so a
sweep never starts with a space it cannot run. Nothing here loads Optuna, nor torch
unless the space searches the network.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..base.errors import CnnlabError, suggest
from ..base.yamlload import load_yaml
from ..config import TrainConfig, apply_overrides, config_from_dict, load_config
from ..config.files import CONFIG_SECTIONS

GRAMMAR = "NAME=LOW..HIGH[:log|:step=S] or NAME=A|B|C"
EXAMPLE = "lr=1e-4..3e-2:log batch_size=32|64|128 label_smoothing=0..0.2"
# Where a trial goes, what it runs on and what it logs to are the sweep's, not a setting to try.
NOT_SEARCHED = frozenset({"out", "device", "threads", "amp", "channels_last", "report", "log",
                          "mlflow", "init", "name", "exclude", "exclude_sha256", "workers",
                          "stream", "strict"})


@dataclass(frozen=True)
class SearchParam:
    """One setting searched: a range (low..high, on a log scale or a grid) or choices."""

    name: str  # the setting's flat name, as the flag has it; also the Optuna parameter's name
    key: str  # its dotted key in the config ('data.image_size')
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This setting's value for an Optuna trial."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def text(self) -> str:
        """The part after `=`, as the grammar writes it."""
        if self.choices:
            return "|".join(_show(choice) for choice in self.choices)
        suffix = ":log" if self.log else (f":step={_show(self.step)}" if self.step else "")
        return f"{_show(self.low)}..{_show(self.high)}{suffix}"


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[SearchParam, ...]

    def names(self) -> list[str]:
        return [param.name for param in self.params]

    def to_dict(self) -> dict[str, str]:
        """name -> its part in the grammar: what a YAML `search:` mapping holds."""
        return {param.name: param.text() for param in self.params}

    def overrides(self, values: dict[str, Any]) -> dict[str, Any]:
        """A trial's values by dotted key, for apply_overrides."""
        return {param.key: values[param.name] for param in self.params if param.name in values}


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return yaml.safe_dump(value).split("\n")[0]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if abs(value) < 1e4 else f"{value:g}"
    return str(value)


def searchable() -> dict[str, tuple[str, Any]]:
    """Every setting a search may name: flat name -> (dotted key, type hint)."""
    found = {}
    for prefix, cls in (("", TrainConfig), *((f"{s}.", c) for s, c in CONFIG_SECTIONS.items())):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name not in NOT_SEARCHED and field.name not in CONFIG_SECTIONS:
                found[field.name] = (prefix + field.name, hints[field.name])
    return found


def _base(hint: Any) -> type:
    """int | None -> int; str | int | None -> str (a setting of mixed types takes choices only)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0] if len(args) == 1 else str


def parse_search(text: str | dict[str, Any] | None, base: TrainConfig | None = None) -> SearchSpace:
    """The space from `--search` text or a YAML mapping, every part checked against `base`.

    Raises:
        CnnlabError: one line naming the part at fault.
    """
    base = base or TrainConfig()
    if isinstance(text, dict):
        parts = [(str(name), value, f"search: {name}") for name, value in text.items()]
    elif isinstance(text, str):
        parts = [(*_split(part), f"--search part {part!r}") for part in text.split()]
    else:
        raise CnnlabError(f"the search must be {GRAMMAR} parts or a search: mapping, got {text!r}")
    if not parts:
        raise CnnlabError(f"the search is empty: give {GRAMMAR} parts, e.g. --search \"{EXAMPLE}\"")
    params: list[SearchParam] = []
    for name, value, where in parts:
        param = _param(name, value, where, base)
        if param.name in {p.name for p in params}:
            raise CnnlabError(f"{where}: {param.name} is searched twice; name each setting once")
        params.append(param)
    return SearchSpace(tuple(params))


def _split(part: str) -> tuple[str, str]:
    name, equals, value = part.partition("=")
    if not equals or not name or not value:
        raise CnnlabError(f"--search part {part!r}: write {GRAMMAR}, e.g. {EXAMPLE}")
    return name, value


def _param(name: str, value: Any, where: str, base: TrainConfig) -> SearchParam:
    settings = searchable()
    flat = name.strip().lstrip("-").replace("-", "_").rpartition(".")[2]
    if flat not in settings:
        hint = "" if flat in NOT_SEARCHED else suggest(flat, settings)
        why = "is set by the sweep, not searched" if flat in NOT_SEARCHED else "is not a setting"
        raise CnnlabError(f"{where}: {name!r} {why}{hint}; `cnnlab train --help` lists the settings")
    key, hint = settings[flat]
    kind = _base(hint)
    if isinstance(value, list | tuple):
        param = _choices(flat, key, [_check_type(v, where) for v in value], where)
    elif isinstance(value, str) and ".." in value:
        param = _range(flat, key, kind, value, where)
    elif isinstance(value, str) and "|" in value:
        param = _choices(flat, key, [_scalar(v) for v in value.split("|")], where)
    else:
        raise CnnlabError(f"{where}: give a range LOW..HIGH or two or more choices A|B, got {value!r} "
                          f"(a single value is a flag: --{flat.replace('_', '-')})")
    _check_values(param, base, where)
    return param


def _scalar(text: str) -> Any:
    """'64' -> 64, '1e-3' -> 0.001 (YAML 1.1 would keep it text), 'true' -> True, 'fast' -> 'fast'."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return load_yaml(text, f"the choice {text[:40]!r}") if text else text


def _check_type(value: Any, where: str) -> Any:
    if not isinstance(value, str | int | float | bool) and value is not None:
        raise CnnlabError(f"{where}: a choice must be a number, true/false or a name, got {value!r}")
    return value


def _choices(name: str, key: str, values: list[Any], where: str) -> SearchParam:
    if len(values) < 2:
        raise CnnlabError(f"{where}: give two or more choices (A|B), or set the one value with its flag")
    if len(set(map(repr, values))) < len(values):
        raise CnnlabError(f"{where}: a choice is given twice")
    return SearchParam(name, key, choices=tuple(values))


def _number(text: str, integer: bool, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (integer and not value.is_integer()):
        wanted = "whole numbers" if integer else "numbers"
        raise CnnlabError(f"{where}: the range's ends and step must be {wanted}, got {text!r}")
    return int(value) if integer else value


def _range(name: str, key: str, kind: type, value: str, where: str) -> SearchParam:
    if kind not in (int, float):
        raise CnnlabError(f"{where}: {name} is not a number; give choices A|B|C instead of a range")
    span, _, scale = value.partition(":")
    low_text, _, high_text = span.partition("..")
    integer = kind is int
    low, high = _number(low_text, integer, where), _number(high_text, integer, where)
    if low >= high:
        raise CnnlabError(f"{where}: the range's low end must be below its high end")
    log, step = scale == "log", None
    if scale.startswith("step="):
        step = _number(scale.removeprefix("step="), integer, where)
        if step <= 0 or step > high - low:
            raise CnnlabError(f"{where}: the step must be above 0 and at most the range's width")
    elif scale not in ("", "log"):
        raise CnnlabError(f"{where}: after the range comes :log or :step=S, got {scale!r}")
    if log and low <= 0:
        raise CnnlabError(f"{where}: a log range must start above 0")
    return SearchParam(name, key, low, high, log=log, step=step, integer=integer)


def _check_values(param: SearchParam, base: TrainConfig, where: str) -> None:
    """Each end or choice as the setting's own check sees it (type, bounds, known names), and each
    network named as train would look it up: a name no trial could train is said before the
    study starts, not when a trial draws it."""
    values = param.choices or (param.low, param.high)
    for value in values:
        try:
            apply_overrides(base, {param.key: value})
            if param.key == "model" and isinstance(value, str):
                _check_network(value)
        except CnnlabError as error:
            raise CnnlabError(f"{where}: {error}") from None


def _check_network(name: str) -> None:
    """A named network, layer spec or YAML file (their layers parsed), or a timm name timm has;
    torch loads here, and only for a space that searches the network."""
    from ..models.pretrained import TIMM_PREFIX, architecture
    from ..models.registry import resolve_layers

    if not name.startswith(TIMM_PREFIX):
        resolve_layers(name)
        return
    import timm

    wanted = name.removeprefix(TIMM_PREFIX)
    known = set(timm.list_models()) | set(timm.list_models(pretrained=True))
    if architecture(wanted) not in known:
        raise CnnlabError(f"timm has no model {wanted!r}{suggest(wanted, known)}")


def load_tune_config(path: str | Path) -> tuple[TrainConfig, SearchSpace | None]:
    """A training config from YAML (or a preset) with an optional `search:` mapping or string."""
    if not Path(path).is_file():
        return load_config(path), None  # a preset, or load_config's error for a missing file
    values = load_yaml(Path(path).read_text(encoding="utf-8"), f"config file {path}") or {}
    if not isinstance(values, dict):
        raise CnnlabError(f"config file {path} must be a mapping of settings")
    search = values.pop("search", None)
    config = config_from_dict(values)
    return config, parse_search(search, config) if search is not None else None

