"""Structured pruning: whole channels out of a trained network, and a pruned network rebuilt.

Pruning is Torch-Pruning's (Fang et al., CVPR 2023, "DepGraph"): removing a conv's output
channels also removes what depends on them (its batch norm, the next conv's inputs, a depthwise
conv's channels, a squeeze-excite's gates, the other branch of a residual add), so any network
stays consistent. A pruned network is no longer what its name builds; its weights file says its
shapes, and `reshape_to` gives the named network those shapes before the weights are loaded (as
timm's `adapt_model_from_string` does for its pruned EfficientNets, for any module here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..base.errors import CnnlabError

ROUND_TO = 8  # channels kept in multiples of 8: the vector width CPU and GPU kernels are fast at


def prune_channels(model: nn.Module, ratio: float, input_shape: Sequence[int],
                   keep: Sequence[nn.Module] = ()) -> nn.Module:
    """Remove `ratio` of the channels of every prunable layer of `model` (in place), those of the
    smallest L2 norm; `keep` (the output layer) keeps its outputs. Returns the model."""
    import torch_pruning as tp

    if not 0 < ratio < 1:
        raise CnnlabError(f"a pruning ratio must be between 0 and 1, got {ratio}")
    model.eval()
    example = torch.rand(1, *input_shape)
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=list(keep),
                                       round_to=ROUND_TO)
    pruner.step()
    return model


def stream_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of timm's MobileNet/EfficientNet blocks whose outputs are the residual stream
    (the stem, each block's last pointwise conv, the head conv): pruning keeps them whole and
    narrows the expanded channels inside the blocks, where most of the cost is. Pruning the
    stream too cuts every block's input at once: a fine-tuned EfficientNet-Lite0 pruned by half
    that way fell to 77% on flowers12 after 8 epochs of distillation (BENCHMARKS.md, compress)."""
    kept = []
    for name, module in model.named_modules():
        kind, last = type(module).__name__, name.rsplit(".", 1)[-1]
        if last in ("conv_stem", "conv_head"):
            kept.append(module)
        elif kind == "DepthwiseSeparableConv":
            kept.append(module.conv_pw)
        elif kind == "InvertedResidual":
            kept.append(module.conv_pwl)
    return kept


def _resized(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=tensor.dtype, device=tensor.device)


def _reshape_conv(conv: nn.Conv2d, weight: Sequence[int]) -> None:
    """A conv's channels from its weight's shape (out, in / groups, kh, kw); a depthwise conv
    (one group per channel) stays depthwise."""
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    conv.out_channels = weight[0]
    if depthwise:
        conv.in_channels = conv.groups = weight[0]
    else:
        conv.in_channels = weight[1] * conv.groups


def _reshape_module(module: nn.Module, name: str, shapes: Mapping[str, Sequence[int]]) -> None:
    for kind, tensors in (("parameter", module._parameters), ("buffer", module._buffers)):
        for key, tensor in tensors.items():
            wanted = shapes.get(f"{name}.{key}" if name else key)
            if tensor is None or wanted is None or tuple(tensor.shape) == tuple(wanted):
                continue
            new = _resized(tensor, wanted)
            tensors[key] = nn.Parameter(new, tensor.requires_grad) if kind == "parameter" else new
    weight = shapes.get(f"{name}.weight" if name else "weight")
    if weight is None:
        return
    if isinstance(module, nn.Conv2d):
        _reshape_conv(module, weight)
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = weight[0], weight[1]
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = weight[0]


def reshape_to(model: nn.Module, shapes: Mapping[str, Sequence[int]]) -> nn.Module:
    """Give `model`'s parameters and buffers the shapes `shapes` names (a state dict's, e.g. from
    a safetensors header), in place: what a pruned copy of the same network has. The values are
    left uninitialized, for load_state_dict to fill."""
    for name, module in model.named_modules():
        _reshape_module(module, name, shapes)
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
