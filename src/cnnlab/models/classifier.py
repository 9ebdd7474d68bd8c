"""The model every stage passes around: pixels in [0, 1] in, class logits out.

Normalization lives inside the model (as buffers), so attacks work in pixel space, exports carry
their preprocessing, and nothing downstream has to remember mean and std.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .modes import eval_mode


def zero_head(head: nn.Module) -> None:
    """A new output layer starts at zero: every class equally likely, a first loss of exactly
    ln K on any data and for any number of classes K. Default inits scale with the fan-in or
    fan-out, and timm's with 1/sqrt(K), which for two classes gives logits of +-14 on pretrained
    features. The gradient still reaches the zero weights at once (it is the features times the
    error), and the layers below from the second step on."""
    if isinstance(head, nn.Linear):
        nn.init.zeros_(head.weight)
        if head.bias is not None:
            nn.init.zeros_(head.bias)


class Classifier(nn.Module):
    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.network = network
        # Test-time augmentation: predictions average the image and its mirror image. Off for
        # training, attacks and explanations (they call forward); set from model.json on loading.
        self.flip_tta = False
        # Temperature scaling of the probabilities (fitted on the validation split after
        # training; 1: none). Logits, training and attacks are untouched; set from model.json.
        self.temperature = 1.0
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

    @property
    def output_layer(self) -> nn.Linear:
        """The dense layer with one neuron per class (timm's classifier, or the last dense layer of
        a layer-language network); everything before it is the backbone."""
        return self.network.get_classifier()

    @property
    def predicts_log_proba(self) -> bool:
        """Whether predictions read predict_log_proba rather than the logits: with flip TTA or a
        temperature the two differ by more than a shift."""
        return self.flip_tta or self.temperature != 1.0

    def predict_log_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, num_classes) of the logits divided by the temperature; with
        flip_tta, those of the mean of the softmax over the image and its mirror image."""
        log_proba = torch.log_softmax(self(x) / self.temperature, dim=1)
        if not self.flip_tta:
            return log_proba
        mirrored = torch.log_softmax(self(x.flip(-1)) / self.temperature, dim=1)
        return torch.logaddexp(log_proba, mirrored) - math.log(2)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities, in eval mode (the mode is restored afterwards)."""
        with eval_mode(self):
            return self.predict_log_proba(x).exp()
