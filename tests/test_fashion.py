"""The main job on the real default data: Fashion-MNIST from the Debian package."""

import subprocess
import sys
from pathlib import Path

import pytest

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
def test_time_to_accuracy_benchmark_runs(tmp_path):
    """The benchmark is not a test; this runs it for one tiny epoch of each method so it cannot rot."""
    bench = Path(__file__).parent.parent / "bench" / "time_to_accuracy.py"
    result = subprocess.run([sys.executable, str(bench), "--baseline-epochs", "1", "--epochs", "1",
                             "--per-class", "30", "--recipes", "default"],
                            capture_output=True, text=True, timeout=600, check=True)
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[1:]] == ["baseline", "default"]
    accuracies = [float(row.split("|")[-3].strip().rstrip("%")) for row in table[1:]]
    assert all(10 < accuracy <= 100 for accuracy in accuracies)  # 300 images: above chance
