"""Reliability: resume, interruption, divergence, unwritable/full run folders,
safe loading, and one-line errors for bad input to every command.

Kept small for 2 shared cores: in-process runs train 1,000 images for 3 epochs
and evaluate on 500/1,000-image val/test splits; every CLI case runs through
`mnistlite.cli.main`, and one case per kind of failure also as a real
`python -m mnistlite` subprocess (several at once, in one module fixture).
See docs/reliability.md for the table of failure modes these tests cover.
"""

from __future__ import annotations

import ast
import csv
import errno
import hashlib
import io
import math
import os
import pickle
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistlite.config import TrainConfig
from mnistlite.data.loading import Split
from mnistlite.engine import TrainingDiverged, TrainingInterrupted, load_checkpoint, resume, train
from mnistlite.engine import rundir as rd
from mnistlite.engine.console import Echo
from mnistlite.engine.parts import Parts
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Every source of randomness and every schedule state: rotation/shear/translate draw from
# the trainer's generator, dropout (raised from the model's 0.01) from the global RNG,
# OneCycle steps per batch, SGD keeps momentum buffers, BatchNorm keeps running stats.
RECIPE = dict(
    epochs=3,
    seed=3,
    threads=1,
    dropout=0.1,
    rotation=10.0,
    shear=5.0,
    translate=0.05,
    scheduler="onecycle",
    max_lr=0.05,
)
MODEL = "mnistlite8k_model3"


def recipe(**kw) -> TrainConfig:
    return config_for(MODEL, **{**RECIPE, **kw})


def strip_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / rd.MODEL, weights_only=True)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, t in a.items():
        assert torch.equal(t, b[k]), f"{k} differs"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(mnist_small):
    """1,000 training images; val and test cut to 500 and 1,000 so an epoch takes a second."""
    d = mnist_small.subset_train(1000)
    return replace(
        d,
        val=Split(d.val.images[:500], d.val.labels[:500]),
        test=Split(d.test.images[:1000], d.test.labels[:1000]),
    )


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory) -> Path:
    """The reference: RECIPE trained start to finish into a run directory."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(recipe(), run_dir=out, data=tiny, progress=False, quiet=True)
    return out


# --- 1. checkpoints, resume, interruption --------------------------------------------


def test_checkpoint_write_is_temp_fsync_rename_and_a_failed_write_keeps_the_old(tmp_path, monkeypatch):
    path = tmp_path / rd.CHECKPOINT
    rd.atomic_torch_save({"epoch": 1, "w": torch.ones(3)}, path)
    events: list[tuple] = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(rd.os, "fsync", lambda fd: (events.append(("fsync", _fd_kind(fd))), real_fsync(fd))[1])
    monkeypatch.setattr(
        rd.os, "replace", lambda a, b: (events.append(("replace", Path(a), Path(b))), real_replace(a, b))[1]
    )
    rd.atomic_torch_save({"epoch": 2, "w": torch.zeros(3)}, path)
    tmp = tmp_path / f".{rd.CHECKPOINT}.tmp"
    # The bytes are on disk before the rename, the rename (the folder) after it.
    assert events == [("fsync", "file"), ("replace", tmp, path), ("fsync", "dir")]
    assert load_checkpoint(path)["epoch"] == 2 and not tmp.exists()

    # The disk fills up halfway through the next write: the last checkpoint survives.
    good = sha(path)

    def full_disk(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rd.torch, "save", full_disk)
    with pytest.raises(MnistliteError) as e:
        rd.atomic_torch_save({"epoch": 3}, path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "No space left on device" in msg and "kept" in msg
    assert sha(path) == good and load_checkpoint(path)["epoch"] == 2
    assert not tmp.exists()


def _fd_kind(fd: int) -> str:
    return "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"


def test_every_atomic_write_fsyncs_its_folder_and_a_refused_folder_fsync_is_skipped(tmp_path, monkeypatch):
    """After os.replace the folder is fsynced, so the rename itself survives a power loss; where
    the file system refuses (EINVAL) or the OS cannot open a folder (Windows), the write still succeeds."""
    synced: list[tuple[str, int]] = []  # (kind, inode) of every fd fsynced
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        st = os.fstat(fd)
        synced.append((_fd_kind(fd), st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(rd.os, "fsync", recording)
    folder = tmp_path / "run"
    folder.mkdir()
    writes: list[tuple[str, Callable[[Path], None]]] = [
        (rd.CHECKPOINT, lambda p: rd.atomic_torch_save({"epoch": 1}, p)),
        (rd.MODEL, lambda p: rd.atomic_torch_save({"model": {}}, p)),
        (rd.METRICS, lambda p: rd.write_metrics(p, [{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0}])),
        (rd.CONFIG, lambda p: rd.write_json(p, {"a": 1})),
        (rd.LOG, lambda p: rd.atomic_write_text(p, "log\n")),
        (rd.MODEL_SOURCE, lambda p: rd.atomic_write_bytes(p, b"x = 1\n")),
    ]
    for name, write in writes:
        synced.clear()
        write(folder / name)
        assert synced == [("file", (folder / name).stat().st_ino), ("dir", folder.stat().st_ino)], name

    # A file system that refuses a folder fsync: the write succeeds, the new file is in place.
    def refuse_dirs(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        real_fsync(fd)

    monkeypatch.setattr(rd.os, "fsync", refuse_dirs)
    rd.atomic_torch_save({"epoch": 2}, folder / rd.CHECKPOINT)
    assert load_checkpoint(folder / rd.CHECKPOINT)["epoch"] == 2

    # An OS that cannot open a folder at all (Windows: PermissionError): skipped too.
    real_open = os.open

    def no_folder_open(path, flags, *a, **k):
        if Path(path).is_dir():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(rd.os, "open", no_folder_open)
    rd.write_json(folder / rd.CONFIG, {"a": 2})
    assert rd.read_json(folder / rd.CONFIG) == {"a": 2}
    monkeypatch.setattr(rd.os, "open", real_open)

    # A disk that fails (EIO) on the folder fsync is reported in one line, not hidden.
    def eio_dirs(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(rd.os, "fsync", eio_dirs)
    with pytest.raises(MnistliteError) as e:
        rd.write_json(folder / rd.RESULT, {"done": True})
    assert "\n" not in str(e.value) and "Input/output error" in str(e.value) and str(folder / rd.RESULT) in str(e.value)


@pytest.mark.slow
def test_disk_full_mid_run_keeps_last_checkpoint_and_resume_still_matches(tiny, uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save = rd.torch.save
    saves: list[int] = []

    def save_fails_at_epoch_2(obj, f, *a, **k):
        saves.append(obj.get("epoch", 0))
        if obj.get("epoch") == 2:
            f.write(b"PK\x03\x04 half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(rd.torch, "save", save_fails_at_epoch_2)
    with pytest.raises(MnistliteError) as e:
        train(recipe(), run_dir=out, data=tiny, progress=False, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and "checkpoint.pt (No space left on device)" in msg
    assert f"continue with: mnistlite train --resume {out}" in msg
    assert load_checkpoint(out / rd.CHECKPOINT)["epoch"] == 1
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []
    monkeypatch.setattr(rd.torch, "save", real_save)  # space freed
    res = resume(out, data=tiny, progress=False, quiet=True)
    assert strip_seconds(res.metrics) == strip_seconds(load_checkpoint(uninterrupted / rd.CHECKPOINT)["metrics"])
    assert_same_weights(weights(out), weights(uninterrupted))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to simulate a full disk")
def test_log_write_on_a_full_disk_is_one_line():
    echo = Echo(Path("/dev/full"), quiet=True)
    try:
        with pytest.raises(MnistliteError, match=r"cannot write /dev/full \(No space left on device\)"):
            echo("Epoch 1")
    finally:
        echo.close()  # must not raise again


@pytest.mark.slow
@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_interrupt_then_resume_is_bit_identical_to_uninterrupted(tiny, uninterrupted, tmp_path):
    out = tmp_path / "run"
    cfg = recipe()

    def ctrl_c_after_epoch_2(row):
        if row["epoch"] == 2:  # checkpoint.pt for epoch 2 is already written
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as e:
        train(cfg, run_dir=out, data=tiny, progress=False, quiet=True, on_epoch=ctrl_c_after_epoch_2)
    assert e.value.exit_code == 130
    assert "SIGINT" in str(e.value) and f"mnistlite train --resume {out}" in str(e.value)
    assert load_checkpoint(out / rd.CHECKPOINT)["epoch"] == 2
    assert not (out / rd.MODEL).exists()

    res = resume(out, data=tiny, progress=False, quiet=True)
    ref = rd.read_metrics(uninterrupted / rd.METRICS)
    assert len(res.metrics) == 3
    assert strip_seconds(rd.read_metrics(out / rd.METRICS)) == strip_seconds(ref)
    ref_ckpt = load_checkpoint(uninterrupted / rd.CHECKPOINT)
    assert strip_seconds(res.metrics) == strip_seconds(ref_ckpt["metrics"])  # full precision, not the CSV's
    assert_same_weights(weights(out), weights(uninterrupted))
    assert "Resumed after epoch 2 of 3" in (out / rd.LOG).read_text()


@pytest.mark.slow
@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_ema_run_judges_saves_and_resumes_the_average(tiny, tmp_path):
    """--ema: metrics and model.pt are the average's, the raw weights' accuracy rides along,
    and an interrupted run resumes (average included) to the same bits."""
    # 8 steps an epoch: after epoch 1 the first step's weights still hold 0.7**7 = 8% of the
    # average (over EMA_START_SHARE), so the raw weights are judged; from epoch 2 on, the average.
    cfg = recipe(ema=0.7)
    ref = train(cfg, run_dir=tmp_path / "ref", data=tiny, progress=False, quiet=True)
    rows = rd.read_metrics(tmp_path / "ref" / rd.METRICS)
    assert all(r["raw_val_acc"] is not None and r["raw_test_acc"] is not None for r in rows)
    assert (rows[0]["val_acc"], rows[0]["test_acc"]) == (rows[0]["raw_val_acc"], rows[0]["raw_test_acc"])
    # model.pt holds the average, not the last step's weights, and it is what the test column scored.
    raw = load_checkpoint(tmp_path / "ref" / rd.CHECKPOINT)["model"]
    avg = weights(tmp_path / "ref")
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if raw[k].is_floating_point())
    from mnistlite.engine import evaluate
    from mnistlite.models import create_model

    model = create_model(MODEL)
    model.load_state_dict(avg)
    assert evaluate(model, tiny.test, 500)[1] == pytest.approx(ref.metrics[-1]["test_acc"])

    out = tmp_path / "run"

    def ctrl_c_after_epoch_2(row):
        if row["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(cfg, run_dir=out, data=tiny, progress=False, quiet=True, on_epoch=ctrl_c_after_epoch_2)
    res = resume(out, data=tiny, progress=False, quiet=True)
    assert strip_seconds(res.metrics) == strip_seconds(ref.metrics)
    assert_same_weights(weights(out), avg)


def _wait_while_running(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 240) -> None:
    """Poll until `ready()`, failing if `proc` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{what} after {timeout:.0f} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_subprocess_stops_with_resume_hint_then_resume_finishes(data_root, tmp_path):
    out = tmp_path / "run"
    env = cli_env(data_root)
    # 3 epochs: SIGTERM lands in epoch 2 or 3, never after the last one.
    cmd = [
        sys.executable,
        "-m",
        "mnistlite",
        "train",
        "--model",
        MODEL,
        "--epochs",
        "3",
        "--limit-train",
        "500",
        "--threads",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--no-download",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_while_running(proc, lambda: (out / rd.CHECKPOINT).exists(), "no checkpoint")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "SIGTERM" in stderr and f"--resume {out}" in stderr
    assert (out / rd.CHECKPOINT).is_file() and not (out / rd.MODEL).exists()
    saved = load_checkpoint(out / rd.CHECKPOINT)["epoch"]
    assert saved in (1, 2)

    done = subprocess.run(
        [sys.executable, "-m", "mnistlite", "train", "--resume", str(out), "--no-progress"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"Resumed after epoch {saved} of 3" in done.stdout
    assert [r["epoch"] for r in rd.read_metrics(out / rd.METRICS)] == [1, 2, 3]
    assert (out / rd.MODEL).is_file() and (out / rd.RESULT).is_file()


# Test-only, written into tmp_path (no hook in src/): `python killhook.py ARGS` runs
# `python -m mnistlite ARGS` with every rename of checkpoint.pt and model.pt logged to
# $KILLTEST_EVENTS ("begin NAME" before, "end NAME" after), and, for the names in $KILLTEST_SLOW,
# a pause of $KILLTEST_SLEEP s between the finished, fsynced temporary file and the rename: a
# SIGKILL sent after "begin" lands inside that write.
KILL_HOOK = """
import os, runpy, time
from pathlib import Path

events = os.environ["KILLTEST_EVENTS"]
slow = set(os.environ.get("KILLTEST_SLOW", "").split(","))
pause = float(os.environ.get("KILLTEST_SLEEP", "0"))
real_replace = os.replace


def log(line):
    with open(events, "a") as f:
        f.write(line + "\\n")


def replace(src, dst, *a, **k):
    name = Path(dst).name
    if name not in ("checkpoint.pt", "model.pt"):
        return real_replace(src, dst, *a, **k)
    log("begin " + name)
    if name in slow:
        time.sleep(pause)
    real_replace(src, dst, *a, **k)
    log("end " + name)


os.replace = replace
runpy.run_module("mnistlite", run_name="__main__", alter_sys=True)
"""


def _csv_without_times(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _zip_entries(path: Path) -> dict[str, bytes]:
    """A torch.save file's members, byte for byte: the tensors' storages and torch's format records.
    Left out: the random id torch writes into every save, and data.pkl, whose bytes depend on
    which equal strings happen to be one object (pickle memo references); compare it loaded."""
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith(("/.data/serialization_id", "/data.pkl"))}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(data_root, tmp_path):
    """kill -9 of `train` at six moments, seeded: right after config.json appears (before any
    checkpoint), in epoch 2, during a resumed process's start, inside a checkpoint write (temporary
    file written, not yet renamed), in a later epoch, and after the last epoch inside the model.pt
    write; `train --resume` after each. The final metrics.csv (but its seconds) and model.pt equal
    an uninterrupted run's, bit for bit. A kill before the first checkpoint leaves nothing to
    resume: `--resume` says so in one line (exit 2) and how to start again, which the test does."""
    rng = random.Random(39)
    epochs = 4
    env = cli_env(data_root)
    recipe_args = ["--model", "mnistlite_flagship", "--epochs", str(epochs), "--limit-train", "500"]
    recipe_args += ["--threads", "1", "--seed", "7", "--no-progress", "--no-download"]
    mnistlite = [sys.executable, "-m", "mnistlite"]

    def plain(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*mnistlite, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
        )

    ref = tmp_path / "ref"
    done = plain("train", *recipe_args, "--out", str(ref))
    assert done.returncode == 0, done.stderr

    hook, events, out = tmp_path / "killhook.py", tmp_path / "events.txt", tmp_path / "run"
    hook.write_text(KILL_HOOK)
    fresh = ["train", *recipe_args, "--out", str(out)]
    again = ["train", "--resume", str(out), "--no-progress"]
    landed: list[str] = []

    def start(args: list[str], slow: str = "") -> subprocess.Popen[str]:
        events.write_text("")
        hooked = {**env, "KILLTEST_EVENTS": str(events), "KILLTEST_SLOW": slow, "KILLTEST_SLEEP": "1.5"}
        return subprocess.Popen(
            [sys.executable, str(hook), *args], env=hooked, cwd=tmp_path, stdout=subprocess.DEVNULL, text=True
        )

    def logged(line: str) -> bool:
        return line in events.read_text().splitlines()

    def kill(proc: subprocess.Popen[str], what: str, delay: float = 0.0) -> None:
        time.sleep(delay)
        assert proc.poll() is None, f"{what}: the process ended (exit {proc.returncode}) before the kill"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        landed.append(what)

    def saved() -> int:
        return load_checkpoint(out / rd.CHECKPOINT)["epoch"]

    procs: list[subprocess.Popen[str]] = []
    try:
        # 1. Before the first checkpoint: nothing to resume, and --resume says how to start again.
        procs.append(p := start(fresh))
        _wait_while_running(p, lambda: (out / rd.CONFIG).exists(), "no config.json")
        kill(p, "before the first checkpoint")
        assert not (out / rd.CHECKPOINT).exists(), "the kill came too late: epoch 1 was already saved"
        refused = plain(*again)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "no checkpoint there; nothing to resume" in refused.stderr
        assert f"start it again with a new --out, or delete {out} first" in refused.stderr
        shutil.rmtree(out)

        # 2. A random moment after epoch 1 was saved (in epoch 2's training or evaluation).
        procs.append(p := start(fresh))
        _wait_while_running(p, lambda: logged("end checkpoint.pt"), "no checkpoint")
        kill(p, "after epoch 1", rng.uniform(0.0, 0.5))
        assert 1 <= saved() < epochs

        # 3. A random moment early in a resumed process (loading, restoring, first batches).
        procs.append(p := start(again))
        kill(p, "early in a resumed process", rng.uniform(0.1, 1.0))

        # 4. Inside a checkpoint write: the temporary file is complete, the rename not yet done.
        before = saved()
        procs.append(p := start(again, slow=rd.CHECKPOINT))
        _wait_while_running(p, lambda: logged("begin checkpoint.pt"), "no checkpoint write")
        kill(p, "inside a checkpoint write", rng.uniform(0.05, 1.0))
        assert (out / f".{rd.CHECKPOINT}.tmp").is_file() and saved() == before  # the old one, whole

        # 5. A random moment after this process saved an epoch (model.pt slowed: it cannot finish first).
        procs.append(p := start(again, slow=rd.MODEL))
        _wait_while_running(p, lambda: logged("end checkpoint.pt"), "no checkpoint")
        kill(p, "after a resumed epoch", rng.uniform(0.0, 0.5))
        assert saved() > before

        # 6. After the last epoch, inside the model.pt write.
        procs.append(p := start(again, slow=rd.MODEL))
        _wait_while_running(p, lambda: logged("begin model.pt"), "no model.pt write")
        kill(p, "inside the model.pt write", rng.uniform(0.05, 1.0))
        assert saved() == epochs and not (out / rd.MODEL).exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len(landed) >= 5, landed

    done = plain(*again)
    assert done.returncode == 0, done.stderr
    assert f"Resumed after epoch {epochs} of {epochs}" in done.stdout
    assert _csv_without_times(out / rd.METRICS) == _csv_without_times(ref / rd.METRICS)
    assert_same_weights(weights(out), weights(ref))
    assert _zip_entries(out / rd.MODEL) == _zip_entries(ref / rd.MODEL)  # every tensor's bytes
    got, want = (torch.load(r / rd.MODEL, weights_only=True) for r in (out, ref))
    assert {k: v for k, v in got.items() if k != "model"} == {k: v for k, v in want.items() if k != "model"}
    assert not (out / f".{rd.CHECKPOINT}.tmp").exists() and not (out / f".{rd.MODEL}.tmp").exists()


def _spawned_children(pid: int) -> list[int]:
    """The pool's worker processes of `pid` (Linux /proc), not multiprocessing's resource tracker."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads worker pids from Linux /proc")
def test_sigterm_to_a_pool_stops_its_workers_too(data_root, tmp_path):
    # `timeout`/`kill` signal only the parent; it used to die at once and leave its
    # spawned workers training on, orphaned (outside the caller's CPU lock).
    out = tmp_path / "seeds"
    cmd = [sys.executable, "-m", "mnistlite", "seeds", MODEL, "--seeds", "2", "--jobs", "2", "--threads", "1"]
    cmd += ["--epochs", "8", "--limit-train", "500", "--precision", "fp32", "--bn-fusion", "fused", "--out", str(out)]
    proc = subprocess.Popen(
        cmd, env=cli_env(data_root), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_while_running(
            proc, lambda: all((out / f"seed{s}" / rd.CHECKPOINT).exists() for s in (1, 2)), "no checkpoints"
        )
        workers = _spawned_children(proc.pid)
        assert len(workers) == 2
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1 and "SIGTERM" in stderr, stderr
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers)
    for s in (1, 2):  # each stopped with its finished epochs saved, resumable
        assert (out / f"seed{s}" / rd.CHECKPOINT).is_file() and not (out / f"seed{s}" / rd.RESULT).exists()


def _files_of(run: Path) -> dict[str, tuple[int, str]]:
    """(mtime_ns, sha256) of a finished run's files: any rewrite shows."""
    names = (rd.RESULT, rd.LOG, rd.METRICS, rd.MODEL, rd.CONFIG)
    return {n: ((run / n).stat().st_mtime_ns, sha(run / n)) for n in names}


def _without_times(agg: dict) -> dict:
    return {**agg, "per_seed": {k: {**v, "wall_seconds": None} for k, v in agg["per_seed"].items()}}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads worker pids from Linux /proc")
def test_sigkill_of_a_seeds_parent_mid_sweep_then_the_rerun_finishes_it(data_root, tmp_path):
    """kill -9 of `seeds --jobs 2` itself once seed 3 has saved an epoch (seed 1 or 2 has then finished):
    its workers die with it (they used to train on, orphaned, and take the queued seed, racing a rerun
    in the same folders). The same command again trains only the unfinished seeds, says which were
    done, leaves the finished ones' files untouched, and ends with an uninterrupted sweep's
    consistency.json (but its times)."""
    env = cli_env(data_root)
    sweep = [sys.executable, "-m", "mnistlite", "seeds", "tiny1k_sep", "--seeds", "3", "--threads", "1"]
    sweep += ["--epochs", "3", "--limit-train", "300", "--no-download"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*sweep, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
        )

    ref, out = tmp_path / "ref", tmp_path / "sweep"
    done = run("--jobs", "1", "--out", str(ref))  # one process: the same runs, at the same --threads
    assert done.returncode == 0, done.stderr
    # Not a pipe: an orphaned worker would hold it open.
    proc = subprocess.Popen([*sweep, "--jobs", "2", "--out", str(out)], env=env, cwd=tmp_path)
    try:
        _wait_while_running(proc, lambda: len(_spawned_children(proc.pid)) == 2, "no workers")
        workers = _spawned_children(proc.pid)
        _wait_while_running(proc, lambda: (out / "seed3" / rd.CHECKPOINT).exists(), "seed 3 saved no epoch")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphans = [w for w in workers if _alive(w)]
    for w in orphans:  # a failed test leaves nothing training
        os.kill(w, signal.SIGKILL)
    assert not orphans, "a worker outlived its killed parent"
    finished = [s for s in (1, 2, 3) if (out / f"seed{s}" / rd.RESULT).exists()]
    assert 3 not in finished and finished, finished  # seed 3's worker died mid-run, not after it
    before = {s: _files_of(out / f"seed{s}") for s in finished}

    again = run("--jobs", "2", "--out", str(out))
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    for s in (1, 2, 3):
        assert (f"seed {s}: already done in {out / f'seed{s}'}" in again.stdout) == (s in finished), again.stdout
    assert f"{3 - len(finished)} of 3 seed(s) to train" in again.stdout
    assert {s: _files_of(out / f"seed{s}") for s in finished} == before  # not trained again, not rewritten
    got, want = (rd.read_json(d / "consistency.json") for d in (out, ref))
    assert _without_times(got) == _without_times(want)
    assert not [p.name for p in out.iterdir() if ".old-" in p.name]  # every unfinished seed was resumed


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads process states from Linux /proc")
def test_a_pool_worker_outside_linux_exits_once_its_parent_is_gone(tmp_path):
    # The thread that ends orphaned workers where there is no PR_SET_PDEATHSIG, run here without it:
    # parent -> worker, which only watches; the parent is SIGKILLed.
    pid_file = tmp_path / "worker.pid"
    worker = (
        "import os, sys; from pathlib import Path; from mnistlite.runs.plan import _exit_when_orphaned; "
        f"Path({str(pid_file)!r}).write_text(str(os.getpid())); _exit_when_orphaned(int(sys.argv[1]))"
    )
    parent = (
        f"import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid())]); "
    )
    parent += "time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", parent], env=cli_env(None))
    try:
        _wait_while_running(proc, lambda: pid_file.exists() and pid_file.read_text() != "", "no worker", 60)
        child = int(pid_file.read_text())
        assert _alive(child)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphaned = _alive(child)
    if orphaned:  # a failed test leaves nothing running
        os.kill(child, signal.SIGKILL)
    assert not orphaned, "the worker outlived its parent"


# --- 2. divergence, unwritable and full run folders, no silent overwrite --------------


@pytest.mark.slow
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    out = tmp_path / "run"
    after_epoch_1: dict[str, str] = {}
    real_step = Parts.step

    def poisoned_step(self, x, y):
        if after_epoch_1:  # from epoch 2 on, a weight is NaN: every loss is NaN
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("nan")
        return real_step(self, x, y)

    def remember(row):
        after_epoch_1.setdefault("sha", sha(out / rd.CHECKPOINT))

    monkeypatch.setattr(Parts, "step", poisoned_step)
    with pytest.raises(TrainingDiverged) as e:
        train(recipe(), run_dir=out, data=tiny, progress=False, quiet=True, on_epoch=remember)
    msg = str(e.value)
    assert e.value.exit_code == 3 and "\n" not in msg
    assert "loss became nan in epoch 2" in msg and "lower --max-lr" in msg and "keeps epoch 1" in msg
    # The NaN epoch never reached the disk: checkpoint.pt is byte for byte epoch 1's.
    assert sha(out / rd.CHECKPOINT) == after_epoch_1["sha"]
    ckpt = load_checkpoint(out / rd.CHECKPOINT)
    assert ckpt["epoch"] == 1 and all(t.isfinite().all() for t in ckpt["model"].values() if t.is_floating_point())
    assert [r["epoch"] for r in rd.read_metrics(out / rd.METRICS)] == [1]
    assert not (out / rd.MODEL).exists() and not (out / rd.RESULT).exists()


def test_exploding_running_stats_are_caught_before_the_checkpoint(tiny, tmp_path):
    # lr 1e3: the training loss stays finite but BatchNorm's running variance overflows, so
    # eval-mode losses are NaN. Whenever that happens, no broken epoch is saved.
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="diverged, lower --lr"):
        train(recipe(scheduler="none", lr=1e3), run_dir=out, data=tiny, progress=False, quiet=True)
    if (out / rd.CHECKPOINT).exists():
        ckpt = load_checkpoint(out / rd.CHECKPOINT)
        assert all(t.isfinite().all() for t in ckpt["model"].values() if t.is_floating_point())
        assert all(math.isfinite(r["test_loss"]) for r in ckpt["metrics"])


class _FailingProbe:
    """Stands in for the 1 MiB probe file: opening works, writing fails like a full/readonly disk."""

    def __init__(self, err: int):
        self.err = err

    def __call__(self, *a, **k):
        err = self.err

        class F(io.BytesIO):
            def write(self, b):
                raise OSError(err, os.strerror(err))

            def __enter__(self):
                return self

        return F()


@pytest.mark.parametrize(
    "err", [errno.ENOSPC, errno.EACCES, errno.EROFS], ids=["disk-full", "no-permission", "read-only"]
)
def test_unwritable_or_full_run_folder_is_refused_before_training(tiny, tmp_path, monkeypatch, err):
    epochs_run: list = []
    monkeypatch.setattr(rd.tempfile, "NamedTemporaryFile", _FailingProbe(err))
    out = tmp_path / "run"
    with pytest.raises(MnistliteError) as e:
        train(recipe(), run_dir=out, data=tiny, progress=False, quiet=True, on_epoch=epochs_run.append)
    assert str(e.value) == f"cannot write to run directory {out}: {os.strerror(err)}"
    assert epochs_run == [] and not (out / rd.CONFIG).exists()


def test_run_folder_under_a_file_or_readonly_folder_is_refused(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(MnistliteError, match="cannot write to run directory .*Not a directory"):
        train(recipe(), run_dir=blocker / "run", data=tiny, progress=False, quiet=True)
    if os.geteuid() == 0:
        return  # root writes through chmod 500: the monkeypatched probe above covers this case
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(MnistliteError, match="cannot write to run directory .*Permission denied"):
            train(recipe(), run_dir=locked / "run", data=tiny, progress=False, quiet=True)
    finally:
        locked.chmod(0o700)


# --- 3. safe loading -------------------------------------------------------------------


class RunsShell:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class WritesFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def evil_files(folder: Path, marker: Path) -> list[Path]:
    """Crafted checkpoints in torch's zip format and as raw pickles (protocols 2 and 4)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, payload in enumerate([RunsShell(marker), WritesFile(marker)]):
        p = folder / f"zip{i}.pt"
        torch.save({"model": payload, "optimizer": {}, "epoch": 1}, p)
        files.append(p)
        for proto in (2, 4):
            p = folder / f"raw{i}-p{proto}.pt"
            p.write_bytes(pickle.dumps({"model": payload}, protocol=proto))
            files.append(p)
    return files


def test_crafted_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "MARKER"
    for p in evil_files(tmp_path / "evil", marker):
        with pytest.raises(MnistliteError) as e:
            load_checkpoint(p)
        assert "refused to load" in str(e.value) and "\n" not in str(e.value)
    assert "posix.system" in str(pytest.raises(MnistliteError, load_checkpoint, tmp_path / "evil" / "zip0.pt").value)
    assert not marker.exists()


def test_every_torch_load_in_the_code_base_uses_weights_only_true():
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("load", "loads")
            ):
                base = node.func.value
                if isinstance(base, ast.Name) and base.id in ("torch", "pickle", "dill", "joblib"):
                    kw = {k.arg: k.value for k in node.keywords}
                    ok = (
                        base.id == "torch"
                        and isinstance(kw.get("weights_only"), ast.Constant)
                        and (kw["weights_only"].value is True)
                    )
                    calls.append((f"{path.relative_to(REPO)}:{node.lineno}", ok))
    assert calls, "expected at least the trainer's torch.load"
    assert [c for c, ok in calls if not ok] == []


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    at=st.integers(0, 10**6), patch=st.binary(min_size=1, max_size=8), cut=st.booleans(), noise=st.binary(max_size=200)
)
def test_damaged_checkpoint_bytes_only_raise_mnistlite_error(at, patch, cut, noise):
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.arange(6.0)}, "epoch": 1, "metrics": [{"a": 1.0}]}, buf)
    good = buf.getvalue()
    at %= len(good)
    damaged = good[:at] if cut else good[:at] + patch + good[at + len(patch) :]
    with tempfile.TemporaryDirectory() as d:
        for i, data in enumerate((damaged, noise)):
            p = Path(d) / f"c{i}.pt"
            p.write_bytes(data)
            try:
                load_checkpoint(p)
            except MnistliteError as e:
                assert "\n" not in str(e)


# --- 5. determinism --------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_bit_identical_metrics_and_weights(tiny, uninterrupted, tmp_path):
    out = tmp_path / "again"
    res = train(recipe(), run_dir=out, data=tiny, progress=False, quiet=True)
    ref = load_checkpoint(uninterrupted / rd.CHECKPOINT)["metrics"]
    assert strip_seconds(res.metrics) == strip_seconds(ref)
    assert_same_weights(weights(out), weights(uninterrupted))
    # ...and a different seed really is a different run.
    other = train(recipe(seed=4, epochs=1), data=tiny, progress=False, quiet=True)
    assert strip_seconds(other.metrics)[0] != strip_seconds(ref)[0]


# --- 4. bad input to every command: one line on stderr, exit 2, never a traceback ------


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("epochs", -1, "--epochs must be at least 1"),
        ("epochs", 0, "--epochs must be at least 1"),
        ("batch_size", 0, "--batch-size must be at least 1"),
        ("lr", float("nan"), "--lr must be a finite number"),
        ("lr", float("inf"), "--lr must be a finite number"),
        ("lr", -0.1, "--lr must be positive"),
        ("max_lr", float("-inf"), "--max-lr must be a finite number"),
        ("val_size", -5, "--val-size must be 0 or more"),
        ("limit_train", -1, "--limit-train must be 0 or more"),
        ("dataset", "cifar", "--dataset must be mnist or fashion-mnist"),
        ("device", "tpu", "--device must be auto, cpu or cuda"),
        ("dropout", 1.5, "--dropout must be in [0, 1)"),
        ("threads", -2, "--threads must be 0 or more"),
        ("ema", 1.0, "--ema must be in [0, 1)"),
        ("epochs", "3", "config field 'epochs' must be int"),  # a hand-edited config.json
        ("seed", True, "config field 'seed' must be int"),
    ],
)
def test_out_of_range_config_values(field, value, needle):
    with pytest.raises(MnistliteError) as e:
        config_for(MODEL, **{field: value})
    assert needle in str(e.value) and "\n" not in str(e.value)


def cli_env(data_root: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNISTLITE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    env["COLUMNS"] = "200"
    if data_root is not None:
        env["MNISTLITE_DATA"] = str(data_root)
    return env


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    needles: tuple[str, ...]
    code: int = 2
    data: bool = False  # needs real MNIST (and the reference run)
    check: Callable[[Path], None] | None = None  # more assertions on the work folder afterwards
    proc: bool = False  # also run as a real `python -m mnistlite` subprocess


def _untouched(work: Path) -> None:
    assert (work / "taken" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (work / "taken").iterdir()) == ["keep.txt"]


def _no_marker(work: Path) -> None:
    assert not (work / "MARKER").exists(), "the crafted pickle ran code"


def _no_run_files(work: Path) -> None:
    run = work / "diverged"
    assert not (run / rd.MODEL).exists() and not (run / rd.RESULT).exists()


# proc=True marks the cases that also run as subprocesses: one per kind of failure path
# (argparse, MnistliteError from each layer, exit 3, the crafted pickles). The rest run
# through mnistlite.cli.main in this process, where anything but a clean exit code
# propagates and fails the test: starting ~50 interpreters that each import torch
# would cost over a minute of CPU on the 2 cores the suite shares.
CASES = {
    # argparse
    "unknown-command": Case(("frobnicate",), ("invalid choice: 'frobnicate'",), proc=True),
    "not-a-number": Case(("train", "--epochs", "abc"), ("--epochs", "invalid int value: 'abc'")),
    "unknown-flag": Case(("train", "--epochz", "3"), ("unrecognized arguments: --epochz",)),
    # wrong model names
    "train-unknown-model": Case(("train", "--model", "mnistlite8k_modle3"), ("unknown model", "mnistlite8k_model3")),
    "seeds-unknown-model": Case(("seeds", "nope", "--seeds", "1"), ("unknown model 'nope'",)),
    "bench-unknown-model": Case(("bench", "--model", "nope"), ("unknown model 'nope'",)),
    "summary-unknown-model": Case(("summary", "nope"), ("unknown model 'nope'",)),
    "models-unknown-tag": Case(("models", "--tag", "nope"), ("no model has tag 'nope'", "under8k")),
    # out-of-range flags
    "train-negative-epochs": Case(("train", "--epochs", "-1"), ("--epochs must be at least 1, got -1",)),
    "train-zero-batch": Case(("train", "--batch-size", "0"), ("--batch-size must be at least 1, got 0",)),
    "train-nan-lr": Case(("train", "--lr", "nan"), ("--lr must be a finite number, got nan",)),
    "train-inf-max-lr": Case(("train", "--max-lr", "inf"), ("--max-lr must be a finite number, got inf",)),
    "train-negative-val": Case(("train", "--val-size", "-5"), ("--val-size must be 0 or more, got -5",)),
    "train-val-ge-train": Case(
        ("train", "--val-size", "60000", "--no-download", "--out", "v"),
        ("val_size 60000 leaves nothing to train on", "60000 images"),
        data=True,
    ),
    "train-unknown-dataset": Case(("train", "--dataset", "cifar"), ("--dataset must be mnist or fashion-mnist",)),
    "train-bogus-device": Case(("train", "--device", "tpu"), ("--device must be auto, cpu or cuda",)),
    "seeds-zero": Case(("seeds", MODEL, "--seeds", "0"), ("--seeds must be at least 1, got 0",)),
    "seeds-jobs-zero": Case(
        ("seeds", MODEL, "--jobs", "0"), ("argument --jobs: must be a number of runs at once (>= 1) or auto, got '0'",)
    ),
    "tune-jobs-word": Case(
        ("tune", "x.toml", "--jobs", "many"), ("argument --jobs: must be a number", "or auto, got 'many'")
    ),
    "train-bn-fusion-bogus": Case(("train", "--bn-fusion", "fast"), ("argument --bn-fusion: invalid choice: 'fast'",)),
    "bench-bogus-device": Case(("bench", "--device", "tpu"), ("--device must be auto, cpu, cuda or cuda:N",)),
    "bench-negative-threads": Case(("bench", "--threads", "-1"), ("--threads must be 0 (all cores) or more",)),
    "bench-zero-batch": Case(("bench", "--batch-size", "0"), ("--batch-size must be at least 1, got 0",)),
    "bench-zero-rounds": Case(("bench", "--rounds", "0"), ("--rounds must be at least 1, got 0",)),
    "search-zero-epochs": Case(("search", "--epochs", "0"), ("--epochs must be at least 1, got 0",)),
    "search-unknown-dataset": Case(("search", "--dataset", "cifar"), ("--dataset: invalid choice: 'cifar'",)),
    "serve-port-zero": Case(("serve", "model.pt", "--port", "0"), ("--port must be between 1 and 65535",)),
    # missing and corrupt files
    "train-missing-data": Case(
        ("train", "--data-dir", "empty", "--no-download", "--out", "m"), ("mnist files missing", "empty/MNIST/raw")
    ),
    "train-corrupt-data": Case(
        ("train", "--data-dir", "corrupt", "--no-download", "--out", "c"),
        ("train-images-idx3-ubyte", "wrong magic number", "is this the right file"),
        proc=True,
    ),
    "experiment-missing": Case(("experiment", "missing.toml"), ("missing.toml: experiment file not found",)),
    "experiment-bad-toml": Case(("experiment", "broken.toml"), ("broken.toml: not valid TOML",)),
    "experiment-bad-value": Case(("experiment", "badvalue.toml", "--plan"), ("badvalue.toml", "recipe field 'lr'")),
    "experiment-unknown-model": Case(("experiment", "badmodel.toml", "--plan"), ("unknown model 'nope'",)),
    "report-missing": Case(("report", "nowhere"), ("nowhere: no such directory",)),
    "compare-missing": Case(("compare", "nowhere"), ("nowhere: no such directory",)),
    "export-missing": Case(("export", "nowhere"), ("nowhere: no such file or directory",)),
    "predict-missing-model": Case(("predict", "nowhere", "digit.png"), ("nowhere: no such file or directory",)),
    "predict-corrupt-model": Case(("predict", "garbage.pt", "digit.png"), ("garbage.pt: corrupt or not a PyTorch",)),
    "serve-missing-model": Case(("serve", "nowhere"), ("nowhere: no such file or directory",)),
    # bad images (deploy)
    "predict-not-an-image": Case(("predict", "model.pt", "bad.png"), ("bad.png: not an image",), proc=True),
    "predict-truncated-image": Case(("predict", "model.pt", "trunc.png"), ("trunc.png: truncated image",)),
    "predict-blank-image": Case(("predict", "model.pt", "blank.png"), ("blank.png: no digit found",)),
    "predict-missing-image": Case(("predict", "model.pt", "missing.png"), ("missing.png: no such file",)),
    # run directories: resume, overwrite, unwritable
    "train-out-exists": Case(
        ("train", "--out", "taken", "--epochs", "1"),
        ("run directory taken already exists", "mnistlite train --resume taken"),
        check=_untouched,
        proc=True,
    ),
    "train-out-under-file": Case(("train", "--out", "a-file/run"), ("cannot write to run directory a-file/run",)),
    "resume-missing": Case(("train", "--resume", "nowhere"), ("nowhere: no such run directory",)),
    "resume-a-file": Case(("train", "--resume", "a-file"), ("a-file: no such run directory",)),
    "resume-no-checkpoint": Case(("train", "--resume", "nockpt"), ("nockpt/checkpoint.pt: no checkpoint there",)),
    "resume-model-as-checkpoint": Case(("train", "--resume", "modelckpt"), ("not a training checkpoint",)),
    "resume-bad-config-json": Case(("train", "--resume", "badjson"), ("badjson/config.json: not valid JSON",)),
    "resume-bad-config-type": Case(
        ("train", "--resume", "badtype"), ("badtype/config.json", "config field 'epochs' must be int, got 'x'")
    ),
    "resume-crafted-pickle": Case(
        ("train", "--resume", "evilrun"),
        ("evilrun/checkpoint.pt: refused to load", "posix.system"),
        check=_no_marker,
        proc=True,
    ),
    "predict-crafted-pickle": Case(("predict", "evil/model.pt", "digit.png"), ("refused to load",), check=_no_marker),
    "resume-edited-config": Case(
        ("train", "--resume", "edited"), ("edited/config.json no longer matches", "epochs"), data=True
    ),
    # divergence: exit 3, nothing finished written
    "train-diverges": Case(
        (
            "train",
            "--model",
            MODEL,
            "--scheduler",
            "none",
            "--lr",
            "1e6",
            "--epochs",
            "2",
            "--limit-train",
            "500",
            "--threads",
            "1",
            "--no-download",
            "--out",
            "diverged",
        ),
        ("became", "in epoch 1", "training diverged, lower --lr"),
        code=3,
        data=True,
        check=_no_run_files,
        proc=True,
    ),
}


def _toml(*lines: str) -> str:
    return "\n".join(('title = "t"', "[[steps]]", 'name = "a"', 'target = ["x"]', *lines)) + "\n"


def _make_work(work: Path, reference: Path | None) -> None:
    """Every file the CASES point at."""
    from PIL import Image

    from mnistlite.models import count_params, create_model

    (work / "taken").mkdir()
    (work / "taken" / "keep.txt").write_text("mine")
    (work / "a-file").write_text("not a folder")
    (work / "empty").mkdir()
    raw = work / "corrupt" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 60)  # a labels header
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    (work / "broken.toml").write_text("steps = [\n")
    (work / "badvalue.toml").write_text(_toml('model = "mnistlite8k_model3"', "[steps.recipe]", 'lr = "fast"'))
    (work / "badmodel.toml").write_text(_toml('model = "nope"'))
    (work / "bad.png").write_bytes(b"GIF89a but not really an image")
    digit = Image.new("L", (40, 40), 255)
    for i in range(8, 32):
        digit.putpixel((20, i), 0)
    digit.save(work / "digit.png")
    png = (work / "digit.png").read_bytes()
    (work / "trunc.png").write_bytes(png[: len(png) // 2])
    Image.new("L", (40, 40), 255).save(work / "blank.png")
    net = create_model(MODEL)
    cfg = config_for(MODEL)
    torch.save({"model": net.state_dict(), "config": cfg.to_dict(), "params": count_params(net)}, work / "model.pt")
    (work / "garbage.pt").write_bytes(b"this is not a checkpoint\n" * 3)
    (work / "nockpt").mkdir()
    rd.write_json(work / "nockpt" / rd.CONFIG, cfg.to_dict())
    (work / "modelckpt").mkdir()
    rd.write_json(work / "modelckpt" / rd.CONFIG, cfg.to_dict())
    (work / "modelckpt" / rd.CHECKPOINT).write_bytes((work / "model.pt").read_bytes())
    (work / "badjson").mkdir()
    (work / "badjson" / rd.CONFIG).write_text('{"model": ')
    (work / "badtype").mkdir()
    rd.write_json(work / "badtype" / rd.CONFIG, {**cfg.to_dict(), "epochs": "x"})
    marker = work / "MARKER"
    (work / "evilrun").mkdir()
    rd.write_json(work / "evilrun" / rd.CONFIG, cfg.to_dict())
    torch.save({"model": RunsShell(marker)}, work / "evilrun" / rd.CHECKPOINT)
    (work / "evil").mkdir()
    torch.save({"model": WritesFile(marker), "config": cfg.to_dict()}, work / "evil" / rd.MODEL)
    if reference is not None:  # a real checkpoint, with config.json edited afterwards
        (work / "edited").mkdir()
        edited = {**rd.read_json(reference / rd.CONFIG), "epochs": 5}
        rd.write_json(work / "edited" / rd.CONFIG, edited)
        (work / "edited" / rd.CHECKPOINT).write_bytes((reference / rd.CHECKPOINT).read_bytes())


def _data_root() -> Path | None:  # as conftest.real_data_root
    c = os.environ.get("MNISTLITE_DATA")
    return Path(c) if c and (Path(c) / "MNIST" / "raw").is_dir() else None


@pytest.fixture(scope="module")
def cli_setup(request, tmp_path_factory) -> tuple[Callable[[], Path], Path | None]:
    """A maker of folders holding every file the CASES use, and the MNIST root (None: data=True cases skip)."""
    pytest.importorskip("PIL", reason="the bad-image cases need Pillow (pip install 'mnistlite[deploy]')")
    root = _data_root()
    reference = request.getfixturevalue("uninterrupted") if root is not None else None

    def make() -> Path:
        work = tmp_path_factory.mktemp("cli")
        _make_work(work, reference)
        return work

    return make, root


@pytest.fixture(scope="module")
def cli_work(cli_setup) -> tuple[Path, Path | None]:
    make, root = cli_setup
    return make(), root


@pytest.fixture(scope="module")
def subprocess_results(cli_setup) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """The proc=True cases as `python -m mnistlite ...`, three at a time (most of their time is importing torch),
    in a folder of their own so that they do not meet the in-process runs' leftovers."""
    make, root = cli_setup
    work = make()
    env = cli_env(root)

    def run(case: Case):
        return subprocess.run(
            [sys.executable, "-m", "mnistlite", *case.args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    todo = {k: c for k, c in CASES.items() if c.proc and (root is not None or not c.data)}
    with ThreadPoolExecutor(max_workers=3) as pool:
        return work, dict(zip(todo, pool.map(run, todo.values())))


def assert_one_line_error(case: Case, code: int, stderr: str) -> None:
    err = stderr.strip()
    assert "Traceback" not in stderr, stderr
    assert len(err.splitlines()) == 1, stderr
    assert code == case.code, (code, stderr)
    assert err.startswith("mnistlite"), err
    for needle in case.needles:
        assert needle in err, f"{needle!r} not in {err!r}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_error(cli_work, name, monkeypatch, capsys):
    from mnistlite.cli import main

    work, root = cli_work
    case = CASES[name]
    if case.data and root is None:
        pytest.skip("needs real MNIST: set MNISTLITE_DATA (make test points it at ../shared/datasets)")
    for k in [k for k in os.environ if k.startswith("MNISTLITE_")]:
        monkeypatch.delenv(k)
    if root is not None:
        monkeypatch.setenv("MNISTLITE_DATA", str(root))
    monkeypatch.chdir(work)
    capsys.readouterr()
    try:
        code = main(list(case.args))  # anything but MnistliteError/SystemExit escaping fails here
    except SystemExit as e:
        code = e.code
    assert_one_line_error(case, code, capsys.readouterr().err)
    if case.check:
        case.check(work)


@pytest.mark.slow
@pytest.mark.parametrize("name", [k for k, c in CASES.items() if c.proc])
def test_bad_input_gives_one_line_error_subprocess(subprocess_results, name):
    work, results = subprocess_results
    if name not in results:
        pytest.skip("needs real MNIST: set MNISTLITE_DATA (make test points it at ../shared/datasets)")
    r = results[name]
    assert_one_line_error(CASES[name], r.returncode, r.stderr)
    if CASES[name].check:
        CASES[name].check(work)


def test_a_config_saved_before_a_field_existed_ran_with_its_default():
    """Skip-if-done and resume compare configs: a field missing from an old config.json is its
    default, so an old run matches a default config and not one that sets the new field."""
    from mnistlite.config import changed_fields, describe_differences

    old = {k: v for k, v in recipe().to_dict().items() if k != "ema"}
    assert changed_fields(old, recipe()) == [] and describe_differences(old, recipe()) == []
    assert changed_fields(old, recipe(ema=0.99)) == ["ema"]
    assert describe_differences(old, recipe(ema=0.99)) == ["ema 0.0 -> 0.99"]
