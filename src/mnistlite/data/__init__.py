"""Data layer: IDX reading, data set descriptions, download and loading.

idx.py       the IDX file reader (no torchvision)
sources.py   what each data set is: file names, mirrors, checksums
download.py  fetching missing files from the mirrors
loading.py   from a data set name to normalised tensors, split into train / val / test
"""

from .idx import read_idx, read_images, read_labels  # noqa: F401
from .loading import Dataset, Split, load_dataset, resolve_data_root, synthetic_data  # noqa: F401
from .sources import DATASETS  # noqa: F401
