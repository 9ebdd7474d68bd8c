"""The Keras baseline of the time-to-accuracy benchmark, run by the interpreter of its own venv.

    KERAS_VENV/bin/python bench/keras_baseline.py IDX_FOLDER EPOCHS

Keras 3 on TensorFlow's CPU build, written as the Keras MNIST example writes it: the arrays in
memory scaled to [0, 1], conv 32 3x3 relu, max pool, conv 64 3x3 relu, max pool, flatten, dropout
0.5, dense 10 softmax; Adam at 1e-3, batch 128, shuffled every epoch, TensorFlow's default threads.
After every epoch the test set is evaluated with the clock stopped. Prints one JSON object: the
cumulative training seconds and the test accuracy after each epoch, and the peak RSS in MiB.

Imports nothing from cnnlab: this venv holds TensorFlow and Keras only.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter on stderr

import numpy as np  # noqa: E402


def read_idx(folder: Path, stem: str) -> np.ndarray:
    """An IDX file (gzipped or not): a big-endian header of dimension sizes, then uint8 data."""
    path = next(p for p in (folder / f"{stem}.gz", folder / stem) if p.exists())
    with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as file:
        data = file.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(folder, f"{prefix}-images-idx3-ubyte").astype("float32")[..., None] / 255
    return images, read_idx(folder, f"{prefix}-labels-idx1-ubyte").astype("int64")


def main() -> None:
    import keras

    folder, epochs = Path(sys.argv[1]), int(sys.argv[2])
    keras.utils.set_random_seed(0)
    train_x, train_y = load(folder, "train")
    test_x, test_y = load(folder, "t10k")
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    seconds, accuracy, elapsed = [], [], 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(train_x, train_y, batch_size=128, epochs=1, shuffle=True, verbose=0)
        elapsed += time.perf_counter() - started
        seconds.append(elapsed)
        accuracy.append(float(model.evaluate(test_x, test_y, batch_size=1000, verbose=0)[1]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"seconds": seconds, "accuracy": accuracy, "peak_mib": peak}))


if __name__ == "__main__":
    main()
