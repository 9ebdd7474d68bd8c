"""`cnnlab explain` on the terminal: the figures written, or the layer names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.show import console, print_table

if TYPE_CHECKING:
    from .record import DepthFinding, HierarchyRecord
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
            if part.hierarchy is not None:
                _show_hierarchy(part.hierarchy)
            for path in part.figures:
                console.print(f"{part.method}: {path}")
    return 0


def _show_hierarchy(record: HierarchyRecord) -> None:
    """The probe's accuracy per depth (the curve of depth-probe.png), then what each shown depth
    sees: its receptive field and the images its strongest channel fires on."""
    networks = list(dict.fromkeys(point.network for point in record.probe))
    by_layer: dict[str, dict[str, str]] = {}
    for point in record.probe:
        by_layer.setdefault(point.layer, {})[point.network] = f"{point.val_accuracy:.1%}"
    print_table(f"{record.run}: linear probe on each depth's pooled features (validation "
                f"accuracy)", ["layer", *networks],
                [[layer.removeprefix("network."), *(row.get(n, "-") for n in networks)]
                 for layer, row in by_layer.items()])
    print_table(f"what each depth fires on ({record.images} training images)",
                ["depth", "layer", "receptive field", "strongest channel", "its top images",
                 "picture"],
                [[str(depth.depth), depth.layer.removeprefix("network."),
                  f"{depth.receptive_field} px",
                  str(depth.channels[0].channel) if depth.channels else "-",
                  ", ".join(depth.channels[0].top_images[:3]) if depth.channels else "-",
                  _pictured(depth)]
                 for depth in record.depths])


def _pictured(depth: DepthFinding) -> str:
    judged = [channel.picture for channel in depth.channels if channel.picture is not None]
    readable = sum(picture == "readable" for picture in judged)
    return f"{readable} of {len(judged)} readable" if judged else "-"
