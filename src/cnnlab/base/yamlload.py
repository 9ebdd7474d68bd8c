"""YAML from a user's file, with its size after anchors and aliases are expanded bounded.

An alias (*name) repeats the node its anchor (&name) marks, so a few lines of nested aliases
("billion laughs") stand for billions of values. The parser shares one object among the repeats,
but whatever walks the values afterwards (a type check's message, a copy, writing config.yaml)
expands them all. The document is counted as a graph of nodes first, each shared node once.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from .errors import CnnlabError

MAX_VALUES = 1_000_000  # a settings file has hundreds; a list of a million names is still fine
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where it is built in


def load_yaml(text: str, where: str) -> Any:
    """The data of a YAML document (None for an empty one), refused in one line when it is not
    valid YAML or stands for more than MAX_VALUES values once its aliases are expanded."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node) > MAX_VALUES:
            raise CnnlabError(f"{where} stands for more than {MAX_VALUES:,} values once its YAML "
                              f"aliases (*name) are expanded; write the values out instead")
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as error:
        raise CnnlabError(f"{where} is not valid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise CnnlabError(f"{where} nests its values too deeply to read") from None
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _expanded_size(root: yaml.Node) -> float:
    """How many values the document holds with every alias expanded, counting each shared node
    once (so the count takes time in proportion to the file); a node inside itself counts as
    infinitely many. Iterative: a deeply nested file must not exhaust Python's stack."""
    sizes: dict[int, float] = {}
    stack = [(root, False)]
    while stack:
        node, counted = stack.pop()
        if counted:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
        elif id(node) not in sizes:
            sizes[id(node)] = math.inf  # until its children are counted: found again, it is a loop
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return sizes[id(root)]
