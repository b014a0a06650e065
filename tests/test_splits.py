"""--jobs auto (runs/splits.py): the rule, the cache, the record, the flag; no real timing but one tiny one."""

import json
import types

import pytest

from mnistlite.config import TrainConfig
from mnistlite.errors import MnistliteError
from mnistlite.runs import plan, splits


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLITE_CACHE_DIR", str(tmp_path / "cache"))


def row(jobs, threads, rate):
    return {"jobs": jobs, "threads": threads, "images_per_s": rate, "bn_fusion": ["fused"], "precision": ["fp32"]}


def runs(n, tmp_path, **kw):
    c = TrainConfig.for_model("mnistlite_2k", epochs=1, **kw)
    return [plan.plan_run(f"seed {s}", c.replace(seed=s), tmp_path / f"seed{s}") for s in range(1, n + 1)]


def test_options_split_the_cores():
    assert splits.options(2) == [(1, 2), (2, 1)]
    assert splits.options(4) == [(1, 4), (2, 2), (4, 1)]
    assert splits.options(1) == [(1, 1)]


def test_the_rule_needs_more_jobs_to_pay_min_gain():
    assert splits.choose([row(1, 2, 5572), row(2, 1, 8047)])["jobs"] == 2
    assert splits.choose([row(1, 2, 5572), row(2, 1, 5572 * (splits.MIN_GAIN - 0.01))])["jobs"] == 1
    assert splits.choose([row(1, 2, 6000), row(2, 1, 5000)])["jobs"] == 1
    # Each step is judged against the best so far, fewest jobs first.
    assert splits.choose([row(1, 4, 100), row(2, 2, 104), row(4, 1, 110)])["jobs"] == 4


def test_the_rule_counts_waves_of_runs():
    """Five runs on two workers are three waves: two jobs must then beat one by 6/5 x MIN_GAIN."""
    one, two = row(1, 2, 1000), row(2, 1, 1300)
    assert splits.makespan(two, 5) == pytest.approx(3 * 2 / 1300)
    assert splits.choose([one, two])["jobs"] == 2  # a long sweep: the total rate decides
    assert splits.choose([one, two], runs=4)["jobs"] == 2  # 2 waves of 2: 4/1300 against 4/1000
    assert splits.choose([one, two], runs=5)["jobs"] == 2  # 6/1300 = 4.6 against 5.0: 1.08x
    assert splits.choose([one, row(2, 1, 1170)], runs=5)["jobs"] == 1  # 6/1170 = 5.1: slower in waves
    assert splits.choose([one, row(2, 1, 1170)], runs=6)["jobs"] == 2  # no idle wave


def test_jobs_flag_values():
    assert splits.parse_jobs("auto") == "auto" and splits.parse_jobs(" 3 ") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(MnistliteError, match="--jobs must be"):
            splits.parse_jobs(bad)
    from mnistlite.cli.common import Parser, add_seed_flags

    p = Parser(prog="mnistlite seeds")
    add_seed_flags(p)
    assert p.parse_args(["--jobs", "auto"]).jobs == "auto" and p.parse_args([]).jobs == 1
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--jobs", "0"])
    assert e.value.code == 2


def test_resolve_measures_caches_and_records(tmp_path, monkeypatch):
    monkeypatch.setattr("mnistlite.engine.device.cpu_cores", lambda: 2)
    calls = []

    def fake_measure(cfg, jobs, threads, setup=None, steps=splits.STEPS):
        calls.append((jobs, threads))
        return row(jobs, threads, {1: 5572.0, 2: 8047.0}[jobs])

    monkeypatch.setattr(splits, "measure", fake_measure)
    lines = []
    todo = runs(3, tmp_path)
    assert splits.resolve(todo, "auto", echo=lines.append, record=tmp_path) == (2, 1)
    assert calls == [(1, 2), (2, 1)] * splits.ROUNDS
    assert "2 at a time, 1 thread(s) each" in lines[-1] and "1x2 5,572 img/s (fused)" in lines[-1]
    rec = json.loads((tmp_path / splits.SPLIT_JSON).read_text())
    assert rec["jobs"] == 2 and rec["threads"] == 1 and rec["model"] == "mnistlite_2k" and not rec["cached"]
    # Cached per machine: the second time nothing is timed.
    assert splits.resolve(todo, "auto", echo=lines.append) == (2, 1) and len(calls) == 2 * splits.ROUNDS
    assert lines[-1].endswith("(cached)")
    (entry,) = json.loads((tmp_path / "cache" / splits.CACHE_FILE).read_text())["entries"].values()
    assert [s["jobs"] for s in entry["splits"]] == [1, 2]
    # Another model is another entry.
    splits.resolve(runs(2, tmp_path, batch_size=64), "auto", echo=lines.append)
    assert len(calls) == 4 * splits.ROUNDS


def test_resolve_without_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr("mnistlite.engine.device.cpu_cores", lambda: 2)
    monkeypatch.setattr(splits, "measure", lambda *a, **k: pytest.fail("nothing to measure here"))
    say = lambda s: None  # noqa: E731
    assert splits.resolve(runs(1, tmp_path), "auto", echo=say) == (1, 2)  # one run: all cores
    assert splits.resolve(runs(3, tmp_path), "auto", group="auto", echo=say) == (1, 2)  # grouping: jobs 1
    assert splits.resolve(runs(3, tmp_path), "auto", threads=1, echo=say) == (2, 1)  # --threads 1 given
    assert splits.resolve(runs(3, tmp_path), 2, echo=say) == (2, 1)  # a number is taken as given
    monkeypatch.setattr("mnistlite.engine.device.resolve_device", lambda name: types.SimpleNamespace(type="cuda"))
    assert splits.resolve(runs(3, tmp_path, device="cpu"), "auto", echo=say) == (1, 2)


def test_a_real_split_measurement_runs(tmp_path):
    """One tiny real measurement (spawned processes, a barrier): the figures come back whole."""
    c = TrainConfig.for_model("mnistlite_2k", batch_size=16, limit_train=0)
    m = splits.measure(c, 2, 1, steps=2)
    assert m["jobs"] == 2 and m["threads"] == 1 and m["images_per_s"] > 0
    assert m["bn_fusion"][0] in ("fused", "torch") and m["precision"] == ["fp32"]
