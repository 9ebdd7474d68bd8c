"""The summary's FLOPs equal torch.utils.flop_counter's, and its other numbers hold."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.models import create_model, list_models
from cnnlab.models.summary import summarize

SPECS = [entry.name for entry in list_models()] + [
    "conv(8, k=5, s=2, p=2, d=1, g=1) relu conv(16, k=3, g=4) avgpool(3, s=2) flatten dense",
    "conv(6, k=3, d=2, p=same, bias=false) gap dense(20) dense",
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)])
def test_flops_equal_flop_counter(spec, input_shape):
    summary = summarize(spec, input_shape, num_classes=10)
    model, _, _ = create_model(spec, input_shape=input_shape, num_classes=10)
    counter = FlopCounterMode(display=False)
    with counter:
        model.eval()(torch.rand(1, *input_shape))
    assert summary.flops == counter.get_total_flops()
    assert summary.params == sum(p.numel() for p in model.parameters())


def test_receptive_field_and_sharing():
    summary = summarize("conv(4, k=3) maxpool(2) conv(4, k=3) flatten dense", (1, 12, 12), 2)
    assert [b.receptive_field for b in summary.layers[:3]] == [3, 4, 8]
    conv, dense = summary.sharing
    assert conv == (9 + 1) * 4 + (36 + 1) * 4
    # the first conv as a dense layer: (12*12 + 1) inputs for every one of 4*10*10 outputs
    assert summary.layers[0].dense_params == (144 + 1) * 400
    assert dense > 100 * conv
