"""A run's unknown-image detector: the scores that tell the images a model was trained on from
others (higher: more like its own), and the detector a predictor applies with its model card's
score and threshold. The scores are the table in run.unknown_scores; a score that needs the
features (mahalanobis) reads the statistics of the training features kept here (class means and
the shared precision matrix), in a safetensors file with its SHA-256 beside it, as the weights
are: damage is one line on loading, never scores that call every image unknown. The detector is
fitted by the calibrate stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..base.errors import CnnlabError
from ..base.fileio import sha256_of
from ..data.images import to_float
from ..data.splits import Split
from ..models.modes import eval_mode
from .contract import ModelCard, UnknownDetector
from .folder import CHECKSUM_SUFFIX, recorded_digests, write_checked
from .inference import inference_batch
from .unknown_scores import ScoreInputs, unknown_score

# Shrinkage toward the identity (relative to the covariance's mean variance): a few hundred
# training images give a singular covariance of 1280 features.
SHRINKAGE = 0.01


@dataclass(frozen=True)
class FeatureStatistics:
    """What mahalanobis needs of the training features."""

    means: torch.Tensor  # (K, F) class means
    precision: torch.Tensor  # (F, F) inverse of the shared, shrunk covariance

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> FeatureStatistics:
        features = features.double()
        means = torch.stack([features[labels == k].mean(0) if (labels == k).any()
                             else features.mean(0) for k in range(num_classes)])
        centred = features - means[labels]
        covariance = centred.T @ centred / len(features)
        shrink = SHRINKAGE * covariance.diagonal().mean().clamp_min(1e-12)
        covariance += shrink * torch.eye(covariance.shape[0], dtype=covariance.dtype)
        return cls(means.float(), torch.linalg.inv(covariance).float())

    def save(self, path: Path) -> None:
        """The file and its PATH.sha256, as the weights are kept: damage is found on loading."""
        state = {"means": self.means.contiguous(), "precision": self.precision.contiguous()}
        write_checked(path, save(state))

    @classmethod
    def load(cls, path: Path, num_classes: int) -> FeatureStatistics:
        """The statistics at `path`, refused in one line where its bytes differ from their
        checksum or its values could not have been fitted (a file from before checksums were
        kept has none, and gets the second check only)."""
        _verify_statistics(path)
        try:
            state = load_file(str(path))
            statistics = cls(state["means"], state["precision"])
        except Exception as error:  # safetensors raises its own kinds for a damaged file
            raise CnnlabError(f"cannot load the unknown detector's statistics {path}: "
                              f"{str(error).splitlines()[0][:200]}") from None
        problem = statistics.problem(num_classes)
        if problem is not None:
            raise CnnlabError(f"{path} is damaged: {problem}; {_mend(path)}")
        return statistics

    def problem(self, num_classes: int) -> str | None:
        """What makes these statistics impossible for a fit of `num_classes` classes, or None.
        Damage that still parses turns scores NaN (every image then unknown) or meaningless."""
        means, precision = self.means, self.precision
        if means.ndim != 2 or means.shape[0] != num_classes:
            return f"its class means are {tuple(means.shape)}, not a row for each of " \
                   f"{num_classes} classes"
        if precision.shape != (means.shape[1],) * 2:
            return f"its precision matrix is {tuple(precision.shape)}, not {(means.shape[1],) * 2}"
        if not (torch.isfinite(means).all() and torch.isfinite(precision).all()):
            return "it holds values that are not finite (NaN or infinite)"
        # The inverse of a covariance is symmetric: a changed entry breaks the symmetry.
        scale = float(precision.abs().max())
        if not torch.allclose(precision, precision.T, rtol=1e-4, atol=1e-4 * scale):
            return "its precision matrix is not symmetric"
        return None

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (N,): minus the smallest squared Mahalanobis distance to a class mean."""
        centred = features.float()[:, None, :] - self.means[None]  # (N, K, F)
        distances = torch.einsum("nkf,fg,nkg->nk", centred, self.precision, centred)
        return -distances.min(1).values


@dataclass
class Outputs:
    """What scoring reads of a model on some images: raw logits (N, K) and the output layer's
    input features (N, F), with the labels where there are any."""

    logits: torch.Tensor
    features: torch.Tensor
    labels: torch.Tensor


@torch.no_grad()
def model_outputs(model, split: Split, device: torch.device, limit: int | None = None,
                  batch_size: int | None = None) -> Outputs:
    """One pass over the split (its first `limit` images): raw logits and penultimate features,
    in channels-last (2-3x the default layout's speed on a CPU, for small networks and large)."""
    captured: list[torch.Tensor] = []
    handle = model.output_layer.register_forward_hook(
        lambda _module, inputs, _output: captured.append(inputs[0].detach().float().cpu()))
    logits, labels, seen = [], [], 0
    try:
        with eval_mode(model):
            for images, targets in split.batches(batch_size or inference_batch(split)):
                take = len(targets) if limit is None else min(len(targets), limit - seen)
                inputs = to_float(images[:take].to(device))
                logits.append(model(inputs.contiguous(memory_format=torch.channels_last))
                              .float().cpu())
                labels.append(targets[:take])
                seen += take
                if limit is not None and seen >= limit:
                    break
    finally:
        handle.remove()
    return Outputs(torch.cat(logits), torch.cat(captured), torch.cat(labels))


def score_outputs(name: str, outputs: Outputs, temperature: float,
                  statistics: FeatureStatistics | None) -> torch.Tensor:
    """(N,) scores of the score `name` (higher: more like the training images)."""
    return unknown_score(name).function(ScoreInputs(outputs.logits, temperature, outputs.features,
                                                    statistics))


log = logging.getLogger("cnnlab")


@dataclass(frozen=True)
class Detector:
    spec: UnknownDetector
    temperature: float
    statistics: FeatureStatistics | None = None

    @property
    def needs_features(self) -> bool:
        return unknown_score(self.spec.score).needs_features

    def score(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """(B, K) raw logits and (B, F) features -> (B,) scores; higher: more like known images."""
        inputs = ScoreInputs(logits, self.temperature, features, self.statistics)
        return unknown_score(self.spec.score).function(inputs)

    def known(self, scores: torch.Tensor) -> torch.Tensor:
        return scores >= self.spec.threshold


def _verify_statistics(path: Path) -> None:
    expected = recorded_digests(path)
    if expected and sha256_of(path) not in expected:
        raise CnnlabError(f"{path} is damaged: its SHA-256 does not match "
                          f"{path.name}{CHECKSUM_SUFFIX}; {_mend(path)}")


def _mend(path: Path) -> str:
    """What mends a damaged statistics file: the detector fitted anew, or none used."""
    return (f"nothing was used (run `cnnlab calibrate {path.parent}` again to fit the detector "
            f"anew, or predict with --no-unknown)")


def load_detector(run: Path, card: ModelCard) -> Detector | None:
    """The run's detector, or None (said once) where the run has none."""
    if card.unknown is None:
        log.warning("%s has no unknown-image detector, so every image gets one of its classes; "
                    "add one with `cnnlab calibrate %s`", run, run)
        return None
    statistics = None
    if card.unknown.file is not None:
        path = run / card.unknown.file
        if not path.is_file():
            raise CnnlabError(f"{path} is missing: the unknown detector's statistics; run "
                              f"`cnnlab calibrate {run}` again")
        statistics = FeatureStatistics.load(path, card.num_classes)
    return Detector(card.unknown, card.temperature, statistics)


def detector_from_outputs(card: ModelCard, output: str) -> Detector | None:
    """The detector where a graph that gives `output` (logits or log-probabilities, never the
    features) allows its score: a score of the probabilities always, one of the logits from
    logits; else None."""
    if card.unknown is None:
        return None
    score = unknown_score(card.unknown.score)
    if score.needs_features:
        return None
    if output == "logits":
        return Detector(card.unknown, card.temperature)
    # the graph's log-probabilities already carry the temperature
    return Detector(card.unknown, 1.0) if score.reads_probabilities else None


def exported_detector(card: ModelCard, output: str) -> Detector | None:
    """An export's detector (see detector_from_outputs), or None said once where its graph does
    not allow the score."""
    detector = detector_from_outputs(card, output)
    if detector is not None or card.unknown is None:
        return detector
    score = card.unknown.score
    log.warning("this export gives %s, from which the %s score of its detector cannot be computed: "
                "unknown images are not detected (predict with the run folder instead)",
                output.replace("_", "-"), score)
    return None
