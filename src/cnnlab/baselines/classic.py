"""`cnnlab baselines`: the methods that came before CNNs (logistic regression, a linear SVM on HOG
features, a random forest, an RBF SVM on PCA features), measured on the CNN's own split with the
same metrics as `cnnlab evaluate`. All of them are scikit-learn's (HOG is scikit-image's); nothing
is pickled, only the numbers are written."""

from __future__ import annotations

import csv
import dataclasses
import io
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import CnnlabError, unknown
from ..base.fileio import atomic_write_json, atomic_write_text
from ..base.progress import tracked
from ..base.settings import resolve
from ..base.typed import json_field, read_typed_in, to_json_dict
from ..config import DataConfig
from ..data import load_dataset
from ..data.splits import DatasetSplits, FileImages, Split
from .settings import BaselineSettings

# The RBF SVM's fit grows with the square of the training images: past this many it trains on a
# class-stratified subsample (said in its row) so the whole table stays within minutes. On 50
# principal components all of Fashion-MNIST's 54,000 fit in about a minute.
SVM_MAX_TRAIN = 60_000
PCA_COMPONENTS = 50
CNN_METHOD = "CNN ({})"  # the run's own row, by its network's name: "CNN (simple)"


@dataclass(frozen=True)
class BaselineResult:
    """One method's row of the table (and of baselines.json)."""

    UNKNOWN_KEYS = "refuse"

    method: str
    features: str
    accuracy: float
    macro_f1: float
    fit_seconds: float
    predict_seconds: float
    train_images: int
    note: str = ""

    @property
    def is_cnn(self) -> bool:
        """The run's own CNN beside the classic methods (see _cnn_row)."""
        return self.method.startswith(CNN_METHOD.partition("{")[0])


@dataclass(frozen=True)
class Baseline:
    key: str  # what --only names it by
    method: str
    features: str
    make: Callable[[int, int], Any]  # (threads, seed) -> an unfitted scikit-learn estimator
    hog: bool = False  # fed HOG features instead of pixels
    max_train: int | None = None


def _logistic(threads: int, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=300, random_state=seed)


def _linear_svm(threads: int, seed: int):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    return make_pipeline(StandardScaler(), LinearSVC(C=0.01, random_state=seed))


def _forest(threads: int, seed: int):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, n_jobs=threads, random_state=seed)


def _pca_svm(threads: int, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    return make_pipeline(PCA(PCA_COMPONENTS, random_state=seed), SVC(kernel="rbf", C=10))


BASELINES = (
    Baseline("logistic", "logistic regression", "pixels", _logistic),
    Baseline("hog-svm", "linear SVM", "HOG", _linear_svm, hog=True),
    Baseline("forest", "random forest", "pixels", _forest),
    Baseline("pca-svm", "RBF SVM", f"PCA-{PCA_COMPONENTS}", _pca_svm, max_train=SVM_MAX_TRAIN),
)


def chosen_baselines(only: str | None) -> list[Baseline]:
    """All baselines, or those --only names ('logistic,forest')."""
    if not only:
        return list(BASELINES)
    keys = [key.strip() for key in only.split(",") if key.strip()]
    known = [b.key for b in BASELINES]
    for key in keys:
        if key not in known:
            raise unknown("baseline", key, known)
    return [b for b in BASELINES if b.key in keys]


def as_arrays(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """A split as scikit-learn takes it: float32 pixels in [0, 1], one row per image, (N, C*H*W)."""
    tensors = split.to_memory()[0] if isinstance(split, FileImages) else split
    pixels = tensors.images.reshape(len(tensors), -1).numpy().astype(np.float32) / 255
    return pixels, tensors.labels.numpy()


def hog_features(pixels: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Histograms of oriented gradients (Dalal and Triggs, 2005): 9 orientations over cells of
    1/7 of the side (4x4 pixels at 28x28), blocks of 2x2 cells."""
    from skimage.feature import hog

    channels, height, width = shape
    cell = max(2, min(height, width) // 7)
    images = pixels.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    return np.stack([hog(image, orientations=9, pixels_per_cell=(cell, cell),
                         cells_per_block=(2, 2), channel_axis=-1) for image in images])


def _hog_splits(train, test, shape) -> tuple[tuple, tuple[float, float]]:
    """HOG features of both splits, and the seconds each took."""
    splits, seconds = [], []
    for pixels, labels in (train, test):
        started = time.perf_counter()
        splits.append((hog_features(pixels, shape), labels))
        seconds.append(time.perf_counter() - started)
    return tuple(splits), tuple(seconds)


def _subsample(labels: np.ndarray, most: int, seed: int) -> np.ndarray:
    """Indices of at most `most` images, the classes in their proportions."""
    if len(labels) <= most:
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    chosen, _ = train_test_split(np.arange(len(labels)), train_size=most, stratify=labels,
                                 random_state=seed)
    return np.sort(chosen)


def run_baseline(baseline: Baseline, train: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], threads: int, seed: int) -> BaselineResult:
    """Fit on `train`, predict `test` (features already computed); accuracy and macro F1 as
    `cnnlab evaluate` reports them."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, f1_score

    (x_train, y_train), (x_test, y_test) = train, test
    chosen = _subsample(y_train, baseline.max_train or len(y_train), seed)
    note = (f"trained on {len(chosen):,} of {len(y_train):,} images (an RBF SVM's fit grows with "
            f"their square)" if len(chosen) < len(y_train) else "")
    model = baseline.make(threads, seed)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # said in the row, not as a warning dump
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x_train[chosen], y_train[chosen])
    fitted = time.perf_counter()
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        note = "; ".join(filter(None, [note, "the solver stopped at its iteration limit before "
                                             "converging"]))
    predicted = model.predict(x_test)
    predict_seconds = time.perf_counter() - fitted
    return BaselineResult(baseline.method, baseline.features, float(accuracy_score(y_test, predicted)),
                          float(f1_score(y_test, predicted, average="macro")),
                          round(fitted - started, 2), round(predict_seconds, 2), len(chosen), note)


def _dataset(settings: BaselineSettings) -> DatasetSplits:
    if settings.run:
        from ..run.data import run_dataset
        from ..run.folder import read_card

        return run_dataset(Path(settings.run), read_card(settings.run))
    return load_dataset(DataConfig(name=settings.data))


def _training_seconds(run: Path) -> float:
    from ..run.folder import read_metrics

    return sum(row.seconds for row in read_metrics(run))


def _cnn_row(run: Path, dataset: DatasetSplits, device: str) -> BaselineResult:
    """The run's CNN in the same table: its training time, and its test predictions timed."""
    from sklearn.metrics import accuracy_score, f1_score

    from ..base.devices import resolve_device
    from ..run.folder import load_model
    from ..run.inference import predict_logits

    torch_device = resolve_device(device)
    model, card = load_model(run, torch_device)
    started = time.perf_counter()
    logits, labels = predict_logits(model, dataset.test, torch_device)
    seconds = time.perf_counter() - started
    predicted = logits.argmax(1).numpy()
    return BaselineResult(CNN_METHOD.format(card.name), "pixels", float(accuracy_score(labels, predicted)),
                          float(f1_score(labels, predicted, average="macro")),
                          round(_training_seconds(run), 2), round(seconds, 2), len(dataset.train),
                          f"run {run.name}, best epoch {card.epoch}; fit: its training time")


def measure_baselines(settings: BaselineSettings | None = None, **options: Any) -> list[BaselineResult]:
    """Every baseline on the data's train and test splits (the run's own data with `run`),
    and the run's CNN beside them."""
    settings = resolve(BaselineSettings, settings, options)
    if not settings.run and not settings.data:
        raise CnnlabError("give --data (a dataset) or --run (a run folder, whose data is used)")
    dataset = _dataset(settings)
    if dataset.test is None:
        raise CnnlabError(f"{dataset.name} has no test split to measure on")
    train, test = as_arrays(dataset.train), as_arrays(dataset.test)
    chosen = chosen_baselines(settings.only)
    results = []
    with tracked("baselines", len(chosen), quiet=settings.quiet) as advance:
        for baseline in chosen:
            data, seconds = (train, test), (0.0, 0.0)
            if baseline.hog:
                data, seconds = _hog_splits(train, test, dataset.input_shape)
            result = run_baseline(baseline, data[0], data[1], settings.threads, settings.seed)
            # the features are part of the method's cost: HOG time counts in fit and predict
            results.append(dataclasses.replace(
                result, fit_seconds=round(result.fit_seconds + seconds[0], 2),
                predict_seconds=round(result.predict_seconds + seconds[1], 2)))
            advance(1)
    if settings.run:
        results.append(_cnn_row(Path(settings.run), dataset, settings.device))
    return results


TABLE_COLUMNS = ["method", "features", "accuracy", "macro F1", "fit (s)", "predict (s)",
                 "train images"]


def table_row(result: BaselineResult) -> list[str]:
    """A result as the terminal and the report show it."""
    return [result.method, result.features, f"{result.accuracy:.2%}", f"{result.macro_f1:.4f}",
            f"{result.fit_seconds:.1f}", f"{result.predict_seconds:.2f}", f"{result.train_images:,}"]


BASELINES_JSON = "baselines.json"


@dataclass(frozen=True)
class Baselines:
    """The baselines of one data set (what baselines.json holds), and where they were written."""

    data: str
    results: tuple[BaselineResult, ...]
    folder: Path | None = json_field(None, stored=False)  # where it was written or read from

    def __iter__(self) -> Iterator[BaselineResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def best_classic(self) -> BaselineResult | None:
        """The most accurate of the classic methods (the run's CNN left out)."""
        return max((r for r in self.results if not r.is_cnn), key=lambda r: r.accuracy, default=None)

    def write(self, folder: Path) -> Baselines:
        """baselines.json and baselines.csv in `folder`; the Baselines with their folder."""
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / BASELINES_JSON, to_json_dict(self))
        rows = [asdict(result) for result in self.results]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(folder / "baselines.csv", buffer.getvalue())
        return dataclasses.replace(self, folder=folder)

    @classmethod
    def read(cls, folder: Path) -> Baselines:
        """baselines.json in `folder`; a missing or malformed field is one line naming it."""
        return read_typed_in(cls, folder, BASELINES_JSON)

    @classmethod
    def found_in(cls, folder: Path) -> Baselines | None:
        """The baselines in `folder`, or None where none were written there."""
        return cls.read(folder) if (Path(folder) / BASELINES_JSON).is_file() else None


def baselines(settings: BaselineSettings | None = None, **options: Any) -> Baselines:
    """Logistic regression, HOG + linear SVM, random forest and PCA + RBF SVM on the same split as
    a run's CNN (run="runs/NAME", the CNN beside them) or on a dataset (data="digits"), written to
    `out` (default RUN/baselines, or runs/baselines-DATA)."""
    settings = resolve(BaselineSettings, settings, options)
    results = measure_baselines(settings)
    data = settings.data or Path(settings.run).name
    folder = Path(settings.out) if settings.out else (
        Path(settings.run) / "baselines" if settings.run
        else Path("runs") / f"baselines-{Path(data.rstrip('/')).name}")
    return Baselines(data, tuple(results)).write(folder)
