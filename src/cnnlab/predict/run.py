"""`cnnlab predict`'s function: inputs expanded, predicted (images in batches, videos frame by
frame), gated by a probability floor where asked, and written as CSV or JSON where asked."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_text, is_dir
from ..base.settings import resolve
from ..run.prediction import Prediction
from ..run.predictor import Predictor, load_predictor
from .formats import FORMATS, formatted
from .predictor import Failure, Inputs, expand_inputs, predict_files, predict_video
from .settings import PredictSettings
from .thresholds import min_probability


@dataclass(frozen=True)
class Predictions:
    """What `cnnlab predict` found: a prediction per image, video frame and clip, the inputs that
    failed, the format they are shown in, and the file written (with out=)."""

    results: list[Prediction]
    failures: list[Failure] = field(default_factory=list)
    format: str = "table"
    written: Path | None = None


def predict(run: str | Path, inputs: str | Path | list[str | Path],
            settings: PredictSettings | None = None, **options: Any) -> Predictions:
    """Top-k classes for image files, folders (recursive), globs and videos, with the run's (or an
    export's, or pretrained:NAME's) preprocessing; written to `out` as CSV or JSON where given."""
    settings = _with_format(resolve(PredictSettings, settings, options))
    names = [str(item) for item in ([inputs] if isinstance(inputs, str | Path) else inputs)]
    predictor = load_predictor(run, settings.device, unknown=settings.unknown,
                               engine=settings.engine)
    found = expand_inputs(names)
    if not found.images and not found.videos:
        if len(found.missing) == len(names):  # nothing named exists
            raise CnnlabError(f"{found.missing[0].input}: {found.missing[0].reason}")
        raise CnnlabError(f"no images or videos found in {' '.join(names)}")
    gate = min_probability(run, settings, predictor.card)  # errors before the work
    results, failures = _collect(predictor, found, settings)
    if gate is not None:
        results = gate.apply(results)
    predictions = Predictions(results, failures, settings.format)
    if settings.out is None or settings.format == "table":
        return predictions
    atomic_write_text(settings.out, formatted(results, settings.format))
    return dataclasses.replace(predictions, written=Path(settings.out))


def _with_format(settings: PredictSettings) -> PredictSettings:
    """The format from --out's extension unless --format names one; --out must be a file."""
    out, chosen = settings.out, settings.format
    if out is None:
        return settings if chosen else dataclasses.replace(settings, format="table")
    if is_dir(out):
        raise CnnlabError(f"--out {out} is a folder; give a file name, e.g. "
                          f"{out.rstrip('/')}/predictions.{chosen or 'csv'}")
    inferred = FORMATS.get(Path(out).suffix.lower())
    if chosen in (None, "table") and inferred is None:
        raise CnnlabError(f"--out {out}: name a .json or .csv file, or add --format json or csv")
    return dataclasses.replace(settings, format=chosen if chosen not in (None, "table") else inferred)


def _collect(predictor: Predictor, found: Inputs,
             settings: PredictSettings) -> tuple[list[Prediction], list[Failure]]:
    results: list[Prediction] = []
    failures: list[Failure] = list(found.missing)
    for item in predict_files(predictor, found.images, settings.topk, settings.batch_size,
                              settings.workers):
        (failures if isinstance(item, Failure) else results).append(item)
    for video in found.videos:
        try:
            frames, clip = predict_video(predictor, video, settings.fps, settings.topk)
        except CnnlabError as error:
            failures.append(Failure(str(video), str(error).split(": ", 1)[-1]))
            continue
        results.extend([*frames, clip])
    return results, failures
