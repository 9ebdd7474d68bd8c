"""The learning-rate range test (Smith, 2017), as fastai's `lr_find`: train with a rate that grows
exponentially from 1e-7 to 10 over about 100 steps, stop once the smoothed loss passes 4x its
minimum, and read a rate off the loss curve.

The test trains the very model, optimizer and data order that training would start from, and puts
every one of them back afterwards, bit for bit (weights, batch-norm statistics, optimizer state,
schedule, the weights' average, and every random generator), so training after it is the training
without it. Suggestions are rules of thumb (Lightning issue 1767 shows how one can mislead): the
figure shows the curve with each rule's point, and says which rule was taken.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..base.devices import resolve_device, set_threads
from ..base.distributed import Ranks, ranks_from_environment
from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_json
from ..base.settings import resolve
from ..config import TrainConfig, load_config
from ..config.files import with_settings
from ..data import DatasetSplits
from ..run.results import read_json_file
from .progress import Reporter
from .settings import LR_RULES, LrFindSettings
from .trainer import Trainer

SMOOTHING = 0.98  # the exponential moving average of the loss, debiased (fastai's)
LR_FIND_JSON, LR_FIND_PNG = "lr_find.json", "lr_find.png"


@dataclass(frozen=True)
class LrFinding:
    """What the range test measured (lr_find.json): the rate and loss of each step, and the rate
    each rule suggests. One writer (`to_dict`), one reader (`from_dict` / `read`)."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]  # each step's training loss, as measured
    smoothed: tuple[float, ...]  # their debiased moving average: what the rules read
    suggestions: dict[str, float]  # rule -> suggested rate, for each of LR_RULES
    points: dict[str, tuple[float, float]]  # rule -> (rate, smoothed loss) marked on the curve
    rule: str  # the rule taken
    stopped: str  # why the sweep ended
    settings: dict[str, Any] = field(default_factory=dict)  # the sweep's own: start, end, steps

    @property
    def suggestion(self) -> float:
        return self.suggestions[self.rule]

    def to_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "rule": self.rule, "suggestions": self.suggestions,
                "points": {k: list(v) for k, v in self.points.items()}, "stopped": self.stopped,
                "settings": self.settings, "lrs": list(self.lrs), "losses": list(self.losses),
                "smoothed": list(self.smoothed)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LrFinding:
        return cls(tuple(map(float, values["lrs"])), tuple(map(float, values["losses"])),
                   tuple(map(float, values["smoothed"])),
                   {k: float(v) for k, v in values["suggestions"].items()},
                   {k: (float(v[0]), float(v[1])) for k, v in values["points"].items()},
                   str(values["rule"]), str(values["stopped"]), dict(values.get("settings") or {}))

    @classmethod
    def read(cls, path: Path) -> LrFinding:
        try:
            return cls.from_dict(read_json_file(path))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise CnnlabError(f"{path}: not an lr_find.json ({error})") from None


@contextmanager
def restored(trainer: Trainer) -> Iterator[None]:
    """Whatever happens inside, the trainer leaves as it came in: weights and buffers, optimizer
    state and rates, schedule, the weights' average, the loss scaler and every random generator."""
    saved = {name: copy.deepcopy(part.state_dict()) for name, part in _parts(trainer).items()}
    generator, cpu = trainer.generator.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    mode = trainer.model.training
    try:
        yield
    finally:
        for name, part in _parts(trainer).items():
            part.load_state_dict(saved[name])
        trainer.generator.set_state(generator)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        trainer.model.train(mode)


def _parts(trainer: Trainer) -> dict[str, Any]:
    parts = {"model": trainer.model, "optimizer": trainer.optimizer, "scheduler": trainer.scheduler}
    if trainer.ema is not None:
        parts["ema"] = trainer.ema
    if trainer.scaler is not None:
        parts["scaler"] = trainer.scaler
    return parts


def _batches(trainer: Trainer, data: DatasetSplits) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches in training's own order, epoch after epoch, for as long as asked."""
    while True:
        order = torch.randperm(len(data.train), generator=trainer.generator)
        yield from data.train.batches(trainer.config.batch_size, order)


def _set_rate(trainer: Trainer, lr: float, shares: list[float]) -> None:
    """The head's rate is `lr`; every other group keeps its share of it (a pretrained backbone's
    fraction, --backbone-lr)."""
    for group, share in zip(trainer.optimizer.param_groups, shares, strict=True):
        group["lr"] = lr * share


def _shares(trainer: Trainer) -> list[float]:
    peaks = [group.get("max_lr", group.get("initial_lr", group["lr"]))
             for group in trainer.optimizer.param_groups]
    return [peak / peaks[-1] if peaks[-1] else 1.0 for peak in peaks]


def sweep(trainer: Trainer, data: DatasetSplits, settings: LrFindSettings,
          reporter: Reporter | None = None) -> tuple[list[float], list[float], str]:
    """The range test's rates and losses, step by step; the trainer is left as it came in."""
    if trainer.probe_only:
        raise CnnlabError("a frozen backbone's head is fitted to convergence as a linear probe: "
                          "it has no learning rate to find (drop --freeze backbone, or add "
                          "augmentation, to train it by steps)")
    start, end, steps = settings.start_lr, settings.end_lr, settings.steps
    if end <= start:
        raise CnnlabError(f"--end-lr ({end:g}) must be above --start-lr ({start:g})")
    lrs, losses, stopped = [], [], f"reached --end-lr {end:g}"
    with restored(trainer):
        trainer.start_epoch(1)
        shares, batches = _shares(trainer), _batches(trainer, data)
        best, average = math.inf, 0.0
        for step in range(steps):
            lr = start * (end / start) ** (step / (steps - 1))
            _set_rate(trainer, lr, shares)
            images, labels = next(batches)
            labels = labels.to(trainer.device)
            inputs = trainer.prepare(images, labels)
            with trainer.autocast():
                loss = trainer.loss(trainer.network(inputs), labels, inputs)
            value = loss.item()
            if not math.isfinite(value):
                stopped = f"the loss became {value} at rate {lr:.2g}"
                break
            trainer.update(loss)  # no schedule (the sweep sets the rates), no weights' average
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            smoothed = average / (1 - SMOOTHING ** (step + 1))
            lrs.append(lr)
            losses.append(value)
            best = min(best, smoothed)
            if reporter is not None and step % 10 == 0:
                reporter.message(f"lr-find: step {step + 1}/{steps}, rate {lr:.2e}, loss "
                                 f"{smoothed:.4f}")
            if smoothed > 4 * best:
                stopped = f"the smoothed loss passed 4x its minimum at rate {lr:.2g}"
                break
    return lrs, losses, stopped


def smooth(losses: list[float]) -> list[float]:
    """The debiased exponential moving average of the losses (what the sweep stops on)."""
    average, out = 0.0, []
    for step, value in enumerate(losses):
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        out.append(average / (1 - SMOOTHING ** (step + 1)))
    return out


def valley(lrs: list[float], losses: list[float]) -> tuple[float, int]:
    """fastai's default: the longest stretch over which the loss keeps falling (a longest
    decreasing subsequence), and a rate a little past its first third."""
    count = len(losses)
    lengths, start, end = [1] * count, 0, 0
    for i in range(1, count):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
            if lengths[end] < lengths[i]:
                end, start = i, i - lengths[i]
    sections = (end - start) / 3
    index = start + int(sections) + int(sections / 2)
    return lrs[index], index


def steep(lrs: list[float], losses: list[float]) -> tuple[float, int]:
    """The rate where the loss falls fastest against log(rate)."""
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i]))
              for i in range(len(lrs) - 1)]
    index = min(range(len(slopes)), key=slopes.__getitem__)
    return lrs[index], index


def minimum(lrs: list[float], losses: list[float]) -> tuple[float, int]:
    """A tenth of the rate of least loss (the point marked is the minimum itself)."""
    index = min(range(len(losses)), key=losses.__getitem__)
    return lrs[index] / 10, index


RULES = {"valley": valley, "steep": steep, "minimum": minimum}


def suggest(lrs: list[float], losses: list[float], rule: str, stopped: str,
            settings: LrFindSettings) -> LrFinding:
    """Each rule's rate, read off the smoothed curve without its first tenth and last five steps
    (as fastai: the start is flat noise, the end is the blow-up)."""
    smoothed = smooth(losses)
    first, last = len(lrs) // 10, len(lrs) - 5
    if last - first < 3:
        raise CnnlabError(f"the loss blew up after {len(lrs)} steps, too few to read a rate off; "
                          f"lower --start-lr or --end-lr")
    kept_lrs, kept = lrs[first:last], smoothed[first:last]
    suggestions, points = {}, {}
    for name, find in RULES.items():
        rate, index = find(kept_lrs, kept)
        suggestions[name], points[name] = rate, (kept_lrs[index], kept[index])
    return LrFinding(tuple(lrs), tuple(losses), tuple(smoothed), suggestions, points, rule,
                     stopped, {"start_lr": settings.start_lr, "end_lr": settings.end_lr,
                               "steps": settings.steps})


def find_lr(config: TrainConfig, settings: LrFindSettings | None = None, *,
            quiet: bool = False) -> tuple[LrFinding, TrainConfig]:
    """The range test on what `config` would train: the same recipe, data, model and order.
    Returns the finding and the resolved config (its lr still as given)."""
    from .loop import _prepare

    settings = settings or LrFindSettings()
    if ranks_from_environment().enabled:
        raise CnnlabError("run the learning-rate finder in one process (cnnlab lr-find), then "
                          "train on many with the --lr it suggests")
    set_threads(config.threads)
    reporter = Reporter(quiet)
    resolved, data, trainer, _ = _prepare(config, None, reporter, Ranks(),
                                          resolve_device(config.device))
    lrs, losses, stopped = sweep(trainer, data, settings, reporter)
    return suggest(lrs, losses, settings.suggest, stopped, settings), resolved


def write_finding(finding: LrFinding, folder: Path, title: str) -> list[Path]:
    """lr_find.json and lr_find.png (the curve, each rule's point, the rule taken) in `folder`."""
    from .figures import lr_find_curve

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / LR_FIND_JSON, finding.to_dict())
    lr_find_curve(list(finding.lrs), list(finding.losses), list(finding.smoothed),
                  {name: (finding.suggestions[name], *finding.points[name]) for name in LR_RULES},
                  finding.rule, folder / LR_FIND_PNG, title)
    return [folder / LR_FIND_JSON, folder / LR_FIND_PNG]


@dataclass(frozen=True)
class LrFindResult:
    """`cnnlab lr-find`'s result: the finding, what was swept (the resolved settings) and where
    lr_find.json and lr_find.png went."""

    finding: LrFinding
    config: TrainConfig
    folder: Path


def title_of(finding: LrFinding, config: TrainConfig) -> str:
    data = config.data.name.rstrip("/").split("/")[-1]
    return (f"{data}, {config.model}, {config.optimizer}: {finding.rule} suggests --lr "
            f"{finding.suggestion:.2g}\n({finding.stopped})")


def run_lr_find(config: TrainConfig, settings: LrFindSettings | None = None, *,
                quiet: bool = False) -> LrFindResult:
    """The range test on what `config` would train, written to config.out (default
    runs/lr-find-DATA-MODEL, numbered)."""
    from ..run.folder import new_run_dir

    finding, resolved = find_lr(config, settings, quiet=quiet)
    data = resolved.data.name.rstrip("/").split("/")[-1]
    model = resolved.model if " " not in resolved.model and "(" not in resolved.model else "custom"
    folder = new_run_dir(config.out, f"lr-find-{data}-{model}")
    write_finding(finding, folder, title_of(finding, resolved))
    return LrFindResult(finding, resolved, folder)


def lr_find(config: TrainConfig | str | Path | None = None, *, quiet: bool = False,
            **options: Any) -> LrFindResult:
    """The learning-rate range test (fastai's lr_find) on what `train` would train with the same
    settings: the loss against a rate growing from start_lr to end_lr, the model, optimizer and
    data order restored afterwards. Writes lr_find.json and lr_find.png to out= (default
    runs/lr-find-DATA-MODEL).

    Args:
        config: as train's.
        **options: LrFindSettings' (start_lr=1e-7, end_lr=10, steps=100, suggest="valley") and
            training settings by the names of train's flags (data="digits", model="simple").

    Returns the LrFindResult: .finding (.suggestion, .suggestions by rule, the curve), .folder.
    """
    names = {field.name for field in dataclasses.fields(LrFindSettings)}
    settings = resolve(LrFindSettings, None, {k: v for k, v in options.items() if k in names})
    if not isinstance(config, TrainConfig):
        config = load_config(config) if config is not None else TrainConfig()
    config = with_settings(config, {k: v for k, v in options.items() if k not in names})
    return run_lr_find(config, settings, quiet=quiet)
