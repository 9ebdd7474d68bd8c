"""Typed files: a (frozen) dataclass read from parsed JSON by its type hints, and written back.

`read_typed(cls, values, where)` builds `cls` from a JSON object: nested dataclasses,
`tuple[X, ...]`, `list[X]`, `dict[str, X]`, `X | None`, `Path`, `Literal[...]`, ints (a bool is not
one) and finite floats (an int is one). A missing or malformed field is one CnnlabError naming the
file and the field. `to_json_dict(obj)` is its inverse. A file needs no reader of its own: its
dataclass declares what differs from the plain layout.

- `json_field(key=..., absent=..., required=..., extra=..., stored=..., within=...)`: a field
  written under another key (or a path of keys: `("architecture", "spec")`), the value older files
  that lack it stand for, a default for code that the file may not leave out, the field that keeps
  the keys no other field reads, a field that is not in the file at all, or the range its numbers
  must lie in (`within=(0, 1)` for an accuracy; `(0, None)`: no upper bound).
- `JSON_FORMAT = "cnnlab-model/1"` (class attribute): the "format" key the file must carry.
- `UNKNOWN_KEYS = "refuse"` (class attribute): a key no field reads is an error (default: ignored,
  so that a newer cnnlab's files still read).
- `from_older(values) -> values` (staticmethod): an older layout rewritten before it is read.
- `check(self, where)`: what the types cannot say (ranges, checksums, names in a table), run on
  every object read, with `where` naming it in the error.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import CnnlabError, suggest
from .fileio import read_json_file

T = TypeVar("T")
MISSING = dataclasses.MISSING
_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist = 60, 60, 8


Range = tuple[float, float | None]


def json_field(default: Any = MISSING, *, factory: Any = MISSING, key: str | tuple[str, ...] | None = None,
               absent: Any = MISSING, required: bool = False, extra: bool = False, stored: bool = True,
               within: Range | None = None, omit_none: bool = False, **options: Any) -> Any:
    """A dataclass field and how its file holds it.

    Args:
        default, factory: the field's default (dataclasses' default and default_factory).
        key: the JSON key (default: the field's name), or a path of keys into nested objects.
        absent: the value of the field where an older file lacks the key (the field itself may
            have no default).
        required: the file must have it, though code may leave it to its default.
        extra: this dict field keeps every key of the object that no other field reads.
        stored: False for a field that is not in the file (where it was read from, say).
        within: (low, high): the field's numbers (its value, or each item of a list of numbers)
            must be finite and lie in [low, high]; high None: no upper bound. None itself is no
            number: whether the field may be None its type says.
        omit_none: the key is left out of the file while the value is None (a field added
            later: the files of those that leave it None stay as they were, byte for byte).
        **options: dataclasses.field's others (repr, compare).
    """
    path = (key,) if isinstance(key, str) else key
    metadata = {"json_key": path, "absent": absent, "required": required, "extra": extra,
                "stored": stored, "within": within, "omit_none": omit_none}
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata, **options)


class _Mismatch(Exception):
    """A value of the wrong type, said by the field that holds it."""

    def __init__(self, note: str = "") -> None:
        super().__init__(note)
        self.note = note


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _stored_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("stored", True)]


def _path(field: dataclasses.Field) -> tuple[str, ...]:
    return field.metadata.get("json_key") or (field.name,)


def read_typed(cls: type[T], values: Any, where: str) -> T:
    """An instance of the dataclass `cls` from a parsed JSON object; `where` (a file, and the
    field inside it) names the object in every error."""
    if not isinstance(values, dict):
        raise CnnlabError(f"{where}: expected a JSON object, got {_kind(values)}")
    older = getattr(cls, "from_older", None)
    if older is not None:
        values = older(values)
    _check_format(cls, values, where)
    fields = _stored_fields(cls)
    _check_keys(cls, values, fields, where)
    chosen = {}
    for field in fields:
        if field.metadata.get("extra"):
            known = _known_keys(cls, fields)
            chosen[field.name] = {k: v for k, v in values.items() if k not in known}
            continue
        found, value = _read_field(values, field, _hints(cls)[field.name], where)
        if found:
            chosen[field.name] = value
    made = cls(**chosen)
    check_ranges(made, where)
    check = getattr(made, "check", None)
    if callable(check):
        check(where)
    return made


def check_ranges(obj: Any, where: str) -> None:
    """Refuse, naming the field, a number of `obj` outside the range its json_field declares
    (NaN and infinity are outside every range): what a file written by a crash, a bug or a hand
    holds, caught where it is read rather than shown as a 1e300 % accuracy. For objects made from
    other files than JSON too (metrics.csv's rows)."""
    for field in _stored_fields(type(obj)):
        bounds = field.metadata.get("within")
        if bounds is None:
            continue
        *parents, key = _path(field)
        for number in _numbers(getattr(obj, field.name)):
            if not _in_range(number, bounds):
                raise CnnlabError(f"{' '.join([where, *parents])}: the field {key!r} must be "
                                  f"{_range_text(bounds)}, got {_SHOWN.repr(number)}")


def _numbers(value: Any) -> list[Any]:
    items = value if isinstance(value, (tuple, list)) else [value]
    return [item for item in items if isinstance(item, (int, float)) and not isinstance(item, bool)]


def _in_range(number: float, bounds: Range) -> bool:
    low, high = bounds
    if isinstance(number, float) and not math.isfinite(number):  # an int is always finite
        return False
    return low <= number and (high is None or number <= high)


def _range_text(bounds: Range) -> str:
    low, high = bounds
    return f"a number from {low:g} to {high:g}" if high is not None else f"a number {low:g} or more"


def _check_format(cls: type, values: dict[str, Any], where: str) -> None:
    expected = getattr(cls, "JSON_FORMAT", None)
    if expected is None:
        return
    if values.get("format") is None:
        raise CnnlabError(f"{where}: the field 'format' is missing")
    if values["format"] != expected:
        noun = expected.partition("/")[0].removeprefix("cnnlab-")
        raise CnnlabError(f"{where}: unsupported {noun} format {_SHOWN.repr(values['format'])} "
                          f"(this cnnlab reads {expected})")


def _known_keys(cls: type, fields: list[dataclasses.Field]) -> set[str]:
    """The top-level keys the fields of `cls` read."""
    return {_path(f)[0] for f in fields} | ({"format"} if getattr(cls, "JSON_FORMAT", None) else set())


def _check_keys(cls: type, values: dict[str, Any], fields: list[dataclasses.Field], where: str) -> None:
    if getattr(cls, "UNKNOWN_KEYS", "ignore") != "refuse":
        return
    known = _known_keys(cls, fields)
    for key in values:
        if key not in known:
            raise CnnlabError(f"{where}: unknown field {_SHOWN.repr(key)}{suggest(str(key), known)}")


def _read_field(values: dict[str, Any], field: dataclasses.Field, hint: Any,
                where: str) -> tuple[bool, Any]:
    """(found, value): not found leaves the field to its default."""
    *parents, key = _path(field)
    for parent in parents:
        inner = values.get(parent)
        if inner is None:
            raise CnnlabError(f"{where}: the field {parent!r} is missing")
        if not isinstance(inner, dict):
            raise CnnlabError(f"{where}: the field {parent!r} must be a JSON object, got "
                              f"{_SHOWN.repr(inner)}")
        values, where = inner, f"{where} {parent}"
    value = values.get(key)
    if value is None:
        if _allows_none(hint):
            return True, None
        if field.metadata.get("absent", MISSING) is not MISSING:
            return True, field.metadata["absent"]
        defaulted = field.default is not MISSING or field.default_factory is not MISSING
        if defaulted and not field.metadata.get("required"):
            return False, None
        raise CnnlabError(f"{where}: the field {key!r} is missing")
    try:
        return True, _convert(value, hint, f"{where} {key}")
    except _Mismatch as mismatch:
        note = f" ({mismatch.note})" if mismatch.note else ""
        raise CnnlabError(f"{where}: the field {key!r} must be {describe(hint)}, got "
                          f"{_SHOWN.repr(value)}{note}") from None


def _allows_none(hint: Any) -> bool:
    return hint is Any or (_is_union(hint) and type(None) in typing.get_args(hint))


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def _convert(value: Any, hint: Any, where: str) -> Any:
    """`value` as `hint` says; a wrong type raises _Mismatch (a nested object: CnnlabError)."""
    if hint is Any:
        return value
    if _is_union(hint):
        return _convert_union(value, hint, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise _Mismatch()
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Mismatch()
        return read_typed(hint, value, where)
    if origin in (tuple, list):
        return _convert_sequence(value, origin, args, where)
    if origin is dict or hint is dict:
        return _convert_mapping(value, args, where)
    return _convert_scalar(value, hint)


def _convert_union(value: Any, hint: Any, where: str) -> Any:
    options = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None and len(options) < len(typing.get_args(hint)):
        return None
    for option in options[:-1]:
        try:
            return _convert(value, option, where)
        except (_Mismatch, CnnlabError):
            continue
    return _convert(value, options[-1], where)


def _convert_sequence(value: Any, origin: type, args: tuple, where: str) -> Any:
    if not isinstance(value, list):
        raise _Mismatch()
    if origin is tuple and args and args[-1] is not Ellipsis:  # a fixed length: tuple[int, int]
        if len(args) != len(value):
            raise _Mismatch(f"{len(args)} values")
        return tuple(_convert(v, a, f"{where}[{i}]")
                     for i, (v, a) in enumerate(zip(value, args, strict=True)))
    item = args[0] if args else Any
    converted = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(converted) if origin is tuple else converted


def _convert_mapping(value: Any, args: tuple, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Mismatch()
    item = args[1] if args else Any
    return {k: _convert(v, item, f"{where} {k}") for k, v in value.items()}


def _convert_scalar(value: Any, hint: Any) -> Any:
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Mismatch()
        if not math.isfinite(value):
            raise _Mismatch("numbers must be finite")
        return float(value)
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Mismatch()
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise _Mismatch()
        return Path(value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Mismatch()
    return value


def describe(hint: Any) -> str:
    """A type as an error says it: 'int', 'a list of str', 'one of 'a', 'b''."""
    if hint is Any:
        return "any value"
    if _is_union(hint):
        return " or ".join(describe(a) for a in typing.get_args(hint) if a is not type(None))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        items = [a for a in args if a is not Ellipsis] or [Any]
        return f"a list of {' and '.join(dict.fromkeys(describe(a) for a in items))}"
    if dataclasses.is_dataclass(hint) or origin is dict or hint is dict:
        return f"a JSON object of {describe(args[1])}" if len(args) == 2 and args[1] is not Any \
            else "a JSON object"
    if hint is Path:
        return "a path (str)"
    return getattr(hint, "__name__", str(hint))


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


def to_json_dict(obj: Any) -> dict[str, Any]:
    """What read_typed reads back as `obj`: its stored fields under their keys, the format first
    and the extra keys last."""
    cls = type(obj)
    values: dict[str, Any] = {}
    if getattr(cls, "JSON_FORMAT", None):
        values["format"] = cls.JSON_FORMAT
    extra: dict[str, Any] = {}
    for field in _stored_fields(cls):
        if field.metadata.get("extra"):
            extra = getattr(obj, field.name)
            continue
        if field.metadata.get("omit_none") and getattr(obj, field.name) is None:
            continue
        *parents, key = _path(field)
        target = values
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = plain(getattr(obj, field.name))
    return {**values, **extra}


def plain(value: Any) -> Any:
    """A value as JSON holds it: dataclasses as objects, tuples as lists, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_dict(value)
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def read_typed_in(cls: type[T], folder: str | Path, name: str) -> T:
    """The JSON file `name` in `folder` as a `cls` whose `folder` field says where it was read:
    what a stage's result type reads back (check.json, baselines.json)."""
    path = Path(folder) / name
    return dataclasses.replace(read_typed(cls, read_json_file(path), str(path)), folder=Path(folder))
