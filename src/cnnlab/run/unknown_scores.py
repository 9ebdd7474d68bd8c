"""The unknown-image scores, one table entry each: how a score is computed, what it reads of the
network and its help line. A new score is one `register_unknown_score` call; calibrate's --score,
the model card, evaluate --unknown and every detector take their names from here.

Every score is "higher: more like the training images". Nothing here imports torch (the functions
only call tensor methods), so that the table's names and help reach --help without it.

- msp: the largest softmax probability (Hendrycks & Gimpel, 2017), after temperature scaling;
- energy: logsumexp of the logits, the negative free energy (Liu et al., 2020);
- maxlogit: the largest logit (Hendrycks et al., 2022);
- mahalanobis: minus the smallest Mahalanobis distance of the output layer's input features to a
  class mean, with one covariance shared by the classes (Lee et al., 2018).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..base.errors import CnnlabError, unknown
from ..base.registry import register
from ..base.settings import Names

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class ScoreInputs:
    """What a score may read of a model on N images."""

    logits: Tensor  # (N, K) raw logits; log-probabilities where a graph gives those instead
    temperature: float = 1.0  # the card's, for scores of the probabilities
    features: Tensor | None = None  # (N, F): the output layer's input, for needs_features scores
    statistics: Any = None  # run.unknown.FeatureStatistics of the training features


@dataclass(frozen=True)
class UnknownScore:
    """One score: its name, its help line and its function (N images' inputs -> (N,) scores)."""

    name: str
    help: str
    function: Callable[[ScoreInputs], Tensor]
    # It reads the features and the training features' statistics (kept beside the card), not
    # only the logits: an export, whose graph gives logits alone, cannot compute it.
    needs_features: bool = False
    # It reads the probabilities only, so the log-probabilities a flip-TTA graph gives serve as
    # well as the logits (whose temperature the graph then already applied).
    reads_probabilities: bool = False


def _msp(inputs: ScoreInputs) -> Tensor:
    return (inputs.logits / inputs.temperature).softmax(1).max(1).values


def _energy(inputs: ScoreInputs) -> Tensor:
    return inputs.logits.logsumexp(1)


def _maxlogit(inputs: ScoreInputs) -> Tensor:
    return inputs.logits.max(1).values


def _mahalanobis(inputs: ScoreInputs) -> Tensor:
    if inputs.statistics is None or inputs.features is None:
        raise CnnlabError("the mahalanobis score needs the training features' statistics")
    return inputs.statistics.score(inputs.features)


UNKNOWN_SCORES: dict[str, UnknownScore] = {}


def register_unknown_score(score: UnknownScore) -> UnknownScore:
    """Add a score to the table; a name taken twice is a mistake in the code."""
    return register(UNKNOWN_SCORES, score.name, score, "unknown-image score")


register_unknown_score(UnknownScore("msp", "softmax probability", _msp, reads_probabilities=True))
register_unknown_score(UnknownScore("energy", "logsumexp of the logits", _energy))
register_unknown_score(UnknownScore("maxlogit", "the largest logit", _maxlogit))
register_unknown_score(UnknownScore("mahalanobis", "distance of the features to the classes",
                                    _mahalanobis, needs_features=True))

DEFAULT_UNKNOWN_SCORE = "energy"  # chosen by bench/unknown.py (BENCHMARKS.md, "Unknown images")
# The names as they stand when read: a score registered after a settings class was made is still
# one of its choices.
SCORE_NAMES = Names(UNKNOWN_SCORES)


def unknown_score(name: str) -> UnknownScore:
    """The table's entry for `name`; another name is one line with a did-you-mean."""
    if name not in UNKNOWN_SCORES:
        raise unknown("unknown-image score", name, UNKNOWN_SCORES)
    return UNKNOWN_SCORES[name]


def scores_help() -> str:
    """Each score with its help line, for --help: 'msp (softmax probability), energy (...)'."""
    return ", ".join(f"{score.name} ({score.help})" for score in UNKNOWN_SCORES.values())
