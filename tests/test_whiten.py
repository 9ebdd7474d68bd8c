"""--whiten, the whitened start of the first layer in training from scratch: its outputs
decorrelated with unit variance (measured with NumPy's own patches and covariance), set where asked,
left alone by default, for pretrained networks and where the first layer is no plain conv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from numpy.lib.stride_tricks import sliding_window_view

import cnnlab
from cnnlab.config import DataConfig
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.train.whiten import EPSILON, first_conv, whiten_first_conv

DIGITS = {"data": "digits", "epochs": 1, "threads": 2, "quiet": True, "log": "none",
          "calibrate": False}


def _numpy_patches(images: np.ndarray, mean: float, std: float, k: int) -> np.ndarray:
    """Every k x k patch of the normalized gray images, (P, k*k), by NumPy's window view."""
    x = (images[:, 0].astype(np.float64) / 255 - mean) / std
    return sliding_window_view(x, (k, k), axis=(1, 2)).reshape(-1, k * k)


def test_the_first_layer_decorrelates_the_patches_with_unit_variance():
    data = load_dataset(DataConfig(name="fashion-mnist", val_fraction=0))
    model, _, _ = create_model("fast", input_shape=(1, 28, 28), num_classes=10, mean=[0.286],
                               std=[0.353])
    assert whiten_first_conv(model, data.train)
    conv = first_conv(model)
    filters = conv.weight.detach().double().reshape(conv.out_channels, -1).numpy()[:9]
    patches = _numpy_patches(data.train.images[:10_200].numpy(), 0.286, 0.353, 3)
    responses = (patches - patches.mean(0)) @ filters.T  # the conv's output before its bias
    covariance = np.cov(responses, rowvar=False)
    eigenvalues = np.linalg.eigvalsh(np.cov(patches, rowvar=False))[::-1]
    shrink = eigenvalues / (eigenvalues + EPSILON)  # what the epsilon leaves of unit variance
    np.testing.assert_allclose(np.diag(covariance), shrink, rtol=0.02)
    off_diagonal = covariance - np.diag(np.diag(covariance))
    assert np.abs(off_diagonal).max() < 0.02
    # the other nine are their negatives; the rest of the 32 keep their random start
    np.testing.assert_allclose(conv.weight.detach().reshape(32, -1).numpy()[9:18], -filters,
                               rtol=1e-5, atol=1e-6)


def _built_first_conv(**settings):
    """The first conv's weights as training builds the network, before the first step; the
    config, the data and the model."""
    from cnnlab.base.distributed import Ranks
    from cnnlab.config import TrainConfig, apply_overrides
    from cnnlab.train.recipes import resolve
    from cnnlab.train.trainer import build_trainer

    config, _ = resolve(apply_overrides(TrainConfig(), {"data.name": "digits", **settings}))
    data = load_dataset(config.data)
    trainer, _ = build_trainer(config, data, torch.device("cpu"), Ranks())
    return first_conv(trainer.model).weight.detach(), config, data, trainer.model


def test_whiten_starts_the_first_conv_whitened_and_the_default_at_random():
    whitened, config, data, model = _built_first_conv(whiten=True)
    torch.manual_seed(config.seed)  # as training seeds the network it builds
    start, _, _ = create_model("fast", input_shape=(1, 8, 8), num_classes=10,
                               mean=model.mean.flatten().tolist(), std=model.std.flatten().tolist())
    random = first_conv(start).weight.detach().clone()
    whiten_first_conv(start, data.train)
    torch.testing.assert_close(whitened, first_conv(start).weight.detach())
    torch.testing.assert_close(whitened[18:], random[18:])  # beyond 2 x 9 filters: as drawn
    plain, config, _, _ = _built_first_conv()
    assert config.whiten is False
    torch.testing.assert_close(plain, random)
    pretrained, *_ = _built_first_conv(model="timm:efficientnet_lite0", pretrained=True,
                                       freeze="backbone")
    ours, *_ = _built_first_conv(model="timm:efficientnet_lite0", pretrained=True,
                                 freeze="backbone", whiten=True)
    torch.testing.assert_close(ours, pretrained)  # ImageNet's filters stay


def test_the_fashion_quick_preset_whitens_and_a_run_trains_its_first_layer(tmp_path):
    from cnnlab.config import load_config

    preset = load_config("fashion-quick")
    assert preset.whiten is True and preset.warmup == 0.02
    start, *_ = _built_first_conv(whiten=True, warmup=0.02)
    run = cnnlab.train(**DIGITS, whiten=True, warmup=0.02, out=str(tmp_path / "run"))
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    assert config["whiten"] is True and config["warmup"] == 0.02
    assert run.test_accuracy > 0.5  # ten classes; one epoch of ten steps
    trained = first_conv(cnnlab.load(run.path).model).weight.detach()
    assert not torch.allclose(trained, start)


@pytest.mark.parametrize("spec", ["flatten dense(16) relu dense", "conv(8, k=3, d=2) gap dense"])
def test_a_network_without_a_plain_first_conv_is_left_as_it_is(spec):
    model, _, _ = create_model(spec, input_shape=(1, 8, 8), num_classes=10, mean=[0.5], std=[0.5])
    before = [p.clone() for p in model.parameters()]
    assert not whiten_first_conv(model, load_dataset(DataConfig(name="digits")).train)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
