"""Transfer learning: a frozen backbone stays as it was, the feature cache changes nothing but the
time, fine-tuning trains the backbone slower than the head."""

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.pretrained import create_timm_model
from cnnlab.train.optim import make_optimizer
from cnnlab.train.transfer import backbone_parameters, set_backbone_frozen

SETTINGS = dict(data={"name": "digits", "per_class": 20, "image_size": 32}, epochs=2,
                model="timm:efficientnet_lite0", pretrained=True, batch_size=32, quiet=True)


def _backbone_state(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("network.classifier.")
            and k not in ("mean", "std")}


def test_frozen_backbone_is_unchanged_and_only_the_head_learns(tmp_path):
    run = cnnlab.train(**SETTINGS, freeze="backbone", feature_cache=False,
                       out=str(tmp_path / "frozen"))
    trained = load_file(run.path / "model.safetensors")
    reference = create_timm_model("efficientnet_lite0", num_classes=10, in_chans=1,
                                  pretrained=True).state_dict()
    for key, value in _backbone_state(trained).items():
        assert torch.equal(value, reference[key.removeprefix("network.")]), key
    assert not torch.equal(trained["network.classifier.weight"], reference["classifier.weight"])


def test_gradients_reach_only_the_head():
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=(3, 32, 32), num_classes=4,
                               pretrained=True)
    set_backbone_frozen(model, True)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in backbone_parameters(model))
    assert model.network.classifier.weight.grad is not None


def test_feature_cache_gives_the_same_head(tmp_path):
    cached = cnnlab.train(**SETTINGS, freeze="backbone", out=str(tmp_path / "cached"))
    direct = cnnlab.train(**SETTINGS, freeze="backbone", feature_cache=False,
                          out=str(tmp_path / "direct"))
    assert cached.best_val_accuracy == pytest.approx(direct.best_val_accuracy, abs=0.02)
    a = load_file(cached.path / "model.safetensors")["network.classifier.weight"]
    b = load_file(direct.path / "model.safetensors")["network.classifier.weight"]
    assert torch.allclose(a, b, atol=1e-3)


def test_fine_tuning_gives_the_backbone_a_lower_rate():
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=(1, 32, 32), num_classes=3)
    config = TrainConfig(model="timm:efficientnet_lite0", pretrained=True, lr=1e-3,
                         backbone_lr=0.1)
    rates = sorted({round(group["lr"], 12) for group in make_optimizer(model, config).param_groups})
    assert rates == [pytest.approx(1e-4), pytest.approx(1e-3)]


def test_fine_tuning_with_a_frozen_first_epoch_runs(tmp_path):
    run = cnnlab.train(**SETTINGS, freeze_epochs=1, out=str(tmp_path / "fine"))
    assert run.status == "finished" and run.test_accuracy is not None
    meta = cnnlab.load(run.path).meta
    assert meta["pretrained"] and meta["preprocessing"]["interpolation"] == "bicubic"
    assert meta["preprocessing"]["mean"] == [pytest.approx(0.5)]


def test_freeze_without_pretrained_is_an_error():
    with pytest.raises(CnnlabError, match="--freeze backbone keeps pretrained features"):
        cnnlab.train(data="digits", freeze="backbone", epochs=1, quiet=True)
