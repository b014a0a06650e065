"""Real-data training on small subsets: a threshold turns the example into a test."""

import dataclasses
import json
import math

import pytest
import torch

from mnistlite.engine import rundir as rd
from mnistlite.engine import train
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for


def small_cfg(**kw):
    base = dict(
        model="mnistlite_flagship",
        epochs=2,
        limit_train=4000,
        val_size=2000,
        seed=1,
        threads=0,
        scheduler="onecycle",
        max_lr=0.1,
    )
    base.update(kw)
    return config_for(base.pop("model"), **base)


@pytest.mark.slow
def test_short_training_clears_threshold(mnist_small):
    res = train(small_cfg(), data=mnist_small.subset_train(4000), progress=False, quiet=True)
    # 4,000 images x 2 epochs: a working pipeline is far above chance (10%). A validation run: sealed.
    assert "final_test_acc" not in res.summary
    assert res.summary["final_val_acc"] > 90.0
    assert all(math.isfinite(r["train_loss"]) for r in res.metrics)


@pytest.mark.slow
def test_same_seed_bit_identical_metrics(mnist_small):
    data = mnist_small.subset_train(1000)
    cfg = small_cfg(epochs=1, rotation=10.0)
    a = train(cfg, data=data, progress=False, quiet=True)
    b = train(cfg, data=data, progress=False, quiet=True)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a.metrics) == strip(b.metrics)


@pytest.mark.slow
def test_run_dir_files_and_no_silent_overwrite(mnist_small, tmp_path):
    out = tmp_path / "run"
    data = dataclasses.replace(mnist_small.subset_train(1000), val=None)  # full training set: the test set is read
    train(small_cfg(epochs=1, val_size=0), run_dir=out, data=data, progress=False, quiet=True)
    for name in (rd.CONFIG, rd.METRICS, rd.LOG, rd.LAYER_TABLE, rd.CURVES, rd.MODEL, rd.RESULT, rd.CHECKPOINT):
        assert (out / name).is_file(), name
    result = json.loads((out / rd.RESULT).read_text())
    for key in ("params", "best_test_acc", "final_test_acc", "epochs_at_target", "last3_min_test_acc", "wall_seconds"):
        assert key in result
    rows = rd.read_metrics(out / rd.METRICS)
    # The fixed columns first, in order; the flagship's EMA adds the raw weights' columns after them.
    assert list(rows[0]) == list(rd.METRIC_COLUMNS) + ["raw_test_acc"]
    # 8 steps: the average still mostly holds the first step's weights, so the raw weights are judged.
    assert rows[0]["test_acc"] == rows[0]["raw_test_acc"] and rows[0]["val_acc"] is None
    with pytest.raises(MnistliteError, match="already exists"):
        train(small_cfg(epochs=1, val_size=0), run_dir=out, data=data, progress=False, quiet=True)
    state = torch.load(out / rd.MODEL, weights_only=True)
    assert state["config"]["model"] == "mnistlite_flagship"
