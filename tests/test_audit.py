"""The record of test readings (engine/writer.py) and `mnistlite audit` (reports/audit.py) over it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mnistlite.cli import main
from mnistlite.data import Dataset, Split
from mnistlite.engine import rundir as rd
from mnistlite.reports.audit import audit, budget_of, render

DAY = 86_400.0


def _synthetic(val: bool) -> Dataset:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        return Split(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))

    classes = [str(i) for i in range(10)]
    return Dataset("mnist", split(256), split(64) if val else None, split(64), 0.0, 1.0, classes)


def _train(out: Path, val: bool) -> None:
    from mnistlite.engine import train
    from mnistlite.models import config_for

    cfg = config_for("tiny1k_sep", epochs=2, batch_size=64, seed=1, threads=1, download=False, val_size=64 * val)
    train(cfg, run_dir=out, data=_synthetic(val), progress=False, quiet=True)


@pytest.mark.slow
def test_training_records_its_test_readings_and_a_validation_run_none(tmp_path, monkeypatch):
    monkeypatch.setenv(rd.COMMAND_ENV, "mnistlite train --model tiny1k_sep")
    _train(tmp_path / "full", val=False)
    _train(tmp_path / "val", val=True)
    (line,) = rd.read_jsonl(tmp_path / "full" / rd.READINGS)  # one line for the session, listing its epochs
    cfg = rd.read_json(tmp_path / "full" / rd.CONFIG)
    metrics = rd.read_metrics(tmp_path / "full" / rd.METRICS)
    assert line["epochs"] == [1, 2] and line["test_acc"] == [r["test_acc"] for r in metrics]
    assert line["command"] == "mnistlite train --model tiny1k_sep" and line["split"] == "test"
    assert (
        line["recipe_hash"] == rd.recipe_hash(cfg) and line["model"] == "tiny1k_sep" and line["when"].endswith("+00:00")
    )
    state = torch.load(tmp_path / "full" / rd.MODEL, weights_only=False)["model"]
    assert (
        line["model_hash"] == rd.model_hash(state)
        and line["params"] == rd.read_json(tmp_path / "full" / rd.RESULT)["params"]
    )
    assert not (tmp_path / "val" / rd.READINGS).exists()  # sealed: the test set was never read

    # Reading the validation run's test set anyway appends one line, from the CLI, with its command line.
    import mnistlite.data

    monkeypatch.setattr(mnistlite.data, "load_dataset", lambda *a, **k: _synthetic(val=True))
    monkeypatch.delenv(rd.COMMAND_ENV)
    argv = ["evaluate", str(tmp_path / "val"), "--split", "test", "--read-test"]
    assert main(argv) == 0
    (line,) = rd.read_jsonl(tmp_path / "val" / rd.READINGS)
    assert line["command"] == "mnistlite " + " ".join(argv) and line["val_size"] == 64 and line["epochs"] == [2]
    assert {"tta_acc", "tta_views"} <= set(line) and rd.COMMAND_ENV not in os.environ  # put back after the command
    assert main(["evaluate", str(tmp_path / "val"), "--split", "val"]) == 0  # not a test reading: no line
    assert len(rd.read_jsonl(tmp_path / "val" / rd.READINGS)) == 1


def test_the_recipe_hash_ignores_the_seed_and_where_it_ran_but_not_the_recipe():
    cfg = {"model": "m", "lr": 0.01, "seed": 1, "threads": 2, "device": "cpu", "val_size": 5000}
    same = {**cfg, "seed": 7, "threads": 1, "device": "cuda", "val_size": 0, "data_dir": "/x"}
    assert rd.recipe_hash(cfg) == rd.recipe_hash(same) != rd.recipe_hash({**cfg, "lr": 0.02})
    assert rd.recipe_hash({**cfg, "precision": "fp32"}) == rd.recipe_hash(cfg)  # older configs ran fp32


def _run(
    folder: Path, *, when: float, model: str = "m1", lr: float = 0.01, val: int = 0, params: int = 7000, test=None
):
    """A run folder from before the record: config, result and metrics (a test column when `test`), dated `when`."""
    folder.mkdir(parents=True)
    (folder / rd.CONFIG).write_text(json.dumps({"model": model, "lr": lr, "val_size": val, "seed": 1}))
    (folder / rd.RESULT).write_text(json.dumps({"params": params}))
    test_cols = ",test_loss,test_acc" if test is not None else ""
    rows = [f"{e},0.01,0.1,99,0.1,99" + (f",0.1,{a}" if test is not None else "") for e, a in enumerate(test or [0], 1)]
    (folder / rd.METRICS).write_text(
        f"epoch,lr,train_loss,train_acc,val_loss,val_acc{test_cols}\n" + "\n".join(rows) + "\n"
    )
    for f in folder.iterdir():
        os.utime(f, (when, when))


def _history(root: Path) -> None:
    """Day 1 a choice that read test; day 2 a new recipe; day 3 a sealed round; day 4 the claim with its
    own final run; day 5 a reading after the claim; a 1k-budget run and a recorded reading beside them."""
    _run(root / "round1/a/seed1", when=1 * DAY, val=5000, test=[99.1, 99.45])
    _run(root / "tiny/seed1", when=1.5 * DAY, model="t1", params=900, test=[98.0])
    _run(root / "round2/b/seed1", when=2 * DAY, lr=0.02, val=5000, test=[99.5])
    _run(root / "round3/c/seed1", when=3 * DAY, model="m2", val=5000)  # sealed: no test column
    _run(root / "final/seed1", when=4 * DAY, lr=0.02, test=[99.52])
    (root / "final/consistency.json").write_text(json.dumps({"model": "m1", "params": 7000}))
    os.utime(root / "final/consistency.json", (4 * DAY, 4 * DAY))
    _run(root / "later/seed1", when=5 * DAY, test=[99.6])
    _run(root / "recorded/seed1", when=9 * DAY, model="m3", val=5000)
    record = {
        "when": "1970-01-03T12:00:00+00:00",
        "model": "m3",
        "model_hash": "abc",
        "epochs": [3],
        "test_acc": [99.3],
    }
    (root / "recorded/seed1" / rd.READINGS).write_text(json.dumps({**record, "val_size": 5000, "params": 7000}) + "\n")


def test_the_audit_lists_the_readings_before_a_claim_and_the_rounds_they_started(tmp_path):
    _history(tmp_path)
    doc = audit(tmp_path)
    (claim,) = doc["claims"]
    readings = doc["readings"]
    assert claim["budget"] == 8000 and claim["own_runs"] == ["final/seed1"] and claim["dated_by"] == "mtime"
    before = [readings[i] for i in claim["readings_before"]]
    assert [(r["run"], r["test_acc"], r["choice"]) for r in before] == [
        ("round1/a/seed1", [99.1, 99.45], True),
        ("round2/b/seed1", [99.5], True),
        ("recorded/seed1", [99.3], True),  # dated by its record (day 2.5), not by its files (day 9)
    ]
    assert claim["choice_readings_before"] == 3 and before[-1]["dated_by"] == "record"
    flags = [doc["started_after_a_reading"][i] for i in claim["started_after_a_reading"]]
    # Round 2's recipe came after round 1's test reading; round 3's model after both; the recorded
    # model after those; round 1 itself came first and the final recipe is round 2's: not flagged.
    assert [(f["kind"], f["first_run"], readings[f["after_reading"]]["run"]) for f in flags] == [
        ("recipe", "round2/b/seed1", "round1/a/seed1"),
        ("model", "recorded/seed1", "round2/b/seed1"),
        ("model", "round3/c/seed1", "recorded/seed1"),
    ]
    assert {r["run"] for r in readings} >= {"tiny/seed1", "later/seed1"}  # listed, but not before this claim
    text = render(doc)
    assert "== under 8,000 parameters: 1 claims, 5 test readings (3 during a choice) ==" in text
    assert "before it: 3 test readings (3 during a choice); 3 models or recipes" in text
    assert "choice  round1/a/seed1  m1  test 99.45 (epochs 1-2; dated by mtime)" in text


def test_a_ladder_row_is_a_claim_and_budgets_are_the_smallest_above(tmp_path):
    _history(tmp_path)
    (tmp_path / "ladder.md").write_text("| model | source | params |\n|---|---|---:|\n| `t1` | x | 900 |\n")
    os.utime(tmp_path / "ladder.md", (2 * DAY, 2 * DAY))
    (row,) = [c for c in audit(tmp_path)["claims"] if c["claim"] == "ladder.md: t1"]
    assert row["budget"] == 1000 and len(row["readings_before"]) == 1  # tiny/seed1, not the 8k runs
    assert [budget_of(p) for p in (999, 1000, 7999, 8000, 19999, 20000)] == [1000, 2000, 8000, 20000, 20000, None]


def test_audit_json_and_a_bad_dir(tmp_path, capsys):
    _history(tmp_path)
    assert main(["audit", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"dir", "budgets", "files_dated_by", "runs", "claims", "started_after_a_reading", "readings"}
    assert doc["runs"] == 7 and doc["files_dated_by"] == {"git": 0, "mtime": 8}
    assert main(["audit", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err


@pytest.mark.slow
def test_the_committed_audit_lists_the_sep8k_rounds_test_readings():
    root = Path(__file__).resolve().parents[1] / "docs" / "results"
    doc = audit(root)
    (claim,) = [c for c in doc["claims"] if c["claim"] == "more_seeds/mnistlite_sep8k/consistency.json"]
    before = [doc["readings"][i] for i in claim["readings_before"]]
    sep = [r for r in before if r["run"].startswith("tuning/flagship_round11/sep30x5/")]
    assert [(r["test_acc"][-1], r["choice"]) for r in sep] == [
        (99.54, True),
        (99.55, True),
        (99.42, True),
        (99.49, True),
    ]
