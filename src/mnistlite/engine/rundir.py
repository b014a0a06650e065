"""A run directory: its files' stable names (scripts rely on them), atomic writes, the metrics and headline numbers."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch

from ..challenge import LAST_EPOCHS, TARGET
from ..errors import MnistliteError
from ..models import usercode

CONFIG = "config.json"
METRICS = "metrics.csv"
LOG = "log.txt"
LAYER_TABLE = "summary.txt"  # the layer table, under the name scripts rely on
CURVES = "curves.png"
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
MODEL_SOURCE = usercode.MODEL_SOURCE
READINGS = "test_readings.jsonl"  # one line per reading of the test set, appended (reports/audit.py)
COMMAND_ENV = "MNISTLITE_COMMAND"  # the command line, set by the CLI: its spawned workers see it too
# Not the recipe: the model (hashed apart), where and how it ran, the seed, rounding-only layouts,
# and the held-out split (a choice made on validation and its final run on the full set are one recipe).
NOT_RECIPE = frozenset(
    {"model", "model_sha256", "seed", "threads", "data_dir", "device", "download", "bn_fusion", "cuda_graph"}
    | {"channels_last", "eval_batch_size", "val_size", "bf16"}  # bf16: the old spelling of `precision`
)

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds")
NO_TEST_COLUMNS = tuple(c for c in METRIC_COLUMNS if not c.startswith("test_"))
# With --ema the main columns are the averaged weights'; these are the raw ones'.
OPTIONAL_METRIC_COLUMNS = ("raw_val_acc", "raw_test_acc")


def default_run_dir(root: str | Path, model: str, seed: int) -> Path:
    return Path(root) / f"{model}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(path: str | Path, *, resume: bool = False) -> Path:
    """Create (or, when resuming, reuse) `path` and prove it writable now; a non-empty one needs `resume`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MnistliteError(f"run directory {path} exists and is not a directory; choose another --out")
    if not resume and path.is_dir() and any(path.iterdir()):
        raise MnistliteError(
            f"run directory {path} already exists and is not empty; choose another --out, "
            f"or continue it with 'mnistlite train --resume {path}'"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Write a probe of realistic size so a full disk shows up now, not at epoch 15.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-") as f:
            f.write(b"\0" * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise MnistliteError(f"cannot write to run directory {path}: {e.strerror or e}") from None
    return path


# A folder fsync that these answer is not possible there (Windows cannot open a folder; some
# network and FUSE file systems answer EINVAL): the rename stands, it is just not forced to disk.
_DIR_FSYNC_REFUSED = frozenset(
    getattr(errno, name)
    for name in ("EINVAL", "ENOTSUP", "EOPNOTSUPP", "EBADF", "EACCES", "EPERM", "EISDIR", "ENOTDIR")
    if hasattr(errno, name)
)


def fsync_dir(folder: Path) -> None:
    """fsync `folder` itself, so that a rename in it survives a power loss. Skipped quietly where the
    OS or the file system refuses; other errors (EIO) are raised: the disk is failing."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # Windows: a folder cannot be opened; the rename is done, nothing more to do
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _DIR_FSYNC_REFUSED:
            raise
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], Any], errors: tuple[type[Exception], ...]) -> None:
    """Write a temporary file, fsync it, rename it over `path`, fsync the folder: readers see the
    old or the new file, never half, and after a power loss the new one once this returns."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except errors as e:  # a full disk (ENOSPC), a quota, a folder gone read-only
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        why = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MnistliteError(
            f"cannot write {path} ({why}); the previous {path.name}, if any, is kept unchanged"
        ) from None
    try:
        fsync_dir(path.parent)
    except OSError as e:  # the new file is in place, but the disk failed to record the rename
        raise MnistliteError(
            f"cannot fsync the folder of {path} ({e.strerror or e}); the new {path.name} is written but "
            "may not survive a power loss: check the disk"
        ) from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data), (OSError,))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    # Into an open file: torch then reports a full disk as OSError(ENOSPC), not an opaque RuntimeError.
    _atomic_write(path, lambda f: torch.save(obj, f), (OSError, RuntimeError))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MnistliteError(f"{path}: file not found") from None
    except OSError as e:  # a parent that is a file, no permission, a directory
        raise MnistliteError(f"{path}: cannot read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MnistliteError(f"{path}: not valid JSON ({e})") from None


def write_metrics(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rewrite the whole CSV atomically: a crash never leaves half a row."""
    buf = io.StringIO()
    # The fixed columns first, for scripts; no test columns where the test set was never read (sealed, skipped).
    fixed = METRIC_COLUMNS if not rows or any("test_acc" in r for r in rows) else NO_TEST_COLUMNS
    cols = fixed + tuple(k for k in OPTIONAL_METRIC_COLUMNS if any(k in r for r in rows))
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows({k: _fmt(r.get(k)) for k in cols} for r in rows)
    atomic_write_text(path, buf.getvalue())


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else str(v)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise MnistliteError(f"{path}: file not found; is this a run directory?") from None
    return [
        {**{k: float(v) if v not in ("", None) else None for k, v in r.items()}, "epoch": int(float(r["epoch"]))}
        for r in rows
    ]


def headline_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers of result.json (no test figure where the test set was not read)."""
    test = [r["test_acc"] for r in rows if r.get("test_acc") is not None]
    val = [r["val_acc"] for r in rows if r.get("val_acc") is not None]
    train = [r["train_acc"] for r in rows]
    trained = {"best_train_acc": max(train), "final_train_acc": train[-1]}
    validated = {"best_val_acc": max(val) if val else None, "final_val_acc": val[-1] if val else None}
    if not any("test_acc" in r for r in rows):
        return {"epochs_run": len(rows), **trained, **validated, "test_set": "not read"}
    return {
        "epochs_run": len(rows),
        "best_test_acc": max(test) if test else None,
        "final_test_acc": test[-1] if test else None,
        **trained,
        "epochs_at_target": [r["epoch"] for r in rows if r.get("test_acc") is not None and r["test_acc"] >= TARGET],
        "last3_min_test_acc": min(test[-LAST_EPOCHS:]) if test else None,
        **validated,
        "final_test_loss": rows[-1].get("test_loss"),
    }


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def recipe_hash(config: Mapping[str, Any]) -> str:
    """A config's recipe, hashed: everything but NOT_RECIPE, as it ran (a field older configs lack: its default)."""
    from ..config import TrainConfig, saved_value

    names = (set(TrainConfig().to_dict()) | set(config)) - NOT_RECIPE
    return _sha({k: saved_value(dict(config), k) for k in names})


def model_hash(state: Mapping[str, torch.Tensor], model_sha256: str | None = None) -> str:
    """An architecture, hashed: its tensors' names and shapes; a user's model file: the file's SHA-256."""
    return model_sha256[:16] if model_sha256 else _sha([[k, list(v.shape)] for k, v in state.items()])


def append_jsonl(path: Path, obj: Any) -> None:
    """Append one JSON line and fsync it (the folder too when the file is new): a record never loses a line."""
    new = not path.exists()
    try:
        with open(path, "a") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(path.parent)
    except OSError as e:
        raise MnistliteError(f"cannot append to {path} ({e.strerror or e})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as e:
        raise MnistliteError(f"{path}: cannot read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MnistliteError(f"{path}: not valid JSON lines ({e})") from None
