"""Recipes: what a run trains when the user leaves a setting unset, and that a setting given wins."""

import numpy as np
import pytest
from PIL import Image

from cnnlab.config import AugmentConfig, DataConfig, TrainConfig
from cnnlab.train.recipes import resolve

from .helpers import make_folder, photo_slice


def _config(data: str, **settings) -> TrainConfig:
    return TrainConfig(data=DataConfig(name=data), **settings)


@pytest.fixture(scope="module")
def photos(flowers12, tmp_path_factory):
    return photo_slice(flowers12, tmp_path_factory.mktemp("photos"), ["iris", "pansy"], 3, 1)


def _rgb_folder(root, side: int):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_builtin_data_trains_the_small_cnn_from_scratch():
    config, message = resolve(_config("fashion-mnist"))
    assert (config.model, config.pretrained, config.epochs, config.batch_size) == ("fast", False, 15, 128)
    assert config.augment.resized_crop == 0 and config.lr is None and message is None


def test_a_folder_of_photos_fine_tunes_the_pretrained_network(photos):
    config, message = resolve(_config(str(photos)))
    assert config.model == "timm:efficientnet_lite0" and config.pretrained
    assert (config.epochs, config.batch_size, config.lr, config.backbone_lr) == (4, 32, 5e-4, 0.2)
    assert config.freeze_stages == 4  # the stem and the stages at 1/2, 1/4 and 1/8 of the side
    assert config.data.image_size == 224 and config.data.interpolation == "bicubic"
    assert (config.augment.resized_crop, config.augment.crop_size) == (0.35, 192)
    assert "RGB photos" in message and "--model fast" in message


@pytest.mark.parametrize("kind", ["gray", "small rgb"])
def test_small_or_gray_images_keep_the_small_cnn(tmp_path, kind):
    if kind == "gray":
        make_folder(tmp_path, per_class=3, broken=False, modes=["L"])
    else:
        _rgb_folder(tmp_path, 32)
    config, message = resolve(_config(str(tmp_path)))
    assert config.model == "fast" and not config.pretrained and message is None


def test_large_rgb_images_count_as_photos(tmp_path):
    config, _ = resolve(_config(str(_rgb_folder(tmp_path, 96))))
    assert config.pretrained and config.model.startswith("timm:")


def test_settings_the_user_gave_win(photos):
    config, message = resolve(_config(str(photos), model="fast", epochs=2))
    assert (config.model, config.pretrained, config.epochs, config.batch_size) == ("fast", False, 2, 128)
    assert (config.ema, config.tta) == (0.99, True)
    config, _ = resolve(_config(str(photos), epochs=3, lr=1e-3, batch_size=8,
                                augment=AugmentConfig(resized_crop=0.0)))
    assert (config.epochs, config.lr, config.batch_size, config.augment.resized_crop) == (3, 1e-3, 8, 0)


def test_pretrained_without_a_model_and_the_probe_recipe():
    config, message = resolve(_config("digits", pretrained=True))
    assert config.model == "timm:efficientnet_lite0" and "--pretrained without --model" in message
    config, _ = resolve(_config("digits", pretrained=True, freeze="backbone"))
    assert config.augment.resized_crop == 0 and config.batch_size == 128
    assert (config.ema, config.tta) == (0.0, False)


def test_fine_tuning_with_sgd_takes_an_sgd_rate(photos):
    config, _ = resolve(_config(str(photos), optimizer="sgd"))
    assert config.lr == 0.01


def test_resolving_twice_changes_nothing(photos):
    once, _ = resolve(_config(str(photos)))
    twice, message = resolve(once)
    assert twice == once and message is None
