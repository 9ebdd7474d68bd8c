"""Prediction on new images and video frames, with the preprocessing the model was trained with."""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ..base.devices import resolve_device
from ..base.errors import CnnlabError
from ..base.fileio import is_dir, is_file
from ..data.images import image_to_tensor, is_image_file, open_image, to_float
from ..data.splits import DecodeFiles, collate_decoded
from ..models import Classifier
from ..models.modes import eval_mode
from ..models.pretrained import TIMM_PREFIX
from ..run.contract import PRETRAINED_PREFIX, InputSpec, ModelCard, Preprocessing
from ..run.engine import cached_engine, forward_engine, graph_output
from ..run.folder import export_of, load_model, read_card
from ..run.unknown import Detector, detector_from_outputs, exported_detector, load_detector
from .settings import PredictSettings

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass(frozen=True)
class ClassScore:
    name: str
    index: int
    probability: float


@dataclass
class Prediction:
    """The top-k classes for one input: an image, one video frame, or a whole clip."""

    input: str
    top: list[ClassScore]
    frame: int | None = None  # video frame number
    time: float | None = None  # seconds into the video
    frames: int | None = None  # for a clip: how many frames were averaged
    accepted: bool | None = None  # with a minimum probability: False calls the input unknown
    known: bool | None = None  # the unknown detector's verdict (None: the model has none)
    unknown_score: float | None = None  # its score: below the model's threshold is unknown

    @property
    def is_unknown(self) -> bool:
        """Called "none of my classes", by the detector or by a probability floor."""
        return self.known is False or self.accepted is False

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"input": self.input}
        for key in ("frame", "time", "frames", "accepted", "known", "unknown_score"):
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        row["top"] = [vars(score) for score in self.top]
        return row


@dataclass
class Failure:
    input: str
    reason: str


ImageInput = str | Path | Image.Image | np.ndarray | torch.Tensor


class TopK(list):
    """One input's top classes (ClassScore, best first), with the unknown detector's verdict:
    `known` (None where the model has no detector) and its `score`."""

    def __init__(self, scores: list[ClassScore], known: bool | None = None,
                 score: float | None = None) -> None:
        super().__init__(scores)
        self.known, self.score = known, score


class Predictor:
    """A trained model with the preprocessing it was trained with (from model.json), and the
    unknown-image detector fitted with it, where there is one."""

    def __init__(self, model: Classifier | Callable[[], Classifier], card: ModelCard,
                 device: torch.device, detector: Detector | None = None,
                 engine: nn.Module | None = None) -> None:
        # The model, or with an `engine` what loads it when gradients (Grad-CAM) first need it.
        self._model = model
        # What runs the forward passes of predictions: ONNX Runtime's graph of the model (see
        # run.engine), or the model.
        self.engine = engine if engine is not None else self.model
        self.card, self.device, self.detector = card, device, detector
        self.class_names: list[str] = list(card.class_names)
        self.input_shape: tuple[int, int, int] = card.input.shape
        self.resize = (card.preprocessing.interpolation, card.preprocessing.crop_pct)

    def preprocess(self, item: ImageInput) -> torch.Tensor:
        """Any supported input -> float (C, H, W) in [0, 1] of the model's channels and size."""
        if isinstance(item, (str, Path)):
            item = open_image(item)
        if isinstance(item, np.ndarray):
            item = Image.fromarray(_as_uint8(item))
        if isinstance(item, torch.Tensor):
            return self._tensor_input(item)
        if not isinstance(item, Image.Image):
            raise CnnlabError(f"cannot predict on a {type(item).__name__}; give a path, PIL "
                              f"image, NumPy array or tensor")
        return to_float(image_to_tensor(item, *self.input_shape, *self.resize))

    def _tensor_input(self, tensor: torch.Tensor) -> torch.Tensor:
        """A (C, H, W) tensor in [0, 1] (or uint8) as it is; of another size, resized as a
        NumPy array or a picture of it would be."""
        if tensor.dtype == torch.uint8:
            tensor = to_float(tensor)
        tensor = tensor.float()
        # Out-of-range pixels give confident nonsense (200.0: probability 1.0), NaN a NaN answer.
        if not torch.isfinite(tensor).all():
            raise CnnlabError("tensor input holds NaN or infinite values; give pixels in [0, 1]")
        if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
            raise CnnlabError(f"float tensor input must be pixels in [0, 1], got values from "
                              f"{float(tensor.min()):g} to {float(tensor.max()):g}; pass uint8 "
                              f"for 0..255")
        if tuple(tensor.shape) == self.input_shape:
            return tensor
        return self.preprocess(_as_image_array(tensor))

    @property
    def model(self) -> Classifier:
        """The PyTorch model (loaded on first use where ONNX Runtime predicts)."""
        if not isinstance(self._model, nn.Module):
            self._model = self._model()
        # channels_last: faster convolutions on CPU (bench/train_step.py)
        return self._model.eval().to(memory_format=torch.channels_last)

    @property
    def runtime(self) -> str:
        """What runs the predictions: "onnxruntime" or "pytorch"."""
        return "pytorch" if isinstance(self.engine, Classifier) else "onnxruntime"

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """float (B, C, H, W) in [0, 1] -> softmax probabilities (B, num_classes) on the CPU."""
        return self.assess(batch)[0]

    @torch.no_grad()
    def assess(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """float (B, C, H, W) in [0, 1] -> the probabilities (B, K) (temperature-scaled, flip
        TTA where the model has them) and the unknown detector's scores (B,), or None without a
        detector; one forward pass serves both."""
        batch, network = batch.to(self.device), self.engine
        if isinstance(network, Classifier):
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.detector is None:
            return network.predict_proba(batch).float().cpu(), None
        with eval_mode(network), _output_layer_input(network, self.detector) as features:
            outputs = network(batch)  # raw logits (ONNX Runtime: what its graph gives)
        if getattr(network, "flip_tta", False):  # the mirror image needs its own pass
            probabilities = network.predict_proba(batch)
        else:
            probabilities = (outputs / getattr(network, "temperature", 1.0)).softmax(1)
        scores = self.detector.score(outputs.float().cpu(), features[0] if features else None)
        return probabilities.float().cpu(), scores

    def verdicts(self, scores: torch.Tensor | None, count: int) -> list[tuple[bool | None,
                                                                             float | None]]:
        """(known, score) for each of `count` inputs."""
        if scores is None:
            return [(None, None)] * count
        known = self.detector.known(scores)
        return [(bool(k), round(float(s), 6)) for k, s in zip(known, scores, strict=True)]

    def top(self, probabilities: torch.Tensor, topk: int) -> list[list[ClassScore]]:
        values, indices = probabilities.topk(min(topk, len(self.class_names)), dim=1)
        return [[ClassScore(self.class_names[i], i, round(float(p), 6))
                 for p, i in zip(row_values.tolist(), row_indices.tolist(), strict=True)]
                for row_values, row_indices in zip(values, indices, strict=True)]

    def predict(self, inputs: ImageInput | list[ImageInput], topk: int = PredictSettings.topk,
                batch_size: int = PredictSettings.batch_size) -> list[list[ClassScore]]:
        """Top-k classes with softmax probabilities for each input, best first."""
        if topk < 1:
            raise CnnlabError(f"topk must be at least 1, got {topk}")
        if batch_size < 1:
            raise CnnlabError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 4:
            inputs = list(inputs)  # a batch (N, H, W, C) / (N, C, H, W): one image per row
        items = inputs if isinstance(inputs, list) else [inputs]
        results = []
        for start in range(0, len(items), batch_size):
            batch = torch.stack([self.preprocess(x) for x in items[start:start + batch_size]])
            probabilities, scores = self.assess(batch)
            verdicts = self.verdicts(scores, len(batch))
            results.extend(TopK(top, *verdict) for top, verdict
                           in zip(self.top(probabilities, topk), verdicts, strict=True))
        return results



@contextmanager
def _output_layer_input(model, detector: Detector):
    """Collects the output layer's input features (B, F) during a forward pass, where the
    detector's score needs them (a list that holds them once the pass is done)."""
    captured: list[torch.Tensor] = []
    if not detector.needs_features:
        yield captured
        return
    handle = model.output_layer.register_forward_hook(
        lambda _module, inputs, _output: captured.append(inputs[0].detach().float().cpu()))
    try:
        yield captured
    finally:
        handle.remove()


def _as_image_array(tensor: torch.Tensor) -> np.ndarray:
    """A float (C, H, W) or (H, W) tensor in [0, 1] as an (H, W, C) uint8 array, for the one
    resizing path every other input takes."""
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4) or not tensor.numel():
        raise CnnlabError(f"tensor input must be an image (C, H, W) with 1, 3 or 4 channels in "
                          f"[0, 1], got shape {tuple(tensor.shape)}")
    return (tensor.detach().cpu().permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _as_uint8(array: np.ndarray) -> np.ndarray:
    """An image array as uint8 pixels: uint8 as it is, floats in [0, 1] scaled by 255, whole
    numbers or floats in 0..255 (anything above 1) taken as pixel values. Anything else (NaN,
    negative, above 255, empty) is refused rather than clipped to black or white."""
    if array.size == 0 or array.ndim not in (2, 3):
        raise CnnlabError(f"an image array must be (H, W) or (H, W, C) and not empty, got shape "
                          f"{array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]  # Pillow takes one channel as (H, W)
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "uif":
        raise CnnlabError(f"an image array must hold numbers, got {array.dtype}")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise CnnlabError("the image array holds NaN or infinite values")
    low, high = values.min(), values.max()
    if low < 0 or high > 255:
        raise CnnlabError(f"image values must be in [0, 1] or 0..255, got {low:g}..{high:g}")
    scale = 255.0 if high <= 1 and array.dtype.kind == "f" else 1.0
    return (values * scale).round().astype(np.uint8)


def _pretrained(name: str, device: torch.device) -> Predictor:
    """An ImageNet classifier straight from pretrained weights, with timm's preprocessing."""
    from ..models.pretrained import create_timm_model, imagenet_class_names, pretrained_config

    cfg = pretrained_config(name)
    network = create_timm_model(name, num_classes=1000, in_chans=3, pretrained=True)
    card = ModelCard(name=f"{PRETRAINED_PREFIX}{name}", architecture=f"{TIMM_PREFIX}{name}",
                     class_names=tuple(imagenet_class_names()), input=InputSpec(*cfg.input_size),
                     preprocessing=Preprocessing(interpolation=cfg.interpolation,
                                                 crop_pct=cfg.crop_pct, mean=cfg.mean,
                                                 std=cfg.std),
                     pretrained=True, dataset="imagenet")
    return Predictor(Classifier(network, cfg.mean, cfg.std).to(device), card, device)


def load_predictor(run: str | Path, device: str = PredictSettings.device,
                   unknown: bool = True, engine: str = "auto") -> Predictor:
    """A run folder's best model (or an export's), with its unknown-image detector unless
    `unknown` is False, or `pretrained:<name>` for an ImageNet model as it comes. `engine` (auto,
    onnx or torch) says what runs the predictions: see run.engine."""
    torch_device = resolve_device(device)
    if str(run).startswith(PRETRAINED_PREFIX):
        return _pretrained(str(run)[len(PRETRAINED_PREFIX):], torch_device)
    exported = export_of(run)
    if exported:
        model, card = load_model(run, torch_device)
        detector = exported_detector(card, exported[0].output) if unknown else None
        return Predictor(model, card, torch_device, detector)
    card = read_card(run)
    detector = load_detector(Path(run), card) if unknown else None
    if detector is not None and engine != "torch":
        # The graph gives logits (log-probabilities with flip TTA), never the features.
        on_graph = detector_from_outputs(card, graph_output(card))
        if on_graph is None:
            engine = _engine_for_features(engine, card)
        else:
            detector = on_graph
    ready = cached_engine(Path(run), card, engine, torch_device)
    if ready is not None:
        return Predictor(lambda: load_model(run, torch_device)[0], card, torch_device, detector,
                         ready)
    model, card = load_model(run, torch_device)
    runner = forward_engine(Path(run), model, card, engine, torch_device)
    return Predictor(model, card, torch_device, detector, runner)


def _engine_for_features(engine: str, card: ModelCard) -> str:
    """torch, where the unknown detector's score reads what the ONNX graph does not give."""
    if engine == "onnx":
        raise CnnlabError(f"--engine onnx: the {card.unknown.score} score of the run's unknown "
                          f"detector needs the network's features, which only PyTorch gives; use "
                          f"--engine torch, or --no-unknown")
    return "torch"


@dataclass
class Inputs:
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    missing: list[Failure] = field(default_factory=list)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _add_file(found: Inputs, path: Path) -> None:
    (found.videos if _is_video(path) else found.images).append(path)


def expand_inputs(inputs: list[str]) -> Inputs:
    """Files, folders (recursive) and globs -> image and video files; names that match nothing."""
    found = Inputs()
    for text in inputs:
        path = Path(text).expanduser()
        if is_dir(path):
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if is_image_file(child) or _is_video(child):
                    _add_file(found, child)
        elif is_file(path):
            _add_file(found, path)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            for match in matches:
                _add_file(found, match)
            if not matches:
                found.missing.append(Failure(text, "no file matches this pattern"))
        else:
            found.missing.append(Failure(text, "no such file or folder"))
    return found


def predict_files(predictor: Predictor, paths: list[Path], topk: int = PredictSettings.topk,
                  batch_size: int = PredictSettings.batch_size,
                  workers: int = PredictSettings.workers) -> Iterator[Prediction | Failure]:
    """Predict image files in batches, decoded by DataLoader workers; bad files become Failures."""
    dataset = DecodeFiles(paths, [0] * len(paths), predictor.input_shape, False, *predictor.resize)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_decoded,
                        num_workers=workers if len(paths) > batch_size else 0)
    for images, _, indices, bad in loader:
        for index, reason in bad:
            yield Failure(str(paths[index]), reason.split(": ", 1)[-1])
        if indices:
            probabilities, scores = predictor.assess(to_float(images))
            tops, verdicts = predictor.top(probabilities, topk), predictor.verdicts(scores, len(indices))
            for index, top, (known, score) in zip(indices, tops, verdicts, strict=True):
                yield Prediction(str(paths[index]), top, known=known, unknown_score=score)


def _video_frames(path: Path, fps: float) -> Iterator[tuple[int, float, Image.Image]]:
    """Frames sampled every 1/fps seconds, read with PyAV: (frame number, seconds, image)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            next_time = 0.0
            for number, frame in enumerate(container.decode(stream)):
                seconds = float(frame.time) if frame.time is not None else number / fps
                if seconds + 1e-6 >= next_time:
                    next_time = seconds + 1.0 / fps
                    yield number, round(seconds, 3), frame.to_image()
    except (av.FFmpegError, IndexError, OSError) as error:
        raise CnnlabError(f"{path}: cannot read the video ({error})") from None


def predict_video(predictor: Predictor, path: Path, fps: float = PredictSettings.fps,
                  topk: int = PredictSettings.topk,
                  batch_size: int = 64) -> tuple[list[Prediction], Prediction]:
    """Per-frame predictions at `fps`, and the clip's label: the mean of the frame probabilities."""
    if fps <= 0:
        raise CnnlabError(f"--fps must be positive, got {fps}")
    frames, probabilities = [], []
    batch: list[tuple[int, float, torch.Tensor]] = []

    def flush() -> None:
        probs, scores = predictor.assess(torch.stack([item[2] for item in batch]))
        probabilities.append(probs)
        for (number, seconds, _), top, (known, score) in zip(
                batch, predictor.top(probs, topk), predictor.verdicts(scores, len(batch)),
                strict=True):
            frames.append(Prediction(str(path), top, frame=number, time=seconds, known=known,
                                     unknown_score=score))
        batch.clear()

    for number, seconds, image in _video_frames(path, fps):
        batch.append((number, seconds, predictor.preprocess(image)))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not frames:
        raise CnnlabError(f"{path}: the video has no frames")
    clip = torch.cat(probabilities).mean(0, keepdim=True)
    return frames, Prediction(str(path), predictor.top(clip, topk)[0], frames=len(frames))
