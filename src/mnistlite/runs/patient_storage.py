"""An RDBStorage whose calls wait out a database restart or outage of up to `patience` seconds: a call
whose connection died is retried in a fresh session (optuna opens one per call, so nothing half-done is
replayed). Only connection errors are retried; the cases: docs/reliability.md, "Shared database"."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import event, func
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect

from ..errors import MnistliteError

# Every storage call that reaches the database: BaseStorage's methods, the heartbeat ones, and the private ones
# Optuna's _CachedStorage calls on its backend. A call made from inside another is retried by the outermost one only.
RETRIED = """
create_new_study delete_study set_study_user_attr set_study_system_attr get_study_id_from_name get_study_name_from_id
get_study_directions get_study_user_attrs get_study_system_attrs get_all_studies create_new_trial set_trial_param
get_trial_param set_trial_state_values set_trial_intermediate_value set_trial_user_attr set_trial_system_attr
get_trial_id_from_study_id_trial_number get_trial_number_from_id get_trial_params get_trial_user_attrs
get_trial_system_attrs get_trial get_all_trials get_n_trials get_best_trial check_trial_is_updatable record_heartbeat
_get_stale_trial_ids _create_new_trial _get_best_trial_id _get_trials _set_trial_param
""".split()

BACKOFF_FIRST = 0.1  # seconds before the first retry; doubled each time up to BACKOFF_MAX
BACKOFF_MAX = 1.0  # short: a trial's heartbeat must get through soon after the database is back

_TRANSIENT = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.PendingRollbackError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    ConnectionError,
)
# Connection errors no wait cures: a wrong database, user, password or host name (libpq's words).
_FOR_GOOD = ("does not exist", "authentication failed", "no password supplied", "pg_hba.conf", "translate host")


def is_transient(e: BaseException | None) -> bool:
    """True when `e`, or an exception it was raised from, says the connection or server went away."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, _TRANSIENT):
            return not any(w in str(e) for w in _FOR_GOOD)
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        e = e.__cause__ or e.__context__
    return False


def _first_line(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _quiet_connection_fallback(record: logging.LogRecord) -> bool:
    """Drops Optuna's warning that it falls back to a slower query when the connection went away: the outage's line."""
    msg = record.getMessage().lower()
    gone = ("server closed the connection", "terminating connection", "connection refused", "shutting down")
    return not (msg.startswith("caught an error from sqlalchemy") and any(w in msg for w in gone))


logging.getLogger("optuna.storages._rdb.storage").addFilter(_quiet_connection_fallback)


class PatientRDBStorage(RDBStorage):
    """RDBStorage whose calls wait out a database outage of up to `patience` seconds."""

    def __init__(self, *args: Any, patience: float = 300.0, log: Callable[[str], None] = print, **kwargs: Any):
        self.patience = float(patience)
        self._log = log
        self._init_outage_state()
        self._call_patiently("open", RDBStorage.__init__, args, kwargs)
        self._beat_on_running()

    def _init_outage_state(self) -> None:
        self._outage_lock = threading.Lock()
        self._outage_local = threading.local()
        self._down_since: float | None = None
        self._gave_up = False

    def __getstate__(self) -> dict[Any, Any]:
        return {k: v for k, v in super().__getstate__().items() if k not in ("_outage_lock", "_outage_local", "_log")}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._log = print
        self._init_outage_state()
        self._beat_on_running()

    def _beat_on_running(self) -> None:
        if self.heartbeat_interval:
            event.listen(self.scoped_session.session_factory, "before_flush", _beat_when_running)

    def _call_patiently(self, name: str, base: Callable, args: tuple, kwargs: dict) -> Any:
        first_failure: float | None = None
        for attempt in itertools.count():
            try:
                try:
                    result = base(self, *args, **kwargs)
                except optuna.exceptions.UpdateFinishedTrialError:
                    # A retried state change whose first try committed but whose reply was lost (the other
                    # writes are upserts: their retry is harmless).
                    if first_failure is None or name != "set_trial_state_values" or not self._already_set(args, kwargs):
                        raise
                    result = True
            except Exception as e:
                if not is_transient(e):
                    raise
                now = time.monotonic()
                with self._outage_lock:
                    if self._gave_up:
                        raise MnistliteError(f"database unreachable: {_first_line(e)}") from None
                    if self._down_since is None:
                        self._down_since = now
                        self._log(f"database unreachable, retrying for up to {self.patience:g} s")
                if first_failure is None:
                    first_failure = now
                elif now - first_failure > self.patience:
                    with self._outage_lock:
                        self._gave_up = True
                    raise MnistliteError(
                        f"database unreachable for {self.patience:g} s (--storage-patience), giving up: "
                        f"{_first_line(e)}; run the same command again to continue"
                    ) from None
                with contextlib.suppress(Exception):  # closing a session on a dead connection
                    self.scoped_session.remove()  # the next try starts in a fresh session
                time.sleep(min(BACKOFF_FIRST * 2**attempt, BACKOFF_MAX) * (0.5 + random.random() / 2))
                continue
            if first_failure is not None or self._down_since is not None:
                with self._outage_lock:
                    if self._down_since is not None:
                        self._log(f"database back after {time.monotonic() - self._down_since:.1f} s")
                        self._down_since = None
            return result

    def _already_set(self, args: tuple, kwargs: dict) -> bool:
        trial_id = args[0] if args else kwargs["trial_id"]
        state = args[1] if len(args) > 1 else kwargs["state"]
        values = args[2] if len(args) > 2 else kwargs.get("values")
        trial = RDBStorage.get_trial(self, trial_id)
        return trial.state == state and (values is None or list(values) == trial.values)


def _beat_when_running(session: Any, flush_context: Any, instances: Any) -> None:
    """A trial turned RUNNING gets a heartbeat in the same transaction: a copy made by a lost reply (created or claimed
    twice), or one whose worker died before beating, is failed after the grace period, never RUNNING for ever."""
    for trial in (*session.new, *session.dirty):
        if isinstance(trial, models.TrialModel) and trial.state == TrialState.RUNNING:
            if sa_inspect(trial).attrs.state.history.added:
                with session.no_autoflush:
                    if trial.heartbeats:
                        trial.heartbeats[0].heartbeat = func.current_timestamp()
                    else:
                        trial.heartbeats.append(models.TrialHeartbeatModel())


def _patient(name: str) -> Callable:
    base = getattr(RDBStorage, name)

    @functools.wraps(base)
    def method(self: PatientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        local = self._outage_local
        if getattr(local, "inside", False):
            return base(self, *args, **kwargs)
        local.inside = True
        try:
            return self._call_patiently(name, base, args, kwargs)
        finally:
            local.inside = False

    return method


for _name in RETRIED:
    if hasattr(RDBStorage, _name):
        setattr(PatientRDBStorage, _name, _patient(_name))
