"""`cnnlab explain`: run a method on a run's model and write its figures into RUN/explain/."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base.errors import CnnlabError, unknown
from ..base.progress import tracked
from ..base.settings import resolve
from ..run.data import pick_split
from ..run.predictor import ImageInput, Predictor, load_predictor
from . import figures as plots
from .attributions import attribute
from .boxes import cam_box
from .embedding import penultimate_features, project
from .hierarchy import HIERARCHY_FOLDER, hierarchy
from .layers import LayerInfo, list_layers
from .maps import feature_maps, first_conv_filters, map_layers
from .record import HierarchyRecord
from .settings import EXPLAIN_METHODS, WITHOUT_IMAGES, ExplainSettings, explain_methods

METHODS = EXPLAIN_METHODS  # declared with the settings, so `cnnlab --help` needs no torch
log = logging.getLogger("cnnlab")

@dataclass
class Explanation:
    """What a method found: arrays keyed by input (or layer), and the figures written."""

    method: str  # one method, or several comma-separated
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # "method/key" for several
    figures: list[Path] = field(default_factory=list)
    layers: list[LayerInfo] = field(default_factory=list)  # list_layers=True: the layer names
    parts: list[Explanation] = field(default_factory=list)  # several methods: each one's own
    hierarchy: HierarchyRecord | None = None  # --method hierarchy: what each depth learned
    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # gradcam: where
    # the object is, (top, left, height, width) per image key, from the map (explain.boxes)


def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _name(item: ImageInput, index: int, folders: int = 0) -> str:
    """A file's stem, with its `folders` nearest folder names before it (a_x for a/x.png)."""
    if isinstance(item, (str, Path)):
        path = Path(item)
        return _file_stem("_".join([*path.parent.parts[len(path.parent.parts) - folders:],
                                    path.stem] if folders else [path.stem]))
    return f"image{index}"  # the report knows its own explanations by these names (sections.why)


def _numbered(names: list[str]) -> list[str]:
    """x, x-2, x-3 ...: the same file given twice still gets figures of its own."""
    seen: dict[str, int] = {}
    numbered = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        numbered.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return numbered


def _same_input(item: ImageInput) -> object:
    return str(Path(item).resolve()) if isinstance(item, (str, Path)) else id(item)


def _names(items: list[ImageInput]) -> list[str]:
    """A name per input for its figures; files that share a name (a/x.png, b/x.png) get their
    folders' names too (a_x, b_x), so no figure overwrites another's."""
    names = [_name(item, i) for i, item in enumerate(items)]
    for folders in range(1, 4):
        inputs: dict[str, set] = {}
        for item, name in zip(items, names, strict=True):
            inputs.setdefault(name, set()).add(_same_input(item))
        clashing = {name for name, found in inputs.items() if len(found) > 1}
        if not clashing:
            break
        names = [_name(item, i, folders) if name in clashing else name
                 for i, (item, name) in enumerate(zip(items, names, strict=True))]
    return _numbered(names)


def _target_index(predictor: Predictor, target: str | int) -> int:
    names = predictor.class_names
    if isinstance(target, int) or (target.isdigit() and target not in names):
        index = int(target)
        if not 0 <= index < len(names):
            raise CnnlabError(f"--target {index} is not a class index (0..{len(names) - 1})")
        return index
    if target not in names:
        raise unknown("class", str(target), names)
    return names.index(target)


def _targets(predictor: Predictor, target: str | int | None) -> list[int | None]:
    """--target: None (each image's predicted class), a class, or several ('cat,dog')."""
    if target is None:
        return [None]
    if isinstance(target, str) and "," in target and target not in predictor.class_names:
        return [_target_index(predictor, part.strip()) for part in target.split(",") if part.strip()]
    return [_target_index(predictor, target)]


def _attribution(predictor: Predictor, method: str, inputs: list[ImageInput], names: list[str],
                 settings: ExplainSettings, out: Path) -> Explanation:
    """A heatmap per image and target; with several targets each gets its own file
    (IMAGE-METHOD-CLASS.png); with shared_scale every map of the call is on one colour scale."""
    images = torch.stack([predictor.preprocess(item) for item in inputs]).to(predictor.device)
    probabilities = predictor.probabilities(images)
    predicted = probabilities.argmax(1)
    targets = _targets(predictor, settings.target)
    maps = {target: attribute(method, predictor.model, images,
                              (predicted if target is None else torch.full_like(predicted, target))
                              .to(predictor.device), settings.layer)
            for target in targets}
    peak = max(float(m.max()) for m in maps.values()) if settings.shared_scale else None
    result = Explanation(method)
    for target, heatmaps in maps.items():
        several = len(targets) > 1
        for i, name in enumerate(names):
            explained = predictor.class_names[target] if target is not None else ""
            result.arrays[f"{name}/{explained}" if several else name] = heatmaps[i].numpy()
            title = (f"{method}: predicted {predictor.class_names[predicted[i]]} "
                     f"({probabilities[i, predicted[i]]:.0%})")
            title += f", explaining {explained}" if explained else ""
            path = out / f"{name}-{method}{'-' + _file_stem(explained) if several else ''}.png"
            box = cam_box(heatmaps[i]) if method == "gradcam" else None
            if box is not None:  # where the map says the object is (the CAM papers' box)
                result.boxes[f"{name}/{explained}" if several else name] = box
            plots.heatmap_overlay(images[i].cpu(), heatmaps[i], title, path, peak, box=box)
            result.figures.append(path)
    return result


def _feature_maps(predictor: Predictor, inputs: list[ImageInput], names: list[str],
                  layer: str | None, out: Path) -> Explanation:
    result = Explanation("feature-maps")
    chosen, convs = map_layers(predictor.model, predictor.input_shape, layer)
    if len(chosen) < convs and not layer:
        log.warning("feature maps of %d of the %d conv layers (the first, then the last before "
                    "each shrinking of the maps): %s; name others with --layer (see "
                    "--list-layers)", len(chosen), convs, ", ".join(info.name for info in chosen))
    for item, name in zip(inputs, names, strict=True):
        maps = feature_maps(predictor.model, predictor.preprocess(item).to(predictor.device), chosen)
        for layer_name, activation in maps.items():
            result.arrays[f"{name}/{layer_name}"] = activation.numpy()
            path = out / f"{name}-feature-maps-{layer_name}.png"
            shape = "x".join(map(str, activation.shape))
            plots.feature_map_grid(activation, f"{layer_name} ({shape})", path)
            result.figures.append(path)
    return result


def _filters(predictor: Predictor, out: Path) -> Explanation:
    weights = first_conv_filters(predictor.model)
    path = out / "filters.png"
    plots.filter_grid(weights, path)
    return Explanation("filters", {"filters": weights.numpy()}, [path])


def _embedding(predictor: Predictor, run: Path, settings: ExplainSettings,
               out: Path) -> Explanation:
    split, limit, projection = settings.split, settings.limit, settings.projection
    chosen, data_name = pick_split(run, predictor.card, None, split)
    with tracked("embedding", min(limit, len(chosen)), quiet=settings.quiet) as advance:
        features, labels = penultimate_features(predictor.model, chosen, limit, advance=advance)
    points = project(features, projection)
    path = out / f"embedding-{split}-{projection}.png"
    shown = "t-SNE" if projection == "tsne" else "PCA"
    plots.embedding_scatter(points, labels, predictor.class_names,
                            f"{data_name} {split}: penultimate layer, {shown}", path,
                            axis_name="t-SNE" if projection == "tsne" else "principal component")
    return Explanation("embedding", {"points": points, "labels": labels}, [path])


def _hierarchy(predictor: Predictor, run: Path, settings: ExplainSettings,
               out: Path) -> Explanation:
    record, arrays, figures = hierarchy(predictor, run, settings.layer, settings.limit,
                                        settings.quiet, out)
    return Explanation("hierarchy", arrays, figures, hierarchy=record)


def explain(run: str | Path, inputs: ImageInput | list[ImageInput] | None = None,
            settings: ExplainSettings | None = None, **options: Any) -> Explanation:
    """Explain a run's model on images (or, for `filters`, `embedding` and `hierarchy`, on itself
    and its data).

    Returns the arrays (heatmaps (H, W), feature maps (C, H, W), filters, 2-D points) and writes
    a figure for each into `out` (default RUN/explain/). `settings` (ExplainSettings, default its
    defaults) and the `options` that override its fields by name: method (one, several
    "saliency,gradcam", or "all": without images, those that need none), layer, target, out, and
    for the embedding split, limit and projection. With list_layers=True, the model's layers.
    """
    settings = resolve(ExplainSettings, settings, options)
    if settings.list_layers:
        return Explanation("layers", layers=describe_layers(run))
    methods = explain_methods(settings.method)
    if not inputs and "all" in settings.method:  # 'all' without images: what needs none
        methods = [m for m in methods if m in WITHOUT_IMAGES]
    found = [_explain(run, inputs, replace(settings, method=method)) for method in methods]
    if len(found) == 1:
        return found[0]
    return Explanation(",".join(methods),
                       {f"{part.method}/{key}": array for part in found
                        for key, array in part.arrays.items()},
                       [path for part in found for path in part.figures], parts=found)


def _explain(run: str | Path, inputs: ImageInput | list[ImageInput] | None,
             settings: ExplainSettings) -> Explanation:
    """One method's explanation."""
    method, layer, out = settings.method, settings.layer, settings.out
    if method not in METHODS:
        raise unknown("explain method", method, METHODS)
    run = Path(run)
    predictor = load_predictor(run, settings.device, engine="torch")
    out = Path(out) if out else run / "explain"
    out.mkdir(parents=True, exist_ok=True)
    if method == "filters":
        return _filters(predictor, out)
    if method == "embedding":
        return _embedding(predictor, run, settings, out)
    if method == "hierarchy":
        return _hierarchy(predictor, run, settings, out / HIERARCHY_FOLDER)
    items = inputs if isinstance(inputs, list) else ([] if inputs is None else [inputs])
    if not items:
        raise CnnlabError(f"--method {method} needs at least one image")
    names = _names(items)
    if method == "feature-maps":
        return _feature_maps(predictor, items, names, layer, out)
    return _attribution(predictor, method, items, names, settings, out)


def describe_layers(run: str | Path) -> list[LayerInfo]:
    """The model's layers with output shapes: the names `--layer` accepts."""
    predictor = load_predictor(run, "cpu", engine="torch")
    return list_layers(predictor.model, predictor.input_shape)


