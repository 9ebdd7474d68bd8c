"""The training loop: plain train_one_epoch() and fit(), in the style of torchvision's references."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

# attack.attacks needs nothing from cnnlab but errors (an attack only needs an nn.Module), so this
# import adds no arrow up into run folders, data or plots; attack.robustness is never imported here.
from ..attack.attacks import Attack, PGDAttack, robust_correct, seeded, training_attack
from ..config import TrainConfig, load_config
from ..contract import ModelCard
from ..data import DatasetSplits, channel_stats, load_dataset
from ..data.augment import augment_batch
from ..data.images import to_float
from ..devices import resolve_device, set_threads
from ..distributed import (
    Ranks,
    all_finite,
    backend,
    data_parallel,
    from_main,
    join,
    leave,
    local_batch_size,
    ranks_from_environment,
    shard,
    summed,
    sync_buffers,
)
from ..errors import CnnlabError, unknown
from ..fileio import atomic_write_text, folder_lock, remove_stale_temp_files
from ..inference import loss_and_accuracy, output_layer, predict_logits
from ..models import Classifier, create_model
from ..models.modes import eval_mode
from ..models.pretrained import pretrained_normalization
from ..plots import training_curves
from ..runfolder import (
    CHECKPOINT,
    CONFIG,
    check_writable,
    load_checkpoint,
    load_model,
    new_run_dir,
    read_card,
    save_checkpoint,
    save_model,
    training_card,
    uses_flip,
    write_metrics,
    write_results,
)
from .checkpoint import TrainState, checkpoint_of, restore
from .data_checks import (
    class_counts,
    describe_counts,
    fit_batch_to_data,
    imbalance_warning,
    warn_if_input_too_small,
)
from .optim import make_optimizer, make_scheduler
from .probe import probe_summary, write_probe_path
from .progress import Reporter
from .recipes import resolve
from .transfer import (
    cache_features,
    can_cache,
    fit_probe_head,
    keep_batch_norm_statistics,
    set_backbone_frozen,
    start_from_run,
)

# Robust validation: PGD at the training eps on the first images of the validation split, with the
# same random start every epoch, so the column is comparable across epochs and runs.
VAL_ROBUST_IMAGES, VAL_ROBUST_STEPS, VAL_ROBUST_SEED = 500, 10, 0


EpochCallback = Callable[[nn.Module, dict], None]


log = logging.getLogger("cnnlab")


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


@dataclass
class Run:
    """What `train` returns: the run folder and what happened in it."""

    path: Path
    config: TrainConfig
    history: list[dict[str, float]]
    best_epoch: int
    best_val_accuracy: float | None
    test_accuracy: float | None
    seconds: float
    status: str  # finished | stopped early | diverged

    def results(self) -> dict[str, Any]:
        """What RUN/results.json records."""
        rounded = lambda value: None if value is None else round(value, 6)  # noqa: E731
        return {"status": self.status, "epochs": len(self.history), "best_epoch": self.best_epoch,
                "best_val_accuracy": rounded(self.best_val_accuracy),
                "test_accuracy": rounded(self.test_accuracy), "seconds": round(self.seconds, 1)}


@dataclass
class Trainer:
    """The pieces one epoch needs; built once by fit()."""

    model: Classifier
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    device: torch.device
    config: TrainConfig
    flip: bool
    generator: torch.Generator
    scaler: torch.amp.GradScaler | None
    adversary: Attack | None = None  # adversarial training: the attack each batch gets
    frozen_epochs: int = 0  # transfer learning: epochs in which the backbone does not train
    cached: bool = False  # the batches are cached backbone features; only the head runs
    ranks: Ranks = field(default_factory=Ranks)  # this process among those torchrun started
    network: nn.Module | None = None  # what trains: the model or its head, DDP-wrapped if needed
    last_lr: float = math.nan  # the head's learning rate in the last step taken
    steps_per_epoch: int = 1
    ema: AveragedModel | None = None  # the weights' moving average, updated after every step
    saved_model_epoch: int = 0  # the epochs whose model and checkpoint are on disk, whole
    saved_checkpoint_epoch: int = 0

    @property
    def kept(self) -> Classifier:
        """The model that is validated, saved and predicted with: the weights' moving average
        where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def build_network(self) -> None:
        """Wrap what trains (the head alone on cached features) for data-parallel training."""
        module = output_layer(self.model) if self.cached else self.model
        self.network = data_parallel(module, self.ranks, self.device, self.frozen_epochs > 0)

    def autocast(self):
        if self.scaler is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.float16)

    def start_epoch(self, epoch: int) -> None:
        self.model.train()
        set_backbone_frozen(self.model, epoch <= self.frozen_epochs)
        if self.config.pretrained and self.config.freeze_bn:
            keep_batch_norm_statistics(self.model)

    def prepare(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A training batch as the model takes it: augmented (and attacked) images in [0, 1]."""
        if self.cached:
            return batch.to(self.device)  # (B, F) features
        inputs = augment_batch(batch, self.config.augment, self.flip, self.generator)
        inputs = inputs.to(self.device, non_blocking=True)
        if self.adversary is not None:
            inputs = self.adversary(inputs, labels)  # (B, C, H, W), within adv_eps, in [0, 1]
        if self.config.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)


def train_one_epoch(trainer: Trainer, data: DatasetSplits, reporter: Reporter,
                    epoch: int) -> tuple[float, float]:
    """One pass over the shuffled training split (this rank's shard of it); returns (mean loss,
    accuracy) over every rank."""
    config = trainer.config
    trainer.start_epoch(epoch)
    # Every rank draws the same order (and the same augmentation parameters, for other images):
    # their random states stay equal, so rank 0's checkpoint resumes all of them exactly.
    order = shard(torch.randperm(len(data.train), generator=trainer.generator), trainer.ranks)
    batch_size = local_batch_size(config.batch_size, trainer.ranks)
    steps = math.ceil(len(order) / batch_size)
    reporter.start_epoch(epoch, config.epochs, steps)
    loss_sum, correct, seen = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
    for step, (images, labels) in enumerate(data.train.batches(batch_size, order)):
        labels = labels.to(trainer.device)
        inputs = trainer.prepare(images, labels)
        with trainer.autocast():
            logits = trainer.forward(inputs)  # (B, num_classes)
            loss = trainer.loss_fn(logits, labels)
        if not all_finite(loss, trainer.ranks):
            raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch}, step {step + 1}")
        if epoch == 1 and step == 0:
            _check_first_loss(loss.item(), logits.shape[1], reporter)
        trainer.optimizer.zero_grad(set_to_none=True)
        if trainer.scaler is not None:
            trainer.scaler.scale(loss).backward()
            trainer.scaler.step(trainer.optimizer)
            trainer.scaler.update()
        else:
            loss.backward()
            trainer.optimizer.step()
        if trainer.ema is not None:
            trainer.ema.update_parameters(trainer.model)
        trainer.last_lr = trainer.optimizer.param_groups[-1]["lr"]
        trainer.scheduler.step()
        loss_sum += loss.detach().cpu() * len(labels)
        correct += (logits.argmax(1) == labels).sum().cpu()
        seen += len(labels)
        if reporter.live:  # .item() forces a device sync: only pay for it when someone watches
            reporter.step(loss_sum.item() / seen, correct.item() / seen)
    loss_total, correct_total, count = summed([loss_sum, correct, seen], trainer.ranks,
                                              trainer.device)
    return loss_total / count, correct_total / count


def _check_first_loss(loss: float, num_classes: int, reporter: Reporter) -> None:
    """A new head predicts every class alike, so training starts near ln K; far above it, the
    first step will throw the weights far, and the run rarely recovers."""
    expected = math.log(num_classes)
    if loss > 2 * expected + 1:
        reporter.message(f"[yellow]warning:[/yellow] the first batch's loss is {loss:.2f}, far above "
                         f"ln {num_classes} = {expected:.2f} for a fresh head: check the labels, "
                         f"lower --lr, or see whether the model's head was initialized as it should")


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


def _build_trainer(config: TrainConfig, data: DatasetSplits,
                   device: torch.device) -> tuple[Trainer, ModelCard]:
    if config.freeze not in (None, "backbone"):
        raise unknown("--freeze value", config.freeze, ["backbone"])
    if config.freeze and not config.pretrained:
        raise CnnlabError("--freeze backbone keeps pretrained features; add --pretrained (and a "
                          "timm model, e.g. --model timm:efficientnet_lite0)")
    torch.manual_seed(config.seed)
    mean, std = _normalization(config, data)
    model, spec, _ = create_model(config.model, input_shape=data.input_shape,
                                  num_classes=data.num_classes, mean=mean, std=std,
                                  pretrained=config.pretrained and not config.init)
    warn_if_input_too_small(model.network, config.model, data.input_shape)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    steps = math.ceil(len(data.train) / config.batch_size)
    optimizer = make_optimizer(model, config)
    weights = _class_weights(data).to(device) if config.class_weights else None
    generator = torch.Generator().manual_seed(config.seed)
    trainer = Trainer(model, optimizer, make_scheduler(optimizer, config, steps),
                      nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing),
                      device, config, uses_flip(config, data), generator,
                      torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None,
                      _adversary(config, model, generator),
                      config.epochs if config.freeze == "backbone" else config.freeze_epochs,
                      steps_per_epoch=steps)
    name = config.model if " " not in config.model and "(" not in config.model else "custom"
    if config.init and read_card(config.init).architecture == config.model:
        name = read_card(config.init).name
    return trainer, training_card(config, data, spec, name, mean, std)


def _adversary(config: TrainConfig, model: Classifier, generator: torch.Generator) -> Attack | None:
    """The attack of adversarial training; its random numbers come from the trainer's generator
    (FGSM) or the global torch RNG (Captum's PGD start), both saved in last.ckpt for --resume."""
    if config.adversarial is None:
        return None
    return training_attack(model, config.adversarial, config.adv_eps, steps=config.adv_steps,
                           step_size=config.adv_step_size, generator=generator)


def _val_logits(trainer: Trainer, val, order: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if not trainer.cached:
        return predict_logits(trainer.kept, val, trainer.device,
                              channels_last=trainer.config.channels_last, order=order)
    features, labels = (val.features, val.labels) if order is None else \
        (val.features[order], val.labels[order])
    head = output_layer(trainer.kept)
    with torch.no_grad(), eval_mode(head):
        return head(features.to(trainer.device)).cpu(), labels


def _validate(trainer: Trainer, data: DatasetSplits) -> tuple[float, float]:
    """Validation loss and accuracy; with several ranks each takes every world_size-th image and
    the sums are all-reduced."""
    if data.val is None:
        return math.nan, math.nan
    ranks = trainer.ranks
    sync_buffers(trainer.model, ranks)
    if trainer.ema is not None:  # its batch-norm statistics average each rank's own
        sync_buffers(trainer.kept, ranks)
    order = torch.arange(ranks.rank, len(data.val), ranks.world_size) if ranks.enabled else None
    logits, labels = _val_logits(trainer, data.val, order)
    loss_total, correct_total, count = summed(
        [nn.functional.cross_entropy(logits.double(), labels, reduction="sum"),
         (logits.argmax(1) == labels).sum(), len(labels)], ranks, trainer.device)
    return loss_total / count, correct_total / count


def _validate_robust(trainer: Trainer, data: DatasetSplits) -> float:
    """PGD robust accuracy at adv_eps on a fixed validation subset (the global RNG is left as is)."""
    if data.val is None:
        return math.nan
    images, labels = next(iter(data.val.batches(VAL_ROBUST_IMAGES)))
    images, labels = to_float(images.to(trainer.device)), labels.to(trainer.device)
    attack = PGDAttack(trainer.kept, trainer.config.adv_eps, steps=VAL_ROBUST_STEPS)
    with seeded(VAL_ROBUST_SEED, trainer.device):
        _, robust, _ = robust_correct(trainer.kept, attack, images, labels)
    return robust.float().mean().item()


def _end_of_epoch(trainer: Trainer, state: TrainState, row: dict, run_dir: Path,
                  card: ModelCard) -> None:
    """Record the epoch (on every rank, so they agree on early stopping); keep the best model;
    write the resumable checkpoint last. Only rank 0 writes files."""
    state.history.append(row)
    state.epoch = int(row["epoch"])
    has_val = row["val_acc"] == row["val_acc"]  # NaN without a validation split
    score = row["val_acc"] if has_val else row["train_acc"]
    # A tie goes to the later epoch: on a small validation split that every epoch gets right,
    # the first such epoch would win, while the annealed weights of the last generalize best
    # (flowers12 fine-tuning: 96.67% test from epoch 1, 97.50% from epoch 6, all at 100% val).
    # Early stopping waits for a strictly better score.
    state.bad_epochs = 0 if score > state.best_score else state.bad_epochs + 1
    best = score >= state.best_score
    if best:
        state.best_score, state.best_epoch = score, state.epoch
    if not trainer.ranks.is_main:
        return
    if best:
        save_model(run_dir, trainer.kept, card.replace(
            epoch=state.epoch, val_accuracy=round(score, 6) if has_val else None))
        trainer.saved_model_epoch = state.epoch
    write_metrics(run_dir, state.history)
    training_curves(state.history, run_dir / "curves.png", best_epoch=state.best_epoch,
                    label_smoothing=0.0 if trainer.cached else trainer.config.label_smoothing,
                    adversarial=trainer.adversary is not None)
    save_checkpoint(run_dir / CHECKPOINT, checkpoint_of(trainer, state))
    trainer.saved_checkpoint_epoch = state.epoch


def _check_finite(trainer: Trainer, val_loss: float, has_val: bool, epoch: int) -> None:
    """Nothing that is not finite is saved: a NaN validation loss or weight ends training before
    this epoch's model or checkpoint is written (every rank sees the same loss and weights)."""
    if has_val and not math.isfinite(val_loss):
        raise TrainingDiverged(f"the validation loss became {val_loss} at epoch {epoch}")
    if not all(torch.isfinite(p).all() for p in trainer.model.parameters()):
        raise TrainingDiverged(f"the weights stopped being finite at epoch {epoch}")


def _run_epochs(trainer: Trainer, data: DatasetSplits, state: TrainState, run_dir: Path,
                card: ModelCard, reporter: Reporter,
                on_epoch_end: EpochCallback | None) -> str:
    config = trainer.config
    for epoch in range(state.epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        train_loss, train_acc = train_one_epoch(trainer, data, reporter, epoch)
        seconds = time.perf_counter() - started  # training only, validation excluded
        val_loss, val_acc = _validate(trainer, data)
        _check_finite(trainer, val_loss, data.val is not None, epoch)
        row = {"epoch": epoch, "train_loss": round(train_loss, 6), "train_acc": round(train_acc, 6),
               "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6)}
        if trainer.adversary is not None:
            row["val_robust_acc"] = round(_validate_robust(trainer, data), 6)
        row.update(lr=trainer.last_lr, seconds=round(seconds, 3))
        _end_of_epoch(trainer, state, row, run_dir, card)
        reporter.end_epoch(row, config.epochs)
        if on_epoch_end is not None:
            on_epoch_end(trainer.kept, row)
        if config.patience is not None and state.bad_epochs >= config.patience:
            reporter.message(f"stopping early: no better validation accuracy for "
                             f"{config.patience} epochs")
            return "stopped early"
    return "finished"


def _test_accuracy(run_dir: Path, data: DatasetSplits, device: torch.device) -> float | None:
    if data.test is None or not (run_dir / "model.safetensors").is_file():
        return None
    model, _ = load_model(run_dir, device)
    return loss_and_accuracy(*predict_logits(model, data.test, device))[1]


def _cached_features(trainer: Trainer, data: DatasetSplits) -> DatasetSplits:
    """The train and val splits as the backbone sees them (no augmentation)."""
    cached = copy.copy(data)
    cached.train = cache_features(trainer.model, data.train, trainer.device)
    cached.val = cache_features(trainer.model, data.val, trainer.device) if data.val else None
    return cached


def _maybe_cache(trainer: Trainer, data: DatasetSplits, reporter: Reporter) -> DatasetSplits:
    """With a frozen backbone, replace the train and val images by the backbone's features."""
    config = trainer.config
    if config.freeze is None:
        return data
    if not can_cache(config, trainer.flip):
        reporter.message("backbone frozen, but augmentation (or adversarial training) changes the "
                         "images every step, so its features cannot be cached: each step runs the "
                         "frozen backbone (slower)")
        return data
    started = time.perf_counter()
    cached = _cached_features(trainer, data)
    trainer.cached = True
    reporter.message(f"backbone frozen: its features for {len(data.train) + len(data.val or [])} "
                     f"images computed once in {time.perf_counter() - started:.1f}s")
    return cached


def _loss_weights(trainer: Trainer) -> torch.Tensor | None:
    weight = trainer.loss_fn.weight
    return weight.cpu() if weight is not None else None


def _fit_probe(trainer: Trainer, data: DatasetSplits, state: TrainState, run_dir: Path,
               card: ModelCard, reporter: Reporter) -> str:
    """A frozen backbone on cached features: fit the head to convergence, once."""
    if state.epoch >= 1:
        return "finished"  # resumed after the fit
    started = time.perf_counter()
    probe = fit_probe_head(trainer.model, data.train, data.val, _loss_weights(trainer), refit=True)
    chosen = probe.chosen
    row = {"epoch": 1, "train_loss": round(chosen.train_loss, 6),
           "train_acc": round(chosen.train_acc, 6), "val_loss": round(chosen.val_loss, 6),
           "val_acc": round(chosen.val_acc, 6), "lr": math.nan,
           "seconds": round(time.perf_counter() - started, 3)}
    if trainer.ranks.is_main:
        write_probe_path(run_dir, probe.path)
    _end_of_epoch(trainer, state, row, run_dir, card.replace(head=f"linear probe, C={probe.c:g}"))
    reporter.message(probe_summary(probe, row["seconds"]))
    return "finished"


def _start_from_probe(trainer: Trainer, data: DatasetSplits, reporter: Reporter) -> None:
    """Fine-tuning: give the new head the exact linear probe's weights before any layer trains
    (LP-FT, Kumar et al. 2022), so the first steps do not tear the pretrained features apart to
    fit a head that knows nothing. The probe minimizes the loss fine-tuning minimizes (label
    smoothing included): a head fitted without it is far too confident for the smoothed loss, and
    the first epoch spent undoing that cost 14 points of validation accuracy on flowers12."""
    started = time.perf_counter()
    features = _cached_features(trainer, data)
    probe = fit_probe_head(trainer.model, features.train, features.val, _loss_weights(trainer),
                           refit=False, label_smoothing=trainer.config.label_smoothing)
    reporter.message(f"head fitted first as a linear probe on the pretrained features "
                     f"({probe_summary(probe, time.perf_counter() - started)}); now every layer "
                     f"trains")


def fit(config: TrainConfig, *, resume: str | Path | None = None, quiet: bool = False,
        on_epoch_end: EpochCallback | None = None) -> Run:
    """Train a model as `config` says (or continue the run folder `resume`) and return the Run.

    `on_epoch_end(model, row)` runs after each epoch is recorded (row: that epoch's metrics.csv
    row); its time is not in the row's training seconds."""
    ranks = ranks_from_environment()
    if not ranks.is_main:  # one process speaks for all: the others' warnings would repeat its own
        logging.getLogger("cnnlab").setLevel(logging.ERROR)
    set_threads(config.threads, ranks.local_world_size)
    device = join(ranks, resolve_device(config.device))
    try:
        return _fit(config, resume, Reporter(quiet or not ranks.is_main), on_epoch_end, ranks,
                    device)
    finally:
        leave(ranks)


def _moving_average(trainer: Trainer) -> AveragedModel | None:
    """An exponential moving average of the weights and of batch norm's statistics (as timm's
    ModelEmaV2). Early in training, while the learning rate is high, the average is more accurate
    than the weights it averages. A linear probe fitted once on cached features has no steps to
    average."""
    decay = trainer.config.ema
    if not decay or trainer.cached:
        return None
    # its first update copies the model, so weights loaded before training starts are the start
    return AveragedModel(trainer.model, multi_avg_fn=_ema_update(decay), use_buffers=True)


def _ema_update(decay: float) -> Callable:
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


def _open_run_dir(config: TrainConfig, resume: str | Path | None, card: ModelCard,
                  ranks: Ranks) -> Path:
    if resume is not None:
        return Path(resume)
    run_dir = None
    if ranks.is_main:
        run_dir = new_run_dir(config.out, f"{config.data.name.rstrip('/').split('/')[-1]}-"
                                          f"{card.name}")
        if config.out and run_dir != Path(config.out):  # said even under --quiet
            log.warning("%s holds a run already: this run goes to %s", config.out, run_dir)
        atomic_write_text(run_dir / CONFIG, config.to_yaml())
    return Path(from_main(str(run_dir), ranks))


def _prepare(config: TrainConfig, resume: str | Path | None, reporter: Reporter, ranks: Ranks,
             device: torch.device) -> tuple[TrainConfig, DatasetSplits, Trainer, ModelCard]:
    """The settings resolved and checked, the data loaded, the trainer built (from --init's weights
    where asked)."""
    batch_chosen = config.batch_size is not None  # before the recipe fills it in
    config, choice = resolve(config)
    if resume is None and ranks.is_main:
        check_writable(config.out)
    if choice is not None and resume is None:
        reporter.message(choice)
    data = load_dataset(config.data)
    if resume is None:  # config.yaml records the batch used, so --resume agrees
        config, batch_warnings = fit_batch_to_data(config, len(data.train), batch_chosen)
    trainer, card = _build_trainer(config, data, device)
    trainer.ranks = ranks
    if resume is None:  # said once the settings are known to be sound
        _describe_data(config, data, batch_warnings, reporter)
        if config.init:
            reporter.message(start_from_run(trainer.model, config.init, data.input_shape))
    return config, data, trainer, card


def _fit(config: TrainConfig, resume: str | Path | None, reporter: Reporter,
         on_epoch_end: EpochCallback | None, ranks: Ranks, device: torch.device) -> Run:
    started = time.perf_counter()
    config, data, trainer, card = _prepare(config, resume, reporter, ranks, device)
    uncached = data
    data = _maybe_cache(trainer, data, reporter)
    trainer.ema = _moving_average(trainer)
    trainer.build_network()
    run_dir = _open_run_dir(config, resume, card, ranks)
    with folder_lock(run_dir, "training") if ranks.is_main else nullcontext():
        state = _resume_state(trainer, run_dir, resume, reporter)
        where = f"{ranks.world_size} processes ({backend()})" if ranks.enabled else str(device)
        reporter.message(f"training {card.name} on {data.name} ({len(data.train)} train images, "
                         f"{data.num_classes} classes) on {where}; run folder {run_dir}")
        status = _train(trainer, data, uncached, state, run_dir, card, reporter, on_epoch_end)
    test_acc = _test_accuracy(run_dir, data, device) if ranks.is_main else None
    has_val = data.val is not None and state.best_score >= 0
    run = Run(run_dir, config, state.history, state.best_epoch,
              state.best_score if has_val else None, test_acc, time.perf_counter() - started,
              status)
    if ranks.is_main:
        _record(run, reporter)
    return run


def _record(run: Run, reporter: Reporter) -> None:
    """results.json (and the test accuracy in model.json); the report where asked."""
    write_results(run.path, run.results())
    if run.config.report and run.status != "diverged":
        from ..report.build import write_report

        reporter.message(f"report: {write_report(run.path)}")


def _describe_data(config: TrainConfig, data: DatasetSplits, warnings: list[str],
                   reporter: Reporter) -> None:
    """The class sizes, and warnings of imbalance and of too few steps."""
    counts = class_counts(data)
    reporter.message(describe_counts(data.class_names, counts))
    imbalance = imbalance_warning(data.class_names, counts, config.class_weights)
    for warning in ([imbalance] if imbalance else []) + warnings:
        log.warning(warning)


def _resume_state(trainer: Trainer, run_dir: Path, resume: str | Path | None,
                  reporter: Reporter) -> TrainState:
    """A new run's state, or the checkpoint's; a run stopped before its first checkpoint starts
    over in its own folder. Temporary files a killed run left behind are removed first."""
    if resume is None:
        return TrainState()
    if trainer.ranks.is_main:
        remove_stale_temp_files(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        reporter.message(f"{run_dir} has no checkpoint yet (it stopped before its first epoch "
                         f"ended): starting it over in the same folder")
        return TrainState()
    state = restore(trainer, load_checkpoint(run_dir / CHECKPOINT))
    trainer.saved_model_epoch, trainer.saved_checkpoint_epoch = state.best_epoch, state.epoch
    planned = load_config(run_dir / CONFIG).epochs
    if trainer.config.epochs != planned:
        _extend(trainer, state, run_dir, planned, reporter)
    reporter.message(f"resuming {run_dir} after epoch {state.epoch}")
    return state


def _extend(trainer: Trainer, state: TrainState, run_dir: Path, planned: int,
            reporter: Reporter) -> None:
    """--resume with other --epochs: the epochs left get a schedule of their own (a new one-cycle
    from the same peak, as fastai's repeated fit_one_cycle); config.yaml records the new total."""
    config = trainer.config
    if config.epochs <= state.epoch:
        raise CnnlabError(f"{run_dir} has trained {state.epoch} epochs; --epochs must be more than "
                          f"that to extend it")
    left = dataclasses.replace(config, epochs=config.epochs - state.epoch)
    trainer.scheduler = make_scheduler(trainer.optimizer, left, trainer.steps_per_epoch)
    if trainer.ranks.is_main:
        atomic_write_text(run_dir / CONFIG, config.to_yaml())
    reporter.message(f"{planned} epochs planned, {config.epochs} asked: the {left.epochs} epochs "
                     f"left get a learning-rate schedule of their own")


def _what_is_kept(trainer: Trainer, run_dir: Path) -> str:
    if not trainer.saved_checkpoint_epoch:
        return f"nothing was saved in {run_dir}"
    return (f"kept in {run_dir}: the best model (epoch {trainer.saved_model_epoch}) and the "
            f"checkpoint of epoch {trainer.saved_checkpoint_epoch}")


def _train(trainer: Trainer, data: DatasetSplits, uncached: DatasetSplits, state: TrainState,
           run_dir: Path, card: ModelCard, reporter: Reporter,
           on_epoch_end: EpochCallback | None) -> str:
    """Train (or fit the probe) to the end; returns the status."""
    config = trainer.config
    try:
        if trainer.cached:  # a frozen backbone: the head is a linear probe on cached features
            status = _fit_probe(trainer, data, state, run_dir, card, reporter)
        else:
            if config.pretrained and config.probe_first and state.epoch == 0:
                _start_from_probe(trainer, uncached, reporter)
            status = _run_epochs(trainer, data, state, run_dir, card, reporter, on_epoch_end)
    except TrainingDiverged as error:
        kept = (f"The best model so far (epoch {state.best_epoch}) is kept in {run_dir}"
                if state.best_epoch else "No model was saved")
        reporter.message(f"[red]stopped: {error}.[/red] {kept}; try a lower --lr")
        status = "diverged"
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{_what_is_kept(trainer, run_dir)}; continue with: cnnlab train "
                                f"--resume {run_dir}") from None
    except OSError as error:  # a full disk or a folder gone read-only: every write is atomic
        raise CnnlabError(f"cannot write {error.filename or run_dir}: {error.strerror or error}; "
                          f"{_what_is_kept(trainer, run_dir)}; make room, then continue with: "
                          f"cnnlab train --resume {run_dir}") from None
    return status
