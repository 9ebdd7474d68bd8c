"""`cnnlab explain` on the terminal: the figures written, or the layer names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.show import console, print_table

if TYPE_CHECKING:
    from .run import Explanation
    from .settings import ExplainSettings


def show_explanation(result: Explanation, settings: ExplainSettings) -> int:
    if result.layers:
        print_table("layers (--layer takes a name or, as in cnnlab summary, a #)",
                    ["#", "layer", "name", "kind", "output"],
                    [[str(layer.position or ""), layer.text, layer.name, layer.kind,
                      "x".join(map(str, layer.output_shape))] for layer in result.layers])
        return 0
    if not settings.quiet:
        for part in result.parts or [result]:
            for path in part.figures:
                console.print(f"{part.method}: {path}")
    return 0
