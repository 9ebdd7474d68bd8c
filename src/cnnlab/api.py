"""The Python API: cnnlab.train(...) and cnnlab.load(run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import CONFIG_SECTIONS, TrainConfig, apply_overrides, load_config
from .data.images import image_to_tensor, open_image
from .devices import resolve_device
from .errors import CnnlabError
from .models import Classifier
from .runfolder import CONFIG, load_model
from .train import Run, fit


def train(config: TrainConfig | str | Path | None = None, *, resume: str | Path | None = None,
          quiet: bool = False, **settings: Any) -> Run:
    """Train a CNN and return its Run.

    Args:
        config: a TrainConfig, a YAML file, or None for the defaults.
        resume: a run folder to continue from its last.ckpt (its own config.yaml is used).
        quiet: no progress output.
        **settings: overrides, e.g. data="digits", epochs=3, model="lenet5", lr=1e-3;
            nested ones by section: data={"val_fraction": 0.2}, augment={"flip": False}.
    """
    if resume is not None:
        return fit(load_config(Path(resume) / CONFIG), resume=resume, quiet=quiet)
    if not isinstance(config, TrainConfig):
        config = load_config(config) if config is not None else TrainConfig()
    overrides: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "data" and isinstance(value, str):
            overrides["data.name"] = value
        elif key in CONFIG_SECTIONS and isinstance(value, dict):
            overrides.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            overrides[key] = value
    return fit(apply_overrides(config, overrides), quiet=quiet)


@dataclass(frozen=True)
class ClassScore:
    name: str
    index: int
    probability: float


ImageInput = str | Path | Image.Image | np.ndarray | torch.Tensor


class LoadedModel:
    """A trained model with the preprocessing it was trained with."""

    def __init__(self, model: Classifier, meta: dict[str, Any], device: torch.device) -> None:
        self.model, self.meta, self.device = model, meta, device
        self.class_names: list[str] = meta["class_names"]
        spec = meta["input"]
        self.input_shape = (spec["channels"], spec["height"], spec["width"])

    def preprocess(self, item: ImageInput) -> torch.Tensor:
        """Any supported input -> float (C, H, W) in [0, 1] of the model's channels and size."""
        if isinstance(item, (str, Path)):
            item = open_image(item)
        if isinstance(item, np.ndarray):
            item = Image.fromarray(item if item.dtype == np.uint8 else
                                   (np.clip(item, 0, 1) * 255).round().astype(np.uint8))
        if isinstance(item, torch.Tensor):
            return self._tensor_input(item)
        if not isinstance(item, Image.Image):
            raise CnnlabError(f"cannot predict on a {type(item).__name__}; give a path, PIL "
                              f"image, NumPy array or tensor")
        return image_to_tensor(item, *self.input_shape).float().div_(255)

    def _tensor_input(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 255
        if tuple(tensor.shape) != self.input_shape:
            raise CnnlabError(f"tensor input must be (C, H, W) = {self.input_shape} in [0, 1], got "
                              f"{tuple(tensor.shape)}; pass a PIL image to have it resized")
        return tensor.float()

    @torch.no_grad()
    def predict(self, inputs: ImageInput | list[ImageInput], topk: int = 5,
                batch_size: int = 256) -> list[list[ClassScore]]:
        """Top-k classes with softmax probabilities for each input, best first."""
        items = inputs if isinstance(inputs, list) else [inputs]
        topk = min(topk, len(self.class_names))
        results = []
        for start in range(0, len(items), batch_size):
            batch = torch.stack([self.preprocess(x) for x in items[start:start + batch_size]])
            probabilities = self.model.predict_proba(batch.to(self.device)).cpu()
            values, indices = probabilities.topk(topk, dim=1)
            results.extend([ClassScore(self.class_names[i], i, float(p))
                            for p, i in zip(row_values.tolist(), row_indices.tolist(), strict=True)]
                           for row_values, row_indices in zip(values, indices, strict=True))
        return results


def load(run: str | Path, device: str = "auto") -> LoadedModel:
    """Load a run folder's best model (model.safetensors + model.json) for prediction."""
    torch_device = resolve_device(device)
    model, meta = load_model(run, torch_device)
    return LoadedModel(model, meta, torch_device)
