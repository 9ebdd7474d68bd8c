"""What a model says about one input: its top classes with their probabilities and, where the run
has an unknown-image detector, the detector's verdict. One type for `model.predict`, `cnnlab
predict` (images, video frames, clips) and serve's `/predict`, with one dict form that the JSON and
CSV files and serve's answers are all written from. No torch here: the types are plain data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

# The keys of `UnknownVerdict.to_dict` and `Prediction.to_dict` ("top" aside), in their order:
# the CSV writer's columns follow it.
UNKNOWN_KEYS = ("known", "unknown_score", "unknown_threshold", "unknown_score_name",
                "unknown_reason")
PREDICTION_KEYS = ("input", "frame", "time", "frames", "accepted", *UNKNOWN_KEYS)
TOPK = 5  # classes listed per input unless asked otherwise (predict's --topk default too)
NOT_FINITE = "the detector's score is not a finite number, so no threshold vouches for the input"


@dataclass(frozen=True)
class ClassScore:
    name: str
    index: int
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CLASS_KEYS = tuple(field.name for field in fields(ClassScore))  # ClassScore.to_dict's keys


@dataclass(frozen=True)
class UnknownVerdict:
    """The unknown-image detector's answer for one input: `known` is False where its score (named
    `score_name`, higher: more like the training images) is below `threshold`, and also where the
    score is NaN or infinite, which says nothing about the input."""

    known: bool
    score: float
    threshold: float
    score_name: str

    @classmethod
    def judged(cls, score: float, passed: bool, threshold: float, score_name: str) -> UnknownVerdict:
        """The verdict on `score`, given the detector's comparison with its threshold (`passed`)."""
        finite = math.isfinite(score)
        return cls(bool(passed) and finite, round(score, 6) if finite else score, threshold,
                   score_name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: a non-finite score is written as None (null), with the reason beside it."""
        finite = math.isfinite(self.score)
        row: dict[str, Any] = {"known": self.known, "unknown_score": self.score if finite else None,
                               "unknown_threshold": self.threshold,
                               "unknown_score_name": self.score_name}
        if not finite:
            row["unknown_reason"] = NOT_FINITE
        return row


@dataclass(frozen=True)
class Prediction:
    """The top-k classes for one input (an image, one video frame, or a whole clip), best first.

    Indexed and iterated, a prediction is the sequence of its top ClassScores (`prediction[0].name`,
    `len(prediction)`), as `model.predict` gave lists of them before it carried the rest."""

    input: str | None  # the input's name: a file's path, an upload's name; None for an array
    top: list[ClassScore]
    unknown: UnknownVerdict | None = None  # None: the model has no detector (or it is turned off)
    frame: int | None = None  # video frame number
    time: float | None = None  # seconds into the video
    frames: int | None = None  # for a clip: how many frames were averaged
    accepted: bool | None = None  # with a minimum probability: False calls the input unknown

    @property
    def known(self) -> bool | None:
        """The detector's verdict (None: the model has none)."""
        return None if self.unknown is None else self.unknown.known

    @property
    def unknown_score(self) -> float | None:
        """The detector's score: below the model's threshold is unknown."""
        return None if self.unknown is None else self.unknown.score

    @property
    def score(self) -> float | None:
        """The detector's score, by the name `model.predict`'s answers have always had."""
        return self.unknown_score

    @property
    def is_unknown(self) -> bool:
        """Called "none of my classes", by the detector or by a probability floor."""
        return self.known is False or self.accepted is False

    def __getitem__(self, index: int | slice) -> ClassScore | list[ClassScore]:
        return self.top[index]

    def __len__(self) -> int:
        return len(self.top)

    def __iter__(self) -> Iterator[ClassScore]:
        return iter(self.top)

    def to_dict(self) -> dict[str, Any]:
        """The one dict form: what JSON files, CSV rows and serve's answers are written from.
        Keys that do not apply (a frame number for an image, the verdict without a detector) are
        left out."""
        row: dict[str, Any] = {"input": self.input}
        for key in ("frame", "time", "frames", "accepted"):
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        if self.unknown is not None:
            row.update(self.unknown.to_dict())
        row["top"] = [score.to_dict() for score in self.top]
        return row
