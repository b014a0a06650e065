"""The search worker loop: trials until the study holds exactly n_trials counted ones, over all its workers
(why exact: docs/search.md, "What counts as a trial"). A dead worker's RUNNING trial loses its heartbeat;
another worker fails it and the retry callback re-enqueues it once (runs/storage.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import MnistliteError
from ..runs import storage as st
from .study import is_counted

MAX_REJECTED_IN_A_ROW = 500


def run_search_worker(
    study, objective: Callable, n_trials: int, *, timeout: float | None = None, poll: float = 2.0, log: Callable = print
) -> int:
    """Run trials until the study holds `n_trials` counted ones (over all workers); returns how many it trained."""
    optuna = st.import_optuna()
    from optuna.trial import TrialState

    storage = study._storage  # for the heartbeat thread
    t_start = time.monotonic()
    trained = rejected_in_a_row = 0
    while True:
        if timeout is not None and time.monotonic() - t_start > timeout:
            log(f"timeout: {timeout:g}s passed; this worker starts no more trials")
            break
        st.fail_stale(study)
        trials = study.get_trials(deepcopy=False)
        done = sum(map(is_counted, trials))
        if done >= n_trials:
            break
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and done + running >= n_trials:
            time.sleep(poll)  # others hold the last trials; wait in case one of them dies
            continue
        trial = study.ask()
        trials = study.get_trials(deepcopy=False)
        # Live trials before this one; a WAITING one too (a retry another worker is claiming): left out,
        # it and this trial could both run for the last slot (seen under load in CI).
        live = (TrialState.RUNNING, TrialState.WAITING)
        ahead = [t for t in trials if t.number < trial.number and (is_counted(t) or t.state in live)]
        # A retry enqueued twice (its creation's reply lost in an outage) runs once: the first copy.
        origin = next(t for t in trials if t.number == trial.number).system_attrs.get("failed_trial")
        twin = [t.number for t in ahead if origin is not None and t.system_attrs.get("failed_trial") == origin]
        state, value, note = TrialState.COMPLETE, None, ""
        try:
            if len(ahead) >= n_trials or twin:
                trial.set_user_attr(*(("duplicate_of", twin[0]) if twin else ("surplus", True)))
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                time.sleep(poll)
                continue
            trial.set_user_attr("worker", st.worker_id())
            with st.heartbeat(storage, trial._trial_id):
                try:
                    value = objective(trial)
                except optuna.TrialPruned as e:
                    state, note = TrialState.PRUNED, str(e)
                except optuna.exceptions.UpdateFinishedTrialError:
                    raise
                except BaseException:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                    raise
            if study.tell(trial, value, state=state, skip_if_finished=True).state != state:
                raise optuna.exceptions.UpdateFinishedTrialError  # failed as stale before this report
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker failed this trial as stale (missed heartbeats: the machine stalled, or
            # the database was away, for longer than the grace period); its retry runs it.
            log(f"trial {trial.number}: failed by another worker after missed heartbeats; its retry takes its place")
            continue
        attrs = trial.user_attrs
        if "rejected" in attrs:
            rejected_in_a_row += 1
            if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                raise MnistliteError(f"{MAX_REJECTED_IN_A_ROW} configs in a row were over budget; raise --budget")
            continue
        rejected_in_a_row = 0
        trained += 1
        where = f"{attrs.get('params', 0):,} params, {attrs.get('arch', '')}"
        if state == TrialState.COMPLETE:
            log(f"trial {trial.number}: val {value:.2f}% ({where}) in {attrs.get('seconds', 0):.1f}s")
        else:
            log(f"trial {trial.number}: pruned, {note} ({where})")
    return trained
