"""The candidates: a trained run's network pruned by a share of its channels, at its input side or
a smaller one, each to be distilled from the run. Which sides a network can take is tried, not
assumed: one that pools globally (timm's) takes any, one that flattens into a dense layer only its
own."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import CnnlabError
from ..config import TrainConfig
from ..models import Classifier, create_model
from ..models.prune import prune_channels, stream_layers
from ..run.contract import ModelCard
from ..run.folder import save_model

SMALLER_SIDES = (3 / 4, 4 / 7)  # of the teacher's side: 224 -> 168, 128
MIN_SIDE_TO_SHRINK = 64  # smaller images (Fashion-MNIST's 28) lose too much detail shrunk
MIN_SIDE = 16
MIN_EPOCHS = 8  # a pruned copy recovers in no fewer (the 4 of fine-tuning are too few)


@dataclass(frozen=True)
class Candidate:
    side: int  # input side in pixels
    pruned: float  # share of channels removed (0: none)

    @property
    def name(self) -> str:
        return f"{self.side}px" + (f"-pruned{round(self.pruned * 100)}" if self.pruned else "")


def _numbers(text: str, what: str, kind: type) -> list:
    try:
        values = [kind(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise CnnlabError(f"--{what} {text!r}: expected comma-separated numbers") from None
    if not values:
        raise CnnlabError(f"--{what} {text!r}: give at least one")
    return values


def takes_any_side(card: ModelCard) -> bool:
    """Whether the network has the same tensors at another input side (it pools globally)."""
    def shapes(side: int) -> dict:
        model, _, _ = create_model(card.architecture, input_shape=(card.input.channels, side, side),
                                   num_classes=card.num_classes, mean=card.preprocessing.mean,
                                   std=card.preprocessing.std)
        return {name: tuple(t.shape) for name, t in model.state_dict().items()}
    try:
        return shapes(card.input.height) == shapes(2 * card.input.height)
    except CnnlabError:
        return False


def candidate_sides(card: ModelCard, sides: str | None) -> list[int]:
    """The input sides to try: asked, or the teacher's and smaller ones where they make sense."""
    own = card.input.height
    if sides is not None:
        chosen = _numbers(sides, "sizes", int)
        if any(side < MIN_SIDE for side in chosen):
            raise CnnlabError(f"--sizes {sides}: every side must be {MIN_SIDE} pixels or more")
        if any(side != own for side in chosen) and not takes_any_side(card):
            raise CnnlabError(f"--sizes {sides}: {card.name} takes only {own}x{own} images (it "
                              f"flattens into a dense layer); leave out --sizes")
        return sorted(set(chosen), reverse=True)
    if own < MIN_SIDE_TO_SHRINK or card.input.width != own or not takes_any_side(card):
        return [own]
    return [own, *(max(MIN_SIDE, round(own * share / 8) * 8) for share in SMALLER_SIDES)]


def candidates(card: ModelCard, sides: str | None, prune: str) -> list[Candidate]:
    """Every side with every pruning share, but the teacher itself (its own side, unpruned)."""
    shares = _numbers(prune, "prune", float)
    if any(not 0 <= share < 1 for share in shares):
        raise CnnlabError(f"--prune {prune}: shares must be at least 0 and below 1")
    found = [Candidate(side, share) for side in candidate_sides(card, sides)
             for share in sorted(set(shares))]
    found = [c for c in found if not (c.side == card.input.height and c.pruned == 0)]
    if not found:
        raise CnnlabError("no candidate: with the teacher's own side, --prune needs a share above 0")
    return found


def pruned_copy(teacher: Classifier, card: ModelCard, share: float, folder: Path) -> Path:
    """A run folder holding the teacher pruned by `share` of its channels (not trained since):
    the starting point (--init) of the candidates with that share."""
    model = copy.deepcopy(teacher).cpu()
    prune_channels(model, share, card.input.shape, keep=[model.output_layer, *stream_layers(model)])
    pruned_card = card.replace(name=f"{card.name}-pruned{round(share * 100)}", pruned=share,
                               calibration=None, unknown=None, epoch=None, val_accuracy=None,
                               test_accuracy=None, head=None, weights_sha256=None)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder, model, pruned_card)
    return folder


def student_config(teacher: TrainConfig, teacher_run: Path, card: ModelCard, side: int,
                   init: Path, out: Path, epochs: int | None, temperature: float, weight: float,
                   seed: int) -> TrainConfig:
    """The teacher's own recipe, for a student at `side` that starts from `init` and learns from
    the teacher; crops keep their share of the side."""
    config = copy.deepcopy(teacher)
    config.model, config.init, config.teacher = card.architecture, str(init), str(teacher_run)
    config.pretrained = False  # its weights come from --init
    config.data.image_size = side
    if config.augment.crop_size:
        config.augment.crop_size = max(8, round(config.augment.crop_size * side / card.input.height
                                                / 8) * 8)
    config.epochs = epochs or max(teacher.epochs, MIN_EPOCHS)
    # Every layer adapts (a pruned layer, a new resolution): no stage kept, the backbone at the
    # full rate; a fine-tuned teacher's gentle 5e-4 doubled (flowers12 at 128 px, 6 epochs:
    # 96.25% against 94.17% with the teacher's own rates and kept stages; BENCHMARKS.md).
    config.freeze_stages, config.backbone_lr = 0, 1.0
    if teacher.pretrained and teacher.lr is not None:
        config.lr = 2 * teacher.lr
    config.distill_temperature, config.distill_weight, config.seed = temperature, weight, seed
    config.out, config.report, config.calibrate = str(out), False, False
    config.log, config.mlflow = "none", None
    return config
