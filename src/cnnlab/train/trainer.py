"""What one training step needs, built once from the settings and the data: the model, its
optimizer, schedule and loss, the attack of adversarial training and the weights' moving average."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

# The attacks need nothing from cnnlab but errors (an attack only needs an nn.Module), so this
# import adds no arrow up into run folders, data or figures; attack.robustness is never imported.
from ..attack import Attack, training_attack
from ..base.distributed import Ranks, data_parallel
from ..base.errors import CnnlabError
from ..config import TrainConfig
from ..data import DatasetSplits, channel_stats
from ..data.augment import augment_batch
from ..models import Classifier, create_model
from ..models.pretrained import pretrained_normalization
from ..run.contract import ModelCard
from ..run.folder import match_pruned, read_card, training_card, uses_flip
from .average import moving_average
from .data_checks import warn_if_input_too_small
from .distill import Distillation, load_teacher, mixed_loss
from .optim import make_optimizer, make_scheduler
from .transfer import can_cache, early_stage_parameters, keep_batch_norm_statistics, set_backbone_frozen
from .whiten import whiten_first_conv


@dataclass
class Trainer:
    """The pieces one epoch needs; built by build_trainer()."""

    model: Classifier
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    device: torch.device
    config: TrainConfig
    flip: bool  # training images are mirrored at random
    generator: torch.Generator  # every random draw of training: order, augmentation, FGSM start
    steps_per_epoch: int
    scaler: torch.amp.GradScaler | None = None  # mixed precision on CUDA
    adversary: Attack | None = None  # adversarial training: the attack each batch gets
    frozen_epochs: int = 0  # transfer learning: epochs in which the backbone does not train
    ranks: Ranks = field(default_factory=Ranks)  # this process among those torchrun started
    ema: AveragedModel | None = None  # the weights' moving average, updated after every step
    network: nn.Module | None = None  # the model as it trains: DDP-wrapped where there are ranks
    last_lr: float = math.nan  # the head's learning rate in the last step taken
    kept_stages: list[nn.Parameter] = field(default_factory=list)  # --freeze-stages: never train
    distillation: Distillation | None = None  # --teacher: the loss learns its outputs too

    @property
    def kept(self) -> Classifier:
        """The model that is validated, saved and predicted with: the weights' moving average
        where there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def probe_only(self) -> bool:
        """A frozen backbone whose features never change: the head is fitted once as a linear
        probe on cached features instead of trained in epochs."""
        return can_cache(self.config, self.flip)

    def autocast(self):
        if self.scaler is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.float16)

    def start_epoch(self, epoch: int) -> None:
        self.model.train()
        set_backbone_frozen(self.model, epoch <= self.frozen_epochs)
        for parameter in self.kept_stages:
            parameter.requires_grad_(False)
        if self.config.pretrained and self.config.freeze_bn:
            keep_batch_norm_statistics(self.model)

    def prepare(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A training batch as the model takes it: augmented (and attacked) images in [0, 1]."""
        inputs = augment_batch(batch, self.config.augment, self.flip, self.generator)
        inputs = inputs.to(self.device, non_blocking=True)
        if self.adversary is not None:
            inputs = self.adversary(inputs, labels)  # (B, C, H, W), within adv_eps, in [0, 1]
        if self.config.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def loss(self, logits: torch.Tensor, labels: torch.Tensor,
             inputs: torch.Tensor) -> torch.Tensor:
        """The batch's loss: the labels' cross-entropy, mixed with the teacher's where there is one."""
        return mixed_loss(self.loss_fn(logits, labels), self.distillation, logits, inputs)

    def update(self, loss: torch.Tensor) -> None:
        """Backpropagate and update the weights (scaled in mixed precision); nothing else."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def step(self, loss: torch.Tensor) -> None:
        """A training step: update the weights, then their average and the learning rate."""
        self.update(loss)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.last_lr = self.optimizer.param_groups[-1]["lr"]
        self.scheduler.step()

    def loss_weights(self) -> torch.Tensor | None:
        weight = self.loss_fn.weight
        return weight.cpu() if weight is not None else None


def _normalization(config: TrainConfig, data: DatasetSplits) -> tuple[list[float], list[float]]:
    """Pretrained weights expect their own mean and std, a run's weights (--init) the run's; a
    model from scratch gets the data's."""
    if config.init:
        preprocessing = read_card(config.init).preprocessing
        return list(preprocessing.mean), list(preprocessing.std)
    if not config.pretrained:
        return channel_stats(data.train)
    return pretrained_normalization(config.model, data.input_shape[0])


def _class_weights(data: DatasetSplits) -> torch.Tensor:
    counts = torch.bincount(data.train.labels, minlength=data.num_classes).clamp_min(1).float()
    return counts.sum() / (len(counts) * counts)  # "balanced", as scikit-learn defines it


def _adversary(config: TrainConfig, model: Classifier, generator: torch.Generator) -> Attack | None:
    """The attack of adversarial training; its random numbers come from the trainer's generator
    (FGSM) or the global torch RNG (Captum's PGD start), both saved in last.ckpt for --resume."""
    if config.adversarial is None:
        return None
    return training_attack(model, config.adversarial, config.adv_eps, steps=config.adv_steps,
                           step_size=config.adv_step_size, generator=generator)


def _card_name(config: TrainConfig) -> str:
    name = config.model if " " not in config.model and "(" not in config.model else "custom"
    if config.init and read_card(config.init).architecture == config.model:
        name = read_card(config.init).name
    return name


def _check_freeze(config: TrainConfig) -> None:
    if config.freeze and not config.pretrained:
        raise CnnlabError("--freeze backbone keeps pretrained features; add --pretrained (and a "
                          "timm model, e.g. --model timm:efficientnet_lite0)")
    if config.freeze_stages and not (config.pretrained or config.init):
        raise CnnlabError("--freeze-stages keeps the first stages of a network trained before; "
                          "add --pretrained or --init RUN")
    if config.teacher and config.freeze == "backbone":
        raise CnnlabError("--teacher trains by gradient steps; a frozen backbone's head is fitted "
                          "as a linear probe instead: leave out --freeze backbone")


def _pruned_init(config: TrainConfig) -> ModelCard | None:
    """--init's card where its network is pruned and is the one trained (not another --model)."""
    if not config.init:
        return None
    card = read_card(config.init)
    return card if card.pruned is not None and card.architecture == config.model else None


def _match_pruned_init(model: Classifier, config: TrainConfig) -> float | None:
    """A pruned --init: the model takes its shapes (so all its weights fit). Returns the share
    pruned, for the card."""
    card = _pruned_init(config)
    if card is None:
        return None
    match_pruned(model, Path(config.init), card)
    return card.pruned


def build_trainer(config: TrainConfig, data: DatasetSplits, device: torch.device,
                  ranks: Ranks) -> tuple[Trainer, ModelCard]:
    """The model (seeded), its optimizer, schedule, loss and attack, and the card it is saved with."""
    _check_freeze(config)
    torch.manual_seed(config.seed)
    mean, std = _normalization(config, data)
    model, spec, _ = create_model(config.model, input_shape=data.input_shape,
                                  num_classes=data.num_classes, mean=mean, std=std,
                                  pretrained=config.pretrained and not config.init)
    warn_if_input_too_small(model.network, config.model, data.input_shape)
    pruned = _match_pruned_init(model, config)
    # ImageNet's or --init's first conv is kept as it trained
    if config.whiten and not (config.pretrained or config.init):
        whiten_first_conv(model, data.train)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    steps = math.ceil(len(data.train) / config.batch_size)
    optimizer = make_optimizer(model, config)
    weights = _class_weights(data).to(device) if config.class_weights else None
    generator = torch.Generator().manual_seed(config.seed)
    trainer = Trainer(
        model=model, optimizer=optimizer, scheduler=make_scheduler(optimizer, config, steps),
        loss_fn=nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing),
        device=device, config=config, flip=uses_flip(config, data), generator=generator,
        steps_per_epoch=steps,
        scaler=torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None,
        adversary=_adversary(config, model, generator),
        frozen_epochs=config.epochs if config.freeze == "backbone" else config.freeze_epochs,
        ranks=ranks, kept_stages=early_stage_parameters(model, config.freeze_stages or 0),
        distillation=load_teacher(config.teacher, data.class_names, data.input_shape, device,
                                  config.distill_temperature, config.distill_weight)
        if config.teacher else None)
    if not trainer.probe_only:  # a probe fitted once on cached features has no steps to average
        for parameter in trainer.kept_stages:  # DDP leaves out what never trains
            parameter.requires_grad_(False)
        trainer.ema = moving_average(model, config.ema)
        trainer.network = data_parallel(model, ranks, device, trainer.frozen_epochs > 0)
    card = training_card(config, data, spec, _card_name(config), mean, std)
    return trainer, card.replace(pruned=pruned, teacher=config.teacher)
