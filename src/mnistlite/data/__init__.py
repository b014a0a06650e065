"""Data layer: IDX reading, data set descriptions, download and loading."""

from .idx import read_idx, read_images, read_labels
from .loading import Dataset, Split, load_dataset, resolve_data_root
from .sources import DATASETS

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "load_dataset",
    "read_idx",
    "read_images",
    "read_labels",
    "resolve_data_root",
]
