"""A trained model ready to predict: the preprocessing it was trained with (from model.json), the
forward passes (PyTorch or ONNX Runtime, see run.engine) and the unknown-image detector fitted with
it. The predict, explain and serve stages all predict through it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..base.devices import resolve_device
from ..base.errors import CnnlabError
from ..config.common import EVAL_BATCH
from ..data.images import image_to_tensor, open_image, to_float
from ..models import Classifier
from ..models.modes import eval_mode
from ..models.pretrained import TIMM_PREFIX
from .contract import PRETRAINED_PREFIX, InputSpec, ModelCard, Preprocessing
from .engine import cached_engine, forward_engine, graph_output
from .folder import export_of, load_model, read_card
from .prediction import TOPK, ClassScore, Prediction, UnknownVerdict
from .unknown import Detector, detector_from_outputs, exported_detector, load_detector

ImageInput = str | Path | Image.Image | np.ndarray | torch.Tensor


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

    def verdicts(self, scores: torch.Tensor | None, count: int) -> list[UnknownVerdict | None]:
        """The detector's verdict on each of `count` inputs from its scores (B,); None for each
        where the model has no detector."""
        if scores is None or self.detector is None:
            return [None] * count
        passed, spec = self.detector.known(scores), self.detector.spec
        return [UnknownVerdict.judged(float(score), bool(ok), spec.threshold, spec.score)
                for score, ok in zip(scores, passed, strict=True)]

    def top(self, probabilities: torch.Tensor, topk: int) -> list[list[ClassScore]]:
        values, indices = probabilities.topk(min(topk, len(self.class_names)), dim=1)
        return [[ClassScore(self.class_names[i], i, round(float(p), 6))
                 for p, i in zip(row_values.tolist(), row_indices.tolist(), strict=True)]
                for row_values, row_indices in zip(values, indices, strict=True)]

    def predictions(self, probabilities: torch.Tensor, verdicts: Sequence[UnknownVerdict | None],
                    names: Sequence[str | None], topk: int) -> list[Prediction]:
        """One Prediction per row of probabilities (B, K), with its verdict and input name."""
        _check_finite(probabilities, names)
        return [Prediction(name, top, verdict) for name, top, verdict
                in zip(names, self.top(probabilities, topk), verdicts, strict=True)]

    def predict_batch(self, batch: torch.Tensor, names: Sequence[str | None],
                      topk: int = TOPK) -> list[Prediction]:
        """float (B, C, H, W) in [0, 1], already preprocessed -> a Prediction per image."""
        probabilities, scores = self.assess(batch)
        return self.predictions(probabilities, self.verdicts(scores, len(batch)), names, topk)

    def predict(self, inputs: ImageInput | list[ImageInput], topk: int = TOPK,
                batch_size: int = EVAL_BATCH) -> list[Prediction]:
        """Top-k classes with softmax probabilities for each input, best first, and the unknown
        detector's verdict where the model has one."""
        if topk < 1:
            raise CnnlabError(f"topk must be at least 1, got {topk}")
        if batch_size < 1:
            raise CnnlabError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 4:
            inputs = list(inputs)  # a batch (N, H, W, C) / (N, C, H, W): one image per row
        items = inputs if isinstance(inputs, list) else [inputs]
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            batch = torch.stack([self.preprocess(x) for x in chunk])
            results.extend(self.predict_batch(batch, [_input_name(x) for x in chunk], topk))
        return results


def _check_finite(probabilities: torch.Tensor, names: Sequence[str | None]) -> None:
    """Probabilities that are not numbers are refused: finite weights can still overflow to
    infinite logits, whose softmax is NaN, and a NaN is no answer (nor valid JSON)."""
    finite = torch.isfinite(probabilities).all(1)
    if bool(finite.all()):
        return
    name = names[int((~finite).nonzero()[0])] or "an image"
    raise CnnlabError(f"{name}: the model's probabilities are not finite numbers (its outputs "
                      f"overflow), so nothing is predicted; check the run's weights")


def _input_name(item: ImageInput) -> str | None:
    """A path's name for its prediction; arrays, tensors and pictures in memory have none."""
    return str(item) if isinstance(item, (str, Path)) else None


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


def load_predictor(run: str | Path, device: str = "auto",
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
