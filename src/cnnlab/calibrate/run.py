"""`cnnlab calibrate RUN` (and the end of `cnnlab train`): the temperature and the unknown-image
detector fitted on the run's validation split and written into its model.json (and, for the
mahalanobis score, the training features' statistics into RUN/unknown.safetensors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..base.devices import resolve_device
from ..base.errors import CnnlabError
from ..base.settings import resolve
from ..run.contract import Calibration, ModelCard, UnknownDetector
from ..run.data import run_dataset
from ..run.engine import feature_engine
from ..run.folder import export_of, load_model, write_card
from ..run.inference import output_layer, predict_logits
from ..run.unknown import FeatureStatistics, Outputs, model_outputs, score_outputs
from ..run.unknown_scores import unknown_score
from .settings import CalibrateSettings
from .temperature import choose_temperature

STATISTICS = "unknown.safetensors"


@dataclass(frozen=True)
class CalibrationResult:
    """What was fitted, and on how many validation images."""

    card: ModelCard
    val_images: int

    def describe(self) -> str:
        parts = []
        c = self.card.calibration
        if c is not None and c.declined is not None:
            parts.append(f"no temperature: {c.declined}")
        elif c is not None:
            parts.append(f"temperature {c.temperature:.3g} (ECE {c.ece_before:.3f} -> "
                         f"{c.ece_after:.3f})")
        if self.card.unknown is not None:
            u = self.card.unknown
            parts.append(f"unknown images: {u.score} score below {u.threshold:.4g} (keeps "
                         f"{u.keep:.0%} of the known)")
        # a probe refitted on train + val: its validation scores run high, the threshold with them
        fitted = ("; note: the model was fitted on these validation images too, so the threshold "
                  "keeps fewer new known images than it says" if "val" in self.card.fitted_on else "")
        return f"calibrated on {self.val_images:,} validation images: " + "; ".join(parts) + fitted


def _statistics(model, data, settings: CalibrateSettings, device: torch.device,
                run: Path) -> FeatureStatistics | None:
    if not unknown_score(settings.score).needs_features:
        (run / STATISTICS).unlink(missing_ok=True)  # a file of an earlier detector goes with it
        return None
    train = model_outputs(model, data.train, device, limit=settings.train_images)
    statistics = FeatureStatistics.fit(train.features, train.labels, data.num_classes)
    statistics.save(run / STATISTICS)
    return statistics


def _outputs(model, card: ModelCard, split, device: torch.device) -> Outputs:
    """The split's raw logits and features: where ONNX Runtime's graph of this backbone is
    already made (the linear probe made it, see run.engine), its features and the output layer's
    logits on them, 5x faster on a CPU; else one pass of PyTorch."""
    extractor = feature_engine(model, card.input.shape, "auto", device, make=False)
    if extractor is None:
        return model_outputs(model, split, device)
    features, labels = predict_logits(extractor, split, device, batch_size=64)
    with torch.no_grad():
        logits = output_layer(model)(features.to(device)).float().cpu()
    return Outputs(logits, features, labels)


def _calibration(val: Outputs, settings: CalibrateSettings) -> Calibration | None:
    """The temperature, or a record of why none was kept (see choose_temperature)."""
    if not settings.temperature:
        return None
    choice = choose_temperature(val.logits, val.labels)
    return Calibration(temperature=round(choice.temperature, 6),
                       ece_before=round(choice.ece_before, 6), ece_after=round(choice.ece_after, 6),
                       images=len(val.labels), declined=choice.declined)


def _threshold(scores: torch.Tensor, keep: float) -> float:
    """The score that `keep` of the known images reach (so 1 - keep fall below it)."""
    return float(torch.quantile(scores.double(), 1 - keep))


def calibrate_run(run: str | Path, settings: CalibrateSettings | None = None,
                  **options: Any) -> CalibrationResult:
    """Fit the temperature and the unknown detector of a run on its validation split and write
    them into RUN/model.json. See CalibrateSettings for the options (score, keep, ...)."""
    settings, run = resolve(CalibrateSettings, settings, options), Path(run)
    if export_of(run) is not None:
        raise CnnlabError(f"{run} is an export; calibrate the run folder it came from, then "
                          f"export again")
    device = resolve_device(settings.device)
    model, card = load_model(run, device)
    model.temperature = 1.0  # fitted on the raw logits
    data = run_dataset(run, card)
    if data.val is None or len(data.val) < 2:
        raise CnnlabError(f"{run}: its data has no validation split to calibrate on (set "
                          f"--val-fraction when training)")
    val = _outputs(model, card, data.val, device)
    calibration = _calibration(val, settings)
    statistics = _statistics(model, data, settings, device, run)
    temperature = calibration.temperature if calibration else 1.0
    scores = score_outputs(settings.score, val, temperature, statistics)
    detector = UnknownDetector(settings.score, round(_threshold(scores, settings.keep), 6),
                               settings.keep, STATISTICS if statistics is not None else None)
    card = card.replace(calibration=calibration, unknown=detector)
    write_card(run, card)
    return CalibrationResult(card, len(val.labels))
