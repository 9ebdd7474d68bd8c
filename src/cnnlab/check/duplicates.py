"""Duplicates and leaks: exact copies (the same decoded pixels) and near copies (re-encoded,
resized, slightly cropped or mirrored), within train, within test, and across them (a leak: the
test measures an image the model was trained on).

A pair is near when its embedding vectors point the same way (cosine similarity at least
`similarity`) or when the difference hashes of the two images, or of one and the other's mirror
image, differ in at most `hash_bits` of 64 bits (and the vectors agree loosely). One pass over
all pairs, in blocks of rows, also gives each image's nearest neighbours for the outlier test (in
the same vectors, or in others, such as a trained run's features).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 256  # rows of the similarity matrix at a time: (256, N) float32, 72 MB at N = 70,000
HASH_MIN_SIMILARITY = 0.8
NEIGHBOURS = 10  # for the outlier score, as cleanlab's Datalab


@dataclass(frozen=True)
class Pair:
    first: int
    second: int
    match: str  # "exact" | "near"
    similarity: float  # cosine similarity of the embeddings
    hash_distance: int  # bits of the difference hash that differ (the mirror's, when closer)


@dataclass(frozen=True)
class Neighbourhood:
    pairs: list[Pair]
    knn_distance: np.ndarray  # (N,) mean cosine distance to the nearest NEIGHBOURS others


def _hamming(block: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Bits that differ between each hash of `block` (B,) and each of `hashes` (N,): (B, N)."""
    differ = block[:, None] ^ hashes[None, :]
    if hasattr(np, "bitwise_count"):  # NumPy 2
        return np.bitwise_count(differ).astype(np.int16)
    bits = np.unpackbits(differ.view(np.uint8).reshape(*differ.shape, 8), axis=-1)
    return bits.sum(-1, dtype=np.int16)


def _similarities(kept: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Cosine similarities of rows start:stop to every row, (B, N); -2 to itself."""
    sims = kept[start:stop] @ kept.T
    rows = torch.arange(stop - start)
    sims[rows, rows + start] = -2.0  # not its own neighbour
    return sims


def find_pairs(vectors: torch.Tensor, usable: np.ndarray, pixel_hashes: list[str],
               dhashes: np.ndarray, mirror_dhashes: np.ndarray, similarity: float, hash_bits: int,
               advance: Callable[[int], None] | None = None,
               features: torch.Tensor | None = None) -> Neighbourhood:
    """Every pair (i < j) of usable images that is a copy, and each image's neighbour distance.

    Args:
        vectors: (N, F) unit vectors copies are found in (rows of unusable images are ignored).
        usable: (N,) bool, the images that were read.
        similarity: the cosine similarity from which two images are near copies.
        hash_bits: the difference-hash distance up to which two images are near copies (-1: off).
        features: (N, F') unit vectors the neighbour distances are measured in (default: vectors).
    """
    index = np.flatnonzero(usable)
    kept = vectors[torch.from_numpy(index)].float()
    kept_features = None if features is None else features[torch.from_numpy(index)].float()
    hashes, mirrors = dhashes[index], mirror_dhashes[index]
    k = min(NEIGHBOURS, len(index) - 1)
    knn = np.full(len(usable), np.nan)
    pairs: list[Pair] = []
    for start in range(0, len(index), BLOCK):
        stop = min(start + BLOCK, len(index))
        sims = _similarities(kept, start, stop)  # (B, N)
        if k > 0:
            neighbours = sims if kept_features is None else _similarities(kept_features, start, stop)
            knn[index[start:stop]] = (1 - neighbours.topk(k, dim=1).values).mean(1).numpy()
        near = sims.numpy() >= similarity
        if hash_bits >= 0:
            bits = np.minimum(_hamming(hashes[start:stop], hashes),
                              _hamming(mirrors[start:stop], hashes))
            # 64 bits are coarse: unrelated pictures on plain backgrounds can share them, so the
            # embeddings must agree loosely too (a recoloured copy of a flowers12 photo: 0.87)
            near |= (bits <= hash_bits) & (sims.numpy() >= HASH_MIN_SIMILARITY)
        else:
            bits = np.full(near.shape, -1, np.int16)
        near &= np.arange(len(index))[None, :] > np.arange(start, stop)[:, None]  # i < j, once
        for row, column in zip(*np.nonzero(near), strict=True):
            first, second = int(index[start + row]), int(index[column])
            exact = pixel_hashes[first] == pixel_hashes[second]
            pairs.append(Pair(first, second, "exact" if exact else "near",
                              round(float(sims[row, column]), 4), int(bits[row, column])))
        if advance is not None:
            advance(stop - start)
    return Neighbourhood(pairs, knn)


SCOPES = {("train", "train"): "within train", ("test", "test"): "within test"}


def scope(first_split: str, second_split: str) -> str:
    """Where a pair sits: within train (val counts as training data), within test, or a leak."""
    a = "test" if first_split == "test" else "train"
    b = "test" if second_split == "test" else "train"
    return SCOPES.get((a, b), "leak")
