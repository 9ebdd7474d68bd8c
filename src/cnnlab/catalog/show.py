"""The catalog verbs on the terminal."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from ..base.show import console, print_table

if TYPE_CHECKING:
    from .run import DatasetRow, LayerRow, NetworkListing, NetworkSummary
    from .settings import DatasetsSettings, LayersSettings, ModelsSettings, SummarySettings


def show_summary(result: NetworkSummary, settings: SummarySettings) -> int:
    from ..models.summary import SUMMARY_COLUMNS, human, summary_rows

    summary = result.summary
    table = Table(title=f"{result.name} on {'x'.join(map(str, result.input_shape))} input, "
                        f"{result.classes} classes", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for column in SUMMARY_COLUMNS:
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in summary_rows(summary):
        table.add_row(*row)
    console.print(table)
    conv, dense = summary.sharing
    lines = [f"total: {summary.params:,} parameters, {human(summary.flops)} FLOPs "
             f"({human(summary.flops / 2)} multiply-adds) per image"]
    if conv:
        lines.append(f"parameter sharing: the conv layers use {conv:,} parameters; fully connected "
                     f"layers with the same input and output sizes would need {dense:,} "
                     f"({dense / conv:,.0f}x more)")
    console.print("\n".join(textwrap.fill(line, 80) for line in lines))
    return 0


def show_datasets(result: list[DatasetRow], settings: DatasetsSettings) -> int:
    rows = [[row.name, "yes" if row.present else "no", row.description, row.where]
            for row in result]
    rows.append(["PATH/", "-", "your folder: PATH/<class>/*.png, or PATH/{train,val,test}/<class>/",
                 "--data PATH"])
    rows.append(["FILE.csv", "-", "your CSV manifest: path,label[,split] rows", "--data FILE.csv"])
    print_table("datasets", ["name", "here", "description", "location"], rows)
    return 0


def show_models(result: NetworkListing, settings: ModelsSettings) -> int:
    from ..models.summary import human

    if result.timm:
        console.print(f"{len(result.timm)} timm models match {result.pattern!r} (* has ImageNet "
                      f"weights, downloaded from the Hugging Face hub on first use):")
        console.print(", ".join(f"{name}{'*' * (name in result.pretrained)}"
                                for name in result.timm))
        console.print("use one: cnnlab train --model timm:NAME [--pretrained]")
        return 0
    print_table("named networks, sized for 1x28x28 images and 10 classes",
                ["name", "description", "params", "FLOPs"],
                [[entry.name, entry.description, human(summary.params), human(summary.flops)]
                 for entry, summary in result.networks])
    console.print("layers of one: cnnlab summary NAME; your own network: cnnlab layers; timm's: "
                  "cnnlab models 'timm:*resnet*'")
    return 0


def show_layers(result: list[LayerRow], settings: LayersSettings) -> int:
    print_table("the layer language: write layers in order, separated by spaces",
                ["layer", "usage", "also written"],
                [[row.name, row.usage, ", ".join(row.aliases)] for row in result])
    console.print("example: conv(32, k=3, p=same) relu maxpool(2) conv(64, k=3) relu maxpool(2) "
                  "flatten dense(128) relu dropout(0.5) dense")
    return 0
