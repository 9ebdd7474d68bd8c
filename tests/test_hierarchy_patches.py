"""What each depth sees: receptive fields against a NumPy walk of the index arithmetic, a pixel
perturbation, the layer language's own count and the gradient's reach in timm networks; top
patches against every activation of a tiny dataset, computed whole."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.data.splits import FileImages, TensorImages
from cnnlab.explain.layers import list_layers
from cnnlab.explain.maps import default_map_layers
from cnnlab.explain.patches import patches_figure, top_patches
from cnnlab.explain.receptive import receptive_fields
from cnnlab.models import create_model

from .helpers import SHAPES, make_shape_folder

# stride, padding, dilation and pooling, each moving the field its own way
SMALL = ("conv(4, k=3, s=1, p=1) tanh maxpool(2) conv(4, k=5, s=2, p=2) tanh "
         "conv(4, k=3, d=2) tanh avgpool(2, s=1) gap dense")
# (kernel, stride, padding, dilation) of SMALL's convs and pools, in order
SMALL_STEPS = [(3, 1, 1, 1), (2, 2, 0, 1), (5, 2, 2, 1), (3, 1, 0, 2), (2, 1, 0, 1)]
SIZE = 23  # odd: the maps do not divide evenly, so clipping and flooring both show


def _maps(model, shape):
    return [layer for layer in list_layers(model, shape) if len(layer.output_shape) == 3]


def _output_of(model, module, image):
    """The module's output when the model runs on the image (with its autograd graph)."""
    store = {}
    handle = module.register_forward_hook(lambda _m, _i, output: store.setdefault("out", output))
    try:
        model(image)
    finally:
        handle.remove()
    return store["out"]


def _numpy_reach(size: int, steps) -> list[np.ndarray]:
    """For each step, a boolean (out, SIZE) matrix: which input pixels (along one axis) each
    output unit depends on, by composing each layer's index arithmetic (unit i reads input
    i * stride - padding + j * dilation, j < kernel, where that lies inside the input)."""
    reach, length, found = np.eye(size, dtype=bool), size, []
    for kernel, stride, padding, dilation in steps:
        out = (length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        step = np.zeros((out, length), dtype=bool)
        for i in range(out):
            for j in range(kernel):
                source = i * stride - padding + j * dilation
                if 0 <= source < length:
                    step[i, source] = True
        reach = (step.astype(int) @ reach.astype(int)) > 0
        length = out
        found.append(reach)
    return found


def test_receptive_fields_match_a_numpy_walk_of_the_index_arithmetic():
    model, _, _ = create_model(SMALL, input_shape=(1, SIZE, SIZE), num_classes=2)
    layers = [layer for layer in _maps(model, (1, SIZE, SIZE))
              if isinstance(layer.module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    fields = receptive_fields(model, (1, SIZE, SIZE), layers)
    reaches = _numpy_reach(SIZE, SMALL_STEPS)
    assert len(layers) == len(reaches)
    for layer, reach in zip(layers, reaches, strict=True):
        field = fields[layer.name]
        assert reach.shape[0] == layer.output_shape[1]
        for unit in range(reach.shape[0]):
            pixels = np.flatnonzero(reach[unit])
            top, left, bottom, right = field.box(unit, unit, SIZE, SIZE)
            assert (top, bottom) == (pixels.min(), pixels.max() + 1), (layer.name, unit)
            assert (left, right) == (top, bottom)


def test_a_pixel_outside_the_box_leaves_the_unit_unchanged_and_one_inside_moves_it():
    torch.manual_seed(0)
    model, _, _ = create_model(SMALL, input_shape=(1, SIZE, SIZE), num_classes=2)
    model.eval()
    layers = [layer for layer in _maps(model, (1, SIZE, SIZE)) if layer.kind != "AdaptiveAvgPool2d"]
    fields = receptive_fields(model, (1, SIZE, SIZE), layers)
    image = torch.rand(1, 1, SIZE, SIZE)

    def unit(layer, x, y, column):
        with torch.no_grad():
            return _output_of(model, layer.module, x)[0, :, y, column]  # every channel there

    for layer in layers:
        height, width = layer.output_shape[1:]
        for y, x in ((0, 0), (height // 2, width // 2), (height - 1, width - 1)):
            top, left, bottom, right = fields[layer.name].box(y, x, SIZE, SIZE)
            before = unit(layer, image, y, x)
            inside = [(top, left), (bottom - 1, right - 1), (top, right - 1), (bottom - 1, left)]
            outside = [(r, c) for r, c in ((top - 1, left), (bottom, left), (top, left - 1),
                                           (top, right)) if 0 <= r < SIZE and 0 <= c < SIZE]
            for (r, c), expected in [*((p, False) for p in inside), *((p, True) for p in outside)]:
                changed = image.clone()
                changed[0, 0, r, c] += 10.0  # large: it becomes its pool window's maximum
                same = torch.equal(unit(layer, changed, y, x), before)
                assert same == expected, (layer.name, (y, x), (r, c))


ZOO = ["simple", "fast", "fast-deep", "resnet-small", "lenet5", "vgg-small", SMALL,
       "conv(8, k=7, s=3, p=3) relu maxpool(3, s=2, p=1) resblock(8, s=2) conv(8, k=3, d=2, p=2) "
       "flatten dense"]


@pytest.mark.parametrize("model_name", ZOO)
def test_receptive_field_sizes_agree_with_the_layer_table(model_name):
    model, _, built = create_model(model_name, input_shape=(1, 28, 28), num_classes=3)
    sizes = {layer.layer.position: layer.receptive_field for layer in built}
    layers = [layer for layer in _maps(model, (1, 28, 28)) if layer.position is not None
              and sizes[layer.position] is not None]
    assert len(layers) >= 3
    fields = receptive_fields(model, (1, 28, 28), layers)
    assert {layer.position: fields[layer.name].size for layer in layers} == \
        {layer.position: sizes[layer.position] for layer in layers}


@pytest.mark.parametrize("name", ["timm:efficientnet_lite0", "timm:tf_efficientnet_lite0",
                                  "timm:convnext_atto", "timm:resnet18"])
def test_timm_fields_are_where_the_gradient_reaches(name):
    """The gradient of a unit reaches exactly the pixels of its field (every weight non-zero).
    ResNet's strided 1x1 shortcuts run beside the main branch: counting their stride as well would
    make the jump, and every field after, twice too large; tf_ networks pad with F.pad ("same");
    ConvNeXt's blocks permute their maps to channels-last and back."""
    torch.manual_seed(0)
    model, _, _ = create_model(name, input_shape=(3, 64, 64), num_classes=3)
    model.eval()
    for name, weight in model.named_parameters():  # timm zeroes the last norm of each block
        if name.endswith(("bn2.weight", "bn3.weight", "gamma")):  # (ConvNeXt: scales it by
            nn.init.uniform_(weight, 0.5, 1.5)  # 1e-6), which would hide the branch
    layers = default_map_layers(list_layers(model, (3, 64, 64)))
    fields = receptive_fields(model, (3, 64, 64), layers)
    assert len(layers) >= 4
    for layer in layers:
        height, width = layer.output_shape[1:]
        for y, x in ((height // 2, width // 2), (0, width - 1)):
            image = torch.randn(1, 3, 64, 64, requires_grad=True)
            output = _output_of(model, layer.module, image)[0, :, y, x]  # (C,)
            # a random mix of the channels: after a layer norm their plain sum is constant
            (output * torch.randn_like(output)).sum().backward()
            rows, columns = torch.nonzero(image.grad[0].abs().sum(0), as_tuple=True)
            reached = (int(rows.min()), int(columns.min()), int(rows.max()) + 1,
                       int(columns.max()) + 1)
            assert reached == fields[layer.name].box(y, x, 64, 64), (layer.name, (y, x))


def _all_activations(model, images, layers):
    """Every layer's whole activation (N, C, H, W) over the images, in one batch."""
    store = {}
    handles = [layer.module.register_forward_hook(
        lambda m, i, o, name=layer.name: store.setdefault(name, o)) for layer in layers]
    with torch.no_grad():
        model(images.float() / 255)
    for handle in handles:
        handle.remove()
    return store


def test_top_patches_are_where_the_largest_activations_of_the_dataset_are():
    torch.manual_seed(3)
    model, _, _ = create_model("conv(8, k=3, p=same) relu maxpool(2) conv(8, k=5, s=2) relu "
                               "conv(8, k=3, p=same) gap dense", input_shape=(1, 21, 21),
                               num_classes=2)
    model.eval()
    images = torch.randint(0, 256, (37, 1, 21, 21), dtype=torch.uint8)
    split = TensorImages(images, torch.zeros(37, dtype=torch.long))
    layers = [layer for layer in _maps(model, (1, 21, 21)) if layer.kind == "ReLU"]
    found = top_patches(model, split, layers, channels=3, patches=4, batch=5, device="cpu")
    everything = _all_activations(model, images, layers)
    for layer, result in zip(layers, found, strict=True):
        activation = everything[layer.name]  # (N, C, H, W)
        means = activation.mean((0, 2, 3))
        assert result.layer == layer.name and result.images == 37
        assert [c.channel for c in result.channels] == means.argsort(descending=True)[:3].tolist()
        for channel in result.channels:
            assert channel.mean_activation == pytest.approx(float(means[channel.channel]), rel=1e-5)
            best = activation[:, channel.channel].flatten(1).max(1).values  # (N,)
            strongest = best.argsort(descending=True)[:4]
            assert [p.image for p in channel.patches] == strongest.tolist()
            assert len({p.image for p in channel.patches}) == 4  # four different images
            for patch in channel.patches:
                assert patch.activation == pytest.approx(float(best[patch.image]))
                y, x = patch.unit
                assert activation[patch.image, channel.channel, y, x] == best[patch.image]
                top, left, bottom, right = patch.box
                assert torch.equal(patch.pixels, images[patch.image, :, top:bottom, left:right])
                assert patch.file is None and patch.source == f"image {patch.image}"


def test_patches_of_files_name_their_files_and_stop_at_the_limit(tmp_path):
    make_shape_folder(tmp_path, per_class=6)
    paths = sorted(tmp_path.rglob("*.png"))
    split = FileImages(paths, [SHAPES.index(p.parent.name) for p in paths], (1, 32, 32), workers=0)
    model, _, _ = create_model("fast", input_shape=(1, 32, 32), num_classes=3)
    layers = default_map_layers(list_layers(model, (1, 32, 32)))
    found = top_patches(model, split, layers, channels=2, patches=3, limit=10, batch=4)
    assert [result.size for result in found] == [4, 10]
    for result in found:
        assert result.images == 10
        for channel in result.channels:
            assert len(channel.patches) == 3
            for patch in channel.patches:
                assert patch.image < 10 and patch.file == paths[patch.image]
                assert patch.source == f"{patch.file.parent.name}/{patch.file.name}"
                whole = np.asarray(Image.open(patch.file))
                top, left, bottom, right = patch.box
                assert np.array_equal(patch.pixels[0].numpy(), whole[top:bottom, left:right])
        figure = tmp_path / f"{result.layer}.png"
        patches_figure(result, figure, result.layer, image_size=(32, 32))
        assert Image.open(figure).size[0] > 200


def test_patches_figure_of_colour_images_with_fields_larger_than_the_image(tmp_path):
    torch.manual_seed(0)
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=(3, 48, 48), num_classes=2)
    images = torch.randint(0, 256, (5, 3, 48, 48), dtype=torch.uint8)
    layers = default_map_layers(list_layers(model, (3, 48, 48)))
    found = top_patches(model, TensorImages(images, torch.zeros(5, dtype=torch.long)),
                        [layers[0], layers[-1]])
    assert found[-1].size > 48  # the last layer sees more than the image
    assert all(patch.box == (0, 0, 48, 48) for c in found[-1].channels for patch in c.patches)
    assert [len(c.patches) for c in found[0].channels] == [5] * 6  # 5 images, 6 channels
    patches_figure(found[-1], tmp_path / "last.png", "last layer")
    assert (tmp_path / "last.png").stat().st_size > 1000
