"""The analytic receptive field of a layer's output units: which input pixels one value can see.

The standard recurrence (Araujo et al., "Computing receptive fields of convolutional neural
networks", Distill 2019), per axis, through every conv and pool in the order the forward pass runs
them: size += (k - 1) * dilation * jump, start -= padding * jump, jump *= stride. It is followed
along the tensors themselves, not along a list of modules: a residual block's shortcut (a strided
1x1 conv in ResNet) runs beside the main branch, and multiplying the jump by its stride too would
count the block's stride twice. Where branches meet (an addition, a concatenation) the field is the
union of theirs, which for ResNet and EfficientNet is the main branch, the longest path.
Inputs that are broadcast over the map (squeeze-and-excitation's per-channel scales, a
normalization's mean) are left out: this is the local field that patches show, as Zeiler and
Fergus's are.

How: one forward pass of a zero image under a TorchFunctionMode, which sees every torch function
the modules call (F.conv2d with the padding it is really given, F.pad before timm's "same" convs,
the permutes of ConvNeXt's channels-last blocks) and tags each output with its field; forward hooks
read the chosen layers' tags. Module hooks alone see neither the functions between modules (the
residual addition) nor which tensor a module was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ..base.errors import CnnlabError
from ..models.modes import eval_mode
from .layers import LayerInfo, forward_hooks

# (top, left, bottom, right) in input pixels, bottom and right exclusive: slices of the image.
# (boxes.Box, an object's box, is (top, left, height, width).)
Corners = tuple[int, int, int, int]


@dataclass(frozen=True)
class ReceptiveField:
    """Output unit i of a layer sees input pixels start + i * jump ... start + i * jump + size - 1,
    the same along both axes. `start` is negative where padding reaches past the image."""

    size: int  # input pixels one unit sees, along each axis
    jump: int  # input pixels between neighbouring units (the product of the strides)
    start: int  # first input pixel of unit 0

    def box(self, y: int, x: int, height: int, width: int) -> Corners:
        """The input pixels under unit (y, x), clipped to a height x width image."""
        top, left = self.start + y * self.jump, self.start + x * self.jump
        return (max(0, top), max(0, left), min(height, top + self.size),
                min(width, left + self.size))


@dataclass(frozen=True)
class _Axis:
    size: int = 1
    jump: int = 1
    start: int = 0

    def through(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> _Axis:
        return _Axis(self.size + (kernel - 1) * dilation * self.jump, self.jump * stride,
                     self.start - padding * self.jump)

    def union(self, other: _Axis) -> _Axis:
        # Branches that meet have maps of one size, so (in every network met so far) one jump.
        start = min(self.start, other.start)
        end = max(self.start + self.size, other.start + other.size)
        return _Axis(end - start, max(self.jump, other.jump), start)


Field = tuple[_Axis, _Axis]  # (rows, columns)
_TAG = "_cnnlab_receptive_field"  # where a tensor carries its _Tag during the walk


def _pair(value: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _argument(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _conv(field: Field, args: tuple, kwargs: dict, output: torch.Tensor) -> Field:
    weight = _argument(args, kwargs, 1, "weight", None)  # (out, in / groups, kh, kw)
    kernels = tuple(weight.shape[2:])
    strides = _pair(_argument(args, kwargs, 3, "stride", 1))
    dilations = _pair(_argument(args, kwargs, 5, "dilation", 1))
    padding = _argument(args, kwargs, 4, "padding", 0)
    if padding == "valid":
        padding = 0
    if padding == "same":  # PyTorch puts the odd pixel of the padding on the far side
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernels, dilations, strict=True))
    paddings = _pair(padding)
    return tuple(axis.through(k, s, p, d) for axis, k, s, p, d  # type: ignore[return-value]
                 in zip(field, kernels, strides, paddings, dilations, strict=True))


def _pool(field: Field, args: tuple, kwargs: dict, has_dilation: bool) -> Field:
    kernels = _pair(_argument(args, kwargs, 1, "kernel_size", 1))
    stride = _argument(args, kwargs, 2, "stride", None)
    strides = _pair(stride) if stride not in (None, [], ()) else kernels
    paddings = _pair(_argument(args, kwargs, 3, "padding", 0))
    dilations = _pair(_argument(args, kwargs, 4, "dilation", 1)) if has_dilation else (1, 1)
    return tuple(axis.through(k, s, p, d) for axis, k, s, p, d  # type: ignore[return-value]
                 in zip(field, kernels, strides, paddings, dilations, strict=True))


def _pad(field: Field, args: tuple, kwargs: dict, output: torch.Tensor) -> Field:
    # F.pad's widths run from the last dimension: (left, right, top, bottom, ...); timm's
    # "same" convs and pools pad this way before a conv with no padding of its own
    widths = _argument(args, kwargs, 1, "pad", ())
    left, top = (widths[0], widths[2]) if len(widths) >= 4 else (widths[0], 0)
    rows, columns = field
    return (_Axis(rows.size, rows.jump, rows.start - top * rows.jump),
            _Axis(columns.size, columns.jump, columns.start - left * columns.jump))


def _adaptive(field: Field, args: tuple, kwargs: dict, output: torch.Tensor) -> Field | None:
    # a pool to a size that divides the map's is an ordinary pool (to 1x1: over the whole map)
    sizes, outs = tuple(args[0].shape[-2:]), tuple(output.shape[-2:])  # (B, C, H, W) in and out
    if any(size % out for size, out in zip(sizes, outs, strict=True)):
        return None
    kernels = tuple(size // out for size, out in zip(sizes, outs, strict=True))
    return tuple(axis.through(k, k, 0) for axis, k  # type: ignore[return-value]
                 in zip(field, kernels, strict=True))


def _max_pool(field: Field, args: tuple, kwargs: dict, output: torch.Tensor) -> Field:
    return _pool(field, args, kwargs, has_dilation=True)


def _avg_pool(field: Field, args: tuple, kwargs: dict, output: torch.Tensor) -> Field:
    return _pool(field, args, kwargs, has_dilation=False)


# By the names the functions reach __torch_function__ with (F.max_pool2d is a dispatcher over
# two of them).
_MOVES: dict[str, Callable[[Field, tuple, dict, torch.Tensor], Field | None]] = {
    "conv2d": _conv, "pad": _pad,
    "max_pool2d": _max_pool, "_max_pool2d": _max_pool, "max_pool2d_with_indices": _max_pool,
    "avg_pool2d": _avg_pool,
    "adaptive_avg_pool2d": _adaptive, "adaptive_max_pool2d": _adaptive,
    "_adaptive_max_pool2d": _adaptive, "adaptive_max_pool2d_with_indices": _adaptive,
}


@dataclass(frozen=True)
class _Tag:
    """What the walk knows of a tensor: the field of its units, and which of its dimensions are
    the rows and columns ((2, 3) in (B, C, H, W); ConvNeXt's blocks permute to (B, H, W, C))."""

    field: Field
    dims: tuple[int, int]


def _tag_of(value: Any) -> _Tag | None:
    return getattr(value, _TAG, None) if isinstance(value, torch.Tensor) else None


def _sizes(value: torch.Tensor, dims: tuple[int, int]) -> tuple[int, int]:
    return value.shape[dims[0]], value.shape[dims[1]]


def _whole(field: Field, sizes: tuple[int, int]) -> Field:
    """The field of a mean (or max) over the whole map: a pool as large as the map."""
    return tuple(axis.through(size, size, 0)  # type: ignore[return-value]
                 for axis, size in zip(field, sizes, strict=True))


def _joined(inputs: list[torch.Tensor], output: torch.Tensor) -> _Tag | None:
    """Any other operation: the union of the fields of its inputs with the output's map size (an
    activation, a normalization, a residual addition, a concatenation of channels). Inputs
    broadcast over the map (squeeze-and-excitation's channel scales) are left out; an output of
    one unit from a map is a mean over it. None: a map of a new size, from an operation not
    known here."""
    fields, dims = [], None
    for value in inputs:
        tag = _tag_of(value)
        if value.ndim != output.ndim or max(tag.dims) >= output.ndim:
            continue
        if _sizes(output, tag.dims) == _sizes(value, tag.dims):
            fields.append(tag.field)
        elif _sizes(output, tag.dims) == (1, 1):
            fields.append(_whole(tag.field, _sizes(value, tag.dims)))
        else:
            continue
        dims = dims or tag.dims
    if not fields:
        return None
    rows, columns = fields[0]
    for other_rows, other_columns in fields[1:]:
        rows, columns = rows.union(other_rows), columns.union(other_columns)
    return _Tag((rows, columns), dims)


def _reordered(name: str, tag: _Tag, value: torch.Tensor, args: tuple, kwargs: dict) -> _Tag:
    """permute or transpose: the same units, their rows and columns now in other dimensions."""
    if name == "permute":
        order = kwargs.get("dims", args[1] if len(args) == 2 and not isinstance(args[1], int)
                           else args[1:])
        order = [int(d) % value.ndim for d in order]
        return _Tag(tag.field, (order.index(tag.dims[0]), order.index(tag.dims[1])))
    first, second = (int(d) % value.ndim for d in args[1:3])
    swap = {first: second, second: first}
    return _Tag(tag.field, (swap.get(tag.dims[0], tag.dims[0]), swap.get(tag.dims[1], tag.dims[1])))


def _output_tag(name: str, args: tuple, kwargs: dict, output: torch.Tensor,
                inputs: list[torch.Tensor]) -> _Tag | None:
    """The tag of one output of a torch function: its field moved by a conv, pool or pad, its
    dimensions moved by a permute, or else joined from its inputs'."""
    first = args[0] if args else None
    tag = _tag_of(first)
    if tag is not None and name in _MOVES:
        if tag.dims != (first.ndim - 2, first.ndim - 1) or output.ndim != first.ndim:
            return None
        field = _MOVES[name](tag.field, args, kwargs, output)
        return _Tag(field, tag.dims) if field is not None else None
    if tag is not None and name in ("permute", "transpose", "swapaxes", "swapdims"):
        return _reordered(name, tag, first, args, kwargs)
    return _joined(inputs, output)


class _FieldWalk(TorchFunctionMode):
    """Sees every torch function of a forward pass (the mode is off inside itself, so a module's
    forward shows as the functions it calls, F.conv2d and the like) and tags each output computed
    from the image with its receptive field."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        inputs = [value for value in tree_flatten((args, kwargs))[0] if _tag_of(value) is not None]
        if inputs:
            for value in tree_flatten(output)[0]:
                tag = _output_tag(getattr(func, "__name__", ""), args, kwargs, value, inputs) \
                    if isinstance(value, torch.Tensor) and value.ndim >= 2 else None
                if tag is not None:
                    setattr(value, _TAG, tag)
        return output


def _square(layer: LayerInfo, field: Field) -> ReceptiveField:
    rows, columns = field
    if rows != columns:
        raise CnnlabError(f"layer {layer.name}: its receptive field is {rows.size}x{columns.size} "
                          f"pixels, not square; choose a layer after the network's kernels "
                          f"are square again")
    return ReceptiveField(rows.size, rows.jump, rows.start)


@torch.no_grad()
def receptive_fields(model: nn.Module, input_shape: tuple[int, int, int],
                     layers: list[LayerInfo]) -> dict[str, ReceptiveField]:
    """The receptive field of each layer's output units (a layer that outputs maps (C, H, W)),
    by one forward pass of a zero image of `input_shape` (C, H, W) in eval mode."""
    device = next(model.parameters()).device
    image = torch.zeros(1, *input_shape, device=device)
    setattr(image, _TAG, _Tag((_Axis(), _Axis()), (2, 3)))
    outputs: dict[str, torch.Tensor] = {}
    with eval_mode(model), forward_hooks({layer.name: layer.module for layer in layers}, outputs), \
            _FieldWalk():
        model(image)
    found = {}
    for layer in layers:
        tag = _tag_of(outputs.get(layer.name))
        if tag is None or tag.dims != (2, 3) or outputs[layer.name].ndim != 4:  # (B, C, H, W)
            raise CnnlabError(f"layer {layer.name} ({layer.kind}) has no receptive field of its "
                              f"own (it does not output maps computed by convolutions and "
                              f"pooling); choose a conv layer (see --list-layers)")
        found[layer.name] = _square(layer, tag.field)
    return found
