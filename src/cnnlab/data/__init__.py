"""Datasets, splits, image decoding and batched augmentation."""

from .registry import DatasetEntry, list_datasets, load_dataset, register_dataset
from .splits import DatasetSplits, FileImages, TensorImages, channel_stats

__all__ = ["DatasetEntry", "DatasetSplits", "FileImages", "TensorImages", "channel_stats",
           "list_datasets", "load_dataset", "register_dataset"]
