"""Evaluate: metrics equal scikit-learn's on the same predictions; the files and figures exist;
other splits and attacks write beside the default results."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data import load_dataset
from cnnlab.evaluate.run import evaluate_run, shift_images
from cnnlab.run.folder import load_model
from cnnlab.run.inference import predict_logits
from cnnlab.run.results import EvaluationMetrics


@pytest.fixture(scope="module")
def evaluation(digits_run):
    return evaluate_run(digits_run.path, max_shift=2)


def _reference(run_path):
    model, _ = load_model(run_path)
    test = load_dataset(DataConfig(name="digits")).test
    logits, labels = predict_logits(model, test, torch.device("cpu"))
    return logits.softmax(1).numpy(), labels.numpy()


def _ece_reference(probabilities, labels, bins=15):
    confidence, predicted = probabilities.max(1), probabilities.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            gap = abs((predicted[inside] == labels[inside]).mean() - confidence[inside].mean())
            total += inside.mean() * gap
    return total


def test_metrics_equal_scikit_learn(evaluation, digits_run):
    metrics = evaluation.metrics
    probabilities, labels = _reference(digits_run.path)
    predicted = probabilities.argmax(1)
    assert metrics.images == len(labels) == 359
    assert metrics.accuracy == pytest.approx(accuracy_score(labels, predicted), abs=1e-6)
    assert metrics.top5_accuracy == pytest.approx(
        top_k_accuracy_score(labels, probabilities, k=5, labels=range(10)), abs=1e-6)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted,
                                                                     zero_division=0)
    for row, p, r, f, s in zip(metrics.per_class, precision, recall, f1, support, strict=True):
        assert (row.precision, row.recall, row.f1) == pytest.approx((p, r, f), abs=1e-9)
        assert row.support == s
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, average=average,
                                                     zero_division=0)
        averaged = getattr(metrics, f"{average}_avg")
        assert (averaged.precision, averaged.recall, averaged.f1) == pytest.approx((p, r, f))
    assert metrics.ece == pytest.approx(_ece_reference(probabilities, labels), abs=1e-5)


def test_files_and_figures_are_written(evaluation, digits_run):
    folder = evaluation.folder
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(evaluation.metrics.accuracy)
    assert EvaluationMetrics.read(folder / "metrics.json") == evaluation.metrics
    with open(folder / "confusion_matrix.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == [str(d) for d in range(10)]
    probabilities, labels = _reference(digits_run.path)
    expected = confusion_matrix(labels, probabilities.argmax(1))
    assert np.array_equal(np.array([[int(v) for v in row[1:]] for row in rows[1:]]), expected)
    for name in ("confusion_matrix.png", "reliability.png", "shift.png"):
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and image.size[0] > 200
    if evaluation.metrics.accuracy < 1:
        assert (folder / "mistakes.png").is_file()


def test_translation_table(evaluation):
    shifts = evaluation.metrics.translation
    assert [row.shift for row in shifts] == [0, 1, 2]
    assert shifts[0].accuracy == pytest.approx(evaluation.metrics.accuracy, abs=1e-6)
    assert all(0 <= row.accuracy <= 1 for row in shifts)


def test_shift_images_moves_content_and_fills_zeros():
    image = torch.arange(1, 10, dtype=torch.uint8).view(1, 1, 3, 3)
    right = shift_images(image, 0, 1)
    assert right[0, 0].tolist() == [[0, 1, 2], [0, 4, 5], [0, 7, 8]]
    up = shift_images(image, -1, 0)
    assert up[0, 0].tolist() == [[4, 5, 6], [7, 8, 9], [0, 0, 0]]
    assert torch.equal(shift_images(image, 0, 0), image)


def test_val_split_and_bad_split(digits_run):
    from cnnlab.config import DataConfig
    from cnnlab.data import load_dataset

    held_out = len(load_dataset(DataConfig(name="digits")).val)
    assert evaluate_run(digits_run.path, split="val", max_shift=0).metrics.images == held_out
    with pytest.raises(CnnlabError, match="unknown split 'train'"):
        evaluate_run(digits_run.path, split="train", max_shift=0)


def test_api_functions_stay_functions_after_their_modules_load(digits_run):
    first = cnnlab.evaluate(digits_run.path, max_shift=0).metrics
    again = cnnlab.evaluate(digits_run.path, max_shift=0).metrics  # the module is loaded by now
    assert first.accuracy == again.accuracy
    assert all(callable(getattr(cnnlab, name)) for name in ("train", "evaluate", "attack", "load"))


def test_other_splits_and_attacks_write_beside_the_default_results(run_copy, tmp_path):
    cnnlab.evaluate(run_copy, max_shift=1, quiet=True)
    test_metrics = (run_copy / "evaluate" / "metrics.json").read_text()
    cnnlab.evaluate(run_copy, split="val", max_shift=0, quiet=True)
    assert (run_copy / "evaluate" / "metrics.json").read_text() == test_metrics
    val = json.loads((run_copy / "evaluate-val" / "metrics.json").read_text())
    assert val["split"] == "val" and val["translation"] == []
    assert not (run_copy / "evaluate-val" / "shift.png").exists()  # --max-shift 0: no shift test
    cnnlab.attack(run_copy, eps="0,8/255", limit=20, quiet=True)
    cnnlab.attack(run_copy, method="fgsm", eps="0,0.1", limit=20, quiet=True)
    pgd = json.loads((run_copy / "attack" / "metrics.json").read_text())
    assert pgd["method"] == "pgd" and pgd["results"][1]["eps"] == pytest.approx(8 / 255)
    assert json.loads((run_copy / "attack-fgsm" / "metrics.json").read_text())["method"] == "fgsm"
    assert main(["evaluate", str(run_copy), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    assert main(["attack", str(run_copy), "--out", str(tmp_path / "at"), "--limit", "10",
                 "--quiet"]) == 0
    assert (tmp_path / "ev" / "metrics.json").is_file() and (tmp_path / "at" / "metrics.json").is_file()


def _min_precision(run, digits) -> int:
    return main(["predict", str(run), str(digits), "--format", "json", "--device", "cpu",
                 "--min-precision", "0.9"])


def test_thresholds_are_bound_to_the_weights_and_temperature_they_were_measured_with(
        run_copy, tmp_path, capsys):
    from cnnlab.run.folder import read_card, save_model

    from .helpers import captured_error_line, digit_png

    digits = tmp_path / "digits"
    digit_png(digits / "0.png", 0)
    evaluate_run(run_copy, split="val", max_shift=0, quiet=True)
    card = read_card(run_copy)
    measured = json.loads((run_copy / "evaluate-val" / "metrics.json").read_text())["measured_with"]
    assert measured == {"weights_sha256": card.weights_sha256, "temperature": card.temperature,
                        "flip_tta": card.flip_tta}
    assert _min_precision(run_copy, digits) == 0
    capsys.readouterr()
    assert card.temperature != 1.0  # so that calibrating without one changes it
    assert main(["calibrate", str(run_copy), "--no-temperature", "--quiet"]) == 0
    assert _min_precision(run_copy, digits) == 2
    line = captured_error_line(capsys)
    assert "temperature" in line and f"cnnlab evaluate {run_copy} --split val" in line
    evaluate_run(run_copy, split="val", max_shift=0, quiet=True)  # measured again: used again
    assert _min_precision(run_copy, digits) == 0
    capsys.readouterr()
    model, card = load_model(run_copy)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # new weights, as a resumed run's
    save_model(run_copy, model, card)
    assert _min_precision(run_copy, digits) == 2
    assert "other weights" in captured_error_line(capsys)


def test_thresholds_that_do_not_say_what_they_were_measured_with_are_refused(
        run_copy, tmp_path, capsys):
    from .helpers import captured_error_line, digit_png

    digits = tmp_path / "digits"
    digit_png(digits / "0.png", 0)
    evaluate_run(run_copy, split="val", max_shift=0, quiet=True)  # the one predict reads first
    path = run_copy / "evaluate-val" / "metrics.json"
    old = json.loads(path.read_text())
    del old["measured_with"]  # as evaluate wrote it before it recorded the binding
    path.write_text(json.dumps(old))
    assert _min_precision(run_copy, digits) == 2
    line = captured_error_line(capsys)
    assert "older cnnlab" in line and line.endswith(f"cnnlab evaluate {run_copy} --split val")
