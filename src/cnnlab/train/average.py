"""The weights' exponential moving average, kept beside the model as it trains."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def moving_average(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of the weights and of batch norm's statistics (as timm's
    ModelEmaV2). Early in training, while the learning rate is high, the average is more accurate
    than the weights it averages. None where `decay` is unset or 0."""
    if not decay:
        return None
    # its first update copies the model, so weights loaded before training starts are the start
    return AveragedModel(model, multi_avg_fn=ema_update(decay), use_buffers=True)


def ema_update(decay: float) -> Callable:
    """AveragedModel's update with the decay TensorFlow's ExponentialMovingAverage uses when given
    the step count: min(decay, (1 + n) / (10 + n)) after n updates. The average spans about the
    last tenth of the steps taken until that reaches 1 / (1 - decay) steps, so it neither lags
    behind a short run (digits: 10 steps an epoch) nor clings to the random start."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               updates: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # batch norm's step counters
            torch._foreach_copy_(averaged, current)
            return
        n = updates.item()
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return update
