"""The limits on what a user's files may cost, in one place: every image path (training folders,
predict, serve's uploads) and every setting's default reads them from here."""

from __future__ import annotations

import os
import sys


def _positive_int(variable: str, default: int) -> int:
    """An environment variable that must hold a positive whole number; anything else is one
    warning and the default, never an import that fails."""
    text = os.environ.get(variable, "").strip().replace("_", "")
    if not text:
        return default
    if text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0:
        return int(text)
    sys.stderr.write(f"warning: {variable}={text[:40]!r} is not a positive whole number; using "
                     f"the default {default:,}\n")
    return default


# A file larger than this is refused before it is read.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# Pixels an image may decode to (a 50 MP RGB image holds 150 MB decoded, its float tensor 600 MB);
# CNNLAB_MAX_PIXELS changes the bound. Serving uses the same default (`serve --max-pixels`).
MAX_IMAGE_PIXELS = _positive_int("CNNLAB_MAX_PIXELS", 50_000_000)
# A served request's body: tighter than a file on disk, since anyone who reaches the port sends it.
MAX_UPLOAD_MB = 10.0


def offline() -> bool:
    """Whether cnnlab must not reach the internet (datasets, pretrained weights): CNNLAB_OFFLINE,
    or Hugging Face's own HF_HUB_OFFLINE, set to anything but 0."""
    return any(os.environ.get(flag, "") not in ("", "0") for flag in ("CNNLAB_OFFLINE", "HF_HUB_OFFLINE"))
