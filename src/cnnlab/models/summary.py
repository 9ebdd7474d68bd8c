"""Per-layer cost of a network: shapes, parameters, FLOPs, receptive field, parameter sharing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .build import BuiltLayer, build_network
from .pretrained import TIMM_PREFIX
from .registry import create_model, resolve_layers


@dataclass(frozen=True)
class SummaryRow:
    """One layer (or, for a timm model, one top-level block) of the summary table."""

    position: int
    text: str
    out_shape: tuple[int, ...]
    params: int
    flops: int  # as torch.utils.flop_counter counts them: 2 per multiply-add
    receptive_field: int | None = None  # input pixels one output value sees; None if unknown
    dense_params: int | None = None  # conv layers: what a dense layer of the same sizes would need


@dataclass
class Summary:
    name: str
    input_shape: tuple[int, ...]
    layers: list[SummaryRow]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def flops(self) -> int:
        """FLOPs for one image, as torch.utils.flop_counter counts them (2 per multiply-add)."""
        return sum(layer.flops for layer in self.layers)

    @property
    def sharing(self) -> tuple[int, int]:
        """(params of the conv layers, params dense layers of the same sizes would need)."""
        convs = [layer for layer in self.layers if layer.dense_params is not None]
        return sum(layer.params for layer in convs), sum(layer.dense_params for layer in convs)


def _row(built: BuiltLayer) -> SummaryRow:
    return SummaryRow(built.layer.position, built.layer.text, built.out_shape, built.params,
                      built.flops, built.receptive_field, built.dense_params)


def _blocks(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """A timm model's top-level modules, with sequences of blocks listed block by block."""
    blocks = []
    for name, child in network.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 1:
            blocks.extend((f"{name}.{index}", block) for index, block in enumerate(child))
        else:
            blocks.append((name, child))
    return blocks


def _summarize_timm(model: str, input_shape: tuple[int, ...], num_classes: int) -> Summary:
    classifier, _, _ = create_model(model, input_shape=input_shape, num_classes=num_classes)
    return summarize_model(model, classifier, input_shape)


def summarize_model(name: str, classifier: nn.Module, input_shape: tuple[int, ...]) -> Summary:
    """Per block of a built classifier (timm's, or any whose shapes its name no longer says, as a
    pruned one's): output shape from forward hooks, FLOPs from PyTorch's own FLOP counter."""
    blocks = _blocks(classifier.network)
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_module, _inputs, output) -> None:  # returns None: the output stays as it is
            shapes[name] = tuple(output.shape[1:])
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in blocks]
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            classifier.eval()(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    flops = counter.get_flop_counts()
    rows = [SummaryRow(position, f"{name} ({type(module).__name__})", shapes.get(name, ()),
                       sum(p.numel() for p in module.parameters()),
                       int(sum(flops.get(f"Classifier.network.{name}", {}).values())))
            for position, (name, module) in enumerate(blocks, start=1)]
    return Summary(name, input_shape, rows)


def summarize(model: str, input_shape: Sequence[int], num_classes: int) -> Summary:
    if model.startswith(TIMM_PREFIX):
        return _summarize_timm(model, tuple(input_shape), num_classes)
    name, layers = resolve_layers(model)
    _, built = build_network(layers, tuple(input_shape), num_classes)
    return Summary(name, tuple(input_shape), [_row(layer) for layer in built])


def human(number: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= size:
            return f"{number / size:.3g}{unit}"
    return f"{number:g}"


def summary_rows(summary: Summary) -> list[list[str]]:
    rows = []
    for row in summary.layers:
        rows.append([
            str(row.position),
            row.text,
            "x".join(map(str, row.out_shape)),
            f"{row.params:,}",
            human(row.flops) if row.flops else "-",
            f"{row.receptive_field}x{row.receptive_field}" if row.receptive_field else "-",
            human(row.dense_params) if row.dense_params is not None else "-",
        ])
    return rows


# Two-line headers keep the table within 80 columns for the layers of the named networks.
SUMMARY_COLUMNS = ["#", "layer", "output\n(CxHxW)", "params", "FLOPs", "receptive\nfield",
                   "params if\ndense"]
