"""runs/seeds.py: multi-seed aggregation, on synthetic run directories; the seed-list rule; the
tables built on the aggregate (reports/leaderboard.py); and "held consistently" as numbers
(runs/holding.py: the interval for new seeds, the test set's own sampling error, the margin in
images, the paired comparison of two seeds folders in `mnistlite compare`)."""

import json
import math

import pytest

from mnistlite.config_files import parse_seeds
from mnistlite.engine import rundir as rd
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for
from mnistlite.reports.leaderboard import attach_threads, markdown_table, pareto, plot_frontier
from mnistlite.runs.holding import binomial_sd, clopper_pearson, holding, margin, paired
from mnistlite.runs.seeds import CONSISTENCY_JSON, aggregate, format_aggregate, plot_consistency, seed_dir


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

    assert main(["seeds", "mnistlite_3k", "--seed-list=-1,2", "--out", str(tmp_path / "s")]) == 2
    assert "integers >= 0" in capsys.readouterr().err
    toml = tmp_path / "e.toml"
    toml.write_text('title = "t"\nseeds = [-1]\n[[steps]]\nname = "a"\nmodel = "mnistlite_3k"\ntarget = ["x"]\n')
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

    assert main(["seeds", "mnistlite_3k", "--reuse", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reuse" in err and "no such folder" in err
    assert not (tmp_path / "s").exists()


# --- "held consistently" as numbers ------------------------------------------------------------


@pytest.mark.parametrize(
    "k, n, lower, upper",
    [
        (10, 10, 0.6915, 1.0),  # 0.025 ** (1/10)
        (9, 10, 0.5550, 0.9975),
        (8, 10, 0.4439, 0.9748),
        (5, 10, 0.1871, 0.8129),
        (0, 10, 0.0, 0.3085),
        (1, 1, 0.025, 1.0),
    ],
)
def test_clopper_pearson_two_sided_known_values(k, n, lower, upper):
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(lower, abs=5e-5) and hi == pytest.approx(upper, abs=5e-5)


def test_clopper_pearson_one_sided_and_symmetry():
    assert clopper_pearson(10, 10, one_sided=True)[0] == pytest.approx(0.7411, abs=5e-5)  # 0.05 ** (1/10)
    assert clopper_pearson(20, 20, one_sided=True)[0] == pytest.approx(0.05 ** (1 / 20), abs=1e-9)
    lo, hi = clopper_pearson(3, 12)
    lo2, hi2 = clopper_pearson(9, 12)
    assert lo == pytest.approx(1 - hi2, abs=1e-12) and hi == pytest.approx(1 - lo2, abs=1e-12)
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)


def test_holding_record():
    h = holding(8, 10)
    assert (h["k"], h["n"], h["share"]) == (8, 10, 0.8)
    assert h["interval95"][0] == pytest.approx(0.4439, abs=5e-5)
    assert h["one_sided_lower95"] == pytest.approx(0.4931, abs=5e-5)
    assert "Clopper-Pearson" in h["method"]


def test_binomial_sd_of_the_test_set():
    assert binomial_sd(99.56, 10_000) == pytest.approx(0.0662, abs=5e-5)  # the 0.066 at 99.56%
    assert binomial_sd(50.0, 100) == pytest.approx(5.0)
    assert binomial_sd(99.56, 40_000) == pytest.approx(binomial_sd(99.56, 10_000) / 2)


def test_margin_in_images():
    assert margin([99.42], 99.4, 10_000)["images"] == 2  # 99.42 - 99.40 is 1.99999... images in floats
    assert margin([99.37], 99.4, 10_000)["images"] == -3
    assert margin([99.4], 99.4, 10_000)["images"] == 0
    m = margin([99.45, 99.40, 99.52, 99.40], 99.4, 10_000)
    assert (m["worst_test_acc"], m["images"], m["seeds_at_worst"]) == (99.40, 0, 2)
    assert margin([99.46], 99.4, None)["images"] is None


def test_paired_difference():
    a = {1: 99.50, 2: 99.60, 3: 99.40, 4: 99.55, 9: 99.0}
    b = {1: 99.45, 2: 99.60, 3: 99.48, 4: 99.45, 7: 99.9}
    p = paired(a, b)
    diffs = [0.05, 0.0, -0.08, 0.10]
    assert p["seeds"] == [1, 2, 3, 4] and p["n"] == 4
    assert p["mean_diff"] == pytest.approx(sum(diffs) / 4)
    sd = math.sqrt(sum((d - sum(diffs) / 4) ** 2 for d in diffs) / 3)
    assert p["se_diff"] == pytest.approx(sd / 2)
    assert (p["a_wins"], p["ties"], p["a_loses"]) == (2, 1, 1)
    assert (p["only_in_a"], p["only_in_b"]) == ([9], [7])
    assert paired({1: 99.5}, {1: 99.4})["se_diff"] is None
    with pytest.raises(ValueError):
        paired({1: 99.5}, {2: 99.5})


def fake_log(out, seed, n_test=10_000, acc=99.5):
    (seed_dir(out, seed) / rd.LOG).write_text(
        f"Test set: Average loss: 0.0200, Accuracy: {round(acc * n_test / 100)}/{n_test} ({acc:.2f}%)\n"
    )


def test_consistency_json_and_console_state_the_numbers(tmp_path):
    fake_run(tmp_path, 1, [99.0, 99.45, 99.50, 99.41])
    fake_run(tmp_path, 2, [99.1, 99.39, 99.60, 99.55])  # misses: 99.39
    fake_run(tmp_path, 3, [98.9, 99.40, 99.42, 99.44])
    for s in (1, 2, 3):
        fake_log(tmp_path, s)
    agg = aggregate(tmp_path, [1, 2, 3])
    json.dumps(agg)
    h, t, m = agg["holding"], agg["test_set_sampling"], agg["margin"]
    assert (h["k"], h["n"]) == (2, 3)
    assert h["interval95"] == pytest.approx(list(clopper_pearson(2, 3)))
    assert t["n_test"] == 10_000
    assert t["binomial_sd_points"] == pytest.approx(binomial_sd((99.41 + 99.55 + 99.44) / 3, 10_000))
    assert t["across_seeds_sd_points"] == agg["final_test_acc"]["std"]
    assert (m["worst_test_acc"], m["images"], m["seeds_at_worst"]) == (99.39, -1, 1)
    text = format_aggregate(agg)
    assert "95% interval: 9.4-99.2%" in text and "Clopper-Pearson" in text
    assert "(binomial, 10,000 images" in text and "-1 images of 10,000" in text


def test_test_images_come_from_the_runs_logs(tmp_path):
    fake_run(tmp_path, 1, [99.5, 99.5, 99.5])
    fake_run(tmp_path, 2, [99.5, 99.5, 99.5])
    fake_log(tmp_path, 1, n_test=5_000)
    fake_log(tmp_path, 2, n_test=5_000)
    agg = aggregate(tmp_path, [1, 2])
    assert agg["test_set_sampling"]["n_test"] == 5_000 and agg["margin"]["images"] == 5
    fake_log(tmp_path, 2, n_test=10_000)  # the runs disagree: no size is claimed
    agg = aggregate(tmp_path, [1, 2])
    assert agg["test_set_sampling"]["binomial_sd_points"] is None and agg["margin"]["images"] is None
    assert "sampling SD: unknown" in format_aggregate(agg)


def sweep(root, finals):
    for seed, acc in finals.items():
        fake_run(root, seed, [99.0, acc, acc, acc])
        fake_log(root, seed, acc=acc)
    rd.write_json(root / CONSISTENCY_JSON, aggregate(root, list(finals)))
    return root


@pytest.mark.slow  # draws the overlay plot
def test_compare_two_seeds_folders_is_paired(tmp_path, capsys):
    from mnistlite.cli import main

    a = sweep(tmp_path / "a", {1: 99.50, 2: 99.60, 3: 99.40})
    b = sweep(tmp_path / "b", {1: 99.45, 2: 99.60, 3: 99.48, 4: 99.5})
    png = tmp_path / "cmp.png"
    assert main(["compare", str(a), str(b), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "a/seed1" in out and "b/seed4" in out  # the seed runs, in the run table
    assert "paired over 3 common seed(s)" in out
    assert "A - B: mean -0.010 points (-1.0 of 10,000 images), standard error 0.038" in out
    assert "A wins 1, ties 1, loses 1 of 3" in out and "only in B: seeds [4]" in out
    assert main(["compare", str(a), str(b), "--out", str(png), "--json"]) == 0
    p = json.loads(capsys.readouterr().out)["paired"]
    assert p["mean_diff"] == pytest.approx(-0.01) and p["ties"] == 1
    # A run folder pair is as before: no pairing.
    assert main(["compare", str(a / "seed1"), str(b / "seed1"), "--out", str(png), "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


def test_sealed_validation_seeds_aggregate_on_the_validation_split(tmp_path, capsys):
    """Seeds of a validation run never read the test set: the aggregate and its console line are
    on the validation split, with no test figure."""
    write_sealed_runs(tmp_path, {1: [99.1, 99.5, 99.45, 99.42], 2: [99.0, 99.3, 99.35, 99.38]})
    assert "test_acc" not in (seed_dir(tmp_path, 1) / rd.METRICS).read_text()
    agg = aggregate(tmp_path, [1, 2])
    assert agg["split"] == "val" and agg["final_val_acc"]["mean"] == pytest.approx(99.4)
    assert agg["seeds_passing_goal"] == 1 and agg["per_seed"]["2"]["last3_min_val_acc"] == 99.3
    assert not any("test_acc" in k for k in json.dumps(agg).split('"'))
    text = format_aggregate(agg)
    assert "epoch-4 val accuracy: 99.40 ± 0.03%" in text.splitlines()[1] and "test set sealed" in text
    assert "test accuracy" not in text
    plot_consistency(tmp_path, agg)
    assert (tmp_path / "consistency.png").is_file()


def sealed_sweep(root, accs_by_seed):
    """A seeds folder of validation runs (no test column), aggregated as `seeds` writes it."""
    write_sealed_runs(root, accs_by_seed)
    rd.write_json(root / CONSISTENCY_JSON, aggregate(root, sorted(accs_by_seed)))
    return root


def write_sealed_runs(root, accs_by_seed):
    """Finished validation runs (no test column), one per seed, with these val accuracies per epoch."""
    for seed, accs in accs_by_seed.items():
        run = seed_dir(root, seed)
        run.mkdir(parents=True)
        rows = [
            {"epoch": e + 1, "lr": 0.1, "train_loss": 0.1, "train_acc": 99.0, "val_loss": 0.02, "val_acc": a}
            for e, a in enumerate(accs)
        ]
        rd.write_metrics(run / rd.METRICS, rows)
        rd.write_json(run / rd.CONFIG, config_for("mnistlite_flagship", seed=seed, val_size=5000).to_dict())
        rd.write_json(run / rd.RESULT, {"params": 7766, **rd.headline_numbers(rows), "wall_seconds": 10.0})


@pytest.mark.slow  # draws the overlay plot
def test_compare_pairs_sealed_sweeps_on_validation_and_never_mixes_splits(tmp_path, capsys):
    from mnistlite.cli import main

    a = sealed_sweep(tmp_path / "a", {1: [99.0, 99.5], 2: [99.1, 99.3]})
    b = sealed_sweep(tmp_path / "b", {1: [99.0, 99.4], 2: [99.1, 99.3]})
    png = tmp_path / "cmp.png"
    assert main(["compare", str(a), str(b), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "final validation accuracy" in out and "A wins 1, ties 1, loses 0 of 2" in out
    t = sweep(tmp_path / "t", {1: 99.50, 2: 99.60})
    assert main(["compare", str(a), str(t), "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different splits" in err  # refused before any plot or pairing


def test_table_refuses_a_validation_split(tmp_path, capsys):
    """`table` reports the test set, which a validation run never reads: one line, exit 2, nothing trained."""
    from mnistlite.cli import main

    assert main(["table", "--tag", "ladder", "--seeds", "1", "--val-size", "5000", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--val-size" in err
    assert not (tmp_path / "t").exists()


# --- the held-consistently figures in `table` ---------------------------------------------------


def test_claim_and_its_cells_known_values():
    from mnistlite.runs.holding import claim, holding_text, images_text

    c = claim([99.45, 99.40, 99.39], [99.5, 99.6, 99.4], 99.4, 10_000)
    assert (c["holding"]["k"], c["holding"]["n"]) == (2, 3)
    t = c["test_set_sampling"]
    assert t["binomial_sd_points"] == pytest.approx(0.07053, abs=5e-6)  # sqrt(.995 * .005 / 10,000) * 100
    assert t["across_seeds_sd_points"] == pytest.approx(0.1) and t["accuracy"] == pytest.approx(99.5)
    assert (c["margin"]["worst_test_acc"], c["margin"]["images"]) == (99.39, -1)
    v = claim([99.0], [99.5], 99.4, 5_000, "val")
    assert v["val_set_sampling"]["across_seeds_sd_points"] == 0.0 and v["margin"]["worst_val_acc"] == 99.0
    assert v["margin"]["images"] == -20 and "val set" in v["val_set_sampling"]["formula"]
    # The README's quotes: 10/10 (69-100%), 8/10 (44-97%), 0/10 (0-31%); five seeds: 48-100%.
    assert [holding_text(holding(k, n)) for k, n in ((10, 10), (8, 10), (0, 10), (5, 5), (1, 5))] == [
        "10/10 (69-100%)",
        "8/10 (44-97%)",
        "0/10 (0-31%)",
        "5/5 (48-100%)",
        "1/5 (1-72%)",
    ]
    assert [images_text({"images": x}) for x in (6, 0, -39, None)] == ["+6", "0", "-39", "n/a"]


def table_row(md: str, model: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| `{model}` |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_rows_state_holding_sampling_and_margin(tmp_path, capsys):
    """Synthetic sweeps, no training: each row gives k/n with its interval, the test set's own SD
    beside the across-seed SD, and the margin in images; the note under the table says what they are."""
    from mnistlite.cli import main

    sweep(tmp_path / "mnistlite_flagship", {1: 99.45, 2: 99.55})
    md = tmp_path / "ladder.md"
    assert main(["table", "--tag", "ladder", "--no-train", "--out", str(tmp_path), "--markdown", str(md)]) == 0
    text = md.read_text()
    head = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    row = dict(zip(head, table_row(text, "mnistlite_flagship")))
    assert row["ours: final test, mean ± std"] == "99.50 ± 0.07 (n=2)"
    assert row["test-set SD"] == f"{binomial_sd(99.5, 10_000):.3f}" == "0.071"
    assert row["worst last-3"] == "99.45" and row["margin (images)"] == "+5"
    assert row["seeds holding 99.4% (95% CI)"] == "2/2 (16-100%)"  # 0.025 ** (1/2)
    assert "Clopper-Pearson 95% interval" in text and "in test images" in text
    assert "| 2/2 (16-100%) |" in capsys.readouterr().out  # the console table too


def test_table_computes_the_figures_of_an_older_consistency_json(tmp_path):
    """A consistency.json written before the figures existed: `table` computes them from it and its runs' logs."""
    from mnistlite.reports.leaderboard import load_rows

    root = sweep(tmp_path / "mnistlite_flagship", {1: 99.38, 2: 99.55, 3: 99.50})
    new = rd.read_json(root / CONSISTENCY_JSON)
    rd.write_json(root / CONSISTENCY_JSON, {k: v for k, v in new.items() if k not in CLAIM_KEYS})
    (old,) = load_rows(tmp_path, "ladder")
    assert {k: old[k] for k in CLAIM_KEYS} == {k: new[k] for k in CLAIM_KEYS}
    assert old["margin"]["images"] == -2 and old["holding"]["k"] == 2
    assert table_row(markdown_table([old], claims=False), "mnistlite_flagship")[-3:] == ["-2", "2/3 (9-99%)", "2-4"]


CLAIM_KEYS = ("holding", "test_set_sampling", "margin")


def test_table_labels_a_sealed_sweeps_figures_val(tmp_path):
    """A sealed validation sweep in the table: its figures say val, and the test-accuracy plot leaves it out."""
    from mnistlite.reports.leaderboard import load_rows

    sealed_sweep(tmp_path / "mnistlite_flagship", {1: [99.0, 99.5], 2: [99.1, 99.3]})
    rows = load_rows(tmp_path, "ladder")
    cells = table_row(markdown_table(rows, claims=False), "mnistlite_flagship")
    assert cells[3:] == ["2", "val 99.40 ± 0.14 (n=2)", "0.109", "val 99.30", "val 99.00", "-20", "0/2 (0-84%)", "2"]
    plot_frontier(rows, tmp_path / "f.png")  # nothing on test to draw: no error
