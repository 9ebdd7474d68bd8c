"""The layer language: a CNN written the way a CNN tutorial writes it.

    conv(32, k=3, p=same) relu maxpool(2) conv(64, k=3) relu maxpool(2) flatten dense(128) relu
    dropout(0.5) dense

Tokens are separated by spaces (commas, `->` and `|` between tokens are allowed too). A token is a
layer name with optional arguments in parentheses: positional first, then `key=value`. The last
`dense` takes no size: it gets one neuron per class. A trailing `softmax` may be written; the network
outputs logits (cross-entropy applies softmax itself) and softmax is applied at inference.

The same network in YAML is a list whose items are either token strings or one-key mappings:

    layers:
      - conv: {filters: 32, kernel: 3, padding: same}
      - relu
      - maxpool: 2
"""

from __future__ import annotations

import re
from typing import Any

from ..base.errors import CnnlabError, suggest
from .layers import ALIASES, LAYERS, Layer


def canonical_text(name: str, args: dict[str, Any]) -> str:
    """The shortest token that rebuilds this layer: defaults are left out."""
    spec = LAYERS[name]
    inverse = {long: short for short, long in spec.short.items() if len(short) == 1}
    first = spec.positional[0] if spec.positional else None
    parts = []
    for key, value in args.items():
        if value is None or (key in spec.defaults and spec.defaults[key] == value
                             and key not in spec.positional):
            continue
        if key == first:
            parts.append(_format_value(value))
        else:
            parts.append(f"{inverse.get(key, key)}={_format_value(value)}")
    return f"{name}({', '.join(parts)})" if parts else name


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_TOKEN = re.compile(
    r"\s*(?:(?P<sep>->|\||,)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_])\s*(?:\((?P<args>[^()]*)\)|(?!\())"
    r"|(?P<bad>\S+))"
)


def parse_spec(text: str) -> list[Layer]:
    """Parse the one-line form into layers, with a clear error for anything unreadable."""
    layers: list[Layer] = []
    for match in _TOKEN.finditer(text):
        if match.group("sep"):
            continue
        if match.group("bad"):
            bad = match.group("bad")
            hint = " (a parenthesis is not closed)" if "(" in bad and ")" not in bad else ""
            raise CnnlabError(
                f"cannot read {bad!r} at character {match.start('bad') + 1} of the layer "
                f"spec{hint}; write layers like conv(32, k=3) relu maxpool(2)")
        name, raw_args = match.group("name"), match.group("args")
        token_text = match.group(0).strip()
        layers.append(make_layer(name, _split_args(raw_args, token_text), len(layers) + 1,
                                 token_text))
    if not layers:
        raise CnnlabError("the layer spec is empty; example: conv(32, k=3) relu maxpool(2) "
                          "flatten dense")
    return layers


def parse_yaml_layers(items: list[Any]) -> list[Layer]:
    """Parse the YAML form: a list of token strings or one-key mappings."""
    if not isinstance(items, list) or not items:
        raise CnnlabError("'layers' must be a non-empty list, e.g. [conv: {filters: 32}, relu]")
    layers = []
    for index, item in enumerate(items, start=1):
        if isinstance(item, str):
            parsed = parse_spec(item)
            if len(parsed) != 1:
                raise CnnlabError(f"layer {index} {item!r}: one layer per list item")
            layers.append(Layer(parsed[0].name, parsed[0].args, index, item))
        elif isinstance(item, dict) and len(item) == 1:
            name, value = next(iter(item.items()))
            positional, keywords = _yaml_args(value)
            layer = make_layer(str(name), (positional, keywords), index, f"{name}: {value}")
            # checked against what was written; shown (summary, explain) in the layer language
            layers.append(Layer(layer.name, layer.args, index, canonical_text(layer.name, layer.args)))
        else:
            raise CnnlabError(f"layer {index} {item!r}: expected a name or a one-key mapping")
    return layers


def _yaml_args(value: Any) -> tuple[list[Any], dict[str, Any]]:
    if value is None:
        return [], {}
    if isinstance(value, dict):
        return [], dict(value)
    if isinstance(value, list):
        return list(value), {}
    return [value], {}


def _split_args(raw: str | None, token: str) -> tuple[list[Any], dict[str, Any]]:
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    if raw is None or not raw.strip():
        return positional, keywords
    for part in raw.split(","):
        part = part.strip()
        if not part:
            raise CnnlabError(f"{token!r}: empty argument")
        if "=" in part:
            key, _, value = part.partition("=")
            keywords[key.strip()] = _parse_value(value.strip())
        elif keywords:
            raise CnnlabError(f"{token!r}: positional argument {part!r} after a key=value one")
        else:
            positional.append(_parse_value(part))
    return positional, keywords


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def make_layer(name: str, arguments: tuple[list[Any], dict[str, Any]], position: int,
               text: str) -> Layer:
    """Resolve aliases, fill defaults and check the arguments of one layer."""
    canonical = ALIASES.get(name.lower(), name.lower())
    if canonical not in LAYERS:
        raise CnnlabError(f"layer {position} {text!r}: unknown layer {name!r}"
                          f"{suggest(name.lower(), list(LAYERS) + list(ALIASES))}; "
                          f"layers: {', '.join(LAYERS)}")
    spec = LAYERS[canonical]
    positional, keywords = arguments
    if len(positional) > len(spec.positional):
        raise CnnlabError(f"layer {position} {text!r}: {canonical} takes at most "
                          f"{len(spec.positional)} positional argument(s)")
    args = dict(spec.defaults)
    args.update(zip(spec.positional, positional, strict=False))
    for key, value in keywords.items():
        full = spec.short.get(key, key)
        if full not in spec.defaults and full not in spec.positional:
            known = list(spec.short) + list(spec.defaults) + list(spec.positional)
            raise CnnlabError(f"layer {position} {text!r}: {canonical} has no argument {key!r}"
                              f"{suggest(key, known)}")
        args[full] = value
    for key in spec.required:
        if key not in args:
            raise CnnlabError(f"layer {position} {text!r}: {canonical} needs {key}, e.g. "
                              f"{spec.help.split(':')[0]}")
    _check_values(canonical, args, position, text)
    ordered = {key: args[key] for key in (*spec.positional, *spec.defaults) if key in args}
    return Layer(canonical, ordered, position, text)


def _check_values(name: str, args: dict[str, Any], position: int, text: str) -> None:
    def fail(message: str) -> CnnlabError:
        return CnnlabError(f"layer {position} {text!r}: {message}")

    for key in ("filters", "kernel", "stride", "dilation", "groups", "size", "units"):
        value = args.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise fail(f"{key} must be a positive whole number, got {value!r}")
    padding = args.get("padding")
    if padding is not None and not (padding in ("same", "valid") or
                                    (isinstance(padding, int) and padding >= 0)):
        raise fail(f"padding must be same, valid or a whole number >= 0, got {padding!r}")
    if name == "dropout" and not (isinstance(args["p"], (int, float)) and 0 <= args["p"] < 1):
        raise fail(f"dropout probability must be in [0, 1), got {args['p']!r}")
    if name == "conv" and args["filters"] % args["groups"]:
        raise fail(f"filters ({args['filters']}) must be divisible by groups ({args['groups']})")
    if name in ("leaky_relu", "elu"):
        key = "slope" if name == "leaky_relu" else "alpha"
        if not isinstance(args[key], (int, float)) or isinstance(args[key], bool):
            raise fail(f"{key} must be a number, got {args[key]!r}")


def spec_to_text(layers: list[Layer]) -> str:
    """The canonical one-line form; parse_spec(spec_to_text(x)) rebuilds x."""
    return " ".join(canonical_text(layer.name, layer.args) for layer in layers)
