"""--jobs auto (runs/splits.py): the rule, the record, the flag; nothing is timed."""

import json
import types

import pytest

from mnistlite.errors import MnistliteError
from mnistlite.models import config_for
from mnistlite.runs import plan, splits


def row(jobs, threads, rate):
    return {"jobs": jobs, "threads": threads, "rate": rate}


def runs(n, tmp_path, **kw):
    c = config_for("mnistlite_3k", epochs=1, **kw)
    return [plan.plan_run(f"seed {s}", c.replace(seed=s), tmp_path / f"seed{s}") for s in range(1, n + 1)]


def test_options_split_the_cores():
    def options(cores):
        return [(m["jobs"], m["threads"]) for m in splits.rates(cores)]

    assert options(2) == [(1, 2), (2, 1)]
    assert options(4) == [(1, 4), (2, 2), (4, 1)]
    assert options(1) == [(1, 1)]


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


def test_rates_follow_the_committed_split_gain():
    assert splits.rates(2) == [row(1, 2, 1.0), row(2, 1, splits.SPLIT_GAIN)]
    assert [r["rate"] for r in splits.rates(4)] == pytest.approx(
        [1.0, splits.SPLIT_GAIN, splits.SPLIT_GAIN**2], abs=1e-3
    )


def test_resolve_follows_the_rule_and_records(tmp_path, monkeypatch):
    """Two cores: two runs or four take 2 x 1; three or five stay at 1 x 2 (an idle last wave
    costs more than SPLIT_GAIN buys); nine and more take 2 x 1 again."""
    monkeypatch.setattr("mnistlite.engine.device.cpu_cores", lambda: 2)
    lines = []
    got = {n: splits.resolve(runs(n, tmp_path), "auto", echo=lines.append) for n in (2, 3, 4, 5, 9)}
    assert got == {2: (2, 1), 3: (1, 2), 4: (2, 1), 5: (1, 2), 9: (2, 1)}
    assert "2 at a time, 1 thread(s) each, for 9 runs" in lines[-1]
    assert splits.resolve(runs(2, tmp_path), "auto", echo=lines.append, record=tmp_path) == (2, 1)
    rec = json.loads((tmp_path / splits.SPLIT_JSON).read_text())
    assert rec["jobs"] == 2 and rec["threads"] == 1 and rec["model"] == "mnistlite_3k"
    assert rec["split_gain"] == splits.SPLIT_GAIN and [s["jobs"] for s in rec["splits"]] == [1, 2]


def test_resolve_without_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr("mnistlite.engine.device.cpu_cores", lambda: 2)
    say = lambda s: None  # noqa: E731
    assert splits.resolve(runs(1, tmp_path), "auto", echo=say) == (1, 2)  # one run: all cores
    assert splits.resolve(runs(3, tmp_path), "auto", threads=1, echo=say) == (2, 1)  # --threads 1 given
    assert splits.resolve(runs(3, tmp_path), 2, echo=say) == (2, 1)  # a number is taken as given
    monkeypatch.setattr("mnistlite.engine.device.resolve_device", lambda name: types.SimpleNamespace(type="cuda"))
    assert splits.resolve(runs(3, tmp_path, device="cpu"), "auto", echo=say) == (1, 2)
