"""An export folder is loaded as a whole or not at all: every ONNX file in it has the SHA-256
export.json recorded when it was written, and the graph takes and gives what export.json says.

A folder whose files were copied in one by one, or a re-export stopped half-way by an older
cnnlab, would otherwise predict with one model and name the classes of another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base.errors import CnnlabError
from ..base.fileio import sha256_of
from .contract import EXPORT_MANIFEST, ExportManifest

_REMEDY = "copy an export folder whole, or export the run again"


def verify_files(folder: Path, manifest: ExportManifest, model_file: Path) -> None:
    """`model_file` is one of the files export.json lists, and each listed file matches its
    recorded SHA-256. An export written before checksums were recorded has none to match."""
    manifest_path = folder / EXPORT_MANIFEST
    if model_file.name not in manifest.files.values():
        raise CnnlabError(f"{model_file} is not one of the files {manifest_path} describes "
                          f"({', '.join(manifest.files.values())}): {_REMEDY}")
    for name in manifest.files.values():
        expected = manifest.sha256.get(name)
        if expected is not None:
            _verify(folder / name, expected, manifest_path)


def _verify(path: Path, expected: Any, manifest_path: Path) -> None:
    if not path.is_file():
        raise CnnlabError(f"{path} is missing, and {manifest_path} lists it: {_REMEDY}")
    if sha256_of(path) != expected:
        raise CnnlabError(f"{path} is damaged or not the file {manifest_path} describes (its "
                          f"SHA-256 differs from the one recorded there); nothing was loaded: "
                          f"{_REMEDY}")


def check_signature(session: Any, manifest: ExportManifest, model_file: Path) -> None:
    """The graph in an ONNX Runtime `session` takes (batch, C, H, W) float pixels named as
    export.json says and gives (batch, classes) named as it says; every difference in one line."""
    problems = [*_input_problems(session.get_inputs(), manifest),
                *_output_problems(session.get_outputs(), manifest)]
    if problems:
        raise CnnlabError(f"{model_file} does not match {model_file.parent / EXPORT_MANIFEST}: "
                          f"{'; '.join(problems)}; {_REMEDY}")


def _the_one(ends: list[Any], kind: str, name: str) -> tuple[Any, list[str]]:
    """The graph's one input or output (`kind`) and what is wrong with its count or name."""
    if len(ends) != 1:
        return None, [f"its graph has {len(ends)} {kind}s, not one"]
    if ends[0].name != name:
        return ends[0], [f"its {kind} is named {ends[0].name!r}, {EXPORT_MANIFEST} says {name!r}"]
    return ends[0], []


def _input_problems(inputs: list[Any], manifest: ExportManifest) -> list[str]:
    graph, problems = _the_one(inputs, "input", manifest.input_name)
    if graph is None:
        return problems
    if graph.type != "tensor(float)":
        problems.append(f"its input is {graph.type}, not float32 pixels")
    expected = ["batch", *manifest.card.input.shape]
    if not _agree(graph.shape, expected):
        problems.append(f"it takes {_shown(graph.shape)} pixels, {EXPORT_MANIFEST} says "
                        f"{_shown(expected)}")
    return problems


def _output_problems(outputs: list[Any], manifest: ExportManifest) -> list[str]:
    graph, problems = _the_one(outputs, "output", manifest.output_name)
    if graph is None:
        return problems
    expected = ["batch", manifest.card.num_classes]
    if _agree(graph.shape, expected):
        return problems
    if len(graph.shape) == 2 and _agree(graph.shape[:1], ["batch"]):
        problems.append(f"it outputs {graph.shape[1]} classes, {EXPORT_MANIFEST} names "
                        f"{manifest.card.num_classes}")
    else:
        problems.append(f"it outputs {_shown(graph.shape)}, {EXPORT_MANIFEST} says "
                        f"{_shown(expected)}")
    return problems


def _agree(shape: list[Any], expected: list[Any]) -> bool:
    """Whether a graph's shape is `expected`: the same rank, the batch left free (a graph fixed to
    one batch size fails on any other), and every other dimension the graph fixes as expected."""
    return len(shape) == len(expected) and all(
        not isinstance(dim, int) if want == "batch" else not isinstance(dim, int) or dim == want
        for dim, want in zip(shape, expected, strict=True))


def _shown(shape: list[Any]) -> str:
    return "(" + ", ".join(str(dim) if dim is not None else "?" for dim in shape) + ")"
