"""The one preprocessing: any image (a user's file, a frame, a built-in dataset's array) to the
model's input. Decoding safely, mode conversion, resizing and centre cropping, and scaling to [0, 1]
live here and nowhere else, so training, evaluation, prediction, export checks and serving feed a
model the same pixels."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..base.errors import CnnlabError
from ..base.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from ..config.common import INTERPOLATIONS

# Pillow's decompression-bomb guard stays on (Image.MAX_IMAGE_PIXELS is left at its default), and
# only these decoders may run on user files.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Larger files and images are skipped and named like other bad files, before a pixel is decoded.
MAX_FILE_BYTES, MAX_PIXELS = MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

_ORIENTATION = 0x0112  # the EXIF tag
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class ImageReadError(CnnlabError):
    """A file that cannot be used as an image (corrupt, truncated, too large, not an image)."""


class UnsupportedImage(ImageReadError):
    """Not an image, or in a format outside ALLOWED_FORMATS."""


class ImageTooLarge(ImageReadError):
    """More bytes or pixels than allowed: a decompression bomb, or simply too big."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def decode_image(source: BinaryIO, name: str, max_pixels: int | None = None) -> Image.Image:
    """Fully decode an image from an open binary stream, applying its EXIF orientation.

    Only ALLOWED_FORMATS decode; more than `max_pixels` (default: Pillow's bomb limit) is refused
    before any pixel is decoded; truncated data is never accepted. Raises UnsupportedImage,
    ImageTooLarge or ImageReadError, each naming `name`.
    """
    try:
        image = Image.open(source, formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedImage(f"{name}: not an image in an accepted format "
                               f"({', '.join(ALLOWED_FORMATS)})") from None
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"{name}: {error}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"{name}: {error}") from None
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ImageTooLarge(f"{name}: {image.width}x{image.height} pixels, more than the "
                            f"{max_pixels:,} allowed")
    try:
        image.load()
        if image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"{name}: {error}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"{name}: {error}") from None
    return image


def open_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image file of at most `max_pixels` (see decode_image).

    Raises ImageReadError for anything unreadable; truncated files are never accepted.
    """
    path = Path(path)
    try:
        status = path.stat()
    except OSError as error:
        raise ImageReadError(f"{path}: {_missing(path, error)}") from None
    try:
        # A FIFO or a device would block the open (or never end): only plain files are images.
        if not stat.S_ISREG(status.st_mode):
            raise ImageReadError(f"{path}: not a regular file{_kind(status.st_mode)}")
        if status.st_size > MAX_FILE_BYTES:
            raise ImageTooLarge(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
        # Our own file handle: after load() the pixels are in memory and the image outlives it,
        # without the copy a `with Image.open(...)` block would need.
        with open(path, "rb") as handle:
            return decode_image(handle, str(path), max_pixels or MAX_PIXELS)
    except OSError as error:
        raise ImageReadError(f"{path}: {error.strerror or error}") from None


def _missing(path: Path, error: OSError) -> str:
    """Why a path cannot even be looked at, without its name (the caller gives it once)."""
    if error.errno == errno.ELOOP:
        return "a symbolic link loop"
    if error.errno == errno.ENOENT and path.is_symlink():
        return f"a symbolic link to {os.readlink(path)}, which does not exist"
    return error.strerror or str(error)


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                  (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    """What a file that is not a regular one is, as " (a FIFO)"."""
    return next((f" ({name})" for test, name in _SPECIAL_FILES if test(mode)), "")


def is_grayscale(image: Image.Image) -> bool:
    return image.mode in _GRAY_MODES or (image.mode == "P" and _palette_is_gray(image))


def _palette_is_gray(image: Image.Image) -> bool:
    palette = np.asarray(image.getpalette() or [], dtype=np.int32).reshape(-1, 3)
    return bool(palette.size) and bool((palette == palette[:, :1]).all())


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16-bit values at 255; scale the full range down instead.
    array = np.asarray(image, dtype=np.float64)
    peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
    if image.mode == "F":
        peak = max(float(array.max()), 1e-12) if array.max() > 1 else 1.0
    scaled = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    # Transparent pixels are shown on white, as an image viewer or a web page shows them.
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def convert_mode(image: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode (L, RGB, RGBA, P, I;16, CMYK, ...) to L (channels=1) or RGB (channels=3)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _high_bit_depth_to_l(image)
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = _flatten_alpha(image)
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


# PIL's filter of each interpolation name a run may record (its own names, upper-cased).
RESAMPLING = {name: Image.Resampling[name.upper()] for name in INTERPOLATIONS}


def resize_center_crop(image: Image.Image, height: int, width: int,
                       interpolation: str = "bilinear", crop_pct: float = 1.0) -> Image.Image:
    """Scale so the image covers (height, width) / crop_pct, then cut the centre (height, width):
    no distortion. crop_pct < 1 is timm's evaluation transform (e.g. 256 then 224)."""
    if image.size == (width, height):
        return image
    method = RESAMPLING[interpolation]
    scale = max(height / image.height, width / image.width) / crop_pct
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    if size[0] * size[1] > _MAX_COVER * width * height:
        return _resize_kept_region(image, height, width, method, scale)
    covered = image.resize(size, method)
    left, top = (covered.width - width) // 2, (covered.height - height) // 2
    return covered.crop((left, top, left + width, top + height))


# Past this many times the output's area, the covered image is not made whole: a 2,000,000x1 strip
# would become gigabytes before its centre is cut.
_MAX_COVER = 16


def _resize_kept_region(image: Image.Image, height: int, width: int, method: Image.Resampling,
                        scale: float) -> Image.Image:
    """Only the source region the centre crop keeps, resized straight to (height, width): the
    work is bounded by the output, whatever the aspect ratio."""
    box_width, box_height = width / scale, height / scale  # in source pixels
    left, top = (image.width - box_width) / 2, (image.height - box_height) / 2
    return image.resize((width, height), method,
                        box=(left, top, left + box_width, top + box_height))


def image_to_tensor(image: Image.Image, channels: int, height: int, width: int,
                    interpolation: str = "bilinear", crop_pct: float = 1.0) -> torch.Tensor:
    """A PIL image of any mode to a (C, H, W) uint8 tensor of the model's channels and size."""
    image = resize_center_crop(convert_mode(image, channels), height, width, interpolation,
                               crop_pct)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (C, H, W)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, H, W) -> float32 in [0, 1]: the model's input scale."""
    return images.float().div_(255)


def tensor_to_image(image: torch.Tensor) -> Image.Image:
    """A uint8 (C, H, W) tensor with 1 or 3 channels as a PIL image."""
    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def convert_tensor_images(images: torch.Tensor, channels: int | None, size: int | None,
                          interpolation: str = "bilinear") -> torch.Tensor:
    """uint8 (N, C, H, W) images given other channels and a square size through image_to_tensor,
    image by image, exactly as a file of the same pixels would be (Pillow: ITU-R 601 luma for
    RGB -> gray, antialiased resizing)."""
    channels = channels or images.shape[1]
    height, width = (size, size) if size else tuple(images.shape[2:])
    if (channels, height, width) == tuple(images.shape[1:]):
        return images
    converted = torch.empty((len(images), channels, height, width), dtype=torch.uint8)
    for index, image in enumerate(images):
        converted[index] = image_to_tensor(tensor_to_image(image), channels, height, width,
                                           interpolation)
    return converted


def load_image_tensor(path: str | Path, channels: int, height: int, width: int,
                      interpolation: str = "bilinear", crop_pct: float = 1.0) -> torch.Tensor:
    return image_to_tensor(open_image(path), channels, height, width, interpolation, crop_pct)
