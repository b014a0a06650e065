"""Sweeps on many workers through one Optuna study: the shared job queue under plan.execute_shared. A sweep is
a fixed list of JSON-able jobs (`make_job`); every worker, on any machine, calls `run_sweep` on the same list."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MnistliteError
from . import storage as st

KIND = "mnistlite-sweep"
JOIN_WAIT = 30.0  # seconds a joining worker waits for the creator to enqueue the jobs


def make_job(model: str, seed: int, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"model": model, "seed": int(seed), "overrides": dict(overrides or {})}


def job_key(job: Mapping[str, Any]) -> str:
    """Canonical JSON of a job: equal jobs have equal keys."""
    return json.dumps(job, sort_keys=True, separators=(",", ":"))


@dataclass
class JobOutcome:
    job: dict[str, Any]
    state: str  # COMPLETE | FAIL | PENDING (waiting or running elsewhere)
    value: float | None = None
    result: Any = None
    error: str | None = None


def open_sweep_study(storage, study_name: str, jobs: list[dict[str, Any]], log: Callable[[str], None] = print):
    """Create or join the sweep study; a joiner waits for the creator, then enqueues the jobs not WAITING,
    RUNNING or COMPLETE (so a longer list extends the sweep, and jobs that failed for good run again)."""
    optuna = st.import_optuna()
    keys = [job_key(j) for j in jobs]
    if len(set(keys)) != len(keys):
        raise MnistliteError("the sweep lists the same job twice")
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize")
        study.set_user_attr("kind", KIND)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage)
        deadline = time.monotonic() + JOIN_WAIT
        while "sweep_ready" not in study.user_attrs and time.monotonic() < deadline:
            if study.user_attrs.get("kind") not in (None, KIND):
                break
            time.sleep(0.5)
    if (kind := study.user_attrs.get("kind", KIND)) != KIND:
        raise MnistliteError(f"study {study_name!r} is a {kind}, not a sweep; choose another study name")
    st.fail_stale(study)
    from optuna.trial import TrialState

    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    present = {t.user_attrs.get("sweep_key") for t in study.get_trials(deepcopy=False, states=live)}
    missing = [(job, key) for job, key in zip(jobs, keys) if key not in present]
    for job, key in missing:
        study.enqueue_trial({}, user_attrs={"sweep_job": job, "sweep_key": key})
    study.set_user_attr("sweep_ready", True)  # an upsert: a joiner repeating it is harmless
    if missing:
        log(f"sweep {study_name}: enqueued {len(missing)} of {len(jobs)} job(s)")
    return study


def run_sweep(
    jobs: list[dict[str, Any]],
    storage,
    study_name: str,
    worker: Callable[[dict[str, Any]], Any],
    *,
    value_key: str = "value",
    poll: float = 1.0,
    log: Callable[[str], None] = print,
) -> list[JobOutcome]:
    """Run `jobs` with `worker` here, sharing them with every other worker of `study_name`; one JobOutcome per job.
    Workers claim WAITING trials atomically, in enqueue order, only for their own jobs; a second copy of a job
    (two joiners racing) is dropped when claimed (FAIL, `duplicate_of`). A dead worker's trial is failed after
    the grace period and retried once; an exception raised by `worker` marks it FAIL (not retried) and
    propagates. A worker with an empty queue waits for every job, so any can print the table."""
    storage = st.make_storage(storage)  # first: a missing optuna is a one-line error
    from optuna.trial import TrialState

    study = open_sweep_study(storage, study_name, jobs, log)
    keys = {job_key(j) for j in jobs}
    while True:
        st.fail_stale(study)
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("sweep_key") in keys]
        waiting = [t._trial_id for t in sorted(mine, key=lambda t: t.number) if t.state == TrialState.WAITING]
        if waiting:
            if (trial_id := st.claim_waiting(storage, waiting)) is not None:
                _run_claimed(study, storage, trial_id, worker, value_key, log)
            continue
        if not any(t.state == TrialState.RUNNING for t in mine):
            break
        time.sleep(poll)  # others run the last jobs; take over any whose worker dies
    return outcomes(study, jobs)


def _run_claimed(study, storage, trial_id: int, worker, value_key: str, log) -> None:
    optuna = st.import_optuna()
    from optuna.trial import TrialState

    trial = optuna.Trial(study, trial_id)
    key, job = trial.user_attrs["sweep_key"], trial.user_attrs["sweep_job"]
    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    same = [t.number for t in study.get_trials(deepcopy=False, states=live) if t.user_attrs.get("sweep_key") == key]
    earlier = [n for n in same if n < trial.number]
    t0 = time.perf_counter()
    try:
        if earlier:  # in the try too: a copy claimed but unheard of may already be failed as stale
            trial.set_user_attr("duplicate_of", min(earlier))
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return
        trial.set_user_attr("worker", st.worker_id())  # in the try: the trial may already be failed as stale
        with st.heartbeat(storage, trial_id):
            try:
                result = worker(job)
            except BaseException as e:
                if not isinstance(e, optuna.exceptions.UpdateFinishedTrialError):
                    trial.set_user_attr("error", (str(e).splitlines() or [type(e).__name__])[0][:500])
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                raise
        if isinstance(result, Mapping):
            trial.set_user_attr("result", dict(result))
            result = result.get(value_key)
        try:
            value = float(result)
        except (TypeError, ValueError):  # None, or not a number
            value = 0.0
        if study.tell(trial, value, skip_if_finished=True).state != TrialState.COMPLETE:
            raise optuna.exceptions.UpdateFinishedTrialError  # failed as stale while it trained
    except optuna.exceptions.UpdateFinishedTrialError:
        log(
            f"sweep {study.study_name}: trial {trial.number} was failed by another worker after missed "
            "heartbeats; its retry takes its place"
        )
        return
    log(f"sweep {study.study_name}: trial {trial.number} done in {time.perf_counter() - t0:.1f}s: {key}")


def outcomes(study, jobs: list[dict[str, Any]]) -> list[JobOutcome]:
    from optuna.trial import TrialState

    every = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    out = []
    for job in jobs:
        trials = [t for t in every if t.user_attrs.get("sweep_key") == job_key(job)]
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        if done:
            out.append(JobOutcome(job, "COMPLETE", done[0].value, done[0].user_attrs.get("result")))
        elif any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
            out.append(JobOutcome(job, "PENDING"))
        else:
            error = trials[-1].user_attrs.get("error") if trials else "never enqueued"
            out.append(JobOutcome(job, "FAIL", error=error))
    return out
