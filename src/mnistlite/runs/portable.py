"""A finished run as one JSON-able dict, and back: how a run trained on one
machine of a shared sweep reaches the others (through the Optuna storage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import rundir as rd


def pack_run(run: Path) -> dict[str, Any]:
    """The text files of a finished run (weights stay where they were trained)."""
    log = run / rd.LOG
    return {
        "result": rd.read_json(run / rd.RESULT),
        "config": rd.read_json(run / rd.CONFIG),
        "metrics": rd.read_metrics(run / rd.METRICS),
        "log": log.read_text() if log.is_file() else "",
        "trained_in": str(run),
    }


def unpack_run(packed: dict[str, Any], run: Path) -> None:
    """Rebuild `run` from `pack_run` output, unless it already holds a result."""
    if (run / rd.RESULT).is_file():
        return
    from ..modelinfo import profile_registered
    from .plots import plot_curves

    run.mkdir(parents=True, exist_ok=True)
    cfg = packed["config"]
    rd.write_metrics(run / rd.METRICS, packed["metrics"])
    rd.write_json(run / rd.CONFIG, cfg)
    rd.atomic_write_text(run / rd.LOG, packed.get("log", ""))
    prof = profile_registered(cfg["model"])
    rd.atomic_write_text(run / rd.SUMMARY, f"{prof.table}\nMACs per image: {prof.macs:,}\n")
    plot_curves(packed["metrics"], run / rd.CURVES, title=f"{cfg['model']} (seed {cfg['seed']})")
    rd.write_json(run / rd.RESULT, {**packed["result"], "trained_in": packed.get("trained_in")})
