"""The layer language: a table of specs and the shapes they build, and the errors bad specs get."""

import pytest
import torch
import yaml

from cnnlab.base.errors import CnnlabError
from cnnlab.models import create_model, parse_spec, spec_to_text
from cnnlab.models.build import build_network
from cnnlab.models.registry import resolve_layers

# (spec, input (C, H, W), expected shape after each layer but the output layer)
SHAPES = [
    ("conv(8) flatten dense", (1, 28, 28), [(8, 26, 26), (5408,)]),
    ("conv(8, k=3, p=same) flatten dense", (1, 28, 28), [(8, 28, 28), (6272,)]),
    ("conv(8, k=5, s=2) flatten dense", (3, 32, 32), [(8, 14, 14), (1568,)]),
    ("conv(8, k=3, s=2, p=same) gap dense", (3, 32, 32), [(8, 16, 16), (8,)]),
    ("conv(8, k=3, p=1, d=2) gap dense", (1, 28, 28), [(8, 26, 26), (8,)]),
    ("conv(8, k=4, p=same) gap dense", (1, 9, 9), [(8, 9, 9), (8,)]),
    ("conv(4) conv(8, k=3, g=2) gap dense", (1, 12, 12), [(4, 10, 10), (8, 8, 8), (8,)]),
    ("maxpool(2) flatten dense", (1, 28, 28), [(1, 14, 14), (196,)]),
    ("maxpool(3, s=2) flatten dense", (1, 28, 28), [(1, 13, 13), (169,)]),
    ("avgpool(2, s=1, p=1) flatten dense", (1, 4, 4), [(1, 5, 5), (25,)]),
    ("maxpool(2) maxpool(2) maxpool(2) flatten dense", (2, 28, 28),
     [(2, 14, 14), (2, 7, 7), (2, 3, 3), (18,)]),
    ("resblock(16, s=2) gap dense", (3, 32, 32), [(16, 16, 16), (16,)]),
    ("conv(8) bn relu flatten dense(32) bn leaky_relu(0.1) dropout(0.2) dense softmax",
     (1, 10, 10), [(8, 8, 8), (8, 8, 8), (8, 8, 8), (512,), (32,), (32,), (32,), (32,)]),
]


@pytest.mark.parametrize(("spec", "input_shape", "shapes"), SHAPES)
def test_spec_builds_expected_shapes(spec, input_shape, shapes):
    layers = parse_spec(spec)
    network, built = build_network(layers, input_shape, num_classes=7)
    assert [b.out_shape for b in built[: len(shapes)]] == shapes
    output = network(torch.rand(2, *input_shape))
    assert output.shape == (2, 7)
    # what the builder predicted is what PyTorch computes, layer by layer
    x = torch.rand(2, *input_shape)
    for b in built:
        if b.module is not None:
            x = b.module.eval()(x)
            assert tuple(x.shape[1:]) == b.out_shape, b.layer.text


def test_numpy_reference_for_a_conv_layer():
    np = pytest.importorskip("numpy")
    network, built = build_network(parse_spec("conv(2, k=3, s=2, p=1) flatten dense"), (1, 5, 5), 3)
    conv = built[0].module
    x = torch.rand(1, 1, 5, 5)
    image = np.pad(x[0, 0].numpy(), 1)
    weight, bias = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    expected = np.zeros((2, 3, 3))
    for f in range(2):
        for i in range(3):
            for j in range(3):
                patch = image[2 * i:2 * i + 3, 2 * j:2 * j + 3]
                expected[f, i, j] = (patch * weight[f, 0]).sum() + bias[f]
    assert np.allclose(conv(x)[0].detach().numpy(), expected, atol=1e-5)


def test_tutorial_example_reads_as_written():
    text = ("conv(32, k=3, s=1, p=same) relu maxpool(2) conv(64, k=3) relu maxpool(2) flatten "
            "dense(128) relu dropout(0.5) dense")
    model, canonical, built = create_model(text, input_shape=(1, 28, 28), num_classes=10)
    assert [layer.layer.name for layer in built][:3] == ["conv", "relu", "maxpool"]
    assert built[-1].out_shape == (10,)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    # the canonical text rebuilds the same network
    assert spec_to_text(parse_spec(canonical)) == canonical


def test_aliases_and_separators():
    a = spec_to_text(parse_spec("Conv2D(16, kernel_size=5, stride=1, padding=valid) -> ReLU -> "
                                "MaxPool(2) -> fc(10)"))
    b = spec_to_text(parse_spec("conv(16, k=5) relu maxpool(2) dense(10)"))
    assert a == b


def test_yaml_form_equals_string_form(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "layers": [
        {"conv": {"filters": 16, "kernel": 3, "padding": "same"}}, "relu", {"maxpool": 2},
        "flatten", {"dense": 32}, "relu", "dense"]}))
    name, layers = resolve_layers(str(path))
    assert name == "mine"
    assert spec_to_text(layers) == spec_to_text(parse_spec(
        "conv(16, k=3, p=same) relu maxpool(2) flatten dense(32) relu dense"))


BAD = [
    ("conv(8) maxpool(2) maxpool(2) maxpool(2) maxpool(2) maxpool(2) flatten dense", (1, 28, 28),
     r"layer 6 'maxpool\(2\)': cannot pool a 1x1 map with size 2"),
    ("conv(8, k=7) conv(8, k=7) flatten dense", (1, 8, 8),
     r"layer 2 'conv\(8, k=7\)': a 7x7 kernel does not fit the 2x2 input"),
    ("conv(8) dense", (1, 28, 28), r"layer 2 'dense': dense needs a flat input .* flatten or gap"),
    ("conv(8) flatten conv(4) dense", (1, 28, 28), r"layer 3 'conv\(4\)': needs a feature map"),
    ("conv(8) flatten", (1, 28, 28), r"must end with dense"),
    ("conv(8) flatten dense dense", (1, 28, 28), r"layer 3 'dense': only the output layer"),
    ("conv(8) flatten dense(5)", (1, 28, 28), r"output layer has 5 neurons but the data has 10"),
    ("conv(8) softmax flatten dense", (1, 28, 28), r"softmax may only be the last layer"),
    ("conv(8, k=2, s=2, p=same) flatten dense", (1, 28, 28), r"even kernel and stride > 1"),
    ("conv(6) conv(4, g=4) flatten dense", (1, 28, 28), r"6 input channels are not divisible"),
]


@pytest.mark.parametrize(("spec", "input_shape", "message"), BAD)
def test_bad_shapes_name_the_layer(spec, input_shape, message):
    with pytest.raises(CnnlabError, match=message):
        build_network(parse_spec(spec), input_shape, num_classes=10)


BAD_SYNTAX = [
    ("conv(8) relu maxpol(2) flatten dense", r"layer 3 'maxpol\(2\)': unknown layer 'maxpol' "
                                             r"\(did you mean 'maxpool'\?\)"),
    ("conv(8, kernal=3) flatten dense", r"conv has no argument 'kernal' \(did you mean 'kernel'\?\)"),
    ("conv flatten dense", r"layer 1 'conv': conv needs filters"),
    ("conv(-8) flatten dense", r"filters must be a positive whole number"),
    ("conv(8, p=full) flatten dense", r"padding must be same, valid"),
    ("conv(8) dropout(1.5) flatten dense", r"dropout probability must be in \[0, 1\)"),
    ("conv(8, k=3 flatten dense", r"cannot read 'conv\(8,' at character 1 of the layer spec "
                                  r"\(a parenthesis is not closed\)"),
    ("conv(8) relu; flatten dense", r"cannot read ';' at character 13"),
    ("conv(8, k=3, 5) flatten dense", r"positional argument '5' after a key=value"),
    ("maxpool(2, 2, 2) flatten dense", r"takes at most 2 positional"),
    ("", r"the layer spec is empty"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SYNTAX)
def test_bad_syntax_messages(spec, message):
    with pytest.raises(CnnlabError, match=message):
        parse_spec(spec)


def test_unknown_model_name_suggests():
    with pytest.raises(CnnlabError, match=r"unknown model 'lenet' \(did you mean 'lenet5'\?\)"):
        resolve_layers("lenet")


def test_a_new_layer_is_one_table_entry(monkeypatch):
    """Parsing, building, the summary and explain's conv finder all read the one entry."""
    from cnnlab.explain.layers import conv_layers, list_layers
    from cnnlab.models import layers
    from cnnlab.models.summary import summarize

    mish = layers.LayerDef(lambda layer, shape, tracker, units: (torch.nn.Mish(), shape, 0),
                           help="mish")
    monkeypatch.setitem(layers.LAYERS, "mish", mish)
    monkeypatch.setitem(layers.ALIASES, "mish_activation", "mish")
    network, built = build_network(parse_spec("conv(4) mish_activation flatten dense"), (1, 6, 6), 3)
    assert isinstance(built[1].module, torch.nn.Mish) and built[1].out_shape == (4, 4, 4)
    summary = summarize("conv(4) mish flatten dense", (1, 6, 6), 3)
    assert summary.layers[0].dense_params is not None and summary.layers[1].dense_params is None
    assert [layer.kind for layer in conv_layers(list_layers(network, (1, 6, 6)))] == ["Conv2d"]
