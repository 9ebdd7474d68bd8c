"""One preprocessing: the pixels a model trains on are the pixels it predicts on, for files and for
built-in datasets resized with --image-size; a long thin image is resized without growing to its
aspect ratio."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config import DataConfig
from cnnlab.data import images, load_dataset
from cnnlab.data.images import tensor_to_image
from cnnlab.run.contract import InputSpec, ModelCard, Preprocessing
from cnnlab.run.folder import build_model
from cnnlab.run.predictor import Predictor


def _predictor(data, interpolation: str) -> Predictor:
    channels = data.input_shape[0]
    card = ModelCard(name="fast", architecture="flatten dense", class_names=tuple(data.class_names),
                     input=InputSpec(*data.input_shape),
                     preprocessing=Preprocessing(interpolation=interpolation, mean=(0.5,) * channels,
                                                 std=(0.5,) * channels))
    return Predictor(build_model(card), card, torch.device("cpu"))


def _as_uint8(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels * 255).round().to(torch.uint8)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_a_file_trains_and_predicts_as_the_same_tensor(tmp_path, interpolation):
    rng = np.random.default_rng(0)
    for name, size in (("a", (50, 37)), ("b", (31, 64))):  # (width, height): odd, not square
        (tmp_path / name).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    data = load_dataset(DataConfig(name=str(tmp_path), image_size=24, val_fraction=0,
                                   interpolation=interpolation))
    predictor = _predictor(data, interpolation)
    paths = sorted(tmp_path.glob("*/*.png"))
    for path, trained in zip(paths, data.train.images, strict=True):
        assert torch.equal(_as_uint8(predictor.preprocess(path)), trained)


@pytest.mark.parametrize(("size", "channels"), [(16, None), (28, 3), (5, 1)])
def test_builtin_data_resized_as_its_images_would_be(tmp_path, size, channels):
    original = load_dataset(DataConfig(name="digits")).train.images[:20]  # (20, 1, 8, 8)
    data = load_dataset(DataConfig(name="digits", image_size=size, channels=channels))
    predictor = _predictor(data, "bilinear")
    for index, image in enumerate(original):
        path = tmp_path / f"{index}.png"
        tensor_to_image(image).save(path)
        assert torch.equal(_as_uint8(predictor.preprocess(path)), data.train.images[index])


def test_a_long_thin_image_is_resized_without_growing_to_its_aspect_ratio(monkeypatch):
    strip = Image.fromarray((np.arange(2_000_000) % 251).astype(np.uint8)[None, :])  # 2,000,000x1
    sizes = []
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize",
                        lambda self, size, *a, **k: sizes.append(size) or resize(self, size, *a, **k))
    out = images.resize_center_crop(strip, 224, 224)
    assert out.size == (224, 224)
    assert max(w * h for w, h in sizes) <= 16 * 224 * 224


def test_ordinary_images_are_resized_as_before():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64), np.uint8))
    scale = 24 / 48
    covered = photo.resize((round(64 * scale), 24), Image.Resampling.BILINEAR)
    left = (covered.width - 24) // 2
    expected = np.asarray(covered.crop((left, 0, left + 24, 24)))
    assert np.array_equal(np.asarray(images.resize_center_crop(photo, 24, 24)), expected)
