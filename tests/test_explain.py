"""Explain: Grad-CAM points at the object, saliency depends on the learned weights, heatmaps have
the input's size, hooks never pile up; lists of methods, targets and layers, the feature maps of a
deep network, figures of their own for files of one name."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.explain import METHODS, attribute, explain, list_layers
from cnnlab.explain.layers import conv_activations, conv_layers, last_conv_activation
from cnnlab.models import create_model

from .helpers import SHAPES, draw_shape
from .helpers import captured_error_line as _one_error_line
from .helpers import digit_png as _digit_png


def test_gradcam_pointing_game(shapes_run):
    assert shapes_run.best_val_accuracy > 0.9
    predictor = cnnlab.load(shapes_run.path)
    rng = np.random.default_rng(123)  # images the model never saw
    images, boxes, labels = [], [], []
    for i in range(90):
        kind = SHAPES[i % 3]
        image, box = draw_shape(kind, rng)
        images.append(torch.from_numpy(image)[None].float() / 255)
        boxes.append(box)
        labels.append(predictor.class_names.index(kind))
    heatmaps = attribute("gradcam", predictor.model, torch.stack(images), torch.tensor(labels))
    assert heatmaps.shape == (90, 32, 32)
    hits = 0
    for heatmap, (top, left, height, width) in zip(heatmaps, boxes, strict=True):
        y, x = divmod(int(heatmap.argmax()), heatmap.shape[1])
        hits += top <= y < top + height and left <= x < left + width
    assert hits / len(boxes) >= 0.8, f"Grad-CAM peak inside the box for {hits}/{len(boxes)}"


def _randomized(model):
    clone = copy.deepcopy(model)
    torch.manual_seed(1)
    for module in clone.modules():
        if hasattr(module, "reset_parameters") and module is not clone:
            module.reset_parameters()
    return clone


def test_saliency_depends_on_the_learned_weights(shapes_run):
    predictor = cnnlab.load(shapes_run.path)
    rng = np.random.default_rng(7)
    images = torch.stack([torch.from_numpy(draw_shape(SHAPES[i % 3], rng)[0])[None].float() / 255
                          for i in range(30)])
    targets = predictor.model(images).argmax(1)
    trained = attribute("saliency", predictor.model, images, targets)
    random = attribute("saliency", _randomized(predictor.model), images, targets)
    correlations = [spearmanr(a.flatten(), b.flatten()).statistic
                    for a, b in zip(trained, random, strict=True)]
    assert np.mean(correlations) < 0.5, f"mean rank correlation {np.mean(correlations):.2f}"


@pytest.mark.parametrize("method", ["saliency", "integrated-gradients", "gradcam", "occlusion"])
@pytest.mark.parametrize("model_name", ["simple", "resnet-small", "lenet5"])
def test_heatmaps_have_the_input_size(method, model_name):
    model, _, _ = create_model(model_name, input_shape=(3, 28, 28), num_classes=4)
    images = torch.rand(3, 3, 28, 28)
    heatmaps = attribute(method, model, images, torch.tensor([0, 1, 3]))
    assert heatmaps.shape == (3, 28, 28)
    assert torch.isfinite(heatmaps).all() and (heatmaps >= 0).all()


def test_gradcam_layer_is_found_in_any_network():
    for name, expected in (("simple", "ReLU"), ("resnet-small", "ResBlock"), ("lenet5", "Tanh")):
        model, _, _ = create_model(name, input_shape=(1, 28, 28), num_classes=10)
        assert last_conv_activation(list_layers(model, (1, 28, 28))).kind == expected


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def test_no_hooks_left_and_no_memory_growth():
    model, _, _ = create_model("simple", input_shape=(1, 28, 28), num_classes=10)
    images, targets = torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)
    for _ in range(20):
        attribute("gradcam", model, images, targets)
    before = _rss_mb()
    for _ in range(100):
        attribute("gradcam", model, images, targets)
    assert _rss_mb() - before < 30
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
        assert not module._forward_pre_hooks
    assert model.training  # the mode is restored


def test_every_method_writes_its_figure(digits_run, tmp_path):
    from sklearn.datasets import load_digits

    image = tmp_path / "seven.png"
    Image.fromarray((load_digits().images[7] * 255 / 16).astype(np.uint8)).save(image)
    for method in METHODS:
        result = explain(digits_run.path, [str(image)], method=method, out=tmp_path / "out",
                         limit=300, projection="pca")
        assert result.figures and all(path.is_file() for path in result.figures)
        if method in ("saliency", "integrated-gradients", "gradcam", "occlusion"):
            assert result.arrays["seven"].shape == (8, 8)
    maps = explain(digits_run.path, [str(image)], method="feature-maps", out=tmp_path / "o").arrays
    assert [a.shape[0] for a in maps.values()] == [32, 64]
    embedding = explain(digits_run.path, method="embedding", limit=200, out=tmp_path / "e",
                        projection="tsne")
    assert embedding.arrays["points"].shape == (200, 2)


def test_target_and_layer_errors(digits_run, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    with pytest.raises(CnnlabError, match="unknown class 'eleven'"):
        explain(digits_run.path, [str(image)], target="eleven", out=tmp_path)
    with pytest.raises(CnnlabError, match=r"no layer 'network.features.99'"):
        explain(digits_run.path, [str(image)], layer="network.features.99", out=tmp_path)
    other = explain(digits_run.path, [str(image)], target="3", out=tmp_path)
    assert other.arrays["x"].shape == (8, 8)


@pytest.mark.slow  # minutes of the plain suite: run with -m slow, as CI does
def test_cli_explain_all_and_list_layers(digits_run, tmp_path):
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    image = tmp_path / "four.png"
    Image.fromarray((load_digits().images[4] * 255 / 16).astype(np.uint8)).save(image)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "cnnlab", "explain", str(digits_run.path),
                               *args], capture_output=True, text=True, timeout=300)

    listed = run("--list-layers")
    assert listed.returncode == 0 and "network.features.0" in listed.stdout
    result = run(str(image), "--method", "all", "--out", str(tmp_path / "all"), "--limit", "200",
                 "--projection", "pca")
    assert result.returncode == 0, result.stderr
    written = {p.name for p in (tmp_path / "all").iterdir()}
    assert {"four-gradcam.png", "four-saliency.png", "four-occlusion.png", "filters.png",
            "four-integrated-gradients.png", "embedding-test-pca.png"} <= written
    bad = run(str(image), "--method", "gradcm")
    assert bad.returncode == 2 and "did you mean 'gradcam'" in bad.stderr


@pytest.mark.parametrize("name", ["simple", "fast", "fast-deep", "vgg-small"])
def test_every_conv_maps_to_its_own_rectified_output(name):
    """Feature maps and Grad-CAM read each conv after its batch norm and ReLU, also where a pool
    sits between them (`fast`), and never past the next conv."""
    model, _, _ = create_model(name, input_shape=(1, 28, 28), num_classes=10)
    layers = list_layers(model, (1, 28, 28))
    activations = conv_activations(layers)
    assert len(activations) == len(conv_layers(layers))
    assert len({a.name for a in activations}) == len(activations)
    assert all(a.kind == "ReLU" for a in activations)


def test_filters_of_a_network_without_conv_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    run = cnnlab.train(data="digits", model="flatten dense(16) relu dense", epochs=1,
                       out=str(tmp_path / "dense"), quiet=True)
    result = subprocess.run([sys.executable, "-m", "cnnlab", "explain", str(run.path), "--method",
                             "filters", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the model has no conv layer, so it has no filters to show; saliency and "
        "integrated-gradients explain any model"]


def test_cnnlab_explain_is_a_function_like_evaluate_and_attack(digits_run, tmp_path):
    import cnnlab

    result = cnnlab.explain(digits_run.path, method="filters", out=tmp_path)
    assert callable(cnnlab.explain) and result.figures and result.figures[0].is_file()


def test_lists_of_methods_and_layers_by_their_summary_number(run_copy, capsys):
    image = str(run_copy / "curves.png")
    assert main(["explain", str(run_copy), image, "--method", "saliency,occlusion"]) == 0
    assert main(["explain", str(run_copy), image, "--method", "feature-maps", "--layer", "5"]) == 0
    out = capsys.readouterr().out
    assert "curves-saliency.png" in out and "curves-occlusion.png" in out
    assert "feature-maps-network.features.4.png" in out  # layer 5 of `cnnlab summary simple`
    assert main(["explain", str(run_copy), "--list-layers"]) == 0
    assert "conv(64, k=3, p=same)" in capsys.readouterr().out


def test_several_targets_on_one_scale(run_copy):
    from cnnlab.explain import explain

    result = explain(run_copy, str(run_copy / "curves.png"), method="saliency", target="3,8",
                     shared_scale=True, quiet=True)
    assert sorted(result.arrays) == ["curves/3", "curves/8"]
    assert sorted(path.name for path in result.figures) == ["curves-saliency-3.png",
                                                            "curves-saliency-8.png"]


def test_files_of_one_name_in_other_folders_keep_figures_of_their_own(run_copy, tmp_path):
    from cnnlab.explain import explain

    first, second = _digit_png(tmp_path / "a" / "x.png", 0), _digit_png(tmp_path / "b" / "x.png", 1)
    result = explain(run_copy, [first, second, first], method="saliency", out=str(tmp_path / "out"),
                     quiet=True)
    assert [path.name for path in result.figures] == ["a_x-saliency.png", "b_x-saliency.png",
                                                      "a_x-2-saliency.png"]
    assert all(path.is_file() for path in result.figures)
    assert not (result.arrays["a_x"] == result.arrays["b_x"]).all()


def test_feature_maps_of_a_deep_network_are_a_few_spread_over_its_depth(probe_run, tmp_path,
                                                                        caplog):
    from cnnlab.explain.layers import conv_activations, list_layers

    image = str(_digit_png(tmp_path / "seven.png", 7))
    assert main(["explain", str(probe_run.path), image, "--method", "feature-maps", "--out",
                 str(tmp_path / "maps")]) == 0
    written = sorted((tmp_path / "maps").glob("seven-feature-maps-*.png"))
    assert 3 <= len(written) <= 6
    said = [r.getMessage() for r in caplog.records if "feature maps of" in r.getMessage()]
    assert len(said) == 1 and f"feature maps of {len(written)} of the " in said[0]
    shown = [path.stem.split("-feature-maps-")[1] for path in written]
    assert "--layer" in said[0] and all(name in said[0] for name in shown)
    predictor = cnnlab.load(probe_run.path)
    convs = [layer.name for layer in conv_activations(list_layers(predictor.model,
                                                                  predictor.input_shape))]
    assert len(convs) > 40 and {convs[0], convs[-1]} <= set(shown) <= set(convs)


def test_explain_refuses_a_fifo_in_one_line(digits_run, fifo, capsys, no_hang):
    assert main(["explain", str(digits_run.path), str(fifo), "--method", "saliency",
                 "--out", str(fifo.parent / "x")]) == 2
    assert "not a regular file" in _one_error_line(capsys)
