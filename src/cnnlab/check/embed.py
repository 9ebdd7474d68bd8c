"""The vectors the check compares images by, and whose linear probe gives class probabilities.

- photos (RGB, 64 pixels a side or more): ImageNet-pretrained EfficientNet-Lite0 features, the
  1280 inputs of its classifier, as `train --freeze backbone` caches them;
- small or gray images: the pixels themselves (centred), good enough to find copies and images
  unlike the rest; their class probabilities come from a small CNN trained per fold instead;
- with --run: the run's own network, the inputs of its output layer, for the label model and the
  outliers only. Training pulls each class together in those features (after 10 epochs on digits,
  a fifth of the pairs within a class pass 0.97, where the pixels find one copy), so copies are
  still found in one of the two embeddings above.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.images import to_float
from ..models.classifier import Classifier
from ..run.engine import feature_engine
from ..run.inference import output_layer

PHOTO_MIN_SIDE = 64  # as train's recipes: RGB images this large are photos ImageNet features suit
PHOTO_NETWORK = "efficientnet_lite0"
# The cosine similarity from which two images are copies: pretrained features put a crop, a shift
# or a recoloured copy of a photo at 0.97 and more; raw pixels only agree that far when nearly every
# pixel does, and different small images of one class are often 0.97 apart. A run's features find
# no copies: see above.
SIMILARITY = {"pretrained": 0.97, "pixels": 0.99}
HASH_BITS = 4  # photos: difference-hash bits that may differ between near copies


@dataclass
class Embedder:
    """How images become vectors: the input the network takes, and the network (None: pixels)."""

    kind: str  # "pretrained" | "run" | "pixels"
    shape: tuple[int, int, int]  # (C, H, W) of the input
    interpolation: str
    model: nn.Module | None
    description: str
    # ONNX Runtime's graph of the same features where it matches PyTorch (run.engine): 5x faster
    engine: nn.Module | None = None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 (B, F) vectors of unit length."""
        if self.model is None:
            flat = to_float(images).flatten(1)
            vectors = flat - flat.mean(1, keepdim=True)  # brightness is not what makes a copy
        elif self.engine is not None:
            vectors = self.engine(to_float(images))
        else:  # channels-last: 1.6x faster convolutions on a CPU
            inputs = to_float(images.to(device)).contiguous(memory_format=torch.channels_last)
            vectors = _penultimate(self.model, inputs)
        return nn.functional.normalize(vectors.float().cpu(), dim=1)


def _penultimate(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """What the output layer sees, (B, F)."""
    seen: list[torch.Tensor] = []
    handle = output_layer(model).register_forward_hook(lambda _m, i, _o: seen.append(i[0]))
    try:
        model(inputs)
    finally:
        handle.remove()
    return seen[0]


def is_photo(shape: tuple[int, int, int] | None) -> bool:
    return shape is not None and shape[0] == 3 and min(shape[1:]) >= PHOTO_MIN_SIDE


def pretrained_embedder(device: torch.device) -> Embedder:
    from ..models.pretrained import create_timm_model, pretrained_config

    cfg = pretrained_config(PHOTO_NETWORK)
    network = create_timm_model(PHOTO_NETWORK, num_classes=1000, in_chans=3, pretrained=True)
    model = Classifier(network, cfg.mean, cfg.std).to(device).eval()
    engine = feature_engine(model, tuple(cfg.input_size), "auto", device)
    return Embedder("pretrained", tuple(cfg.input_size), cfg.interpolation,
                    model.to(memory_format=torch.channels_last),
                    f"ImageNet-pretrained EfficientNet-Lite0 features ({cfg.input_size[1]}x"
                    f"{cfg.input_size[2]})", engine)


def run_embedder(run: str | Path, device: torch.device) -> Embedder:
    from ..run.folder import load_model

    model, card = load_model(run, device)
    engine = feature_engine(model, card.input.shape, "auto", device)
    model = model.to(memory_format=torch.channels_last).eval()
    return Embedder("run", card.input.shape, card.preprocessing.interpolation, model,
                    f"the features of {run}'s network ({card.name})", engine)


def pixel_embedder(shape: tuple[int, int, int]) -> Embedder:
    return Embedder("pixels", shape, "bilinear", None, f"pixels ({'x'.join(map(str, shape))})")
