"""Transfer learning: the head and the backbone of any classifier, freezing, and cached features.

The head is the last dense layer (timm's classifier, the output layer of a layer-language network);
everything before it is the backbone. With the backbone frozen and no augmentation, its output for an
image never changes, so it is computed once and the head trains on the cached vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..base.errors import CnnlabError
from ..config import TrainConfig
from ..data.splits import Split
from ..models.pretrained import stage_groups
from ..run.engine import feature_engine
from ..run.inference import output_layer, penultimate_features, predict_logits
from .probe import Probe, linear_probe


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in output_layer(model).parameters()}
    return [p for p in model.parameters() if id(p) not in head]


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or free) the backbone. A frozen backbone runs in eval mode (batch-norm statistics
    fixed, no dropout), so it computes exactly what the feature cache holds; the head, a plain
    dense layer, behaves the same in either mode."""
    for parameter in backbone_parameters(model):
        parameter.requires_grad_(not frozen)
    if frozen:
        model.eval()


def early_stage_parameters(model: nn.Module, stages: int) -> list[nn.Parameter]:
    """The parameters of the stem and the stages after it, `stages` in all, from the input on,
    as timm's own grouping of the network says them (the groups its layer-wise learning-rate decay
    uses): the same call names the stages of every timm family."""
    if stages == 0:
        return []
    network = getattr(model, "network", model)
    if not hasattr(network, "group_matcher"):
        raise CnnlabError("--freeze-stages needs a timm network (--model timm:NAME), whose stages "
                          "timm names")
    ordered = stage_groups(network)
    if stages >= len(ordered):  # the last group holds the head, which always trains
        raise CnnlabError(f"--freeze-stages {stages}: {type(network).__name__} has "
                          f"{len(ordered) - 1} stages before its head (its stem the first)")
    names = {name for group in ordered[:stages] for name in group}
    return [parameter for name, parameter in network.named_parameters() if name in names]


def keep_batch_norm_statistics(model: nn.Module) -> None:
    """Batch norm in eval mode: the pretrained running statistics stay (its scale and shift still
    train). Small batches of augmented crops would otherwise replace statistics gathered on
    ImageNet by noisy ones from another resolution, and accuracy on full test images drops."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def augments(config: TrainConfig, flip: bool) -> bool:
    a = config.augment
    return bool(flip or a.crop_padding or a.erasing or a.rotation or a.resized_crop)


def can_cache(config: TrainConfig, flip: bool) -> bool:
    """Features can be cached only when the backbone never trains and every epoch sees the same
    pixels: augmentation (and adversarial training) change them at every step."""
    return (config.freeze == "backbone" and config.feature_cache and not augments(config, flip)
            and config.adversarial is None)


@dataclass(frozen=True)
class FeatureSplit:
    """A split as a frozen backbone sees it: float features (N, F) with their labels (N,). The
    linear probe fits on it whole, in one batch."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features, self.labels


def cache_features(model: nn.Module, split: Split, device: torch.device,
                   input_shape: tuple[int, int, int], engine: str = "auto") -> FeatureSplit:
    """What the model's output layer sees for every image of the split: from ONNX Runtime's graph
    of the backbone where it matches PyTorch (see run.engine; 5x faster on a CPU), else PyTorch."""
    extractor = feature_engine(model, input_shape, engine, device)
    if extractor is not None:
        return FeatureSplit(*predict_logits(extractor, split, device, batch_size=64))
    features, labels = penultimate_features(model, split, limit=len(split), device=device,
                                            channels_last=True)
    return FeatureSplit(torch.from_numpy(features), torch.from_numpy(labels))


def fit_probe_head(model: nn.Module, train: FeatureSplit, val: FeatureSplit | None,
                   class_weights: torch.Tensor | None, refit: bool,
                   label_smoothing: float = 0.0) -> Probe:
    """Fit the model's output layer as an exact linear probe on cached features (in place)."""
    head = output_layer(model)
    probe = linear_probe(train.pair(), val.pair() if val is not None else None,
                         head.out_features, class_weights=class_weights,
                         label_smoothing=label_smoothing, refit=refit)
    probe.load_into(head)
    return probe


def start_from_run(model: nn.Module, run: str, input_shape: tuple[int, ...]) -> str:
    """Copy a run's weights into `model` (--init): every tensor whose name and shape match, so a
    new set of classes keeps all but the output layer, and a network that pools globally (timm's)
    may take another input size. Returns the line that says what came over."""
    from ..run.folder import load_model

    source, card = load_model(run)
    own = model.state_dict()
    matching = {name: tensor for name, tensor in source.state_dict().items()
                if name in own and own[name].shape == tensor.shape}
    if card.input.shape != tuple(input_shape) and not _fits_but_head(model, own, matching):
        raise CnnlabError(f"--init {run} was trained on {'x'.join(map(str, card.input.shape))} "
                          f"images, this data gives {'x'.join(map(str, input_shape))}: use "
                          f"--image-size/--channels to match")
    if not matching:
        raise CnnlabError(f"--init {run}: no layer of its network ({card.name}) fits this one")
    model.load_state_dict(matching, strict=False)
    fresh = [name for name in own if name not in matching]
    rest = f"; new: {', '.join(fresh)}" if fresh else ""
    return f"started from the weights of {run} ({len(matching)} of {len(own)} tensors{rest})"


def _fits_but_head(model: nn.Module, own: dict, matching: dict) -> bool:
    """Whether every tensor but the output layer's came over."""
    head = {id(p) for p in output_layer(model).parameters()}
    head_names = {name for name, p in model.named_parameters() if id(p) in head}
    return all(name in matching for name in own if name not in head_names)
