"""Temperature scaling (Guo et al., 2017): one scalar T > 0 that divides the logits, chosen to
minimize the negative log-likelihood of a held-out split. It changes no prediction (argmax), only
how sure each one says it is.

Fitted here in torch (L-BFGS on log T, float64) rather than with scipy so it needs nothing beyond
the logits already on hand; a test checks it against scipy's minimizer on the same logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15  # as evaluate's reliability diagram
# The temperatures a fit may end at: beyond them the split has too few mistakes (or too many) to
# say how sure the model should be, and the fit only chases its last few images.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
# The fewest validation images a temperature is fitted on. Below 30 the ECE's 15 bins hold about
# two images each, so the measure that says whether a temperature helps is noise, and the one
# parameter chases single images (3 images: T = 0.05, ECE 0.02 -> 0.38, 76% confidence at chance).
# Two per class on average as well: the split must show most classes, or the temperature suits
# the few it shows.
MIN_IMAGES, MIN_IMAGES_PER_CLASS = 30, 2


@dataclass(frozen=True)
class TemperatureChoice:
    """The temperature to keep and the ECE of the split before and with it; where none is kept
    (temperature 1), `declined` says why in a phrase."""

    temperature: float
    ece_before: float
    ece_after: float
    declined: str | None = None


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimizing the mean cross-entropy of softmax(logits / T) on (logits (N, K), labels)."""
    logits = logits.double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays > 0
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, tolerance_grad=1e-10,
                                  tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(MIN_TEMPERATURE, MAX_TEMPERATURE))


def calibration_error(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Expected calibration error (L1, 15 equal-width bins) of softmax(logits / temperature)."""
    probabilities = (logits.double() / temperature).softmax(1).float()
    return multiclass_calibration_error(probabilities, labels, logits.shape[1], n_bins=ECE_BINS,
                                        norm="l1").item()


def _too_few(labels: torch.Tensor, classes: int) -> str | None:
    images = len(labels)
    if images < MIN_IMAGES:
        return (f"only {images} validation images (at least {MIN_IMAGES} tell whether a "
                f"temperature helps)")
    if images < MIN_IMAGES_PER_CLASS * classes:
        return (f"only {images} validation images for {classes} classes (at least "
                f"{MIN_IMAGES_PER_CLASS} per class tell whether a temperature helps)")
    return None


def choose_temperature(logits: torch.Tensor, labels: torch.Tensor) -> TemperatureChoice:
    """The likelihood's temperature on (logits (N, K), labels), kept only where the split has
    enough images to judge it, the model makes mistakes on it, and it lowers the split's ECE:
    the likelihood and the ECE can disagree (a few sure mistakes pull T up for every image)."""
    before = calibration_error(logits, labels)
    declined = _too_few(labels, logits.shape[1])
    if declined is None and bool((logits.argmax(1) == labels).all()):
        # the likelihood then only grows as T falls: a fit would make the model as sure as it can
        declined = ("every validation image is right, so nothing says how much less sure the "
                    "model should be")
    if declined is None:
        temperature = fit_temperature(logits, labels)
        after = calibration_error(logits, labels, temperature)
        if after <= before:
            return TemperatureChoice(temperature, before, after)
        declined = (f"the fitted temperature {temperature:.3g} made the validation ECE worse "
                    f"({before:.3f} -> {after:.3f})")
    return TemperatureChoice(1.0, before, before, declined)
