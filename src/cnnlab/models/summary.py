"""Per-layer cost of a network: shapes, parameters, FLOPs, receptive field, parameter sharing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .build import BuiltLayer, build_network
from .registry import resolve_layers


@dataclass
class Summary:
    name: str
    input_shape: tuple[int, ...]
    layers: list[BuiltLayer]

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
        convs = [layer for layer in self.layers if layer.layer.name in ("conv", "resblock")]
        return sum(layer.params for layer in convs), sum(layer.dense_params for layer in convs)


def summarize(model: str, input_shape: Sequence[int], num_classes: int) -> Summary:
    name, layers = resolve_layers(model)
    _, built = build_network(layers, tuple(input_shape), num_classes)
    return Summary(name, tuple(input_shape), built)


def human(number: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= size:
            return f"{number / size:.3g}{unit}"
    return f"{number:g}"


def summary_rows(summary: Summary) -> list[list[str]]:
    rows = []
    for built in summary.layers:
        rows.append([
            str(built.layer.position),
            built.layer.text,
            "x".join(map(str, built.out_shape)),
            f"{built.params:,}",
            human(built.flops) if built.flops else "-",
            f"{built.receptive_field}x{built.receptive_field}" if built.receptive_field else "-",
            f"{built.dense_params:,}" if built.layer.name in ("conv", "resblock") else "-",
        ])
    return rows


SUMMARY_COLUMNS = ["#", "layer", "output (CxHxW)", "params", "FLOPs", "receptive field",
                   "params if fully connected"]
