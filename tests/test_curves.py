"""Precision-recall, ROC and thresholds equal scikit-learn's; top losses name their files; predict
calls an input unknown below a floor or a class's threshold."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data import load_dataset
from cnnlab.evaluate.curves import class_curves
from cnnlab.evaluate.predictions import read_predictions
from cnnlab.evaluate.run import evaluate_run
from cnnlab.predict.settings import PredictSettings
from cnnlab.predict.thresholds import min_probability
from cnnlab.run.folder import load_model
from cnnlab.run.inference import predict_logits
from cnnlab.run.results import TARGET_PRECISIONS, EvaluationMetrics

from .helpers import make_folder


def _scores(seed: int = 0, images: int = 400, classes: int = 5):
    """Probabilities that carry some signal, rounded so that ties occur (the fiddly case)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (images,), generator=generator)
    logits = torch.randn(images, classes, generator=generator)
    logits[torch.arange(images), labels] += 1.5
    return (logits.softmax(1) * 50).round() / 50, labels


def _reference_threshold(truth, scores, target):
    """Among scikit-learn's thresholds whose precision reaches the target: the most recall, then
    the highest threshold."""
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    reached = [(recall[i], thresholds[i], precision[i]) for i in range(len(thresholds))
               if precision[i] >= target]
    return max(reached) if reached else None


def test_areas_and_thresholds_equal_scikit_learn():
    probabilities, labels = _scores()
    curves = class_curves(probabilities, labels, list("abcde"))
    scores, truth_of = probabilities.numpy(), labels.numpy()
    for k, (auc, thresholds) in enumerate(zip(curves.auc, curves.thresholds, strict=True)):
        truth = truth_of == k
        assert auc.auroc == pytest.approx(roc_auc_score(truth, scores[:, k]), abs=1e-6)
        assert auc.average_precision == pytest.approx(
            average_precision_score(truth, scores[:, k]), abs=1e-6)
        precision, recall, _ = precision_recall_curve(truth, scores[:, k])
        assert curves.classes[k].precision.numpy() == pytest.approx(precision, abs=1e-6)
        assert curves.classes[k].recall.numpy() == pytest.approx(recall, abs=1e-6)
        for row in thresholds.targets:
            expected = _reference_threshold(truth, scores[:, k], row.target)
            if expected is None:
                assert row.threshold is None and row.recall == 0
                continue
            assert (row.recall, row.threshold, row.precision) == pytest.approx(expected, abs=1e-6)
            kept = scores[:, k] >= row.threshold  # what the threshold does, counted directly
            assert truth[kept].mean() == pytest.approx(row.precision, abs=1e-6)
            assert truth[kept].sum() / truth.sum() == pytest.approx(row.recall, abs=1e-6)
    assert [row.target for row in curves.thresholds[0].targets] == list(TARGET_PRECISIONS)
    assert any(row.threshold is not None for c in curves.thresholds for row in c.targets)


def test_a_class_without_images_has_no_areas():
    probabilities, labels = _scores(classes=4)
    labels[labels == 3] = 2
    curves = class_curves(probabilities, labels, list("abcd"))
    assert (curves.auc[3].auroc, curves.auc[3].average_precision) == (None, None)
    assert all(row.threshold is None for row in curves.thresholds[3].targets)
    assert curves.auc[0].auroc is not None


@pytest.fixture(scope="module")
def evaluation(digits_run):
    return evaluate_run(digits_run.path, max_shift=0, top_losses=6)


def test_evaluate_writes_areas_thresholds_and_curves(evaluation, digits_run):
    metrics = evaluation.metrics
    model, _ = load_model(digits_run.path)
    logits, labels = predict_logits(model, load_dataset(DataConfig(name="digits")).test,
                                    torch.device("cpu"))
    probabilities, labels = logits.softmax(1).numpy(), labels.numpy()
    for k, row in enumerate(metrics.per_class_auc):
        assert row.auroc == pytest.approx(roc_auc_score(labels == k, probabilities[:, k]), abs=1e-5)
        assert row.average_precision == pytest.approx(
            average_precision_score(labels == k, probabilities[:, k]), abs=1e-5)
    assert metrics.macro_auroc == pytest.approx(
        roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"), abs=1e-5)
    read = EvaluationMetrics.read(evaluation.folder / "metrics.json")
    assert read == metrics and not read.extra
    with open(evaluation.folder / "thresholds.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 10 * len(TARGET_PRECISIONS)
    for name in ("pr_curves.png", "roc_curves.png", "top_losses.png"):
        with Image.open(evaluation.folder / name) as image:
            assert image.size[0] > 600


def test_metrics_without_the_new_figures_still_read(evaluation):
    values = evaluation.metrics.to_dict()
    del values["per_class_auc"], values["thresholds"]
    old = EvaluationMetrics.from_dict(values)
    assert old.per_class_auc == () and old.macro_auroc is None


def test_top_losses_are_the_rows_of_highest_loss(evaluation):
    rows = read_predictions(evaluation.folder / "predictions.csv")
    expected = sorted(rows, key=lambda row: -row.loss)[:6]
    assert [row.index for row in evaluation.top_losses] == [row.index for row in expected]


def test_top_losses_on_the_terminal(digits_run, capsys):
    assert main(["evaluate", str(digits_run.path), "--max-shift", "0", "--top-losses", "3",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "top losses: the 3 images of highest loss" in printed
    assert "macro AUROC" in printed and "precision 0.95" in printed
    assert main(["evaluate", str(digits_run.path), "--max-shift", "0", "--device", "cpu"]) == 0
    assert "top losses" not in capsys.readouterr().out


def test_in_memory_folder_splits_keep_their_files(tmp_path):
    root = tmp_path / "shapes"
    made = make_folder(root / "train", per_class=10)
    make_folder(root / "test", per_class=4, broken=False)
    data = load_dataset(DataConfig(name=str(root), stream=False, val_fraction=0.2))
    assert data.train.paths is not None and data.val.paths is not None
    for split in (data.train, data.val, data.test):
        assert len(split.paths) == len(split)
        for path, label in zip(split.paths, split.labels.tolist(), strict=True):
            assert path.parent.name == data.class_names[label]  # each path is its own image's
    kept = {*data.train.paths, *data.val.paths}
    assert not kept & set(made["broken"]) and len(kept) == made["good"]
    run = cnnlab.train(data=str(root), model="simple", epochs=1, stream=False,
                       out=str(tmp_path / "run"), quiet=True)
    result = evaluate_run(run.path, max_shift=0, top_losses=3)
    files = [row.file for row in read_predictions(result.folder / "predictions.csv")]
    assert files == [str(path) for path in data.test.paths]
    assert all(row.file.endswith(".png") for row in result.top_losses)


def _digit_files(folder, count=12):
    digits = load_digits()
    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"{i:02d}-{digits.target[i]}.png"
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_predict_min_prob_and_min_precision(evaluation, digits_run, tmp_path, capsys):
    paths = _digit_files(tmp_path / "digits")
    run = str(digits_run.path)
    assert main(["predict", run, str(tmp_path / "digits"), "--format", "json", "--device",
                 "cpu", "--min-prob", "0.999999"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(paths)
    assert all(row["accepted"] == (row["top"][0]["probability"] >= 0.999999) for row in rows)
    assert not all(row["accepted"] for row in rows)
    assert main(["predict", run, str(tmp_path / "digits"), "--format", "json", "--device",
                 "cpu", "--min-precision", "0.95"]) == 0
    rows = json.loads(capsys.readouterr().out)
    thresholds = {row.name: row.at(0.95).threshold for row in evaluation.metrics.thresholds}
    for row in rows:
        top = row["top"][0]
        floor = thresholds[top["name"]]
        assert row["accepted"] == (floor is not None and top["probability"] >= floor)
    assert main(["predict", run, str(tmp_path / "digits"), "--device", "cpu", "--min-prob",
                 "0.999999"]) == 0  # some fall below it (above): the table says unknown
    assert "unknown" in capsys.readouterr().out


def test_min_precision_errors(digits_run, tmp_path):
    from cnnlab.run.folder import read_card

    card = read_card(digits_run.path)
    with pytest.raises(CnnlabError, match="one of 0.9, 0.95, 0.99"):
        min_probability(digits_run.path, PredictSettings(min_precision=0.8), card)
    with pytest.raises(CnnlabError, match="not both"):
        min_probability(digits_run.path, PredictSettings(min_prob=0.5, min_precision=0.9), card)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(CnnlabError, match="cnnlab evaluate .* --split val"):
        min_probability(bare, PredictSettings(min_precision=0.9), card)
