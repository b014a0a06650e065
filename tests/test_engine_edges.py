"""The trainer's edges: what it leaves behind in the process (threads, RNG, allocator),
the optional test pass, wall time across a resume, and the shared run-directory writer.

Small on purpose (2 shared cores): 500 training images, 2 epochs, 200/500-image val/test.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mnistlite.config import TrainConfig
from mnistlite.data.loading import Split
from mnistlite.engine import TrainingInterrupted, train
from mnistlite.engine import device as dev
from mnistlite.engine import rundir as rd
from mnistlite.models import config_for
from mnistlite.reports.runs import load_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(mnist_small):
    d = mnist_small.subset_train(500)
    return replace(
        d, val=Split(d.val.images[:200], d.val.labels[:200]), test=Split(d.test.images[:500], d.test.labels[:500])
    )


def cfg(**kw) -> TrainConfig:
    return config_for("mnistlite8k_model3", **{"epochs": 2, "seed": 5, "threads": 1, "dropout": 0.1, **kw})


def test_train_leaves_the_thread_count_as_it_found_it(small):
    before = torch.get_num_threads()
    want = 2 if before == 1 else 1
    seen: list[int] = []
    train(
        cfg(threads=want, epochs=1),
        data=small,
        progress=False,
        quiet=True,
        on_epoch=lambda r: seen.append(torch.get_num_threads()),
    )
    assert seen == [want] and torch.get_num_threads() == before


def test_threads_context_restores_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), dev.threads(1 if before != 1 else 2):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_profiling_does_not_move_the_global_rng():
    from mnistlite.modelinfo import _PROFILES, profile_registered

    _PROFILES.clear()  # a fresh build, not a cache hit
    torch.manual_seed(7)
    state = torch.get_rng_state()
    profile_registered("mnistlite8k_model3")
    assert torch.equal(torch.get_rng_state(), state)


def test_library_train_never_tunes_the_allocator(small, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(dev, "tune_cpu_allocator", lambda: calls.append(1) or True)
    monkeypatch.delenv(dev.MALLOC_TUNING_ENV, raising=False)
    train(cfg(epochs=1), data=small, progress=False, quiet=True)
    assert calls == []
    monkeypatch.setenv(dev.MALLOC_TUNING_ENV, "1")  # what the CLI hands a spawned worker
    train(cfg(epochs=1), data=small, progress=False, quiet=True)
    assert calls == [1]


@pytest.mark.slow
def test_skipping_the_test_set(small, tmp_path):
    out = tmp_path / "run"
    res = train(cfg(ema=0.7), run_dir=out, data=small, progress=False, quiet=True, evaluate_test=False)
    assert not any(k.startswith(("test_", "raw_test_")) for r in res.metrics for k in r)
    assert all(r["val_acc"] is not None and "raw_val_acc" in r for r in res.metrics)
    assert not any("test" in k for k in res.summary if k != "test_set") and "epochs_at_target" not in res.summary
    assert res.summary["final_val_acc"] == res.metrics[-1]["val_acc"]
    assert (out / rd.METRICS).read_text().splitlines()[0] == ",".join(rd.NO_TEST_COLUMNS + ("raw_val_acc",))
    assert "test set not evaluated" in (out / rd.LOG).read_text()
    assert not any("test" in k for k in json.loads((out / rd.RESULT).read_text()) if k != "test_set")
    # Same training with the test set scored: identical train and val numbers.
    ref = train(cfg(ema=0.7), data=small, progress=False, quiet=True)
    for a, b in zip(res.metrics, ref.metrics, strict=True):
        assert (a["train_loss"], a["val_acc"], a["raw_val_acc"]) == (b["train_loss"], b["val_acc"], b["raw_val_acc"])


@pytest.mark.slow
def test_a_validation_run_never_reads_the_test_set(small, tmp_path, monkeypatch):
    """The seal: with --val-size the test split is never scored, whatever the caller asks, and
    no test figure reaches metrics.csv, log.txt or result.json."""
    from mnistlite.engine import evaluation

    scored: list[int] = []
    real = evaluation.evaluate

    def spy(model, split, *a, **kw):
        scored.append(len(split))
        return real(model, split, *a, **kw)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    out = tmp_path / "run"
    res = train(cfg(ema=0.7, val_size=200), run_dir=out, data=small, progress=False, quiet=True, evaluate_test=True)
    assert scored and set(scored) == {len(small.val)} and len(small.test) not in scored
    assert (out / rd.METRICS).read_text().splitlines()[0] == ",".join(rd.NO_TEST_COLUMNS + ("raw_val_acc",))
    log = (out / rd.LOG).read_text()
    assert "Test set" not in log and "test set sealed" in log and "Validation set" in log
    result = json.loads((out / rd.RESULT).read_text())
    assert not any("test" in k for k in result if k != "test_set") and result["final_val_acc"] is not None
    assert not any("test" in k for r in res.metrics for k in r)


@pytest.mark.slow
@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_resume_keeps_counting_wall_time_and_skipping_the_test_set(small, tmp_path):
    out = tmp_path / "run"

    def stop_after_1(row):
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(cfg(), run_dir=out, data=small, progress=False, quiet=True, on_epoch=stop_after_1, evaluate_test=False)
    ckpt = torch.load(out / rd.CHECKPOINT, weights_only=True)
    assert ckpt["elapsed_seconds"] >= ckpt["metrics"][0]["seconds"] > 0 and ckpt["sessions"] == 1
    import mnistlite

    res = mnistlite.resume(out, data=small, progress=False, quiet=True)  # the notebook API's wrapper of resume()
    assert res.sessions == 2 and not any("test_acc" in r for r in res.metrics)
    assert res.wall_seconds > ckpt["elapsed_seconds"]
    result = json.loads((out / rd.RESULT).read_text())
    assert result["sessions"] == 2 and result["wall_seconds"] == pytest.approx(res.wall_seconds, abs=1e-3)
    rec = load_run(out)
    assert rec.resumed and rec.wall_seconds == result["wall_seconds"]


def test_legacy_resumed_run_dir_falls_back_to_the_epochs_times(tmp_path):
    """result.json without `sessions` (written before it existed): a resumed run's wall time was
    only its last session's, so reports sum the epochs' times instead."""
    run = tmp_path / "old"
    run.mkdir()
    rows = [{"epoch": e, "train_acc": 90.0, "test_acc": 95.0, "test_loss": 0.1, "seconds": 10.0} for e in (1, 2)]
    rd.write_json(run / rd.CONFIG, {"model": "m", "seed": 1, "epochs": 2})
    rd.write_metrics(run / rd.METRICS, rows)
    rd.write_json(run / rd.RESULT, {"wall_seconds": 11.0})
    (run / rd.LOG).write_text("Resumed after epoch 1 of 2\n")
    assert load_run(run).resumed and load_run(run).wall_seconds == 20.0
    rd.write_json(run / rd.RESULT, {"wall_seconds": 25.0, "sessions": 2})
    assert load_run(run).wall_seconds == 25.0


@pytest.mark.slow
def test_writer_rebuilds_a_run_like_the_trainer(small, tmp_path):
    from mnistlite.runs.portable import pack_run, unpack_run

    src = tmp_path / "trained"
    train(cfg(epochs=1), run_dir=src, data=small, progress=False, quiet=True)
    copy = tmp_path / "copy"
    unpack_run(pack_run(src), copy)
    for name in (rd.CONFIG, rd.METRICS, rd.LOG, rd.LAYER_TABLE, rd.CURVES, rd.RESULT):
        assert (copy / name).is_file(), name
    assert (copy / rd.LAYER_TABLE).read_text() == (src / rd.LAYER_TABLE).read_text()
    assert (copy / rd.METRICS).read_text() == (src / rd.METRICS).read_text()
    # the audit's record of the test reading travels with the run (a shared sweep's other machines)
    assert rd.read_jsonl(copy / rd.READINGS) == rd.read_jsonl(src / rd.READINGS) != []
