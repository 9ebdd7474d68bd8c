"""The summary's FLOPs equal torch.utils.flop_counter's, and its other numbers hold; it fits 80
columns, and a layer too large to allocate is refused with its estimate."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.cli import main
from cnnlab.models import create_model, list_models
from cnnlab.models.summary import summarize

from .helpers import run_cnnlab as _cli

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


def test_timm_models_summarized_by_block():
    summary = summarize("timm:efficientnet_lite0", (3, 64, 64), num_classes=7)
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=(3, 64, 64), num_classes=7)
    counter = FlopCounterMode(display=False)
    with counter:
        model.eval()(torch.rand(1, 3, 64, 64))
    assert summary.flops == counter.get_total_flops()
    assert summary.params == sum(p.numel() for p in model.parameters())
    assert summary.layers[0].out_shape == (32, 32, 32) and summary.layers[-1].out_shape == (7,)


def test_summary_of_a_run_folder_with_a_timm_model(tmp_path):
    import subprocess
    import sys

    from cnnlab.run.contract import InputSpec, ModelCard, Preprocessing
    from cnnlab.run.folder import build_model, save_model

    card = ModelCard(name="timm:efficientnet_lite0", architecture="timm:efficientnet_lite0",
                     class_names=("a", "b", "c"), input=InputSpec(3, 96, 96),
                     preprocessing=Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3))
    save_model(tmp_path, build_model(card), card)
    result = subprocess.run([sys.executable, "-m", "cnnlab", "summary", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "on 3x96x96 input, 3 classes" in result.stdout and "classifier (Linear)" in result.stdout


def test_a_layer_too_large_to_allocate_is_refused_with_its_estimate(capsys):
    assert main(["summary", "flatten dense(2000000000) dense", "--input", "1x28x28"]) == 2
    err = capsys.readouterr().err
    assert "would need 1,568,000,000,000 weights" in err and "GiB" in err


@pytest.mark.slow  # minutes of the plain suite: run with -m slow, as CI does
def test_summary_fits_80_columns_and_speaks_the_layer_language(tmp_path, run_copy):
    for model in ("fast", "simple", "vgg-small", "lenet5", str(run_copy)):
        out = _cli("summary", model).stdout
        assert max(len(line.rstrip()) for line in out.splitlines()) <= 80, model
    assert _cli("summary", str(run_copy)).stdout.startswith("simple (run run)")
    net = tmp_path / "net.yaml"
    net.write_text("layers:\n  - conv: {filters: 8, kernel: 3, padding: same}\n  - relu\n"
                   "  - flatten\n  - dense\n")
    assert "conv(8, k=3, p=same)" in _cli("summary", str(net)).stdout
