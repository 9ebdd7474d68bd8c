"""Pictures by optimisation: for each channel of a layer, the input that drives the channel's mean
activation up (Olah et al. 2017, "Feature Visualization"), with the regularisers that make such a
picture look like something rather than like noise: a Fourier parameterisation with a 1/f
spectrum, decorrelated colour, and random jitter, scaling and rotation at every step. A picture
that did not converge into a pattern is flagged with the reason, never shown as if it were one.

The parameterisation is written here, not taken from `torch-lucent` (0.1.8, 2021): its `param`
module works on torch 2, but the package requires kornia<=0.4.1 (for `transform`, which fails
without it), IPython, pytest and coveralls at run time (21 packages), and puts its tensors on
`cuda:0` whenever a GPU exists, whatever the model's device. The pieces are a few lines each;
the constants are Lucid's.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..base.errors import CnnlabError
from ..base.figures import plt, save_figure, show_image
from ..models.modes import eval_mode
from .layers import LayerInfo

# Large inputs are optimised at this side: a 224-pixel EfficientNet-Lite0 costs three times as
# much per step, and a pattern that fills 128 pixels reads as well in a thumbnail.
OPTIMISE_SIDE = 128
DEFAULT_STEPS = 64
DEFAULT_SECONDS = 10.0  # per call (one layer), its steps: six layers within a minute or so
# Adam on the spectrum; Lucid takes 0.05 for 512 steps: a quarter of the steps need a larger
# rate (measured on EfficientNet-Lite0: at 0.05 and 0.1 its first layer stays at or below the
# photos in 64 steps, at 0.2 above them)
LEARNING_RATE = 0.2

# Lucid's square root of the ImageNet colour covariance (its SVD), columns scaled to norm <= 1:
# the optimisation moves along uncorrelated colour axes, so a step does not turn into a
# saturated rainbow of independent R, G and B noise.
_COLOUR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR = _COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()
_SPECTRUM_SD = 0.01  # the start: a nearly uniform grey picture
_FFT_MAGIC = 4.0  # Lucid's divisor of the inverse transform; a larger one saturates less

# Readability thresholds, measured. Above half the Nyquist frequency white noise puts 80% of
# its power, the flowers12 photos 1-3% (at 224 px), EfficientNet-Lite0's pictures 5-35%, and
# those that look like noise 50-92%.
MAX_HIGH_FREQUENCY = 0.5
# Below this side one sharp edge is high-frequency power: 8x8 digits put 29% there (median; 41%
# at the 90th percentile) and a trained network's pictures of them, binary strokes, 36-58%. The
# spectrum cannot tell an edge from noise there, so only the other rules judge.
NOISE_MIN_SIDE = 16
# Pixel standard deviation: photos have 0.2-0.3; EfficientNet-Lite0's deepest layer after 2
# steps (a time limit reached) 0.04-0.09, a faint grey haze; after 4 or more steps 0.13 and up.
MIN_CONTRAST = 0.1
MIN_STABILITY = 0.5  # the share of the rise kept, on average, when the picture moves


@dataclass(frozen=True)
class ChannelPicture:
    """One channel's picture and how far it got."""

    channel: int
    image: torch.Tensor  # (C, H, W) in [0, 1]
    activation: float  # the channel's spatial mean on the picture
    start: float  # the same on the grey starting picture
    reference: float | None  # the largest on real images, where given
    high_frequency: float  # share of the picture's power above half the Nyquist frequency
    contrast: float  # the standard deviation of its pixels
    stability: float  # the share of the rise (activation - start) kept under shifts
    steps: int
    reason: str | None  # why it is not readable; None where it is

    @property
    def readable(self) -> bool:
        return self.reason is None


# --- the picture's parameters: a spectrum, turned into pixels in [0, 1] -----------------------

def _frequencies(height: int, width: int) -> torch.Tensor:
    """Radial frequency (cycles per pixel) of each coefficient of rfft2, (H, W // 2 + 1)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return (fx * fx + fy * fy).sqrt()


def _spectrum_scale(height: int, width: int) -> torch.Tensor:
    """1/f: every frequency gets equal power in the image's parameters, as in natural images,
    so the optimisation does not make high-frequency patterns first (they are the cheapest)."""
    return 1.0 / _frequencies(height, width).clamp(min=1.0 / max(height, width))


def spectrum_to_pixels(spectrum: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixels (B, C, H, W) in [0, 1] from the parameters (B, C, H, W // 2 + 1, 2): the scaled
    inverse Fourier transform, colours decorrelated (3 channels), squashed by a sigmoid."""
    height, width = size
    scale = _spectrum_scale(height, width).to(spectrum.device)[..., None]
    image = torch.fft.irfft2(torch.view_as_complex(scale * spectrum), s=size, norm="ortho")
    image = image / _FFT_MAGIC  # (B, C, H, W)
    if image.shape[1] == 3:
        image = torch.einsum("ij,bjhw->bihw", _COLOUR.to(image.device), image)
    return torch.sigmoid(image)


def _start_spectrum(batch: int, channels: int, size: tuple[int, int],
                    generator: torch.Generator) -> torch.Tensor:
    height, width = size
    shape = (batch, channels, height, width // 2 + 1, 2)
    return torch.randn(shape, generator=generator) * _SPECTRUM_SD


# --- random transforms: what survives them is a pattern, not a pixel-exact trick -------------

def random_transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each picture (B, C, H, W) shifted by up to 1/16 of its side, scaled by 0.9-1.1 and rotated
    by up to 10 degrees (Lucid's ranges, its jitter scaled to the side), grey beyond its edge.
    One bilinear resampling does all three, each picture drawn its own."""
    batch, _, height, width = images.shape
    draw = lambda low, high: low + (high - low) * torch.rand(batch, generator=generator)  # noqa: E731
    angle = draw(-10.0, 10.0) * math.pi / 180
    scale = draw(0.9, 1.1)
    shift = draw(-1 / 8, 1 / 8), draw(-1 / 8, 1 / 8)  # grid units: 2 per side, so 1/16 of it
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1),
                         torch.stack([sin, cos, shift[1]], 1)], 1).to(images)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images - 0.5, grid, align_corners=False) + 0.5


# --- the objective ---------------------------------------------------------------------------

# A unit that a rectifier holds at zero on the grey start has no gradient, and a channel fed by
# dead units never moves (Lucid redirects InceptionV1's ReLU gradients for this): for the first
# LEAK_SHARE of the steps the rectifiers pass LEAK of the gradient below zero; after that the
# true gradient, which the leak would otherwise bend. Their values, and so every activation
# reported, are unchanged.
LEAK = 0.1
LEAK_SHARE = 0.25
_RECTIFIERS = (nn.ReLU, nn.ReLU6)


@contextmanager
def _leaky_gradients(model: nn.Module, leaking: dict[str, bool]) -> Iterator[None]:
    """While leaking["on"], every ReLU and ReLU6 of the model passes LEAK of the gradient where
    it outputs zero; in-place ones work out of place meanwhile (the hook needs their input)."""
    def leak(_module, inputs, output):
        if not leaking["on"]:
            return None
        before = inputs[0]
        return output + LEAK * (before - before.detach()) * (before <= 0)

    rectifiers = [module for module in model.modules() if isinstance(module, _RECTIFIERS)]
    inplace = [module.inplace for module in rectifiers]
    handles = []
    try:
        for module in rectifiers:
            module.inplace = False
            handles.append(module.register_forward_hook(leak))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in zip(rectifiers, inplace, strict=True):
            module.inplace = flag


class _Reached(Exception):
    """Raised by the hook once the layer's value is known: the layers after it need not run."""


def _is_rectifier(module: nn.Module) -> bool:
    return isinstance(module, _RECTIFIERS)


@contextmanager
def _value_of(module: nn.Module, store: dict[str, torch.Tensor]) -> Iterator[None]:
    """The layer's value, with its graph, into store["value"], and the forward stopped there.
    A rectifier's value is its input, the pre-activation (Lucid's `*_pre_relu`): after a ReLU6
    a channel saturates at 6 with a faint picture and the gradient stops, while the picture
    still has contrast to gain; below zero it has no gradient at all. A pre-hook reads it
    before an in-place rectifier overwrites it. (explain.layers.forward_hooks keeps outputs,
    detached: it serves figures, and this needs the graph.)"""
    def before(_module, inputs):
        store["value"] = inputs[0]
        raise _Reached

    def after(_module, _inputs, output):
        store["value"] = output
        raise _Reached

    handle = (module.register_forward_pre_hook(before) if _is_rectifier(module)
              else module.register_forward_hook(after))
    try:
        yield
    finally:
        handle.remove()


def _layer_value(model: nn.Module, layer: LayerInfo, images: torch.Tensor) -> torch.Tensor:
    store: dict[str, torch.Tensor] = {}
    with _value_of(layer.module, store), suppress(_Reached):
        model(images)
    if "value" not in store:
        raise CnnlabError(f"layer {layer.name} did not run in this model's forward pass")
    return store["value"]


def _spatial_means(value: torch.Tensor) -> torch.Tensor:
    """(B, C): the spatial mean of maps (B, C, H, W), the units themselves for vectors (B, C)."""
    return value.flatten(2).mean(2) if value.ndim > 2 else value


def channel_activations(model: nn.Module, layer: LayerInfo, channels: Sequence[int],
                        images: torch.Tensor) -> torch.Tensor:
    """The objective: the spatial mean of channel channels[b] on image b (B, C, H, W), (B,),
    before the rectifier where the layer is one. A spatial mean, not the centre unit: it does
    not move when jitter moves the picture, it is defined for the 1x1 maps of a small network's
    last layers, and it is the statistic that `reference_activations` takes on real images,
    where the object can be anywhere."""
    means = _spatial_means(_layer_value(model, layer, images))
    return means[torch.arange(len(channels)), torch.as_tensor(list(channels))]


@torch.no_grad()
def reference_activations(model: nn.Module, layer: LayerInfo, channels: Sequence[int],
                          images: torch.Tensor, batch_size: int = 32) -> dict[int, float]:
    """Each channel's largest objective (channel_activations) over real images (N, C, H, W) in
    [0, 1]: what a picture must beat to be readable. Pass it as `reference` to
    channel_pictures."""
    index = torch.as_tensor(list(channels))
    with eval_mode(model):
        best = torch.cat([_spatial_means(_layer_value(model, layer, images[at:at + batch_size]))
                          [:, index] for at in range(0, len(images), batch_size)]).amax(0)
    return {channel: float(value) for channel, value in zip(channels, best, strict=True)}


# --- readability -----------------------------------------------------------------------------

def high_frequency_share(images: torch.Tensor) -> torch.Tensor:
    """Per picture (B, C, H, W), the share of its power (mean removed) at radial frequencies above
    a quarter cycle per pixel, half the Nyquist frequency: ~0.8 for white noise (the area of the
    band), a few percent for photos, whose power falls as 1/f^2."""
    height, width = images.shape[-2:]
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(centred).abs().square()  # (B, C, H, W // 2 + 1)
    # rfft2 keeps half the columns: those strictly inside count twice in the full spectrum
    weight = torch.full((width // 2 + 1,), 2.0)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    power = power * weight.to(power)
    high = _frequencies(height, width).to(power) > 0.25
    total = power.sum(dim=(1, 2, 3)).clamp(min=1e-12)
    return (power * high).sum(dim=(1, 2, 3)) / total


def _shifted(images: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Pictures (B, C, H, W) moved by (dy, dx) of their side (bilinear: a fraction of a pixel
    where the side is small), grey filling in."""
    theta = torch.tensor([[1.0, 0.0, -2 * dx], [0.0, 1.0, -2 * dy]]).to(images)
    grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images - 0.5, grid, align_corners=False) + 0.5


def _stability(model: nn.Module, layer: LayerInfo, channels: Sequence[int],
               images: torch.Tensor, reached: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """The share of the rise from the grey start that the pictures keep, on average, when moved
    by 1/16 of their side along each diagonal: as far as the optimisation's jitter moved them.
    A pixel-exact, adversarial pattern loses most of it; a pattern keeps it."""
    diagonals = ((1, 1), (1, -1), (-1, 1), (-1, -1))
    kept = torch.stack([channel_activations(model, layer, channels,
                                            _shifted(images, dy / 16, dx / 16))
                        for dy, dx in diagonals]).mean(0)
    rise = reached - start
    return torch.where(rise > 0, (kept - start) / rise.clamp(min=1e-12), 0.0)  # no rise: none kept


def readability(activation: float, start: float, reference: float | None,
                high_frequency: float, stability: float, steps: int,
                side: int = NOISE_MIN_SIDE, contrast: float = 1.0) -> str | None:
    """Why a picture is not readable, in one sentence, or None. It must have raised the channel
    above the grey start, above the best real image where that is known (else it shows less
    than a photo does), have left the grey (a `contrast` of MIN_CONTRAST), keep most of its
    power below half the Nyquist frequency (else it is noise; judged where its smaller `side`
    is at least NOISE_MIN_SIDE), and keep most of its rise when moved by 1/16 of its side
    (else it is a pixel-exact, adversarial trick)."""
    if steps == 0 or activation <= start:
        return "the optimisation did not raise the channel above a grey picture"
    if activation <= 0:
        return f"the channel stays inactive ({activation:.3g})"
    if reference is not None and activation <= reference:
        return f"it reaches {activation:.3g}, less than the best real image's {reference:.3g}"
    if contrast < MIN_CONTRAST:
        return f"it has hardly left the grey start (contrast {contrast:.2f}): not converged"
    if high_frequency > MAX_HIGH_FREQUENCY and side >= NOISE_MIN_SIDE:
        return f"{high_frequency:.0%} of its power is in the highest frequencies: noise"
    if stability < MIN_STABILITY:
        return f"moving it by 1/16 of its side undoes {1 - stability:.0%} of its rise"
    return None


# --- the optimisation ------------------------------------------------------------------------

def _optimise_size(input_shape: Sequence[int], size: int | None) -> tuple[int, int]:
    """(H, W) to optimise at: the input's, or its long side brought down to `size` (default
    OPTIMISE_SIDE for inputs larger than that)."""
    _, height, width = input_shape
    side = size if size is not None else min(max(height, width), OPTIMISE_SIDE)
    factor = side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def _check_channels(layer: LayerInfo, channels: Sequence[int]) -> None:
    count = layer.output_shape[0]
    wrong = [channel for channel in channels if not 0 <= channel < count]
    if wrong or not channels:
        raise CnnlabError(f"layer {layer.name} has channels 0 to {count - 1}; "
                          f"{wrong or 'none'} asked for")


def _optimise(model: nn.Module, layer: LayerInfo, channels: Sequence[int],
              spectrum: torch.Tensor, size: tuple[int, int], steps: int, seconds: float,
              generator: torch.Generator) -> int:
    """Adam on the spectrum, for `steps` steps or `seconds`, whichever ends first; the steps run."""
    optimiser = torch.optim.Adam([spectrum], lr=LEARNING_RATE)
    began = time.perf_counter()
    leaking = {"on": True}
    with _leaky_gradients(model, leaking):
        for step in range(steps):
            if time.perf_counter() - began > seconds:
                return step
            leaking["on"] = step < LEAK_SHARE * steps
            images = random_transform(spectrum_to_pixels(spectrum, size), generator)
            loss = -channel_activations(model, layer, channels, images).sum()  # each its own
            optimiser.zero_grad()
            loss.backward(inputs=[spectrum])  # no gradients for the weights: half the work
            optimiser.step()
    return steps


def channel_pictures(model: nn.Module, layer: LayerInfo, channels: Sequence[int],
                     input_shape: Sequence[int], *, steps: int = DEFAULT_STEPS,
                     seconds: float = DEFAULT_SECONDS, seed: int = 0, size: int | None = None,
                     reference: dict[int, float] | None = None) -> list[ChannelPicture]:
    """For each channel of `layer` (from explain.layers.list_layers), the picture that maximises
    its spatial mean, all channels in one batch; each judged readable or not (`readability`).

    Args:
        model: a Classifier taking pixels in [0, 1] (its normalization inside), 1 or 3 channels.
        input_shape: the model's (C, H, W).
        steps, seconds: the optimisation stops at whichever comes first.
        seed: the same seed gives the same pictures.
        size: the long side to optimise at; default the input's, at most OPTIMISE_SIDE.
        reference: each channel's largest activation on real images (reference_activations).
    """
    _check_channels(layer, channels)
    device = next(model.parameters()).device
    shape = _optimise_size(input_shape, size)
    generator = torch.Generator().manual_seed(seed)
    spectrum = _start_spectrum(len(channels), input_shape[0], shape, generator).to(device)
    spectrum.requires_grad_(True)
    with eval_mode(model):
        with torch.no_grad():
            start = channel_activations(model, layer, channels, spectrum_to_pixels(spectrum, shape))
        done = _optimise(model, layer, channels, spectrum, shape, steps, seconds, generator)
        with torch.no_grad():
            images = spectrum_to_pixels(spectrum, shape)  # (B, C, H, W)
            reached = channel_activations(model, layer, channels, images)
            stability = _stability(model, layer, channels, images, reached, start)
    noise = high_frequency_share(images.cpu())
    return [_picture(channel, images[b].cpu(), float(reached[b]), float(start[b]),
                     (reference or {}).get(channel), float(noise[b]), float(stability[b]), done)
            for b, channel in enumerate(channels)]


def _picture(channel: int, image: torch.Tensor, activation: float, start: float,
             reference: float | None, high_frequency: float, stability: float,
             steps: int) -> ChannelPicture:
    contrast = float(image.std())
    reason = readability(activation, start, reference, high_frequency, stability, steps,
                         min(image.shape[-2:]), contrast)
    return ChannelPicture(channel, image, activation, start, reference, high_frequency,
                          contrast, stability, steps, reason)


# --- the figure ------------------------------------------------------------------------------

def pictures_figure(pictures_by_layer: dict[str, list[ChannelPicture]], path: Path,
                    title: str) -> None:
    """One row per layer (shallow first), its channels side by side; a picture that is not
    readable is a grey tile with the reason, not noise that would pass for a pattern."""
    rows = len(pictures_by_layer)
    columns = max((len(pictures) for pictures in pictures_by_layer.values()), default=1)
    if rows == 0:
        raise CnnlabError("no layer to draw pictures of")
    figure, axes = plt.subplots(rows, columns, figsize=(1.8 * columns + 1.2, 1.95 * rows + 0.4),
                                squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for row, (name, pictures) in zip(axes, pictures_by_layer.items(), strict=True):
        row[0].text(-0.08, 0.5, name, rotation=90, ha="right", va="center", fontsize=8,
                    transform=row[0].transAxes)
        for axis, picture in zip(row, pictures, strict=False):
            _draw_picture(axis, picture)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def _draw_picture(axis, picture: ChannelPicture) -> None:
    if picture.readable:
        show_image(axis, picture.image)
        axis.set_title(f"channel {picture.channel}: {picture.activation:.3g}", fontsize=7)
        return
    axis.imshow(torch.full((8, 8), 0.75).numpy(), cmap="gray", vmin=0, vmax=1)
    axis.text(0.5, 0.5, textwrap.fill(picture.reason or "", 22), ha="center", va="center",
              fontsize=6, transform=axis.transAxes, wrap=True)
    axis.set_title(f"channel {picture.channel}: not readable", fontsize=7)
    axis.axis("off")
