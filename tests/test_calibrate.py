"""Calibrate: a temperature is kept only where it makes the validation split better calibrated, and
only fitted where there are enough validation images to tell; where none is kept, the run's
calibration record, train's and calibrate's output and the report say why."""

import pytest
import torch

import cnnlab
from cnnlab.calibrate.temperature import (
    MIN_IMAGES,
    calibration_error,
    choose_temperature,
    fit_temperature,
)
from cnnlab.report.sections import unknowns
from cnnlab.run.folder import read_card

from .helpers import make_folder, overconfident_logits, run_cnnlab


def _sure_of_its_mistakes(images: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes: nine in ten images right at 88% confidence, the rest wrong and all but certain.
    The likelihood's temperature (about 14) flattens every probability towards one half."""
    labels = torch.zeros(images, dtype=torch.long)
    logits = torch.zeros(images, 2)
    right = images * 9 // 10
    logits[:right, 0] = 2.0
    logits[right:, 1] = 12.0
    return logits, labels


def test_a_temperature_that_makes_the_validation_ece_worse_is_not_kept():
    logits, labels = _sure_of_its_mistakes()
    fitted = fit_temperature(logits, labels)
    assert calibration_error(logits, labels, fitted) > calibration_error(logits, labels) + 0.1
    choice = choose_temperature(logits, labels)
    assert choice.temperature == 1.0
    assert choice.ece_after == choice.ece_before == pytest.approx(calibration_error(logits, labels))
    assert "worse" in choice.declined and f"{fitted:.3g}" in choice.declined


def test_a_temperature_that_helps_is_kept():
    logits, labels = overconfident_logits()
    choice = choose_temperature(logits, labels)
    assert choice.declined is None
    assert choice.temperature == pytest.approx(fit_temperature(logits, labels))
    assert choice.ece_after < choice.ece_before


@pytest.mark.parametrize(("images", "classes", "said"), [
    (MIN_IMAGES - 1, 2, f"only {MIN_IMAGES - 1} validation images"),
    (3, 2, "only 3 validation images"),
    (40, 30, "2 per class"),  # enough in all, too few for each of 30 classes
])
def test_too_few_validation_images_get_no_temperature(images, classes, said):
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(images) % classes
    logits = torch.randn(images, classes, generator=generator) * 4  # at chance: a fit would move
    choice = choose_temperature(logits, labels)
    assert choice.temperature == 1.0 and said in choice.declined


def test_a_run_with_a_handful_of_validation_images_keeps_no_temperature_and_says_so(tmp_path,
                                                                                     capfd):
    make_folder(tmp_path / "data", per_class=15, broken=False)
    run = cnnlab.train(data={"name": str(tmp_path / "data"), "val_fraction": 0.1}, epochs=1,
                       log="none", report=False, out=str(tmp_path / "run"))
    calibration = read_card(run.path).calibration
    assert calibration.images < MIN_IMAGES
    assert calibration.temperature == 1.0 and calibration.ece_after == calibration.ece_before
    assert f"only {calibration.images} validation images" in calibration.declined
    said = [line for line in capfd.readouterr().err.splitlines() if "no temperature" in line]
    assert len(said) == 1 and calibration.declined in said[0]
    done = run_cnnlab("calibrate", str(run.path), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert f"no temperature: {calibration.declined}" in done.stdout
    assert read_card(run.path).temperature == 1.0
    facts = dict(unknowns(run.path, read_card(run.path)).facts)
    assert calibration.declined in facts["temperature"]
