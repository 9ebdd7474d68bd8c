"""Every registered network: forward, backward, a gradient for every parameter, no NaN; `cnnlab
models` lists their sizes and timm's models."""

import pytest
import torch

from cnnlab.cli import main
from cnnlab.models import create_model, list_models, register_model


@pytest.mark.parametrize("name", [entry.name for entry in list_models()])
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)])
def test_network_trains_a_step(name, input_shape):
    torch.manual_seed(0)
    model, _, _ = create_model(name, input_shape=input_shape, num_classes=10)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert not head.weight.any() and not head.bias.any()  # a new head starts at zero
    # with a zero head nothing below it gets a gradient on the first step: give it weights to
    # check that every layer is wired into the loss
    torch.nn.init.normal_(head.weight, std=0.1)
    x = torch.rand(4, *input_shape)
    logits = model(x)
    assert logits.shape == (4, 10)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    loss.backward()
    for pname, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"
    model.eval()
    features = model.forward_features(x)
    assert features.ndim == 4
    assert torch.allclose(model.forward_head(features), model(x), atol=1e-5)


def test_probabilities_sum_to_one_and_mode_is_restored():
    model, _, _ = create_model("simple", input_shape=(1, 28, 28), num_classes=10)
    model.train()
    probabilities = model.predict_proba(torch.rand(5, 1, 28, 28))
    assert torch.allclose(probabilities.sum(1), torch.ones(5), atol=1e-6)
    assert model.training


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("simple", "again")(lambda: "flatten dense")


def test_list_models_filters():
    assert [entry.name for entry in list_models("res*")] == ["resnet-small"]


def test_models_lists_sizes_and_timm_models(capsys):
    assert main(["models", "res"]) == 0
    out = capsys.readouterr().out
    assert "resnet-small" in out and "308k" in out and "lenet5" not in out
    assert main(["models", "timm:resnet1*"]) == 0
    assert "resnet18*" in capsys.readouterr().out  # * marks ImageNet weights
