"""`mnistlite tune`: validation-split tuning, end to end on a sliver of real MNIST."""

import json
from pathlib import Path

import pytest

from mnistlite.cli import main
from mnistlite.engine import rundir as rd
from mnistlite.tuning import rank

# One epoch on 600 images, 200 held out, one thread: seconds on a busy 2-core machine.
TINY = ["--epochs", "1", "--limit-train", "600", "--jobs", "1", "--threads", "1"]

TWO = """
[[candidates]]
name = "ref"
model = "mnistlite_3k"

[[candidates]]
name = "three"
spec = {stages = [[4], [8], [8]], transitions = [6, 8], first_padding = 1}
recipe = {max_lr = 0.1, batch_size = 64}
"""


def tuning_file(folder, candidates, budget=4999):
    f = folder / "t.toml"
    f.write_text(f"budget = {budget}\nval_size = 200\nseeds = [1]\n{candidates}")
    return f


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("tune")
    argv = ["tune", str(tuning_file(tmp, TWO)), "--out", str(tmp / "out"), "--data-dir", str(data_root), *TINY]
    return main(argv), argv, tmp / "out"


@pytest.mark.slow
def test_two_candidates_end_to_end(tuned):
    rc, _, out = tuned
    assert rc == 0
    summary = json.loads((out / "tuning.json").read_text())
    rows = {r["name"]: r for r in summary["candidates"]}
    assert set(rows) == {"ref", "three"} and sorted(r["rank"] for r in rows.values()) == [1, 2]
    for name, r in rows.items():
        run = out / name / "seed1"
        cfg = rd.read_json(run / rd.CONFIG)
        assert cfg["val_size"] == 200 and cfg["epochs"] == 1
        val = rd.read_metrics(run / rd.METRICS)[-1]["val_acc"]
        assert r["per_seed"]["1"]["final_val_acc"] == pytest.approx(val) == pytest.approx(r["mean_final_val_acc"])
        assert r["per_seed"]["1"]["device"] == "cpu" and r["per_seed"]["1"]["wall_seconds"] > 0
        assert r["macs"] > 0
    assert rows["ref"]["params"] == 3412 and rows["ref"]["recipe"] == {}
    three = rd.read_json(out / "three" / "seed1" / rd.CONFIG)
    assert three["model"].startswith("family:") and three["batch_size"] == 64 and three["max_lr"] == 0.1
    assert "test_acc" not in (out / "tuning.json").read_text()
    md = (out / "tuning.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 4 and "val s1" in table[0] and "mean val" in table[0]
    assert not any("test" in line.lower() for line in table)
    assert "Test accuracy is deliberately not shown" in md


def test_resume_skips_finished_runs(tuned, capsys):
    rc, argv, out = tuned
    results = sorted(out.glob("*/seed1/result.json"))
    before = [p.stat().st_mtime_ns for p in results]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "ref/seed1: already done" in printed and "three/seed1: already done" in printed
    assert "0 of 2 run(s) to train" in printed
    assert [p.stat().st_mtime_ns for p in results] == before


@pytest.mark.parametrize(
    "candidates, message",
    [
        (
            '[[candidates]]\nname = "big"\nspec = {stages = [[8, 16], [16, 16, 16]], transitions = [10]}\n',
            "candidate 'big': 7,766 parameters > budget 4,999",
        ),
        (
            '[[candidates]]\nname = "typo"\nmodel = "mnistlite_3k"\nrecipe = {max_lrr = 0.1}\n',
            "candidate 'typo': recipe: unknown recipe field 'max_lrr' (did you mean 'max_lr'?)",
        ),
        (
            '[[candidates]]\nname = "sep"\nspec = {stages = [[8], [12]], transitions = [8], sep_stages = 2}\n',
            "candidate 'sep': spec.sep_stages must be 0 to 1: the first stage (a 1-channel input) stays plain",
        ),
        (
            '[[candidates]]\nname = "r"\nmodel = "mnistlite_3k"\nreuse = "nowhere"\n',
            "nowhere does not exist",
        ),
        (
            '[[candidates]]\nname = "r"\nmodel = "mnistlite_3k"\nreuse = 3\n',
            "candidate 'r': `reuse` must be a folder or a list of folders, got 3",
        ),
    ],
)
def test_bad_files_fail_in_one_line_before_training(tmp_path, capsys, candidates, message):
    f = tuning_file(tmp_path, candidates)
    assert main(["tune", str(f), "--out", str(tmp_path / "out"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_reuse_links_finished_same_runs_and_trains_the_rest(tuned, tmp_path, capsys):
    """A later round names an earlier round's folders: same runs are linked, another config trains."""
    _, argv, first = tuned
    reuse = f'reuse = "{first / "ref"}"\n'
    two = (
        f'[[candidates]]\nname = "base"\nmodel = "mnistlite_3k"\n{reuse}'
        f'[[candidates]]\nname = "wd"\nmodel = "mnistlite_3k"\nrecipe = {{weight_decay = 5e-4}}\n{reuse}'
    )
    data = argv[argv.index("--data-dir") + 1]
    out = tmp_path / "round2"
    assert main(["tune", str(tuning_file(tmp_path, two)), "--out", str(out), "--data-dir", data, *TINY]) == 0
    printed = capsys.readouterr().out
    assert "base/seed1: the same run, finished in" in printed and "1 of 2 run(s) to train" in printed
    assert "wd/seed1:" in printed and "is another config (weight_decay" in printed
    linked = out / "base" / "seed1"
    assert linked.is_symlink() and not Path(linked.readlink()).is_absolute()
    assert linked.resolve() == (first / "ref" / "seed1").resolve()
    assert (out / "wd" / "seed1" / "result.json").is_file() and not (out / "wd" / "seed1").is_symlink()
    rows = {r["name"]: r for r in json.loads((out / "tuning.json").read_text())["candidates"]}
    assert rows["base"]["mean_final_val_acc"] is not None
    assert rows["base"]["per_seed"]["1"]["linked_to"] == linked.readlink().as_posix()
    assert "wd" not in {r["name"] for r in rows.values() if r["per_seed"]["1"].get("linked_to")}
    assert "- base/seed1 -> `" in (out / "tuning.md").read_text()


def test_rank_breaks_near_ties_by_params():
    rows = [
        {"name": "big", "params": 7766, "mean_final_val_acc": 99.45},
        {"name": "small", "params": 4508, "mean_final_val_acc": 99.44},  # within 0.02: the smaller wins
        {"name": "tiny", "params": 2130, "mean_final_val_acc": 99.30},
        {"name": "broken", "params": 100, "mean_final_val_acc": None},
    ]
    rank(rows)
    assert [r["rank"] for r in rows] == [2, 1, 3, None]


REPO = Path(__file__).resolve().parent.parent
TUNING_FILES = sorted((REPO / "experiments" / "tuning").glob("*.toml")) + sorted(
    (REPO / "experiments" / "search").glob("*.toml")
)


@pytest.mark.parametrize("path", TUNING_FILES, ids=lambda p: p.name)
def test_shipped_tuning_files_are_valid(path):
    """Each file loads (its candidates' model files imported), and names the nets its committed ranking ran."""
    from mnistlite.tuning_file import load_tuning

    tf = load_tuning(path)
    assert tf.candidates and all(c.params <= tf.budget for c in tf.candidates)
    ranking = REPO / "docs" / "results" / "tuning" / path.stem / "tuning.json"
    if ranking.is_file():
        committed = {r["name"]: r["params"] for r in json.loads(ranking.read_text())["candidates"]}
        assert {c.name: c.params for c in tf.candidates if c.name in committed} == {
            c.name: committed[c.name] for c in tf.candidates if c.name in committed
        }


def test_candidates_beside_their_rounds_build_with_their_stated_counts():
    """The cheap check for candidates (the registered zoo gets test_seed_zoo.py's): found through the files
    that name them, each builds, runs a batch (usercode's check) and has its stated parameter count."""
    from mnistlite.modelinfo import candidates
    from mnistlite.models import count_params

    found = candidates(REPO / "experiments")
    assert {"tiny2k_fact", "tiny2k_share5", "tiny1k_early", "search_8000"} <= {c.name for c in found}
    for c in found:
        assert c.rounds, c.name
        if c.entry.stated_params is not None:
            assert count_params(c.entry.build()) == c.entry.stated_params, c.name


def test_bn_recalibration_script_rebuilds_the_runs_split(tuned, capsys):
    """experiments/bn_recalibration.py scores a run's saved weights on the run's own validation split."""
    import importlib.util

    _, _, out = tuned
    path = Path(__file__).parent.parent / "experiments" / "bn_recalibration.py"
    spec = importlib.util.spec_from_file_location("bn_recalibration", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = out / "ref" / "seed1"
    assert script.main([str(run), "--threads", "1"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {run}"))
    saved, recal_all, recal_10k = (float(c) for c in row.strip("|").split("|")[2:])
    assert saved == pytest.approx(rd.read_metrics(run / rd.METRICS)[-1]["val_acc"], abs=0.005)
    assert 0 <= recal_all <= 100 and 0 <= recal_10k <= 100
    assert script.main([str(out / "missing")]) == 2


def test_a_tune_run_never_reads_test(tmp_path):
    """Every candidate run holds out the file's validation split, whatever the overrides say; a file
    cannot set val_size 0, and tune has no flag that reads the test set."""
    from mnistlite.cli import build_parser
    from mnistlite.errors import MnistliteError
    from mnistlite.tuning import load_tuning

    tf = load_tuning(tuning_file(tmp_path, '[[candidates]]\nname = "ref"\nmodel = "mnistlite_frontier"\n'))
    assert all(tf.config(c, 1, {"val_size": 0, "epochs": 1}).val_size == 200 for c in tf.candidates)
    bad = tmp_path / "zero.toml"
    bad.write_text('budget = 4999\nval_size = 0\n[[candidates]]\nname = "ref"\nmodel = "mnistlite_frontier"\n')
    with pytest.raises(MnistliteError, match="val_size"):
        load_tuning(bad)
    sub = build_parser()._subparsers._group_actions[0].choices["tune"]
    assert not [o for a in sub._actions for o in a.option_strings if "test" in o or "val-size" in o]
