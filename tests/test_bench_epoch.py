"""bench's epoch against the baseline, timed in turns (bench/timing.py): the medians and the extrapolation."""

from __future__ import annotations

import statistics

import pytest
import torch

from mnistlite.bench import synthetic_data
from mnistlite.bench.timing import Timing, epoch_rounds, format_lines, time_baseline
from mnistlite.models import config_for


@pytest.fixture(scope="module")
def setup():
    cfg = config_for("mnistlite8k_model3", rotation=7.0, batch_size=64)
    return cfg, synthetic_data(320)


@pytest.mark.slow
def test_rounds_are_kept_and_the_headline_is_the_ratio_of_medians(setup):
    cfg, data = setup
    out = epoch_rounds(cfg, data, data, torch.device("cpu"), 3, True, 2, 0, Timing(1.0, 640))
    rows = out["epoch_rounds"]
    assert len(rows) == 3
    med = {k: statistics.median(r[k] for r in rows) for k in ("epoch_seconds", "baseline_epoch_seconds")}
    assert out["epoch_seconds"] == pytest.approx(med["epoch_seconds"], abs=1e-3)
    assert out["speedup_epoch"] == pytest.approx(med["baseline_epoch_seconds"] / med["epoch_seconds"], abs=0.01)
    lo, hi = out["speedup_epoch_range"]
    assert lo == min(r["speedup_epoch"] for r in rows) and hi == max(r["speedup_epoch"] for r in rows)
    assert out["speedup_train"] == pytest.approx(640 / out["baseline_train_images_per_s"], abs=0.006)
    for r in rows:
        # Start-up once, the other 320 - 64 images at the timed rate, and our test pass.
        rest = (320 - 64) / r["baseline_train_images_per_s"]
        want = r["baseline_startup_seconds"] + rest + r["epoch_test_seconds"]
        assert r["baseline_epoch_seconds"] == pytest.approx(want, rel=0.02, abs=2e-3)
    assert "in turns" in format_lines(out)[0]


def test_the_baseline_times_batches_after_the_first(setup):
    cfg, data = setup
    t = time_baseline(cfg, data, 2, 0)
    assert t.images == 2 * 64 and t.startup > 0
    whole = time_baseline(cfg, data, None, 0)
    assert whole.images == 320 - 64  # the first batch is start-up, not rate


def test_one_round_and_no_baseline(setup):
    cfg, data = setup
    out = epoch_rounds(cfg, data, data, torch.device("cpu"), 1, True, 0, 0, Timing(1.0, 640))
    assert len(out["epoch_rounds"]) == 1 and "speedup_epoch" not in out and "baseline_epoch_seconds" not in out
    assert format_lines(out) == []
    assert epoch_rounds(cfg, data, data, torch.device("cpu"), 2, False, 0, 0, Timing(1.0, 640)) == {}
