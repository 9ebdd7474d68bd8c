"""The exact linear probe: the same fit as scikit-learn's LogisticRegression on the same vectors,
on raw digits pixels and on pretrained features of real photos; its curve of accuracy against
the penalty."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import cnnlab
from cnnlab.config import DataConfig
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.train.probe import DEFAULT_C, fit_logistic, linear_probe
from cnnlab.train.transfer import cache_features

from .helpers import photo_slice, read_rows


def _probabilities(weight, bias, features) -> np.ndarray:
    return torch.softmax(features.double() @ weight.T + bias, 1).numpy()


def _reference(features, labels, c: float) -> LogisticRegression:
    return LogisticRegression(C=c, tol=1e-10, max_iter=20000).fit(features.numpy(), labels.numpy())


@pytest.mark.parametrize("c", [0.01, 1.0])
def test_fit_matches_scikit_learn_on_digits_pixels(c):
    features, labels = (torch.from_numpy(a) for a in load_digits(return_X_y=True))
    features = features.float() / 16
    train, test = slice(0, 1200), slice(1200, None)
    weight, bias, _ = fit_logistic(features[train], labels[train], 10, c)
    reference = _reference(features[train], labels[train], c)
    ours = _probabilities(weight, bias, features[test])
    assert np.abs(ours - reference.predict_proba(features[test].numpy())).max() < 0.02
    assert (ours.argmax(1) == reference.predict(features[test].numpy())).mean() > 0.99


def test_class_weights_shift_the_fit_like_scikit_learn():
    features, labels = (torch.from_numpy(a) for a in load_digits(return_X_y=True))
    features = features.float() / 16
    weights = torch.linspace(0.5, 2.0, 10)
    weight, bias, _ = fit_logistic(features, labels, 10, 1.0, class_weights=weights)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=20000,
                                   class_weight=dict(enumerate(weights.tolist())))
    reference.fit(features.numpy(), labels.numpy())
    ours = _probabilities(weight, bias, features)
    assert np.abs(ours - reference.predict_proba(features.numpy())).max() < 0.02


@pytest.fixture(scope="module")
def photo_features(flowers12, tmp_path_factory):
    """EfficientNet-Lite0 features of 12 flower species: 15 train, 10 test photos each."""
    folder = photo_slice(flowers12, tmp_path_factory.mktemp("flowers"),
                         sorted(p.name for p in (flowers12 / "train").iterdir()), 15, 10)
    data = load_dataset(DataConfig(name=str(folder), image_size=224, interpolation="bicubic",
                                   val_fraction=0.2))
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=data.input_shape,
                               num_classes=12, pretrained=True)
    device = torch.device("cpu")
    return {name: cache_features(model, getattr(data, name), device, data.input_shape)
            for name in ("train", "val", "test")}


def _accuracy(probe, vectors) -> float:
    logits = vectors.features.double() @ probe.weight.T + probe.bias
    return (logits.argmax(1) == vectors.labels).double().mean().item()


def test_probe_on_photo_features_matches_scikit_learn(photo_features):
    train, val, test = (photo_features[k] for k in ("train", "val", "test"))
    probe = linear_probe((train.features, train.labels), (val.features, val.labels), 12)
    assert probe.c in [fit.c for fit in probe.path] and len(probe.path) > 5
    # scikit-learn with the same C, fitted on the same train + val vectors
    everything = torch.cat([train.features, val.features]), torch.cat([train.labels, val.labels])
    reference = _reference(*everything, probe.c)
    theirs = reference.score(test.features.numpy(), test.labels.numpy())
    assert abs(_accuracy(probe, test) - theirs) <= 0.01
    assert _accuracy(probe, test) > 0.8  # 12 classes: chance is 8%


def test_probe_chooses_the_penalty_with_the_best_validation_accuracy(photo_features):
    train, val = photo_features["train"], photo_features["val"]
    probe = linear_probe((train.features, train.labels), (val.features, val.labels), 12,
                         refit=False)
    best = max(fit.val_acc for fit in probe.path)
    assert probe.chosen.val_acc == best
    assert min(f.val_loss for f in probe.path if f.val_acc == best) == probe.chosen.val_loss


def test_probe_without_validation_uses_the_default_penalty(photo_features):
    train = photo_features["train"]
    probe = linear_probe((train.features, train.labels), None, 12)
    assert probe.c == DEFAULT_C and len(probe.path) == 1
    assert math.isnan(probe.chosen.val_acc)
    assert probe.chosen.train_acc == 1.0


def test_the_frozen_probe_plots_accuracy_against_the_penalty(probe_run, tmp_path):
    from cnnlab.train.frozen import edge_of_grid, probe_curves
    from cnnlab.train.probe import C_PATH, Probe, ProbeFit

    path = [ProbeFit(**{key: float(value) for key, value in row.items()} |
                     {"iterations": int(row["iterations"])})
            for row in read_rows(probe_run.path / "probe.csv")]
    head = cnnlab.load(probe_run.path).card.head
    chosen = next(fit.c for fit in path if head == f"linear probe, C={fit.c:g}")
    assert [fit.c for fit in path] == [0.1, 1.0, 10.0]
    probe_curves(path, chosen, tmp_path / "redrawn.png")  # what probe.csv holds, C on a log axis
    assert (probe_run.path / "curves.png").read_bytes() == (tmp_path / "redrawn.png").read_bytes()
    fits = [ProbeFit(c, 0.1, 1.0, 0.2, 0.9, 5) for c in C_PATH]
    assert edge_of_grid(Probe(None, None, C_PATH[3], fits)) is None
    assert "C=100, the weakest penalty tried (0.001 to 100)" in edge_of_grid(
        Probe(None, None, C_PATH[-1], fits))
    assert "strongest" in edge_of_grid(Probe(None, None, C_PATH[0], fits))
    assert edge_of_grid(Probe(None, None, 1.0, fits[:1])) is None  # no validation: no grid
