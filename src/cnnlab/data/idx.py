"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzip), with strict checks.

Hand-written because it is 30 lines and lets us load the Debian-packaged files straight into
uint8 tensors without torchvision's folder layout; every header field is validated.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from ..errors import CnnlabError

_UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Read an unsigned-byte IDX file into an array of the shape its header gives."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise CnnlabError(f"cannot read IDX file {path}: {error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _UBYTE or not 1 <= data[3] <= 4:
        magic = data[:4].hex() if len(data) >= 4 else "missing"
        raise CnnlabError(f"{path} is not an unsigned-byte IDX file (magic number {magic}, "
                          f"expected 00000801..00000804); re-download it")
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise CnnlabError(f"{path}: IDX header is cut short; re-download it")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)
    payload = len(data) - header_size
    if payload != expected:
        raise CnnlabError(f"{path}: IDX payload has {payload} bytes, the header promises "
                          f"{expected} ({'x'.join(map(str, shape))}); the file is truncated or "
                          f"corrupt, re-download it")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)
