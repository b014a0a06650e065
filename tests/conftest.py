"""Shared fixtures. Real-data tests find MNIST under ../shared/datasets when
MNISTLITE_DATA is unset, and skip with a reason only where no data exists."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def real_data_root() -> Path | None:
    candidates = [os.environ.get("MNISTLITE_DATA"), REPO.parent / "shared" / "datasets"]
    for c in candidates:
        if c and (Path(c) / "MNIST" / "raw").is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real MNIST not found: set MNISTLITE_DATA or put the files in ../shared/datasets/MNIST/raw")
    return root


@pytest.fixture(scope="session")
def mnist_small(data_root):
    """Real MNIST with 2,000 validation images held out; loaded once per session."""
    from mnistlite.data import load_dataset

    return load_dataset("mnist", data_dir=str(data_root), val_size=2000, download=False)
