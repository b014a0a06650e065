"""Planning and executing many runs under `seeds`, `tune`, `experiment` and `table`: what happens to a folder
already there (`run_state`), and running them in turn, on a pool of spawned workers, or as a shared sweep."""

from __future__ import annotations

import ctypes
import functools
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import TrainConfig, describe_differences
from ..data import load_dataset
from ..engine import TrainingDiverged, TrainingInterrupted, device, resume, train
from ..engine import rundir as rd
from ..errors import MnistliteError
from ..models import config_for, list_models
from .portable import pack_run, unpack_run
from .sweep import make_job, run_sweep

# What a run directory may hold (its text files, its weights); anything else means the folder is not (only) a run.
RUN_FILES = frozenset(
    {rd.CONFIG, rd.METRICS, rd.LOG, rd.LAYER_TABLE, rd.CURVES, rd.RESULT, rd.MODEL_SOURCE, rd.READINGS}
    | {rd.MODEL, rd.CHECKPOINT}
)
STATUS_TEXT = dict(
    new="to train", done="done, skipped", resume="to resume", restart="to restart", changed="made with another config"
)


@dataclass
class PlannedRun:
    label: str  # "step/seed1", "seed 3": what messages call it
    config: TrainConfig
    run_dir: Path
    status: str = "new"  # new | done | resume | restart | changed (STATUS_TEXT)
    detail: str = ""
    setup: Callable[[], None] | None = None  # picklable; registers the model in a worker process
    reuse: tuple[Path, ...] = ()  # folders whose finished same runs (same folder name) may be linked


def run_state(run_dir: Path, cfg: TrainConfig) -> tuple[str, str]:
    """(status, detail) of `run_dir` against the config it should hold: the one same-run decision."""
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "new", ""
    if not run_dir.is_dir():
        raise MnistliteError(f"{run_dir} exists and is not a directory; move it away or choose another --out")
    if not (run_dir / rd.CONFIG).is_file():
        return "restart", "no config.json: the run never got going"
    try:
        saved = rd.read_json(run_dir / rd.CONFIG)
    except MnistliteError as e:
        return "restart", str(e)
    if not isinstance(saved, dict):
        return "restart", f"{run_dir / rd.CONFIG}: not a JSON object"
    if changed := describe_differences(moved_candidate(saved, cfg), cfg):
        return "changed", ", ".join(changed)
    if (run_dir / rd.RESULT).is_file():
        return "done", ""
    if (run_dir / rd.CHECKPOINT).is_file():
        return "resume", "interrupted: continuing from its last checkpoint"
    return "restart", "interrupted before its first checkpoint"


def moved_candidate(saved: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """A tuning candidate moved from the zoo into its round's model file kept its code: runs of its bare name count."""
    old, new = saved.get("model"), cfg.model
    bare = isinstance(old, str) and ":" not in old and saved.get("model_sha256") is None
    if bare and cfg.model_sha256 is not None and new.rpartition(":")[2] == old and old not in list_models():
        return {**saved, "model": new, "model_sha256": cfg.model_sha256}
    return saved


def plan_run(
    label: str, cfg: TrainConfig, run_dir: Path, setup: Callable[[], None] | None = None, reuse: tuple[Path, ...] = ()
) -> PlannedRun:
    status, detail = run_state(Path(run_dir), cfg)
    return PlannedRun(label, cfg, Path(run_dir), status, detail, setup, tuple(Path(d) for d in reuse))


def link_reused(runs: list[PlannedRun], echo: Callable[[str], None] = print) -> list[PlannedRun]:
    """Link each run not yet there to a finished same run in its `reuse` folders (relative: the repository can move)."""
    out = []
    for r in runs:
        src = None
        for d in r.reuse if r.status == "new" else ():
            cand = d / r.run_dir.name
            status, _ = run_state(cand, r.config) if cand.is_dir() else ("new", "")
            if status == "done" and cand.resolve() != r.run_dir.resolve():
                src = cand
                break
            if status == "changed":
                why = ", ".join(describe_differences(rd.read_json(cand / rd.CONFIG), r.config))
                echo(f"{r.label}: {cand} is another config ({why}); not linked")
        if src is None:
            out.append(r)
            continue
        if r.run_dir.is_dir():  # "new": an empty folder
            r.run_dir.rmdir()
        r.run_dir.parent.mkdir(parents=True, exist_ok=True)
        r.run_dir.symlink_to(os.path.relpath(src.resolve(), r.run_dir.parent.resolve()), target_is_directory=True)
        echo(f"{r.label}: the same run, finished in {src}: linked")
        out.append(replace(r, status="done", detail=f"linked to {src}"))
    return out


def move_aside(run_dir: Path) -> Path:
    """Rename `run_dir` to `<name>.old-<timestamp>`; refuse a folder that is not a run (it is not ours to move)."""
    if foreign := [p.name for p in run_dir.iterdir() if p.name not in RUN_FILES and not p.name.startswith(".")]:
        raise MnistliteError(
            f"{run_dir} holds files that are not a run's ({', '.join(sorted(foreign)[:3])}); "
            "move them away or choose another --out"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, k = run_dir.with_name(f"{run_dir.name}.old-{stamp}"), 1
    while aside.exists():  # two in one second
        k += 1
        aside = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{k}")
    run_dir.rename(aside)
    return aside


class DataCache:
    """Loads each distinct data set once per process; runs differing only in limit_train share it."""

    def __init__(self) -> None:
        self._load = functools.cache(load_dataset)

    def __call__(self, cfg: TrainConfig):
        data = self._load(cfg.dataset, data_dir=cfg.data_dir, val_size=cfg.val_size, download=cfg.download)
        return data.subset_train(cfg.limit_train) if cfg.limit_train else data


def train_run(cfg: TrainConfig, run_dir: Path, *, data=None, progress: bool | None = False, on_epoch=None):
    """Train or resume `run_dir`, a folder of another config or a broken one moved aside first; None when done."""
    status, _ = run_state(run_dir, cfg)
    if status in ("changed", "restart"):
        move_aside(run_dir)
    if status == "done":
        return None
    if status == "resume":  # the folder's own config.json, just found equal to `cfg` bar run-only fields
        return resume(run_dir, data=data, progress=progress, quiet=True, on_epoch=on_epoch)
    return train(cfg, run_dir=run_dir, data=data, progress=progress, quiet=True, on_epoch=on_epoch)


def threads_per_run(jobs: int, threads: int = 0) -> int:
    """CPU threads each of `jobs` concurrent runs gets: `threads` if set, else its share of the cores."""
    return threads or max(1, device.cpu_cores() // max(1, jobs))


# Set in a worker once one of its runs was interrupted: the pool hands a worker its next run before the current
# one ends, and cancelling the futures does not take those back.
_INTERRUPTED: list[str] = []


def _die_with_parent(parent: int) -> None:
    """Pool worker start-up: die with `parent`. A SIGKILLed parent cannot stop its workers; orphaned, they
    trained on, so a rerun of the command wrote the same run folders at once. Writes are atomic: dying is safe."""
    if sys.platform == "linux":  # the kernel kills this worker the moment its parent dies
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    # Elsewhere, and where the parent died before prctl: a look ten times a second.
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.1)
    os._exit(1)


def _pool_worker(job: tuple[dict[str, Any], str, Callable[[], None] | None, bool]) -> tuple[str, str | None]:
    """One run in a spawned worker (module level so that it can be imported there): (run dir, error)."""
    cfg_dict, run, setup, keep_going = job
    if _INTERRUPTED:
        raise TrainingInterrupted(f"{run}: not started, this worker was interrupted ({_INTERRUPTED[0]})")
    if setup is not None:
        setup()
    try:
        train_run(TrainConfig.from_dict(cfg_dict), Path(run))
    except TrainingDiverged as e:
        if not keep_going:
            raise
        return run, str(e).splitlines()[0]
    except TrainingInterrupted as e:
        _INTERRUPTED.append(str(e).splitlines()[0])
        raise
    return run, None


def execute(
    runs: list[PlannedRun],
    *,
    jobs: int | str = 1,
    threads: int = 0,
    keep_going: bool = False,
    progress: bool | None = False,
    on_start: Callable[[int, int, PlannedRun], Callable[[dict[str, Any]], None] | None] | None = None,
    on_done: Callable[[int, int, PlannedRun, Any, str | None], None] | None = None,
    again: str = "run the same command again to resume",
) -> dict[str, str]:
    """Train every run not done; return {run dir: error} of runs that diverged (with `keep_going`).
    `on_start` may return an on_epoch callback; `on_done` sees the RunResult here, None from a worker."""
    todo = [r for r in runs if r.status != "done"]
    jobs = max(1, min(int(jobs), len(todo)))  # `--jobs auto` is settled by the caller (runs/splits.py)
    per_run = threads_per_run(jobs, threads)
    todo = [replace(r, config=r.config.replace(threads=threads or r.config.threads or per_run)) for r in todo]
    errors: dict[str, str] = {}
    if jobs == 1:
        data = DataCache()
        for i, r in enumerate(todo, 1):
            on_epoch = on_start(i, len(todo), r) if on_start else None
            if r.setup is not None:
                r.setup()
            try:
                res = train_run(r.config, r.run_dir, data=data(r.config), progress=progress, on_epoch=on_epoch)
                error = None
            except TrainingDiverged as e:
                if not keep_going:
                    raise type(e)(f"{r.label}: {e}") from None
                res, error = None, str(e).splitlines()[0]
                errors[str(r.run_dir)] = error
            except TrainingInterrupted as e:
                why = str(e).split("; continue with")[0]
                raise TrainingInterrupted(f"{r.label}: {why}; {again}") from None
            except MnistliteError as e:
                raise type(e)(f"{r.label}: {e}") from None
            if on_done:
                on_done(i, len(todo), r, res, error)
        return errors
    by_dir = {str(r.run_dir): r for r in todo}
    # spawn, not fork: forking after torch has started its threads can deadlock.
    pool = ProcessPoolExecutor(
        jobs, mp_context=mp.get_context("spawn"), initializer=_die_with_parent, initargs=(os.getpid(),)
    )
    with pool, _forward_sigterm(pool):
        futures = [pool.submit(_pool_worker, (r.config.to_dict(), str(r.run_dir), r.setup, keep_going)) for r in todo]
        try:
            for k, done in enumerate(as_completed(futures), 1):
                run, error = done.result()
                if error:
                    errors[run] = error
                if on_done:
                    on_done(k, len(todo), by_dir[run], None, error)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # one broken run: do not train the rest for nothing
            raise
    return errors


@contextmanager
def _forward_sigterm(pool: ProcessPoolExecutor) -> Iterator[None]:
    """Pass a SIGTERM sent to this process on to the pool's workers, which would otherwise train on,
    orphaned. SIGINT is not passed on: Ctrl-C already reaches the whole process group."""

    def handler(signum: int, frame: Any) -> None:
        # The executor keeps its processes private; Python 3.14 adds terminate_workers(), not 3.11.
        for proc in list(getattr(pool, "_processes", {}).values()):
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute_shared(runs: list[PlannedRun], out: Path, storage: str, study: str, echo=print) -> None:
    """Spread the runs not done over every worker of one sweep, then rebuild here the text files of the others'."""
    jobs = []
    for r in [r for r in runs if r.status != "done"]:
        over = {k: v for k, v in r.config.to_dict().items() if k not in ("model", "seed")}
        jobs.append({**make_job(r.config.model, r.config.seed, over), "run_dir": r.run_dir.relative_to(out).as_posix()})
    data = DataCache()

    def worker(job: dict[str, Any]) -> dict[str, Any]:
        run_dir = out / job["run_dir"]
        cfg = config_for(job["model"], seed=job["seed"], **job["overrides"])
        train_run(cfg, run_dir, data=data(cfg))
        return pack_run(run_dir)

    for o in run_sweep(jobs, storage, study, worker, log=echo):
        if o.state != "COMPLETE" or not isinstance(o.result, dict):
            raise MnistliteError(f"run {o.job['run_dir']} of sweep {study!r} did not complete ({o.state})")
        unpack_run(o.result, out / o.job["run_dir"])
