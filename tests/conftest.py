"""Shared fixtures. Real-data tests find MNIST through $MNISTLITE_DATA (`make
test` points it at ../shared/datasets when that exists) and skip with a reason
where it is unset or holds no MNIST."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def real_data_root() -> Path | None:
    c = os.environ.get("MNISTLITE_DATA")
    return Path(c) if c and (Path(c) / "MNIST" / "raw").is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real MNIST not found: set MNISTLITE_DATA to the folder holding MNIST/raw (make test does)")
    return root


@pytest.fixture(scope="session")
def mnist_small(data_root):
    """Real MNIST with 2,000 validation images held out; loaded once per session."""
    from mnistlite.data import load_dataset

    return load_dataset("mnist", data_dir=str(data_root), val_size=2000, download=False)


@pytest.fixture(scope="session")
def flagship_run(tmp_path_factory, mnist_small) -> Path:
    """A small trained run directory shared by the deploy and browser tests:
    mnistlite_flagship, 3 epochs on 6,000 real images (test accuracy ~97%)."""
    import dataclasses

    from mnistlite.data import Split
    from mnistlite.engine import train
    from mnistlite.models import config_for

    out = tmp_path_factory.getbasetemp() / "deploy-trained-run"
    cfg = config_for(
        "mnistlite_flagship",
        epochs=3,
        scheduler="onecycle",
        max_lr=0.1,
        rotation=0.0,
        translate=0.0,
        scale=0.0,
        seed=1,
        download=False,
        threads=1,  # one thread: 4x less CPU than two on a busy 2-core machine
    )
    data = mnist_small
    # Scoring 2,000 test images per epoch instead of 10,000 keeps this fixture ~10 s.
    small = dataclasses.replace(
        data,
        train=Split(data.train.images[:6000], data.train.labels[:6000]),
        val=None,
        test=Split(data.test.images[:2000], data.test.labels[:2000]),
    )
    train(cfg, run_dir=out, data=small, progress=False, quiet=True)  # threads=1 for the run only
    return out
