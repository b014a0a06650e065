"""mnistlite search: the space and its budget, the exact-count worker loop, sweeps,
and the CLI end to end on a tiny real subset with the default SQLite storage.
(Many workers on a real PostgreSQL server: tests/test_search_pg.py.)"""

from __future__ import annotations

import json
import statistics

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import FixedTrial, TrialState  # noqa: E402

from mnistlite.cli import main  # noqa: E402
from mnistlite.models import count_params as count_built  # noqa: E402
from mnistlite.models import create_model, get_entry  # noqa: E402
from mnistlite.models.family import NetSpec, build, count_params  # noqa: E402
from mnistlite.models.mnistlite_zoo import FLAGSHIP, register_spec  # noqa: E402
from mnistlite.runs.storage import make_storage, normalize_url, sqlite_url  # noqa: E402
from mnistlite.runs.sweep import job_key, make_job, run_sweep  # noqa: E402
from mnistlite.search import objective as so  # noqa: E402
from mnistlite.search import space  # noqa: E402
from mnistlite.search import study as ss  # noqa: E402
from mnistlite.search import worker as sw  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

FLAGSHIP_PARAMS = {
    "stages": 2,
    "blocks1": 2,
    "w1_1": 8,
    "w1_2": 16,
    "t1": 10,
    "blocks2": 3,
    "w2_1": 16,
    "w2_2": 16,
    "w2_3": 16,
    "first_padding": 0,
    "dropout": 0.0,
}


# --- space --------------------------------------------------------------------------


def test_suggestions_map_to_the_spec_they_name():
    spec = space.suggest_spec(FixedTrial(FLAGSHIP_PARAMS), budget=8000)
    assert spec == FLAGSHIP
    assert count_params(spec) == 7766 == count_built(build(spec))


def test_over_budget_spec_is_rejected_before_building():
    with pytest.raises(space.OverBudget) as e:
        space.suggest_spec(FixedTrial(FLAGSHIP_PARAMS), budget=7765)
    assert e.value.params == 7766


def test_every_sampled_spec_is_buildable_and_within_budget():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kept = rejected = 0
    for _ in range(300):
        trial = study.ask()
        try:
            spec = space.suggest_spec(trial, budget=8000)
        except space.OverBudget as e:
            assert e.params > 8000
            rejected += 1
        else:
            assert count_params(spec) <= 8000
            kept += 1
            if kept <= 20:  # building is the slow part; the formula is checked against it
                assert count_built(build(spec)) == count_params(spec), spec
        study.tell(trial, 0.0)
    # The space is meant to fit the budget most of the time; the sampler learns the rest.
    assert kept > rejected > 0


def test_spec_names_round_trip_and_register_idempotently():
    spec = NetSpec(stages=((6, 8), (10,)), transitions=(12,), first_padding=1, dropout=0.05)
    name = space.spec_name(spec)
    assert name.startswith("family:")
    assert space.spec_from_dict(json.loads(name[len("family:") :])) == spec
    assert space.ensure_registered(spec, {"max_lr": 0.1}) == name
    assert space.ensure_registered(spec) == name  # again: no "registered twice"
    assert get_entry(name).recipe["max_lr"] == 0.1
    assert count_built(create_model(name)) == count_params(spec)
    with pytest.raises(ValueError, match="another spec"):
        register_spec(name, NetSpec(stages=((4,), (4,)), transitions=(4,)))


def test_over_budget_trial_is_pruned_with_its_count_and_never_trains():
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(FLAGSHIP_PARAMS)
    objective = so.make_objective(ss.Protocol(budget=5000, epochs=1), data=None)  # data is never touched
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        objective(trial)
    assert trial.user_attrs["over_budget"] == 7766
    assert "recipe" not in trial.user_attrs and "max_lr" not in trial.params


# --- the worker loop ------------------------------------------------------------------


def _fake_objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    if x > 0.7:
        trial.set_user_attr("rejected", "over_budget")
        raise optuna.TrialPruned()
    trial.report(x, 1)
    if x < 0.1:
        raise optuna.TrialPruned()
    return x


@pytest.mark.slow
def test_worker_counts_trained_trials_exactly_and_resumes(tmp_path):
    storage = make_storage(sqlite_url(tmp_path / "s.db"), heartbeat_interval=None)
    study = optuna.create_study(
        storage=storage, study_name="s", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1)
    )
    assert sw.run_search_worker(study, _fake_objective, 7, log=lambda s: None) == 7
    assert len(ss.counted_trials(study)) == 7
    states = ss.state_counts(study)
    assert states.get("REJECTED", 0) > 0  # rejected configs happened and were not counted
    # A second run on the same study only tops it up to the new total.
    assert sw.run_search_worker(study, _fake_objective, 9, log=lambda s: None) == 2
    assert len(ss.counted_trials(study)) == 9


def test_study_refuses_another_protocol(tmp_path):
    from mnistlite.errors import MnistliteError

    url = sqlite_url(tmp_path / "s.db")
    ss.open_search_study(make_storage(url), "s", ss.Protocol(epochs=3))
    ss.open_search_study(make_storage(url), "s", ss.Protocol(epochs=3))  # joining is fine
    with pytest.raises(MnistliteError, match="--epochs 3 .this worker: 4."):
        ss.open_search_study(make_storage(url), "s", ss.Protocol(epochs=4))


@pytest.mark.parametrize(
    "installed, scheme",
    [({"psycopg2", "psycopg"}, "postgresql+psycopg2"), ({"psycopg"}, "postgresql+psycopg"), (set(), "postgresql")],
)
def test_postgres_urls_name_an_installed_driver(monkeypatch, installed, scheme):
    """Whichever driver is installed (none: SQLAlchemy's own default, which then says what is missing)."""
    import importlib.util

    real = importlib.util.find_spec
    drivers = {"psycopg2", "psycopg"}

    def find_spec(name, *args):
        if name in drivers:
            return object() if name in installed else None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert normalize_url("postgresql://u:pw@db.example:5432/optuna") == f"{scheme}://u:pw@db.example:5432/optuna"
    assert normalize_url("postgres://u@h/db") == f"{scheme}://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


# --- sweeps -----------------------------------------------------------------------


def test_sweep_runs_each_job_once_and_reruns_only_failures(tmp_path):
    url = sqlite_url(tmp_path / "sweep.db")
    jobs = [make_job("mnistlite_flagship", seed, {"epochs": 1}) for seed in (1, 2, 3)]
    ran: list[int] = []

    def worker(job):
        ran.append(job["seed"])
        if job["seed"] == 2 and ran.count(2) == 1:
            raise RuntimeError("boom")
        return {"final_test_acc": 90.0 + job["seed"]}

    with pytest.raises(RuntimeError, match="boom"):
        run_sweep(jobs, url, "sw", worker, value_key="final_test_acc", log=lambda s: None)
    out = run_sweep(jobs, url, "sw", worker, value_key="final_test_acc", log=lambda s: None)
    assert ran == [1, 2, 3, 2]  # seed 1 is not run again; the failed seed 2 is, after the queue
    assert [o.state for o in out] == ["COMPLETE"] * 3
    assert [o.value for o in out] == [91.0, 92.0, 93.0]
    assert out[0].result == {"final_test_acc": 91.0}
    study = optuna.load_study(study_name="sw", storage=url)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["error"] == "boom"


def test_duplicate_enqueue_runs_once(tmp_path):
    url = sqlite_url(tmp_path / "dup.db")
    job = make_job("m", 1)
    storage = make_storage(url)
    study = optuna.create_study(storage=storage, study_name="d", direction="maximize")
    study.set_user_attr("kind", "mnistlite-sweep")
    study.set_user_attr("sweep_ready", True)
    for _ in range(2):  # as if two joiners raced to enqueue the same job
        study.enqueue_trial({}, user_attrs={"sweep_job": job, "sweep_key": job_key(job)})
    calls = []
    out = run_sweep([job], storage, "d", lambda j: calls.append(j) or 1.0, log=lambda s: None)
    assert len(calls) == 1 and out[0].state == "COMPLETE"
    dropped = study.get_trials(states=(TrialState.FAIL,))
    assert len(dropped) == 1 and dropped[0].user_attrs["duplicate_of"] == 0


# --- a lost COMMIT reply: the write reached the database, the answer did not ---------------


def _lossy_storage(tmp_path, monkeypatch, lines: list):
    """A PatientRDBStorage on SQLite whose connection, while `lose` > 0, commits and then reports the
    connection lost, as a server restarted between COMMIT and its reply does."""
    import sqlite3
    import time

    from mnistlite.runs.patient_storage import PatientRDBStorage

    class Lossy(sqlite3.Connection):
        lose = 0

        def commit(self):
            super().commit()
            if Lossy.lose:
                Lossy.lose -= 1
                raise sqlite3.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(time, "sleep", lambda s: None)  # optuna's and our backoff: nothing to wait for
    url = sqlite_url(tmp_path / "lossy.db")
    kwargs = {"engine_kwargs": {"connect_args": {"factory": Lossy}}, "patience": 30, "log": lines.append}
    storage = PatientRDBStorage(url, heartbeat_interval=1, grace_period=2, **kwargs)
    return storage, Lossy


def _age_heartbeats(storage) -> None:
    """Every heartbeat an hour old: the next fail_stale judges each trial nobody beats for."""
    from datetime import datetime, timedelta

    from optuna.storages._rdb import models

    session = storage.scoped_session()
    session.query(models.TrialHeartbeatModel).update({"heartbeat": datetime.now() - timedelta(hours=1)})
    session.commit()
    session.close()


def test_a_retried_write_whose_first_try_committed_records_once(tmp_path, monkeypatch):
    """State changes, params, intermediate values and attributes, each with its reply lost once."""
    lines: list[str] = []
    storage, lossy = _lossy_storage(tmp_path, monkeypatch, lines)
    study = optuna.create_study(storage=storage, direction="maximize")
    dist = optuna.distributions.FloatDistribution(0, 1)
    tid = study.ask()._trial_id
    for write in (
        lambda: storage.set_trial_param(tid, "x", 0.5, dist),
        lambda: storage.set_trial_intermediate_value(tid, 1, 0.25),
        lambda: storage.set_trial_user_attr(tid, "worker", "w"),
        lambda: storage.set_trial_state_values(tid, TrialState.COMPLETE, [0.75]),
    ):
        lossy.lose = 1
        assert write() in (None, True)  # the complete: True, "this worker finished it", not an error
    t = storage.get_trial(tid)
    assert (t.state, t.values, t.params, t.intermediate_values) == (TrialState.COMPLETE, [0.75], {"x": 0.5}, {1: 0.25})
    assert len(storage.get_all_trials(study._study_id)) == 1
    assert lines[:2] == ["database unreachable, retrying for up to 30 s", "database back after 0.0 s"]
    # A state change someone else made is still refused: the retry looks, it does not overwrite.
    lossy.lose = 1
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(tid, TrialState.FAIL)


def test_a_trial_created_or_claimed_twice_by_a_lost_reply_is_failed_as_stale_and_never_runs(tmp_path, monkeypatch):
    """A lost reply to `create_new_trial` leaves an extra RUNNING trial (optuna itself retries the
    insert); one to a claim (WAITING -> RUNNING) leaves the claimer answered False. Either trial has
    a heartbeat from the moment it is RUNNING, so with nobody beating for it, it is failed like a dead
    worker's trial (and retried once) instead of staying RUNNING for ever."""
    storage, lossy = _lossy_storage(tmp_path, monkeypatch, [])
    study = optuna.create_study(storage=storage, direction="maximize")
    lossy.lose = 1
    held = storage.create_new_trial(study._study_id)
    orphan = [t._trial_id for t in storage.get_all_trials(study._study_id) if t._trial_id != held]
    assert len(orphan) == 1  # the first insert committed; its copy is what the worker holds
    study.enqueue_trial({})
    waiting = storage.get_all_trials(study._study_id, states=(TrialState.WAITING,))[0]._trial_id
    lossy.lose = 1
    assert storage.set_trial_state_values(waiting, TrialState.RUNNING) is False  # claimed, but not knowingly
    _age_heartbeats(storage)
    storage.record_heartbeat(held)  # the holder beats; nobody beats for the other two
    optuna.storages.fail_stale_trials(study)
    states = {t._trial_id: t.state for t in storage.get_all_trials(study._study_id)}
    assert states == {held: TrialState.RUNNING, orphan[0]: TrialState.FAIL, waiting: TrialState.FAIL}


def test_a_retry_enqueued_twice_is_trained_once(tmp_path):
    """Two WAITING copies of one failed trial (the retry's creation retried after a lost reply): the
    first copy trains, the second is dropped (FAIL, `duplicate_of`) and a new config takes its place."""
    storage = make_storage(sqlite_url(tmp_path / "twin.db"), heartbeat_interval=None)
    study = optuna.create_study(storage=storage, direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"x": 0.3}, distributions=dist))
    for _ in range(2):
        copy = optuna.trial.create_trial(state=TrialState.WAITING, params={"x": 0.3}, distributions=dist)
        copy.system_attrs["failed_trial"] = 0
        study.add_trial(copy)
    ran = []
    sw.run_search_worker(study, lambda t: ran.append(t.suggest_float("x", 0, 1)) or 1.0, 2, poll=0, log=print)
    assert ran.count(0.3) == 1 and len(ran) == 2
    trials = study.get_trials()
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs["duplicate_of"] == 1
    assert len(ss.counted_trials(study)) == 2


# --- the command, end to end (real MNIST, tiny) ------------------------------------------


@pytest.mark.slow
def test_search_cli_default_storage_show_and_retrain(data_root, tmp_path, capsys):
    out = tmp_path / "search"
    common = [
        "search",
        "--epochs",
        "1",
        "--limit-train",
        "1000",
        "--val-size",
        "500",
        "--out",
        str(out),
        "--data-dir",
        str(data_root),
        "--sampler-seed",
        "0",
    ]
    assert main([*common, "--trials", "2"]) == 0
    assert (out / "search.db").is_file()
    study = optuna.load_study(study_name="search-8000", storage=sqlite_url(out / "search.db"))
    counted = ss.counted_trials(study)
    assert len(counted) == 2
    for t in study.get_trials():
        # Validation only: no test number anywhere in the study.
        assert "test" not in json.dumps(t.user_attrs).lower()
        assert "test" not in json.dumps(t.system_attrs).lower()
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["params"] <= 8000
            assert t.value == t.intermediate_values[1]  # the objective is the final val acc

    assert main([*common, "--show", "--retrain-best", "--seeds", "2", "--retrain-limit-train", "1000"]) == 0
    text = capsys.readouterr().out
    assert "val %" in text and "test accuracy over 2 seed(s)" in text
    report = json.loads((out / "best_trials.json").read_text())
    assert report["counted_trials"] == 2 and report["best_trials"][0]["value_val_acc"] == study.best_value
    assert "test" not in json.dumps(report["best_trials"]).lower()
    assert (out / "history.png").stat().st_size > 1000
    retrain = json.loads((out / "retrain_best.json").read_text())
    accs = [s["final_test_acc"] for s in retrain["seeds"]]
    assert [s["seed"] for s in retrain["seeds"]] == [1, 2]
    assert retrain["mean_test_acc"] == pytest.approx(statistics.fmean(accs))
    assert retrain["std_test_acc"] == pytest.approx(statistics.stdev(accs))
    assert retrain["config"]["val_size"] == 0 and retrain["trial"] == study.best_trial.number
    assert accs[0] != accs[1]  # the seeds really differ

    # Again: the finished seeds are reused (runs/plan.py's same-run rule), not an error, not retrained.
    before = {p: p.stat().st_mtime_ns for p in (out / "retrain-best").rglob("model.pt")}
    assert main([*common, "--retrain-best", "--seeds", "2", "--retrain-limit-train", "1000"]) == 0
    assert "seed 1: already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "retrain-best").rglob("model.pt")} == before
    assert json.loads((out / "retrain_best.json").read_text())["seeds"] == retrain["seeds"]
    # Another config in a seed's folder (here: more epochs) is moved aside, never deleted.
    assert (
        main([*common, "--retrain-best", "--seeds", "1", "--retrain-epochs", "2", "--retrain-limit-train", "1000"]) == 0
    )
    assert len(list((out / "retrain-best").glob("seed1.old-*"))) == 1
    assert json.loads((out / "retrain_best.json").read_text())["config"]["epochs"] == 2
    # With --storage the seeds are the jobs of one shared sweep (plan.execute_shared) in that storage.
    shared = tmp_path / "shared"
    url = sqlite_url(out / "search.db")
    argv = [str(shared) if a == str(out) else a for a in common]
    assert main([*argv, "--storage", url, "--retrain-best", "--seeds", "1", "--retrain-limit-train", "1000"]) == 0
    assert optuna.load_study(study_name="search-8000-retrain-best", storage=url).trials[0].state == TrialState.COMPLETE
    assert json.loads((shared / "retrain_best.json").read_text())["seeds"][0]["final_test_acc"] == accs[0]


def test_search_trials_never_score_the_test_split(data_root, monkeypatch):
    import mnistlite.engine as engine

    protocol = ss.Protocol(val_size=200, limit_train=500, epochs=1)
    data = so.load_search_data(protocol, data_dir=str(data_root))
    assert len(data.val) == 200 and len(data.train) == 500
    runs = []
    real_train = engine.train

    def recording_train(cfg, **kw):
        runs.append(real_train(cfg, **kw))
        return runs[-1]

    monkeypatch.setattr(engine, "train", recording_train)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(FLAGSHIP_PARAMS)
    trial = study.ask()
    value = so.make_objective(protocol, data, run={"threads": 1})(trial)
    assert len(runs) == 1 and value == runs[0].metrics[-1]["val_acc"]
    assert not any(k.startswith("test_") for r in runs[0].metrics for k in r)
    assert "final_test_acc" not in runs[0].summary


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--val-size", "0"], "--val-size must be at least 1"),
        (["--show"], "no study named 'search-8000'"),
        (["--trials", "1", "--storage", "nosuchdb://x"], "cannot open storage"),
    ],
)
def test_search_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main(["search", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-5", "abc", "inf", "nan"])
def test_storage_patience_must_be_a_positive_number(capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["search", "--storage-patience", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--storage-patience" in err and "positive number of seconds" in err
