"""Many workers, one study, a real PostgreSQL server (Debian's packages, on loopback).

The server is initdb'ed into a temporary folder and started on a free port for
this module only; as root it runs as the `postgres` system user the package
creates. Where PostgreSQL or psycopg2 is missing, or the server cannot start,
every test here skips and says why.

Workers are separate processes (subprocess), as on separate machines: they
share nothing but the database URL.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
psycopg2 = pytest.importorskip("psycopg2")

pytestmark = pytest.mark.pg

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def _server_user() -> dict:
    """Popen/run arguments that run a server tool as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run the server as")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": {"PATH": "/usr/bin:/bin"}}


def _initdb(prefix: str) -> tuple[Path, Path, dict]:
    """(PostgreSQL's bin folder, a fresh temporary root with an initdb'ed root/data, the user the server
    runs as), or a skip."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL not installed (apt-get install postgresql; .ci/run does it)")
    as_user = _server_user()
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        capture_output=True,
        text=True,
        cwd=root,
        **as_user,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
    return bindir, root, as_user


@pytest.fixture(scope="module")
def pg_url():
    # As root the server must run as an unprivileged user: Popen(user=...) switches
    # before exec, so the Popen pid IS the postmaster and stopping it is direct.
    bindir, root, as_user = _initdb("mnistlite-pg-")
    data = root / "data"
    port = _free_port()
    server = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(root),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            "fsync=off",
            "-c",
            "max_connections=100",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=root,
        **as_user,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"PostgreSQL did not start (exit {server.poll()})")
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mnistlite_test")
        conn.close()
        # The bare scheme, as a user types it; the storage layer picks the installed driver.
        yield f"postgresql://postgres@127.0.0.1:{port}/mnistlite_test"
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


def _load(url: str, name: str):
    from mnistlite.runs.storage import normalize_url

    return optuna.load_study(study_name=name, storage=normalize_url(url))


def _storage(url: str, heartbeat: int = 1):
    from mnistlite.runs.storage import make_storage

    return make_storage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat)


# The fake workers beat every second and judge a trial dead 5 s after its last beat. Not
# 2 s: the kill test failed once in a full run on 2 cores, which fits a loaded, live worker
# stalling past 2 s and being failed as dead (an extra FAIL with params, and a retry).
# A sweep worker: jobs that sleep `seconds` and report who ran them.
SWEEP_WORKER = textwrap.dedent("""
    import os, pathlib, sys, time
    from mnistlite.runs.storage import make_storage
    from mnistlite.runs.sweep import make_job, run_sweep
    url, study, n_jobs, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if len(sys.argv) > 5:  # barrier: start only once the other worker is up too
        barrier = pathlib.Path(sys.argv[5])
        (barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    jobs = [make_job("fake", seed, {"lr": 0.1}) for seed in range(n_jobs)]
    def worker(job):
        time.sleep(seconds)
        return {"value": job["seed"], "square": job["seed"] ** 2}
    run_sweep(jobs, make_storage(url, heartbeat_interval=1, grace_period=5), study, worker, poll=0.3)
""")

# A search worker with a fake objective (the real one is covered below): same loop.
SEARCH_WORKER = textwrap.dedent("""
    import sys, time, optuna
    from mnistlite.runs.storage import make_storage
    from mnistlite.search.worker import run_search_worker
    url, name, n_trials, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    storage = make_storage(url, heartbeat_interval=1, grace_period=5)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if x > 0.8:  # stands in for an over-budget config: rejected at once, not counted
            trial.set_user_attr("rejected", "over_budget")
            raise optuna.TrialPruned()
        time.sleep(seconds)
        return x
    run_search_worker(study, objective, n_trials, poll=0.3)
""")


def _spawn(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=ENV,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 90) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # a hung worker fails the test instead of outliving it
        out, _ = proc.communicate()
        raise AssertionError(f"worker did not finish in {timeout}s:\n{out}") from None
    assert proc.returncode == 0, out
    return out


def _wait_for_running(url: str, study_name: str, timeout: float = 30):
    """The first trial seen RUNNING that will run for seconds (not a rejected fake config)."""
    from optuna.trial import TrialState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            study = _load(url, study_name)
            running = [
                t
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if "sweep_key" in t.user_attrs or t.params.get("x", 1.0) <= 0.8
            ]
            if running:
                time.sleep(0.3)  # well inside the trial's sleep: the kill lands mid-trial
                return running[0]
        except KeyError:
            pass
        time.sleep(0.1)
    raise AssertionError("no trial started running")


def _sweep_trials_by_key(study):
    from optuna.trial import TrialState

    complete: dict[str, list[int]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        complete.setdefault(t.user_attrs["sweep_key"], []).append(t.number)
    return complete


def test_two_sweep_workers_run_each_job_exactly_once(pg_url, tmp_path):
    from optuna.trial import TrialState

    a = _spawn(SWEEP_WORKER, pg_url, "sweep-two", 10, 0.8, tmp_path)
    b = _spawn(SWEEP_WORKER, pg_url, "sweep-two", 10, 0.8, tmp_path)
    _finish(a), _finish(b)
    study = _load(pg_url, "sweep-two")
    complete = _sweep_trials_by_key(study)
    assert len(complete) == 10
    assert all(len(nums) == 1 for nums in complete.values()), complete  # nothing ran twice
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["result"]["square"] for t in done) == [s * s for s in range(10)]
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, workers  # the work was shared
    # Anything not COMPLETE is a dropped duplicate enqueue, never a second run.
    assert all("duplicate_of" in t.user_attrs for t in trials if t.state == TrialState.FAIL)


def test_killed_sweep_worker_job_is_failed_then_retried_once(pg_url):
    from optuna.trial import TrialState

    from mnistlite.runs.sweep import make_job, run_sweep

    victim = _spawn(SWEEP_WORKER, pg_url, "sweep-kill", 6, 3.0)
    try:
        running = _wait_for_running(pg_url, "sweep-kill")
    finally:
        victim.send_signal(signal.SIGKILL)  # mid-trial: no chance to tell the study anything
        victim.wait(timeout=10)
    survivor = _spawn(SWEEP_WORKER, pg_url, "sweep-kill", 6, 0.3)
    _finish(survivor)

    study = _load(pg_url, "sweep-kill")
    killed = study.get_trials(deepcopy=False)[running.number]
    assert killed.state == TrialState.FAIL
    retries = [t for t in study.get_trials(deepcopy=False) if t.system_attrs.get("failed_trial") == running.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs["sweep_key"] == killed.user_attrs["sweep_key"]
    complete = _sweep_trials_by_key(study)
    assert len(complete) == 6 and all(len(v) == 1 for v in complete.values())

    # The study stays usable: a new job added by a later call runs to completion.
    jobs = [make_job("fake", seed, {"lr": 0.1}) for seed in range(6)] + [make_job("fake", 99)]
    out = run_sweep(jobs, _storage(pg_url), "sweep-kill", lambda job: {"value": 1.0}, log=lambda s: None)
    assert [o.state for o in out] == ["COMPLETE"] * 7
    assert out[-1].result == {"value": 1.0}


def test_killed_search_worker_trial_count_stays_exact(pg_url):
    from optuna.trial import TrialState

    from mnistlite.search.study import counted_trials

    victim = _spawn(SEARCH_WORKER, pg_url, "search-kill", 6, 3.0)
    try:
        running = _wait_for_running(pg_url, "search-kill")
    finally:
        victim.send_signal(signal.SIGKILL)  # mid-trial: no chance to tell the study anything
        victim.wait(timeout=10)
    a = _spawn(SEARCH_WORKER, pg_url, "search-kill", 6, 0.4)
    b = _spawn(SEARCH_WORKER, pg_url, "search-kill", 6, 0.4)
    _finish(a), _finish(b)

    study = _load(pg_url, "search-kill")
    trials = study.get_trials(deepcopy=False)
    table = "\n".join(  # shown with a failure: which trials raced
        f"{t.number} {t.state.name} {sorted(t.user_attrs)} retry of {t.system_attrs.get('failed_trial')} "
        f"{t.datetime_start} to {t.datetime_complete}"
        for t in trials
    )
    assert len(counted_trials(study)) == 6, table  # exact, though one worker died and two raced
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    killed = trials[running.number]
    assert killed.state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == running.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == killed.params  # the same config, run again
    # Every other FAIL is a lost race for the last slot (no params, never trained).
    others = [t for t in trials if t.state == TrialState.FAIL and t.number != running.number]
    assert all(t.user_attrs.get("surplus") and not t.params for t in others)


@contextmanager
def _killed_after(procs: list[subprocess.Popen]) -> Iterator[list[subprocess.Popen]]:
    """The workers, killed on the way out of the block if they are still running (a failed assertion)."""
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _two_workers(cmd: list[str], tmp_path: Path, sampler_seeds: bool = True) -> list[subprocess.Popen]:
    """Two processes on one study, as on two machines: own folders (`search`: own sampler seeds)."""
    return [
        subprocess.Popen(
            [*cmd, "--out", str(tmp_path / f"w{i}"), *(["--sampler-seed", str(i)] if sampler_seeds else [])],
            env=ENV,
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]


def test_two_cli_search_workers_share_one_study(pg_url, data_root, tmp_path):
    from optuna.trial import TrialState

    from mnistlite.search.study import counted_trials

    cmd = [
        sys.executable,
        "-m",
        "mnistlite",
        "search",
        "--storage",
        pg_url,
        "--study",
        "cli-two",
        "--trials",
        "4",
        "--epochs",
        "1",
        "--limit-train",
        "4000",
        "--val-size",
        "500",
        "--data-dir",
        str(data_root),
        "--heartbeat",
        "5",
        "--startup-trials",
        "2",
    ]
    procs = _two_workers(cmd, tmp_path)
    outs = [_finish(p, timeout=180) for p in procs]
    study = _load(pg_url, "cli-two")
    assert len(counted_trials(study)) == 4, outs
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    # Above chance: 4,000 images x 1 epoch is enough for that. (500 was not: a few
    # steps leave BatchNorm's running statistics near their initial values, and in
    # one CI run all four trials scored exactly chance on validation; with 2,000 and
    # unseeded samplers it happened again on 2026-12-03. Each worker's sampler is seeded now.)
    assert study.best_value > 10.0
    # Nothing about the test set is in the study.
    for t in study.get_trials(deepcopy=False):
        assert "test" not in repr(t.user_attrs).lower()
    # A worker with another protocol is refused, in one line.
    bad_cmd = [*cmd, "--out", str(tmp_path / "w3")]
    bad_cmd[bad_cmd.index("--epochs") + 1] = "2"
    bad = subprocess.run(bad_cmd, env=ENV, cwd=REPO, text=True, capture_output=True)
    assert bad.returncode == 2
    assert "was started with --epochs 1" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# --- Chaos: the server restarted under two real `mnistlite search` workers -------------------------


class _CtlServer:
    """A PostgreSQL server of its own, run by pg_ctl so that the test can restart it."""

    def __init__(self, bindir: Path, root: Path, as_user: dict):
        self.bindir, self.root, self.as_user = bindir, root, as_user
        self.data = root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/mnistlite_test"

    def ctl(self, *args: str, port: int | None = None, timeout: float = 60) -> None:
        opts = f"-k {self.root} -h 127.0.0.1 -p {port or self.port} -c fsync=off -c max_connections=100"
        done = subprocess.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", opts, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            timeout=timeout,
            **self.as_user,
        )
        assert done.returncode == 0, f"pg_ctl {' '.join(args)}: {done.stderr}"


@pytest.fixture
def restartable_pg():
    """Its own server (not pg_url's): restarting it disturbs no other test."""
    server = _CtlServer(*_initdb("mnistlite-pgchaos-"))
    try:
        server.ctl("start")
        conn = psycopg2.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mnistlite_test")
        conn.close()
        yield server
    finally:
        try:
            server.ctl("stop", "-m", "immediate")
        except (AssertionError, subprocess.TimeoutExpired):
            pass  # never started, or already gone
        shutil.rmtree(server.root, ignore_errors=True)


def _wait_for_state(url: str, study_name: str, pred, timeout: float = 60) -> None:
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred(_load(url, study_name).get_trials(deepcopy=False)):
                return
        except (KeyError, optuna.exceptions.StorageInternalError, OperationalError):
            pass  # no study yet, or the server between restarts
        time.sleep(0.2)
    raise AssertionError(f"study {study_name} never reached the awaited state")


# The faults land at random moments within training (seeded: MNISTLITE_CHAOS_SEED=N repeats a run);
# what the tests assert must hold wherever they land.
CHAOS_SEED = int(os.environ.get("MNISTLITE_CHAOS_SEED") or random.randrange(10**6))
CHAOS = random.Random(CHAOS_SEED)


def _training_after(n_complete: int, n_trials: int):
    """The study holds `n_complete` completed trials and a worker is training another (or it is done)."""
    from optuna.trial import TrialState

    def ready(trials) -> bool:
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
        return (len(done) >= n_complete and bool(running)) or len(done) >= n_trials

    return ready


def _no_traceback(outs: list[str]) -> None:
    for out in outs:
        assert "Traceback" not in out, out


def _counted_once(study, n_trials: int, outs) -> list:
    """Exactly `n_trials` counted trials, none left RUNNING or WAITING, no config counted twice, and a
    config run again only as a stale trial's retry, the stale one FAIL (its holder recorded nothing)."""
    from optuna.trial import TrialState

    from mnistlite.search.study import counted_trials

    trials = study.get_trials(deepcopy=False)
    counted = counted_trials(study)
    assert len(counted) == n_trials, outs
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], outs
    retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    assert all(trials[n].state == TrialState.FAIL and trials[n].value is None for n in retried), outs
    assert len({repr(sorted(t.params.items())) for t in counted}) == n_trials, outs
    return trials


@pytest.mark.slow
def test_two_search_workers_ride_through_postgres_restarts(restartable_pg, data_root, tmp_path):
    """`pg_ctl restart -m fast`, then `-m immediate`, then 20 s down, each while trials train: both
    workers exit 0 without a traceback, and the study holds exactly the requested trials, none twice.
    A 25 s heartbeat (50 s grace) outlasts the last beat before an outage plus the outage itself, so
    every trial that was training reports its own result: none is failed as stale and retried.
    Then `search --show`, started while the server is down, waits for it and prints."""
    from optuna.trial import TrialState

    from mnistlite.search.study import counted_trials

    url, name, n_trials = restartable_pg.url, "chaos", 4
    cmd = [sys.executable, "-m", "mnistlite", "search", "--storage", url, "--study", name]
    cmd += ["--trials", str(n_trials), "--epochs", "2", "--limit-train", "3000", "--val-size", "500"]
    cmd += ["--data-dir", str(data_root), "--heartbeat", "25", "--startup-trials", "2", "--pruner", "none"]
    cmd += ["--storage-patience", "60"]
    print(f"chaos moments: MNISTLITE_CHAOS_SEED={CHAOS_SEED}")  # shown with a failure
    with _killed_after(_two_workers(cmd, tmp_path)) as procs:
        _wait_for_state(url, name, _training_after(0, n_trials))
        time.sleep(CHAOS.uniform(0.2, 2.0))  # somewhere inside the trial's training
        restartable_pg.ctl("restart", "-m", "fast")
        _wait_for_state(url, name, _training_after(1, n_trials))
        time.sleep(0.5)
        restartable_pg.ctl("restart", "-m", "immediate")  # a crash: recovery on start
        _wait_for_state(url, name, _training_after(2, n_trials))
        restartable_pg.ctl("stop", "-m", "fast")
        time.sleep(20.0)  # down for 20 s: heartbeats, trial reports and new trials meet a closed port
        restartable_pg.ctl("start")
        outs = [_finish(p, timeout=180) for p in procs]
    print(*outs, sep="\n----\n")  # shown by pytest -s or on failure
    _no_traceback(outs)
    study = _load(url, name)
    trials = _counted_once(study, n_trials, outs)
    assert all(t.state == TrialState.COMPLETE for t in counted_trials(study)), outs  # --pruner none
    assert not [t for t in trials if t.state == TrialState.FAIL and "surplus" not in t.user_attrs], outs  # none stale
    assert all(out.count("database unreachable") >= 1 for out in outs), outs  # each worker saw an outage

    restartable_pg.ctl("stop", "-m", "fast")
    show = subprocess.Popen(
        [*cmd[:8], "--show", "--out", str(tmp_path / "show"), "--storage-patience", "60"],
        env=ENV,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    first = show.stdout.readline()  # the command has met the closed port (or failed)
    restartable_pg.ctl("start")
    out = first + _finish(show, timeout=120)
    assert first == "database unreachable, retrying for up to 60 s\n" and "Traceback" not in out, out
    assert f"study {name}: {n_trials} complete" in out and "database back after" in out, out
    assert (tmp_path / "show" / "best_trials.json").exists()


@pytest.mark.slow
def test_a_trial_held_through_an_outage_beyond_its_grace_is_recorded_once(restartable_pg):
    """Fake-objective workers (1 s heartbeat, 5 s grace), the server down 7 s while trials sleep. It
    comes back first on another port, where a third party (the test, as a worker on the far side of a
    network split would) fails the stale trials and enqueues their retries; then on the workers' port.
    The workers that held those trials must not record them: their reports are refused (one line, no
    traceback), and each retry runs once."""
    from optuna.trial import TrialState

    from mnistlite.runs.storage import fail_stale

    url, name, n_trials = restartable_pg.url, "beyond-grace", 4
    with _killed_after([_spawn(SEARCH_WORKER, url, name, n_trials, 3.0) for _ in range(2)]) as procs:
        _wait_for_state(
            url, name, lambda ts: any(t.state == TrialState.RUNNING and t.params.get("x", 1) <= 0.8 for t in ts)
        )
        restartable_pg.ctl("stop", "-m", "fast")
        time.sleep(7.0)  # the trials' sleeps end inside the outage; their last beats age past the grace
        side = _free_port()
        restartable_pg.ctl("start", port=side)
        side_url = url.replace(f":{restartable_pg.port}/", f":{side}/")
        stale = [t.number for t in _load(side_url, name).get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        fail_stale(optuna.load_study(study_name=name, storage=_storage(side_url, heartbeat=1)))
        restartable_pg.ctl("restart", "-m", "fast")  # back on the workers' port
        outs = [_finish(p, timeout=120) for p in procs]
    print(*outs, sep="\n----\n")
    _no_traceback(outs)
    trials = _counted_once(_load(url, name), n_trials, outs)
    assert stale and all(trials[n].state == TrialState.FAIL for n in stale), (stale, outs)
    for n in stale:
        if trials[n].params.get("x", 1.0) <= 0.8:  # a trial that was training (not a rejected config)
            assert f"trial {n}: failed by another worker after missed heartbeats" in "".join(outs), outs
            retries = [t for t in trials if t.system_attrs.get("failed_trial") == n]
            assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE, outs


EXPERIMENT_TOML = """title = "chaos"
seeds = [1, 2]
[defaults]
epochs = 1
val_size = 200
[[steps]]
name = "a"
model = "mnistlite8k_model3"
target = ["t"]
[[steps]]
name = "b"
model = "mnistlite8k_model2"
target = ["t"]
"""


def _sweep_workers(kind: str, url: str, data_root: Path, tmp_path: Path) -> tuple[list[str], str, int, str]:
    """(command without --out, sweep study, jobs, the file each worker's --out folder ends with) of a
    `seeds`, `experiment` or `search --retrain-best` sweep shared through `url`."""
    data = ["--limit-train", "1000", "--data-dir", str(data_root), "--storage", url, "--storage-patience", "60"]
    mnistlite = [sys.executable, "-m", "mnistlite"]
    if kind == "seeds":
        cmd = [*mnistlite, "seeds", "mnistlite8k_model3", "--seeds", "4", "--epochs", "1", "--threads", "1"]
        return [*cmd, *data, "--study", "chaos-seeds"], "chaos-seeds", 4, "consistency.json"
    if kind == "experiment":
        toml = tmp_path / "chaos.toml"
        toml.write_text(EXPERIMENT_TOML)
        return [*mnistlite, "experiment", str(toml), *data, "--study", "chaos-exp"], "chaos-exp", 4, "report.md"
    # --retrain-best: a one-trial search first, then two workers share its retraining seeds
    search = [*mnistlite, "search", "--study", "chaos-s", "--trials", "1", "--epochs", "1", "--val-size", "200"]
    done = subprocess.run([*search, *data, "--out", str(tmp_path / "s")], env=ENV, cwd=REPO, capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    cmd = [*search[:6], "--trials", "0", "--retrain-best", "--seeds", "3", "--retrain-limit-train", "1000"]
    return [*cmd, *data], "chaos-s-retrain-best", 3, "retrain_best.json"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["seeds", "experiment", "retrain-best"])
def test_two_sweep_workers_ride_through_postgres_restarts(kind, restartable_pg, data_root, tmp_path):
    """Two sweep workers (`seeds`, `experiment` or `search --retrain-best` with `--storage`), a fast
    and an immediate restart while jobs train: both exit 0 without a traceback, every job is trained
    exactly once, and both workers write the sweep's result."""
    from optuna.trial import TrialState

    url = restartable_pg.url
    cmd, name, jobs, result = _sweep_workers(kind, url, data_root, tmp_path)
    print(f"chaos moments: MNISTLITE_CHAOS_SEED={CHAOS_SEED}")  # shown with a failure
    with _killed_after(_two_workers(cmd, tmp_path, sampler_seeds=False)) as procs:
        _wait_for_state(url, name, _training_after(0, jobs))
        time.sleep(CHAOS.uniform(0.1, 1.5))
        restartable_pg.ctl("restart", "-m", "fast")
        _wait_for_state(url, name, _training_after(1, jobs))
        time.sleep(CHAOS.uniform(0.0, 1.0))
        restartable_pg.ctl("restart", "-m", "immediate")
        outs = [_finish(p, timeout=180) for p in procs]
    _no_traceback(outs)
    trials = _load(url, name).get_trials(deepcopy=False)
    ran = [t.user_attrs["sweep_key"] for t in trials if "worker" in t.user_attrs]
    assert len(ran) == len(set(ran)) == jobs, outs  # each job trained once, by one worker
    assert all(t.state == TrialState.COMPLETE for t in trials if "worker" in t.user_attrs), outs
    for i in range(2):
        assert list((tmp_path / f"w{i}").rglob(result)), outs


@pytest.mark.slow
def test_storage_waits_out_an_outage_then_gives_up_past_its_patience(restartable_pg, capsys):
    """One line when the server goes away, one when it is back, also when the storage is opened while
    the server is down; past the patience a one-line MnistliteError (the CLI's exit 2)."""
    import threading

    from mnistlite.errors import MnistliteError
    from mnistlite.runs.storage import make_storage

    restartable_pg.ctl("stop", "-m", "fast")
    starter = threading.Timer(2.0, restartable_pg.ctl, args=("start",))
    starter.start()
    try:
        storage = make_storage(restartable_pg.url, heartbeat_interval=5, patience=30)  # opened while down
    finally:
        starter.join()
    opened = capsys.readouterr().out.splitlines()
    assert opened[0] == "database unreachable, retrying for up to 30 s" and len(opened) == 2, opened
    assert opened[1].startswith("database back after ")

    lines: list[str] = []
    storage._log = lines.append
    study = optuna.create_study(storage=storage, study_name="patience")
    study.enqueue_trial({"x": 1.0})
    restartable_pg.ctl("stop", "-m", "fast")
    starter = threading.Timer(2.0, restartable_pg.ctl, args=("start",))
    starter.start()
    try:
        t0 = time.monotonic()
        assert len(storage.get_all_trials(study._study_id)) == 1  # waited, then answered
        assert time.monotonic() - t0 >= 1.5
    finally:
        starter.join()
    assert len(lines) == 2, lines
    assert lines[0] == "database unreachable, retrying for up to 30 s"
    assert lines[1].startswith("database back after ")

    storage.patience = 1.0
    restartable_pg.ctl("stop", "-m", "fast")
    t0 = time.monotonic()
    with pytest.raises(MnistliteError, match=r"database unreachable for 1 s \(--storage-patience\)") as e:
        storage.get_all_trials(study._study_id)
    assert 1.0 <= time.monotonic() - t0 < 10
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_a_wrong_database_or_user_fails_at_once_and_a_refused_connection_is_waited_for(pg_url, capsys):
    """A database or user that does not exist is no outage: one line at once, exit 2. Nothing
    listening on the port is one: waited for up to the patience, then one line."""
    from mnistlite.cli import main
    from mnistlite.errors import MnistliteError
    from mnistlite.runs.storage import make_storage

    no_db = pg_url.rsplit("/", 1)[0] + "/nosuchdb"
    assert main(["search", "--show", "--storage", no_db, "--study", "x"]) == 2
    out, err = capsys.readouterr()
    assert 'database "nosuchdb" does not exist' in err and len(err.strip().splitlines()) == 1, err
    assert "unreachable" not in out + err  # not taken for an outage
    with pytest.raises(MnistliteError, match='role "nobody" does not exist'):
        make_storage(pg_url.replace("postgres@", "nobody@"), patience=30)
    assert "unreachable" not in capsys.readouterr().out
    with pytest.raises(MnistliteError, match=r"database unreachable for 1 s \(--storage-patience\)") as e:
        make_storage(f"postgresql://postgres@127.0.0.1:{_free_port()}/x", patience=1)
    assert "\n" not in str(e.value)
    assert capsys.readouterr().out == "database unreachable, retrying for up to 1 s\n"
