"""checkpoint.pt: all a run needs to resume bit for bit; written atomically per epoch, loaded with weights_only=True."""

from __future__ import annotations

import pickle
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig, changed_fields
from ..errors import MnistliteError
from . import rundir as rd
from .parts import Parts


@dataclass
class Progress:
    """Where a run stands: the epochs done so far, and the training time they took across sessions."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    epochs_done: int = 0
    elapsed_before: float = 0.0  # training seconds of earlier sessions (checkpoint.pt's elapsed_seconds)
    session_start: float = field(default_factory=time.perf_counter)
    sessions: int = 1
    evaluate_test: bool = True  # a run resumes scoring (or skipping) the test set as it started

    def elapsed(self) -> float:
        """Training seconds of the whole run up to now, this session included."""
        return self.elapsed_before + (time.perf_counter() - self.session_start)


def load_checkpoint(path: Path) -> Any:
    """Load with weights_only=True; only a one-line MnistliteError leaves (torch's own suggests weights_only=False)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": stderr stays one line
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MnistliteError(f"{path}: no checkpoint there; nothing to resume") from None
    except OSError as e:  # a directory, no permission, I/O error
        raise MnistliteError(f"{path}: cannot read ({e.strerror or e})") from None
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it would import {m.group(1)}" if m else "it holds more than tensors and plain data"
        raise MnistliteError(
            f"{path}: refused to load: not a plain weights file ({what}); mnistlite never runs code from a "
            "checkpoint, so only load files you made with mnistlite"
        ) from None
    except Exception as e:  # noqa: BLE001 -- unpickling damaged or hostile bytes raises anything
        lines = str(e).strip().splitlines()
        what = f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__
        raise MnistliteError(f"{path}: corrupt or not a PyTorch checkpoint ({what})") from None


def check_checkpoint(ckpt: Any, cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """`ckpt` if it is a resumable checkpoint of this very config, else a one-line MnistliteError."""
    required = ("model", "optimizer", "schedule", "rng", "epoch", "metrics")
    missing = [k for k in required if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise MnistliteError(
            f"{run_dir / rd.CHECKPOINT}: not a training checkpoint (no {', '.join(missing)}); nothing to resume"
        )
    saved = ckpt.get("config")
    changed = changed_fields(saved, cfg) if isinstance(saved, dict) else []  # where and how fast may change, not what
    if changed:
        raise MnistliteError(
            f"{run_dir / rd.CONFIG} no longer matches the checkpoint ({', '.join(changed)} changed); "
            "a run resumes with the config it started with: undo the edit, or train a new run"
        )
    return dict(ckpt)


def save_checkpoint(out: Path, parts: Parts, progress: Progress) -> None:
    """checkpoint.pt for the last epoch in `progress.rows`."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "gen": parts.generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state: dict[str, Any] = {
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "schedule": parts.schedule.state_dict(),
        "rng": rng,
        "epoch": progress.epochs_done,
        "metrics": progress.rows,
        "config": parts.cfg.to_dict(),
        "elapsed_seconds": progress.elapsed(),
        "sessions": progress.sessions,
        "evaluate_test": progress.evaluate_test,
        **({"ema": parts.ema.state_dict()} if parts.ema is not None else {}),
    }
    rd.atomic_torch_save(state, out / rd.CHECKPOINT)


def restore(parts: Parts, ckpt: dict[str, Any], path: Path, session_start: float) -> Progress:
    """Load `ckpt` into `parts` (weights, optimizer, schedule, average, RNGs); the run's progress so far."""
    try:
        parts.model.load_state_dict(ckpt["model"])
        parts.optimizer.load_state_dict(ckpt["optimizer"])
        parts.schedule.load_state_dict(ckpt["schedule"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        parts.generator.set_state(ckpt["rng"]["gen"])
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        if parts.ema is not None:
            parts.ema.load_state_dict(ckpt["ema"])
        rows = list(ckpt["metrics"])
        epochs_done = int(ckpt["epoch"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise MnistliteError(f"{path}: does not fit this run's model and config: {first}") from None
    # An old checkpoint without elapsed_seconds: its epochs' own times are the best guess.
    elapsed = ckpt["elapsed_seconds"] if "elapsed_seconds" in ckpt else sum(r.get("seconds") or 0.0 for r in rows)
    return Progress(
        rows=rows,
        epochs_done=epochs_done,
        elapsed_before=float(elapsed),
        session_start=session_start,
        sessions=int(ckpt.get("sessions", 1)) + 1,
        evaluate_test=bool(ckpt.get("evaluate_test", True)),
    )
