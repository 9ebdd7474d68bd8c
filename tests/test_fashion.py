"""The main job on the real default data: Fashion-MNIST from the Debian package."""

import pytest

import cnnlab
from cnnlab.config import DataConfig
from cnnlab.data import load_dataset
from cnnlab.data.builtin import FASHION_CLASSES


def test_fashion_mnist_loads_with_its_classes():
    data = load_dataset(DataConfig())
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.class_names == FASHION_CLASSES
    assert data.input_shape == (1, 28, 28)
    assert sorted(data.test.labels.bincount().tolist()) == [1000] * 10


@pytest.mark.slow
def test_default_recipe_reaches_90_percent(tmp_path):
    run = cnnlab.train(out=str(tmp_path / "default"), quiet=True)
    assert run.status == "finished"
    assert run.test_accuracy >= 0.90
    assert cnnlab.load(run.path).meta["dataset"] == "fashion-mnist"
