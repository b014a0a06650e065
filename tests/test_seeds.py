"""runs/seeds.py: multi-seed aggregation, on synthetic run directories; the seed-list rule; and the
tables built on the aggregate (reports/leaderboard.py)."""

import json

import pytest

from mnistlite.config_files import parse_seeds
from mnistlite.engine import rundir as rd
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for
from mnistlite.reports.leaderboard import attach_threads, markdown_table, pareto, plot_frontier
from mnistlite.runs.seeds import CONSISTENCY_JSON, aggregate, plot_consistency, seed_dir


def fake_run(out, seed, test_accs, model="mnistlite_flagship", raw_accs=None):
    run = seed_dir(out, seed)
    run.mkdir(parents=True)
    rows = [
        {
            "epoch": e + 1,
            "lr": 0.1,
            "train_loss": 0.1,
            "train_acc": 99.0,
            "val_loss": None,
            "val_acc": None,
            "test_loss": 0.02,
            "test_acc": a,
            "seconds": 1.0,
        }
        for e, a in enumerate(test_accs)
    ]
    for r, raw in zip(rows, raw_accs or []):
        r["raw_test_acc"] = raw
    rd.write_metrics(run / rd.METRICS, rows)
    rd.write_json(run / rd.CONFIG, config_for(model, seed=seed).to_dict())
    rd.write_json(run / rd.RESULT, {"params": 7766, **rd.headline_numbers(rows), "wall_seconds": 10.0})


def test_aggregate_statistics_and_goal(tmp_path):
    fake_run(tmp_path, 1, [99.0, 99.45, 99.50, 99.41])
    fake_run(tmp_path, 2, [99.1, 99.39, 99.60, 99.55])  # 99.39 in its last 3: misses the goal
    fake_run(tmp_path, 3, [98.9, 99.40, 99.42, 99.44])
    s = aggregate(tmp_path, [1, 2, 3])
    assert s["n"] == 3 and s["epochs"] == 4
    assert s["final_test_acc"]["mean"] == pytest.approx((99.41 + 99.55 + 99.44) / 3)
    assert s["final_test_acc"]["min"] == pytest.approx(99.41)
    assert s["per_seed"]["2"]["last3_min_test_acc"] == pytest.approx(99.39)
    assert [s["per_seed"][k]["passes_goal"] for k in "123"] == [True, False, True]
    assert s["seeds_passing_goal"] == 2
    assert s["per_epoch"][0]["test_acc"]["max"] == pytest.approx(99.1)
    json.dumps(s)  # serialisable as consistency.json
    plot_consistency(tmp_path, s)
    assert (tmp_path / "consistency.png").stat().st_size > 1000


def test_markdown_table_and_frontier_plot(tmp_path):
    fake_run(tmp_path, 1, [99.0, 99.45, 99.50, 99.41])
    fake_run(tmp_path, 2, [99.1, 99.41, 99.60, 99.55])
    s = aggregate(tmp_path, [1, 2])
    table = markdown_table([s], claims=True)
    assert "`mnistlite_flagship`" in table and "2/2" in table and "(n=2)" in table
    assert "2-4" in table  # epochs where the mean holds 99.4%
    plot_frontier([s], tmp_path / "f.png")
    assert (tmp_path / "f.png").is_file()


def test_pareto_keeps_only_models_nothing_smaller_beats():
    """The plot's step line: a larger model that is not better (the flagship beside sep8k) is off it."""

    def row(name, params, mean):
        return {"model": name, "params": params, "final_test_acc": {"mean": mean}}

    rows = [row("big", 7766, 99.48), row("sep", 7746, 99.56), row("tiny", 998, 98.5), row("mid", 4526, 99.50)]
    rows.append(row("same", 998, 98.4))  # as small as tiny, worse: off
    assert [r["model"] for r in pareto(rows)] == ["tiny", "mid", "sep"]


def test_ladder_cost_columns(tmp_path):
    """MACs per image from the model, the median whole-run seconds and the runs' thread counts from their files."""
    sweep = tmp_path / "mnistlite_flagship"
    for seed, secs in ((1, 10.0), (2, 30.0), (3, 20.0)):
        fake_run(sweep, seed, [99.0, 99.45])
        run = seed_dir(sweep, seed)
        rd.write_json(run / rd.RESULT, {**rd.read_json(run / rd.RESULT), "wall_seconds": secs})
        rd.write_json(run / rd.CONFIG, {**rd.read_json(run / rd.CONFIG), "threads": 2})
    rows = attach_threads([aggregate(sweep, [1, 2, 3])], tmp_path)
    assert rows[0]["threads"] == [2]
    row = markdown_table(rows, claims=False, cost=True).splitlines()[2]
    assert "| 7,766 | 1,109,998 | 20 (2 thr) | 2 |" in row  # params, MACs, median of 10/30/20 s, epochs
    assert "1,109,998" not in markdown_table(rows, claims=False)


def test_table_no_train_renders_the_cost_columns_and_their_note(tmp_path, capsys):
    from mnistlite import cli

    sweep = tmp_path / "mnistlite_flagship"
    for seed in (1, 2):
        fake_run(sweep, seed, [99.0, 99.45])
    rd.write_json(sweep / CONSISTENCY_JSON, aggregate(sweep, [1, 2]))
    md = tmp_path / "ladder.md"
    assert cli.main(["table", "--tag", "ladder", "--no-train", "--out", str(tmp_path), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "| MACs/image | s per run, median |" in text and "| 1,109,998 | 10 |" in text
    assert "compare times only between rows trained alike" in text


@pytest.mark.parametrize("value", ["", "1,a", "3,3", "-1,2", [], [1, 1], [-1], [1, True], "1.5"])
def test_bad_seed_lists(value):
    """One rule for --seed-list and a file's `seeds`: distinct integers >= 0, at least one."""
    with pytest.raises(MnistliteError):
        parse_seeds(value, "--seed-list")


def test_seed_list_parses():
    assert parse_seeds("7, 8,9", "--seed-list") == (7, 8, 9)
    assert parse_seeds([0, 3], "f.toml") == (0, 3)


def test_negative_seeds_are_refused_on_the_command_line_and_in_files(tmp_path, capsys):
    from mnistlite.cli import main

    assert main(["seeds", "mnistlite_2k", "--seed-list=-1,2", "--out", str(tmp_path / "s")]) == 2
    assert "integers >= 0" in capsys.readouterr().err
    toml = tmp_path / "e.toml"
    toml.write_text('title = "t"\nseeds = [-1]\n[[steps]]\nname = "a"\nmodel = "mnistlite_2k"\ntarget = ["x"]\n')
    assert main(["experiment", str(toml), "--plan"]) == 2
    assert "integers >= 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_seeds_over_shared_storage_each_seed_once(tmp_path, monkeypatch):
    """`seeds --storage`: seeds are jobs of one sweep; a second worker finds them done."""
    pytest.importorskip("optuna")
    import mnistlite.runs.plan as plan
    import mnistlite.runs.seeds as c

    trained = []

    def fake_train(cfg, *, run_dir, **_):
        trained.append(cfg.seed)
        fake_run(tmp_path / "w1", cfg.seed, [99.0, 99.3, 99.45 + cfg.seed / 100])

    monkeypatch.setattr(plan, "train", fake_train)
    monkeypatch.setattr(plan, "resume", lambda *a, **kw: pytest.fail("nothing here was interrupted"))
    monkeypatch.setattr(plan, "load_dataset", lambda *a, **kw: None)
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    base = config_for("mnistlite_flagship", epochs=3)
    s1 = c.run_seeds(base, [1, 2, 3], tmp_path / "w1", storage=url, study="t", echo=lambda *_: None)
    assert sorted(trained) == [1, 2, 3]
    # A second worker elsewhere (another folder): nothing left to train, same aggregate.
    s2 = c.run_seeds(base, [1, 2, 3], tmp_path / "w2", storage=url, study="t", echo=lambda *_: None)
    assert sorted(trained) == [1, 2, 3]
    assert s2["final_test_acc"] == s1["final_test_acc"]
    assert (tmp_path / "w2" / "seed2" / "curves.png").is_file()


def test_ema_runs_also_report_the_raw_weights(tmp_path):
    fake_run(tmp_path, 1, [99.0, 99.45, 99.50, 99.41], raw_accs=[99.0, 99.30, 99.45, 99.40])
    fake_run(tmp_path, 2, [99.1, 99.42, 99.60, 99.55], raw_accs=[99.1, 99.39, 99.50, 99.52])
    s = aggregate(tmp_path, [1, 2])
    assert s["seeds_passing_goal"] == 2
    raw = s["raw_weights"]
    assert raw["final_test_acc"]["mean"] == pytest.approx((99.40 + 99.52) / 2)
    assert raw["last3_min_test_acc"]["min"] == pytest.approx(99.30)
    assert raw["seeds_passing_goal"] == 0
    from mnistlite.runs.seeds import format_aggregate

    assert s["per_epoch"][1]["raw_test_acc"]["mean"] == pytest.approx((99.30 + 99.39) / 2)
    text = format_aggregate(s)
    assert "without the weight average (same runs): epoch-4 99.46" in text
    assert "raw weights mean ± std" in text and text.endswith("99.46 ± 0.08")
    fake_run(tmp_path / "plain", 1, [99.0, 99.5])
    assert "raw_weights" not in aggregate(tmp_path / "plain", [1])


def test_table_prints_three_decimals_where_two_would_cross_the_target():
    from mnistlite.challenge import fmt_acc

    assert fmt_acc(99.398) == "99.398"  # 99.40 would read as meeting 99.4%
    assert fmt_acc(99.3951) == "99.395"
    assert fmt_acc(99.41) == "99.41" and fmt_acc(99.39) == "99.39" and fmt_acc(98.996) == "99.00"


def test_seeds_console_does_not_round_a_mean_across_the_target(tmp_path):
    from mnistlite.runs.seeds import format_aggregate

    fake_run(tmp_path, 1, [99.0, 99.39])
    fake_run(tmp_path, 2, [99.0, 99.40])
    text = format_aggregate(aggregate(tmp_path, [1, 2]))
    assert "test accuracy: 99.395 ± " in text  # two decimals would print 99.40, a mean that misses 99.4%
    assert "\n    2  99.395 ± " in text


def test_seeds_reuse_links_an_earlier_sweeps_same_seeds(tmp_path, monkeypatch):
    """`seeds --reuse DIR`: seeds 1-2 of an earlier sweep are linked, seed 3 trains, and a seed
    of another recipe there is named and not linked."""
    import mnistlite.runs.plan as plan
    import mnistlite.runs.seeds as c

    old = tmp_path / "five"
    for s in (1, 2):
        fake_run(old, s, [99.0, 99.3, 99.5])
    fake_run(old, 3, [99.0, 99.3, 99.5])
    cfg3 = rd.read_json(seed_dir(old, 3) / rd.CONFIG)
    rd.write_json(seed_dir(old, 3) / rd.CONFIG, {**cfg3, "weight_decay": 0.123})
    trained = []

    def fake_train(cfg, *, run_dir, **_):
        trained.append(cfg.seed)
        fake_run(tmp_path / "ten", cfg.seed, [99.0, 99.3, 99.4])

    monkeypatch.setattr(plan, "train", fake_train)
    monkeypatch.setattr(plan, "load_dataset", lambda *a, **kw: None)
    said: list[str] = []
    base = config_for("mnistlite_flagship")
    agg = c.run_seeds(base, [1, 2, 3], tmp_path / "ten", reuse=[old], echo=said.append)
    assert trained == [3] and agg["n"] == 3
    assert any("seed 3:" in line and "weight_decay 0.123" in line for line in said)
    assert all(seed_dir(tmp_path / "ten", s).is_symlink() for s in (1, 2))
    assert not seed_dir(tmp_path / "ten", 3).is_symlink()


def test_seeds_reuse_of_a_missing_folder_is_one_line(tmp_path, capsys):
    from mnistlite.cli import main

    assert main(["seeds", "mnistlite_2k", "--reuse", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reuse" in err and "no such folder" in err
    assert not (tmp_path / "s").exists()
