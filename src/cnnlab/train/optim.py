"""Optimizers and learning-rate schedules by name."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig
from ..config.training_text import DEFAULT_LR
from .transfer import backbone_parameters


def learning_rate(config: TrainConfig) -> float:
    return config.lr if config.lr is not None else DEFAULT_LR[config.optimizer]


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Backbone and head, each with and without weight decay.

    No weight decay on biases and batch-norm parameters (1-D tensors), as in timm and torchvision's
    references: decaying them only hurts accuracy. A pretrained backbone learns at backbone_lr
    times the head's rate (discriminative learning rates, as fastai's fine_tune).
    """
    lr = learning_rate(config)
    backbone = backbone_parameters(model)
    backbone_ids = {id(p) for p in backbone}
    head = [p for p in model.parameters() if id(p) not in backbone_ids]
    backbone_lr = lr * (config.backbone_lr if config.pretrained else 1.0)
    groups = []
    for params, group_lr in ((backbone, backbone_lr), (head, lr)):
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen:
                groups.append({"params": chosen, "lr": group_lr,
                               "weight_decay": config.weight_decay if decay else 0.0})
    return groups


def _warmup_share(warmup: float, total: int) -> float:
    """OneCycleLR's warmup ends at step warmup * total - 1 and it divides by that length: at one
    step (10 steps at the default 0.1) a division by zero, below it a warmup that ends before the
    first step, so a short run starts at its peak. Rise over at least one and a half steps."""
    if warmup == 0 or total <= 1:
        return warmup
    return max(warmup, 1.5 / total)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups, lr = _param_groups(model, config), learning_rate(config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per batch, so resume and early stopping need no special cases."""
    total = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler
    if config.schedule == "onecycle":
        # one per group; a run extended after its schedule ended starts from the same peaks
        peaks = [group.get("max_lr", group["lr"]) for group in optimizer.param_groups]
        return sched.OneCycleLR(optimizer, max_lr=peaks, total_steps=total,
                               pct_start=_warmup_share(config.warmup, total))
    if config.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "step":
        # divide by 10 at 50% and 75% of training, the classic ResNet recipe
        return sched.MultiStepLR(optimizer, milestones=[total // 2, total * 3 // 4], gamma=0.1)
    return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)  # "none": a constant lr
