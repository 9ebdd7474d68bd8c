"""Knowledge distillation (Hinton, Vinyals and Dean, 2015): a student learns a teacher's outputs.

The loss is (1 - w) x the labels' cross-entropy + w x T^2 x KL(teacher || student), both softened
by the temperature T (the T^2 keeps the soft term's gradients the size of the hard one's as T
grows). The teacher sees the student's own augmented batch, resized to its input side where the
two differ, so both learn from the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..base.errors import CnnlabError
from ..config import TrainConfig
from ..data.images import to_float
from ..data.splits import DatasetSplits, TensorImages
from ..data.unlabelled import unlabelled_split, with_extra_training
from ..models import Classifier
from ..run.folder import export_of, load_model


class Distillation(nn.Module):
    """The distillation term of the loss, its teacher frozen in eval mode."""

    def __init__(self, teacher: Classifier, teacher_side: tuple[int, int],
                 student_side: tuple[int, int], temperature: float, weight: float) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        # how much larger the teacher's input is, per axis (a crop stays the same part of the image)
        self.scale = teacher_side[0] / student_side[0], teacher_side[1] / student_side[1]
        self.temperature, self.weight = temperature, weight

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's logits (B, K) for a batch of the student's inputs (B, C, h, w) in [0, 1]."""
        if self.scale != (1.0, 1.0):
            size = round(inputs.shape[-2] * self.scale[0]), round(inputs.shape[-1] * self.scale[1])
            inputs = F.interpolate(inputs, size=size, mode="bilinear", antialias=True,
                                   align_corners=False).clamp_(0, 1)
        with torch.no_grad():
            return self.teacher(inputs).float()

    def forward(self, student_logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """T^2 KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
        soft_targets = torch.log_softmax(self.teacher_logits(inputs) / self.temperature, dim=1)
        log_student = torch.log_softmax(student_logits.float() / self.temperature, dim=1)
        divergence = F.kl_div(log_student, soft_targets, reduction="batchmean", log_target=True)
        return divergence * self.temperature ** 2


def mixed_loss(hard: torch.Tensor, distillation: Distillation | None, logits: torch.Tensor,
               inputs: torch.Tensor) -> torch.Tensor:
    """The loss of a batch: the labels' alone, or mixed with the teacher's."""
    if distillation is None or distillation.weight == 0:
        return hard
    soft = distillation(logits, inputs)
    return (1 - distillation.weight) * hard + distillation.weight * soft


def load_teacher(run: str, class_names: list[str], input_shape: tuple[int, int, int],
                 device: torch.device, temperature: float, weight: float) -> Distillation:
    """The teacher of --teacher RUN, checked against the student's data: the same classes in the
    same order, and the same channels (its input side may differ)."""
    if export_of(run) is not None:
        raise CnnlabError(f"--teacher {run} is an export; give the run folder it came from")
    teacher, card = load_model(Path(run), device)
    if list(card.class_names) != list(class_names):
        raise CnnlabError(f"--teacher {run} predicts {len(card.class_names)} classes "
                          f"({', '.join(card.class_names[:4])}...), this data has "
                          f"{len(class_names)} ({', '.join(class_names[:4])}...): a teacher "
                          f"must know the same classes, in the same order")
    if card.input.channels != input_shape[0]:
        raise CnnlabError(f"--teacher {run} takes {card.input.channels}-channel images, this "
                          f"data has {input_shape[0]}: use --channels {card.input.channels}")
    return Distillation(teacher, (card.input.height, card.input.width),
                        (input_shape[1], input_shape[2]), temperature, weight)


@torch.no_grad()
def teacher_labelled(data: DatasetSplits, config: TrainConfig, device: torch.device,
                     say) -> DatasetSplits:
    """--unlabelled DIR: its images, each labelled with the teacher's most likely class, added to
    the training split (the distillation term then learns the teacher's full outputs on them)."""
    if not config.teacher:
        raise CnnlabError("--unlabelled images are labelled by a teacher: add --teacher RUN")
    split, known = unlabelled_split(config.unlabelled, data, config.data)
    distillation = load_teacher(config.teacher, data.class_names, data.input_shape, device,
                                config.distill_temperature, config.distill_weight)
    images, _ = split.to_memory()  # decoded once; unreadable files are named and skipped
    labels = torch.cat([distillation.teacher_logits(to_float(batch).to(device)).argmax(1).cpu()
                        for batch, _ in images.batches(64)])
    labelled = TensorImages(images.images, labels, images.paths)
    left = f"; {known} left out, already in the data" if known else ""
    say(f"--unlabelled {config.unlabelled}: {len(labels)} images labelled by the teacher "
        f"added to the training split{left}")
    return with_extra_training(data, labelled, f"{len(labels)} from {config.unlabelled}, "
                                               f"labelled by the teacher")
