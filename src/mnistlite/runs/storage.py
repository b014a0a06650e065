"""Optuna storage for many workers (searches and sweeps): heartbeats, stale-trial recovery, claiming. Optuna
beats only inside `Study.optimize`; these workers use ask/tell, so `heartbeat` beats for them."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import MnistliteError

DEFAULT_HEARTBEAT = 30  # seconds between heartbeats of a running trial
DEFAULT_PATIENCE = 300.0  # seconds a database server may be unreachable before a worker gives up

_patience = DEFAULT_PATIENCE


def set_patience(seconds: float | None) -> None:
    """How long storages opened from now on wait out a database outage (`--storage-patience`)."""
    global _patience
    _patience = DEFAULT_PATIENCE if seconds is None else float(seconds)


def import_optuna():
    """optuna, quiet, or a one-line MnistliteError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise MnistliteError("this needs optuna: pip install 'mnistlite[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    return optuna


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sqlite_url(path: str | os.PathLike) -> str:
    return f"sqlite:///{os.fspath(path)}"


def normalize_url(url: str) -> str:
    """Name the installed PostgreSQL driver in a bare `postgresql://` URL (SQLAlchemy 2.0 and 2.1 differ)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"


def make_storage(
    url: Any,
    *,
    heartbeat_interval: int | None = DEFAULT_HEARTBEAT,
    grace_period: int | None = None,
    patience: float | None = None,
):
    """An RDBStorage for `url` with heartbeats and retry-once of stale trials; on a server, patient (`set_patience`)."""
    optuna = import_optuna()
    if not isinstance(url, str):
        return url
    from sqlalchemy import exc

    # The class and RDBStorage's argument were renamed together in optuna 4.9 (optuna#6670).
    renamed = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
    Retry = optuna.storages.RetryHeartbeatStaleTrialCallback if renamed else optuna.storages.RetryFailedTrialCallback
    retry_arg = "heartbeat_stale_trial_callback" if renamed else "failed_trial_callback"
    url = normalize_url(url)
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs["heartbeat_interval"] = int(heartbeat_interval)
        kwargs["grace_period"] = int(grace_period or 2 * heartbeat_interval)
        kwargs[retry_arg] = _RetryOnce(Retry(max_retry=1))  # a trial whose worker died is run again once
    engine: dict[str, Any] = {}
    storage_cls: Any = optuna.storages.RDBStorage
    if url.startswith("sqlite"):
        # Several processes on one SQLite file: wait for the lock rather than fail.
        engine["connect_args"] = {"timeout": 60}
    else:
        # A pooled connection that died while idle is replaced on checkout; one cut off mid-call, by PatientRDBStorage.
        engine["pool_pre_ping"] = True
        from .patient_storage import PatientRDBStorage

        kwargs["patience"] = _patience if patience is None else float(patience)
        kwargs["log"] = functools.partial(print, flush=True)
        storage_cls = PatientRDBStorage
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return storage_cls(url, engine_kwargs=dict(engine), **kwargs)
        except ImportError as e:
            driver = "psycopg2-binary" if url.startswith("postgres") else "the database driver"
            raise MnistliteError(f"cannot open storage {redact(url)}: install {driver} ({e})") from None
        except Exception as e:  # sqlalchemy: bad URL, server down, authentication...
            # Workers starting together race to create a fresh database's tables: PostgreSQL answers one with a
            # unique or duplicate-table violation, and a moment later the tables are there.
            if isinstance(e, (exc.IntegrityError, exc.ProgrammingError)) and attempt < 5:
                time.sleep(0.2 + random.random() * (attempt + 1) * 0.5)
                continue
            if isinstance(e, optuna.exceptions.OptunaError) or type(e).__module__.startswith("sqlalchemy"):
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise MnistliteError(f"cannot open storage {redact(url)}: {first}") from None
            raise


class _RetryOnce:
    """Optuna's retry callback, skipped when the failed trial already has a retry: SQLite has no
    row locks, so two workers failing one trial at once would each enqueue a copy."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, study, trial) -> None:
        if not any(trial.number in t.system_attrs.get("retry_history", ()) for t in study.get_trials(deepcopy=False)):
            self.inner(study, trial)


def redact(url: str) -> str:
    """The URL without its password, for messages and result files."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  (any unparsable URL: show the part after the credentials)
        return url.split("@")[-1] if "@" in url else url


def fail_stale(study) -> None:
    """Fail trials whose worker stopped beating for the grace period (their retry callback re-enqueues them)."""
    import_optuna().storages.fail_stale_trials(study)


@contextlib.contextmanager
def heartbeat(storage, trial_id: int) -> Iterator[None]:
    """Record heartbeats for `trial_id` from a side thread while the block runs, where the storage has them on."""
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval or not hasattr(storage, "record_heartbeat"):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a network blip must not kill the trial; the next beat retries
                storage.record_heartbeat(trial_id)

    storage.record_heartbeat(trial_id)  # before the thread: the trial is never seen beat-less
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def claim_waiting(storage, trial_ids: list[int]) -> int | None:
    """Atomically move the first still-WAITING trial of `trial_ids` to RUNNING; its id, or None."""
    optuna = import_optuna()
    from optuna.trial import TrialState

    for tid in trial_ids:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # claimed by another worker first
            if storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                return tid
    return None
