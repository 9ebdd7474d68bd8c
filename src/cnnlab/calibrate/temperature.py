"""Temperature scaling (Guo et al., 2017): one scalar T > 0 that divides the logits, chosen to
minimize the negative log-likelihood of a held-out split. It changes no prediction (argmax), only
how sure each one says it is.

Fitted here in torch (L-BFGS on log T, float64) rather than with scipy so it needs nothing beyond
the logits already on hand; a test checks it against scipy's minimizer on the same logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15  # as evaluate's reliability diagram
# The temperatures a fit may end at: beyond them the split has too few mistakes (or too many) to
# say how sure the model should be, and the fit only chases its last few images.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


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
