"""The model every stage passes around: pixels in [0, 1] in, class logits out.

Normalization lives inside the model (as buffers), so attacks work in pixel space, exports carry
their preprocessing, and nothing downstream has to remember mean and std.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.network = network
        channels = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # x: (B, C, H, W) in [0, 1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.forward_features(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.network.forward_head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(x))  # (B, num_classes) logits

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities, in eval mode (the mode is restored afterwards)."""
        was_training = self.training
        self.eval()
        try:
            return torch.softmax(self(x), dim=1)
        finally:
            self.train(was_training)
