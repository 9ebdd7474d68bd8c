"""Settings declared once: a dataclass field carries its default and help, and the CLI flags, the
Python keyword arguments and the YAML keys all come from it.

`option(...)` declares a field; `add_flags(parser, cls)` turns a settings class into argparse
flags; `build(cls, values)` checks names and types and makes the instance. A new flag is one field.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import reprlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import CnnlabError, suggest, unknown


class Names(Sequence[str]):
    """The names of a table (a dict) as they stand when read: choices that take in an entry
    registered after the settings class that offers them was made."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self._table = table

    def __getitem__(self, index: Any) -> Any:
        return tuple(self._table)[index]

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table


def option(default: Any = None, help: str = "", *, flag: str | None = None,
           choices: Sequence[str] | None = None, kind: str | None = None,
           minimum: float | None = None, maximum: float | None = None, below: float | None = None,
           above: float | None = None, factory: Any = None, cli: bool = True,
           metavar: str | None = None, bare: Any = None) -> Any:
    """A settings field.

    Args:
        default: the value when nothing sets it.
        help: the CLI help, also the documentation of the Python keyword.
        flag: the CLI flag when it is not the field's name with dashes; for a boolean that is on by
            default, the flag that turns it off (default --no-NAME).
        choices: the accepted values of a string setting (a `Names` view where they are a
            table's entries); `kind` names them in the error for
            another value ("unknown attack method 'pgdd' (did you mean 'pgd'?)").
        minimum, maximum: the smallest and largest value a number may take; `above` and `below`:
            bounds it must stay strictly beyond (lr > 0, label smoothing < 1). Numbers must also be
            finite.
        factory: for a nested settings section, its class.
        cli: False for settings with no flag of their own.
        metavar: what the flag takes, in --help (default N, X or NAME by the field's type).
        bare: the value of the flag given without one (`--mlflow` alone); None: a value is needed.
    """
    choices = choices if isinstance(choices, Names) else tuple(choices) if choices else None
    metadata = {"help": help, "flag": flag, "choices": choices,
                "kind": kind, "cli": cli, "minimum": minimum, "maximum": maximum, "below": below,
                "above": above, "metavar": metavar, "bare": bare}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed): int | None -> (int, True)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if len(args) == 1 else object
        return base, True
    return hint, False


def _flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _add_switches(parser: argparse.ArgumentParser, field: dataclasses.Field, dest: str,
                  nullable: bool) -> None:
    """Booleans: --NAME turns on one that is off; --no-NAME (or its own flag) turns off one that
    is on; an unset (None) one gets both."""
    on, off = "--" + field.name.replace("_", "-"), field.metadata.get("flag")
    text = field.metadata["help"]
    if nullable or field.default is False:
        parser.add_argument(on, dest=dest, action="store_const", const=True, help=text)
    if nullable or field.default is True:
        off = off or "--no-" + field.name.replace("_", "-")
        parser.add_argument(off, dest=dest, action="store_const", const=False,
                            help=f"the opposite of {on}" if nullable else f"turn off: {text}")


def _help(field: dataclasses.Field) -> str:
    text = field.metadata["help"]
    if field.default not in (None, dataclasses.MISSING) and "default" not in text:
        text += f" (default {field.default})"
    return text


def _metavar(field: dataclasses.Field, base: Any) -> str:
    """What the flag takes, short: N for a count, X for a number, NAME for text."""
    if field.metadata.get("metavar"):
        return field.metadata["metavar"]
    if field.metadata.get("choices"):
        return "{" + ",".join(field.metadata["choices"]) + "}"
    return {int: "N", float: "X"}.get(base, "NAME")


def add_flags(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "") -> None:
    """One flag per field of `cls`, under the --help heading its class's HELP_GROUPS give it
    (heading -> field names, in order); a nested section's flags have dest 'section.name'."""
    hints = _hints(cls)
    headings = getattr(cls, "HELP_GROUPS", {})
    groups = {name: parser.add_argument_group(name) for name in headings}
    group_of = {field: groups[name] for name, fields in headings.items() for field in fields}
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True):
            continue
        dest = prefix + field.name
        target = group_of.get(field.name, parser)
        if dataclasses.is_dataclass(hints[field.name]):
            add_flags(target, hints[field.name], prefix=dest + ".")  # type: ignore[arg-type]
            continue
        base, nullable = _base_type(hints[field.name])
        if base is bool:
            _add_switches(target, field, dest, nullable)
            continue
        # Choices are checked by `build`, whose error says "did you mean".
        optional = {"nargs": "?", "const": field.metadata["bare"]} \
            if field.metadata.get("bare") is not None else {}
        target.add_argument(_flag_name(field), dest=dest, type=base if base in (int, float) else str,
                            metavar=_metavar(field, base), help=_help(field), **optional)


def values_from(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags given on the command line that belong to fields of `cls` (top level only); a flag
    not given is None here, and its field keeps its default."""
    names = {field.name for field in dataclasses.fields(cls)}
    return {key: value for key, value in vars(args).items() if key in names and value is not None}


def _check_type(name: str, value: Any, hint: Any, where: str) -> Any:
    base, nullable = _base_type(hint)
    if value is None and nullable:
        return value
    if base is float and isinstance(value, str):
        try:  # YAML 1.1 reads 5e-3 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is str and isinstance(value, os.PathLike):
        return os.fspath(value)
    expected = {int: "a whole number", float: "a number", str: "a string",
                bool: "true or false"}.get(base)
    if expected is None or (isinstance(value, base) and not (base is int and isinstance(value, bool))):
        return value
    # reprlib: a value from a YAML file may be a list of lists as long as the file allows
    raise CnnlabError(f"setting {where}{name} must be {expected}, got {reprlib.repr(value)}")


# Whole numbers reach torch and NumPy as 64-bit integers (seeds, counts): larger ones overflow there.
_LARGEST_INT = 2**63 - 1


def _check_range(name: str, value: Any, field: dataclasses.Field) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if isinstance(value, int) and abs(value) > _LARGEST_INT:
        flag = field.metadata.get("flag") or "--" + name.replace("_", "-")
        raise CnnlabError(f"{flag} must be a whole number of at most 19 digits "
                          f"(below 2**63), got one of {value.bit_length()} bits")
    low, high, below, above = (field.metadata.get(k)
                               for k in ("minimum", "maximum", "below", "above"))
    wanted = []
    if above is not None:
        wanted.append(f"> {above:g}")
    if low is not None:
        wanted.append(f">= {low:g}")
    if high is not None:
        wanted.append(f"<= {high:g}")
    if below is not None:
        wanted.append(f"< {below:g}")
    bad = (not math.isfinite(value) or (low is not None and value < low) or
           (high is not None and value > high) or (below is not None and value >= below) or
           (above is not None and value <= above))
    if bad:
        flag = field.metadata.get("flag") or "--" + name.replace("_", "-")
        if low is not None and wanted == [f">= {low:g}"]:
            raise CnnlabError(f"{flag} must be at least {low:g}, got {value!r}")
        rule = " and ".join(wanted) if wanted else "finite"
        raise CnnlabError(f"{flag} must be a number {rule}, got {value!r}")


def build(cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """An instance of the settings class `cls` from a mapping: an unknown name is refused with a
    did-you-mean, a value of the wrong type with its expected type."""
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    checked = {}
    for key, value in values.items():
        if key not in fields:
            raise CnnlabError(f"unknown setting {where}{key!r}{suggest(key, fields)}")
        checked[key] = _check_type(key, value, hints[key], where)
        _check_range(key, checked[key], fields[key])
        choices = fields[key].metadata.get("choices")
        if choices and checked[key] is not None and checked[key] not in choices:
            raise unknown(fields[key].metadata.get("kind") or f"{where}{key}", checked[key], choices)
    return cls(**checked)


def resolve(cls: type, settings: Any, options: Mapping[str, Any]) -> Any:
    """Library functions take `settings` (an instance, or None for the defaults) and keyword
    overrides: one call that merges and checks them."""
    base = dataclasses.asdict(settings) if settings is not None else {}
    return build(cls, {**base, **options})
