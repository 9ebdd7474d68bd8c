"""The exact linear probe: a frozen backbone's head fitted to convergence on cached features.

With the backbone frozen, the head is multinomial logistic regression on fixed vectors, so it is
fitted as scikit-learn's LogisticRegression fits it: full-batch L-BFGS on the cross-entropy plus an
L2 penalty on the weights (not the bias), in float64, until the gradient vanishes. The result does
not depend on epochs, batch size or learning rate. The penalty is chosen on the validation split
along a path from strong to weak (each fit warm-starts the next), then the chosen one is refitted on
train and validation together, as LogisticRegressionCV(refit=True) does. Where there are fewer
vectors than features, the fit runs in their span (exactly the same probe, fewer dimensions).

Written in torch rather than calling scikit-learn so the fit runs on the training device, takes the
class weights of the loss, and writes straight into the model's own head (a test checks it against
scikit-learn on the same vectors).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from ..base.fileio import atomic_write_text

# scikit-learn's C: the inverse of the penalty on the summed loss, 0.5 |W|^2 + C sum(CE).
C_PATH = tuple(10.0 ** (k / 2) for k in range(-6, 5))  # 1e-3 ... 1e2, half a decade apart
DEFAULT_C = 1.0  # scikit-learn's default, used when there is no validation split
MAX_ITERATIONS = 500
# Largest gradient entry of the mean objective at which the fit stops: on EfficientNet-Lite0
# features of flowers12 it gives class probabilities within 0.01 of scikit-learn's run to
# tol=1e-10 (a test checks it), where a tighter one costs several times as long and changes no
# prediction.
GRADIENT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ProbeFit:
    """One penalty on the path: how the fit on the training vectors did."""

    c: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    iterations: int


def _objective(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor,
               labels: torch.Tensor, c: float, class_weights: torch.Tensor | None,
               label_smoothing: float) -> torch.Tensor:
    """scikit-learn's objective divided by C * N: the mean loss plus |W|^2 / (2 C N)."""
    logits = features @ weight.T + bias  # (N, K)
    per_image = nn.functional.cross_entropy(logits, labels, reduction="none",
                                            label_smoothing=label_smoothing)
    if class_weights is not None:
        per_image = per_image * class_weights[labels]
    return per_image.mean() + weight.square().sum() / (2 * c * len(labels))


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int, c: float, *,
                 class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 start: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Multinomial logistic regression on (N, F) features; returns weight (K, F), bias (K,) and
    the L-BFGS iterations it took (float64 on the features' device). With label_smoothing, the
    loss is the smoothed cross-entropy that fine-tuning goes on to minimize."""
    features = features.double()
    if start is None:
        # zeros: the loss starts at ln K whatever the features, as a new head should
        weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float64,
                             device=features.device)
        bias = torch.zeros(num_classes, dtype=torch.float64, device=features.device)
    else:
        weight, bias = (t.detach().clone().double() for t in start)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    weights = class_weights.double() if class_weights is not None else None
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=MAX_ITERATIONS, history_size=20,
                                  tolerance_grad=GRADIENT_TOLERANCE, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _objective(weight, bias, features, labels, c, weights, label_smoothing)
        loss.backward()
        return loss

    optimizer.step(closure)
    iterations = optimizer.state[optimizer._params[0]].get("n_iter", 0)
    return weight.detach(), bias.detach(), int(iterations)


def _score(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor,
           labels: torch.Tensor) -> tuple[float, float]:
    logits = features.double() @ weight.T + bias
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).double().mean().item()


@dataclass
class Probe:
    """The fitted head and the path of penalties that chose it."""

    weight: torch.Tensor  # (K, F)
    bias: torch.Tensor  # (K,)
    c: float
    path: list[ProbeFit]

    @property
    def chosen(self) -> ProbeFit:
        return next(fit for fit in self.path if fit.c == self.c)

    def load_into(self, head: nn.Linear) -> None:
        with torch.no_grad():
            head.weight.copy_(self.weight.to(head.weight))
            head.bias.copy_(self.bias.to(head.bias))


def _span(features: torch.Tensor) -> torch.Tensor | None:
    """An orthonormal basis (F, r) of the span of the vectors (N, F), where there are fewer of
    them than dimensions; else None. With the penalty on the weights alone, the optimal weights lie
    in that span (the gradient of the loss does, and the penalty's pulls back into it), so fitting
    the coordinates in the basis gives the same probe: 648 flowers12 vectors of 1,280 features fit
    in 648 dimensions, 2-4 times as fast."""
    if len(features) >= features.shape[1]:
        return None
    _, singular, rows = torch.linalg.svd(features.double(), full_matrices=False)
    rank = int((singular > singular[0] * 1e-10).sum())
    return rows[:rank].T


def _in_span(features: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    return features.double() @ basis if basis is not None else features


def _better(fit: ProbeFit, best: ProbeFit | None) -> bool:
    """Higher validation accuracy wins; on a tie, the lower validation loss."""
    return best is None or (fit.val_acc, -fit.val_loss) > (best.val_acc, -best.val_loss)


def linear_probe(train: tuple[torch.Tensor, torch.Tensor],
                 val: tuple[torch.Tensor, torch.Tensor] | None, num_classes: int, *,
                 class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 refit: bool = True, c_path: tuple[float, ...] = C_PATH) -> Probe:
    """Fit the head on (features (N, F), labels (N,)) pairs; choose C on `val` when given, then
    (with `refit`) fit that C again on train and val together."""
    features, labels = train
    if val is None or not len(val[1]):
        weight, bias, iterations = fit_logistic(features, labels, num_classes, DEFAULT_C,
                                                class_weights=class_weights,
                                                label_smoothing=label_smoothing)
        loss, acc = _score(weight, bias, features, labels)
        return Probe(weight, bias, DEFAULT_C,
                     [ProbeFit(DEFAULT_C, loss, acc, math.nan, math.nan, iterations)])
    basis = _span(features)
    reduced, val_reduced = _in_span(features, basis), _in_span(val[0], basis)
    path, best, start, chosen = [], None, None, None
    for c in sorted(c_path):
        weight, bias, iterations = fit_logistic(reduced, labels, num_classes, c,
                                                class_weights=class_weights,
                                                label_smoothing=label_smoothing, start=start)
        start = (weight, bias)
        fit = ProbeFit(c, *_score(weight, bias, reduced, labels),
                       *_score(weight, bias, val_reduced, val[1]), iterations)
        path.append(fit)
        if _better(fit, best):
            best, chosen = fit, (weight, bias)
    if not refit:
        return Probe(_out_of_span(chosen[0], basis), chosen[1], best.c, path)
    everything = torch.cat([features, val[0]])
    basis = _span(everything)
    weight, bias, _ = fit_logistic(_in_span(everything, basis), torch.cat([labels, val[1]]),
                                   num_classes, best.c, class_weights=class_weights,
                                   label_smoothing=label_smoothing)
    return Probe(_out_of_span(weight, basis), bias, best.c, path)


def _out_of_span(weight: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """Weights (K, r) on the basis's coordinates as weights (K, F) on the features."""
    return weight @ basis.T if basis is not None else weight


PROBE_PATH = "probe.csv"


def write_probe_path(run_dir: Path, path: list[ProbeFit]) -> None:
    """RUN/probe.csv: each penalty tried, with its train and validation loss and accuracy."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(ProbeFit)])
    writer.writeheader()
    writer.writerows(asdict(fit) for fit in path)
    atomic_write_text(run_dir / PROBE_PATH, buffer.getvalue())


def probe_summary(probe: Probe, seconds: float) -> str:
    chosen = probe.chosen
    where = (f"val acc {chosen.val_acc:.2%}, chosen among {len(probe.path)} penalties"
             if not math.isnan(chosen.val_acc) else "no validation split: scikit-learn's default")
    return (f"linear probe: C={probe.c:g} ({where}), train acc {chosen.train_acc:.2%}, "
            f"{seconds:.1f}s")
