"""FGSM and PGD in pixel space, on top of Captum's implementations.

A model here takes pixels in [0, 1] and normalizes inside itself (models.Classifier), so an attack
perturbs the image a person would see: epsilon is in pixel units, before normalization, and every
adversarial image is clipped to [0, 1]. The base class owns the fiddly parts (eval mode and back,
the zero-epsilon shortcut, the final clamp); each method is a short subclass.

This module needs nothing from cnnlab but settings, errors and eval mode, so the training loop can
import it without an import arrow running upward into run folders, data or plots (those live in
robustness.py). Attacks run in eval mode: dropout is off and batch norm uses, without updating, its
running statistics, so attacking during adversarial training leaves those statistics to the
batches the model trains on (as TRADES and most PGD training code do).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from captum.robust import FGSM, PGD
from torch import nn

from ..base.errors import CnnlabError, unknown
from ..config import TrainConfig
from ..models.modes import eval_mode
from .settings import AttackSettings

METHODS = ("fgsm", "pgd")
NORMS = {"linf": "Linf", "l2": "L2"}  # our names -> Captum's


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNG (Captum's random start draws from it) and restore it afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # Per-image losses, (B,): Captum sums them, so each image's gradient is its own.
    return F.cross_entropy(logits.float(), labels, reduction="none")


def _fgsm(model: nn.Module) -> FGSM:
    fgsm = FGSM(model, _loss, lower_bound=0.0, upper_bound=1.0)
    # Captum leaves pixels whose gradient is below 1e-6 untouched; FGSM as published steps along
    # the sign of any non-zero gradient, and a confident model has many such small gradients.
    fgsm.zero_thresh = 0.0
    return fgsm


def check_eps(eps: float, what: str = "eps") -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise CnnlabError(f"{what} must be a number >= 0 (pixel units, images in [0, 1]), got {eps}")
    return eps


class Attack:
    """Perturb (B, C, H, W) images in [0, 1] so that `model` misclassifies their labels."""

    def __init__(self, model: nn.Module, eps: float, norm: str = "linf") -> None:
        if norm not in NORMS:
            raise unknown("norm", norm, NORMS)
        self.model, self.eps, self.norm = model, check_eps(eps), norm

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Adversarial images: within eps of `images` in the attack's norm and inside [0, 1]."""
        images = images.detach()
        if self.eps == 0:
            return images.clone()  # nothing to search: the clean images, bit for bit
        with eval_mode(self.model), warnings.catch_warnings():
            # Captum turns on requires_grad for the images itself and says so every step.
            warnings.filterwarnings("ignore", message="Input Tensor .* did not already require")
            adversarial = self.perturb(images, labels)
        return adversarial.detach().clamp_(0.0, 1.0)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class FGSMAttack(Attack):
    """Fast gradient sign method (Goodfellow et al., 2015): one step of eps along the gradient's sign.

    With `random_start`, the "fast is better than free" variant for training (Wong et al., 2020):
    start at a uniform random point of the eps-box, take one step of `step_size` (default 1.25 eps)
    and project back into the box.
    """

    def __init__(self, model: nn.Module, eps: float, *, random_start: bool = False,
                 step_size: float | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__(model, eps, "linf")
        self.random_start, self.generator = random_start, generator
        self.step_size = 1.25 * self.eps if step_size is None else step_size

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        fgsm = _fgsm(self.model)
        if not self.random_start:
            return fgsm.perturb(images, self.eps, labels)
        # Captum's FGSM has no random start: draw it here (from the trainer's generator, so a
        # resumed run draws the same numbers), let Captum take the step, then project.
        noise = torch.rand(images.shape, generator=self.generator).to(images.device)
        start = (images + (2 * noise - 1) * self.eps).clamp(0.0, 1.0)
        stepped = fgsm.perturb(start, self.step_size, labels)
        return images + (stepped - images).clamp(-self.eps, self.eps)


def pgd_step_size(eps: float, steps: int, step_size: float | None) -> float:
    """The length of one PGD step: the one given, or 2.5 eps / steps, so the search can cross the
    ball and back (the rule of Madry et al.'s robustness library)."""
    return 2.5 * eps / steps if step_size is None else step_size


class PGDAttack(Attack):
    """Projected gradient descent (Madry et al., 2018): `steps` sign-gradient steps, each projected
    back into the eps-ball around the image and into [0, 1].

    `step_size` is each step's length in the chosen norm (default: `pgd_step_size`).
    """

    def __init__(self, model: nn.Module, eps: float, *, steps: int = AttackSettings.steps,
                 step_size: float | None = None, norm: str = "linf", random_start: bool = True) -> None:
        super().__init__(model, eps, norm)
        if steps < 1:
            raise CnnlabError(f"--steps must be at least 1, got {steps}")
        if step_size is not None and not step_size > 0:
            raise CnnlabError(f"--step-size must be a number > 0, got {step_size}")
        self.steps, self.random_start = steps, random_start
        self.step_size = pgd_step_size(self.eps, steps, step_size)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pgd = PGD(self.model, _loss, lower_bound=0.0, upper_bound=1.0)
        pgd.fgsm.zero_thresh = 0.0  # see _fgsm
        step = self.step_size
        if self.norm == "l2":
            # Captum's steps follow the gradient's sign, whose L2 length is sqrt(C*H*W) per unit.
            step = step / math.sqrt(images[0].numel())
        # Captum draws an L2 random start's radius on the CPU, which fails for CUDA images: L2
        # starts at the image itself. L-infinity starts at a random point (global torch RNG).
        return pgd.perturb(images, self.eps, step, self.steps, labels,
                           random_start=self.random_start and self.norm == "linf",
                           norm=NORMS[self.norm])


def make_attack(model: nn.Module, method: str, eps: float, *, norm: str = AttackSettings.norm,
                steps: int = AttackSettings.steps, step_size: float | None = None) -> Attack:
    """An evaluation attack by name: "fgsm" or "pgd" (with a random start)."""
    if method not in METHODS:
        raise unknown("attack method", method, METHODS)
    if norm not in NORMS:
        raise unknown("norm", norm, NORMS)
    if method == "fgsm":
        if norm != "linf":
            raise CnnlabError("FGSM is an L-infinity attack (one step along the gradient's sign); "
                              "use --method pgd for --norm l2")
        return FGSMAttack(model, eps)
    return PGDAttack(model, eps, steps=steps, step_size=step_size, norm=norm)


def training_attack(model: nn.Module, method: str, eps: float, *,
                    steps: int = TrainConfig.adv_steps, step_size: float | None = None,
                    generator: torch.Generator | None = None) -> Attack:
    """The attack adversarial training trains against (L-infinity).

    "fgsm": FGSM with a random start and a 1.25 eps step (Wong et al., 2020); "pgd": PGD with a
    random start, `steps` steps (Madry et al., 2018).
    """
    if method not in METHODS:
        raise unknown("adversarial training method", method, METHODS)
    if check_eps(eps, "--adv-eps") == 0:
        raise CnnlabError("--adv-eps must be > 0 for adversarial training")
    if step_size is not None and not step_size > 0:
        raise CnnlabError(f"--adv-step-size must be a number > 0, got {step_size}")
    if method == "fgsm":
        return FGSMAttack(model, eps, random_start=True, step_size=step_size, generator=generator)
    if steps < 1:
        raise CnnlabError(f"--adv-steps must be at least 1, got {steps}")
    return PGDAttack(model, eps, steps=steps, step_size=step_size, random_start=True)


@torch.no_grad()
def correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the model's top-1 class is the label, in eval mode."""
    with eval_mode(model):
        return model(images).argmax(1) == labels


def robust_correct(model: nn.Module, attack: Attack, images: torch.Tensor,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: correct when clean, correct under attack (both), and the adversarial images.

    An image counts as robust only when it is classified correctly both clean and attacked: the
    per-image worst case, so robust accuracy can never exceed clean accuracy.
    """
    clean = correct(model, images, labels)
    adversarial = attack(images, labels)
    return clean, clean & correct(model, adversarial, labels), adversarial
