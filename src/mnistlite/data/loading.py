"""From data set name to normalised tensors: locate, read (once), split. Files are looked for in ONE root (`data_dir`,
else $MNISTLITE_DATA, else ~/.cache/mnistlite), so another copy never overrides an explicit choice, and in a data set's
read-only system folders. Downloads go to the root only."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import MnistliteError
from .download import ensure_files, find_file, missing_files_error
from .idx import read_images, read_labels
from .sources import DATASETS, DatasetSpec, FileSpec

ENV_VAR = "MNISTLITE_DATA"
DEFAULT_ROOT = Path("~/.cache/mnistlite")
VAL_SEED = 0  # fixed, independent of the run seed: the same images are always held out


@dataclass
class Split:
    images: torch.Tensor  # float32 (N, 1, 28, 28), normalised with the data set's training mean/std
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: str | torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split | None
    test: Split
    mean: float
    std: float
    classes: list[str]
    files: dict[str, str] = field(default_factory=dict)  # base name -> path read, for run records

    def to(self, device: str | torch.device) -> Dataset:
        """The same data set with every split on `device` (a no-op when already there)."""
        val = self.val.to(device) if self.val is not None else None
        return replace(self, train=self.train.to(device), val=val, test=self.test.to(device))

    def subset_train(self, n: int) -> Dataset:
        """The first `n` training images only (smoke runs and tests); val and test unchanged."""
        return replace(self, train=Split(self.train.images[:n], self.train.labels[:n]))


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """`data_dir`, else $MNISTLITE_DATA, else ~/.cache/mnistlite."""
    return Path(data_dir or os.environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()


def find_raw_files(spec: DatasetSpec, root: str | Path) -> dict[str, Path | None]:
    """Base name -> `<name>` or `<name>.gz` under `<root>/<spec.folder>` or a system folder; None if absent."""
    folders = [Path(root) / spec.folder, *map(Path, spec.system_dirs)]
    return {f.name: next((p for p in (find_file(d, f.name) for d in folders) if p), None) for f in spec.files}


def locate_files(spec: DatasetSpec, data_dir: str | os.PathLike | None, download: bool) -> dict[str, Path]:
    root = resolve_data_root(data_dir)
    found = find_raw_files(spec, root)
    if all(found.values()):
        return found  # type: ignore[return-value]
    if download:
        return ensure_files(spec, root)
    missing = [name for name, path in found.items() if path is None]
    raise missing_files_error(spec, root, missing, "downloads are turned off")


# (resolved path, reader) -> ((mtime_ns, size), sha256 verified or None, array).
# Several runs in one process (sweeps, tests) then share one decode and one hash.
_CACHE: dict[tuple[str, str], tuple[tuple[int, int], str | None, np.ndarray]] = {}


def clear_cache() -> None:
    _CACHE.clear()


def _read_cached(path: Path, reader: Callable[..., np.ndarray], sha256: str | None) -> np.ndarray:
    try:
        st = path.stat()
        key = (str(path.resolve()), reader.__name__)
    except OSError:
        return reader(path, sha256)  # vanished meanwhile: let the reader word the error
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(key)
    # A hit verified against a checksum also serves callers that ask for none.
    if hit and hit[0] == stamp and (sha256 is None or hit[1] == sha256):
        return hit[2]
    array = reader(path, sha256)
    _CACHE[key] = (stamp, sha256, array)
    return array


def _read_pair(images: FileSpec, labels: FileSpec, paths: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    x = _read_cached(paths[images.name], read_images, images.sha256)
    y = _read_cached(paths[labels.name], read_labels, labels.sha256)
    if len(x) != len(y):
        raise MnistliteError(
            f"{paths[images.name]} has {len(x)} images but {paths[labels.name]} has {len(y)} labels; "
            "the two files must come from the same release"
        )
    return x, y


def split_indices(n: int, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into the n training images, each sorted; its own generator holds out the same images
    whatever the run's seed, so a validation score never includes trained-on images."""
    if val_size >= n:
        raise MnistliteError(f"val_size {val_size} leaves nothing to train on: the training set has {n} images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SEED)).numpy()
    cut = n - val_size
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def _to_split(images: np.ndarray, labels: np.ndarray, spec: DatasetSpec, idx: np.ndarray | slice) -> Split:
    # astype copies, so no tensor someone might modify in place aliases the cached read-only data.
    x = torch.from_numpy(images[idx].astype(np.float32)).unsqueeze(1)
    x.div_(255.0).sub_(spec.mean).div_(spec.std)
    return Split(x, torch.from_numpy(labels[idx].astype(np.int64)))


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    val_size: int = 0,
    limit_train: int = 0,
    download: bool = True,
) -> Dataset:
    """Normalised tensors, missing files downloaded if allowed; `val_size` images are held out of the training set
    (`split_indices`), then `limit_train` keeps the first N remaining ones (0 = all)."""
    if name not in DATASETS:
        raise MnistliteError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if val_size < 0:
        raise MnistliteError(f"val_size must be >= 0, got {val_size}")
    if limit_train < 0:
        raise MnistliteError(f"limit_train must be >= 0 (0 = all), got {limit_train}")
    spec = DATASETS[name]
    paths = locate_files(spec, data_dir, download)
    train_x, train_y = _read_pair(spec.train_images, spec.train_labels, paths)
    test_x, test_y = _read_pair(spec.test_images, spec.test_labels, paths)
    train_idx, val_idx = split_indices(len(train_y), val_size)
    # Without val the same images, but a slice view spares a 47 MB fancy-index copy.
    keep = train_idx[: limit_train or None] if val_size else slice(limit_train or None)
    train = _to_split(train_x, train_y, spec, keep)
    val = _to_split(train_x, train_y, spec, val_idx) if val_size else None
    test = _to_split(test_x, test_y, spec, slice(None))
    files = {n: str(p) for n, p in paths.items()}
    return Dataset(spec.name, train, val, test, spec.mean, spec.std, list(spec.classes), files)


def synthetic_data(n: int, seed: int = 0) -> Dataset:
    """n random 28x28 images and labels as a Dataset (train = test): timing needs no real digits."""
    g = torch.Generator().manual_seed(seed)
    split = Split(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))
    return Dataset("synthetic", split, None, split, 0.1307, 0.3081, [str(i) for i in range(10)])
