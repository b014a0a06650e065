"""A finished run as one JSON-able dict, and back: how a shared sweep's runs reach the other machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..engine import rundir as rd
from ..engine.writer import curves_title, layer_table_text, write_run_files
from ..modelinfo import profile_registered


def pack_run(run: Path) -> dict[str, Any]:
    """The text files of a finished run (weights stay where they were trained)."""
    log, readings = run / rd.LOG, run / rd.READINGS
    return {
        "result": rd.read_json(run / rd.RESULT),
        "config": rd.read_json(run / rd.CONFIG),
        "metrics": rd.read_metrics(run / rd.METRICS),
        "log": log.read_text() if log.is_file() else "",
        "readings": rd.read_jsonl(readings) if readings.is_file() else [],  # the audit's record travels too
        "trained_in": str(run),
    }


def unpack_run(packed: dict[str, Any], run: Path) -> None:
    """Rebuild `run` from `pack_run` output, unless it already holds a result."""
    if (run / rd.RESULT).is_file():
        return
    run.mkdir(parents=True, exist_ok=True)
    cfg = packed["config"]
    prof = profile_registered(cfg["model"])
    write_run_files(
        run,
        config=cfg,
        layer_table=layer_table_text(prof.table, prof.macs, prof.params),
        log=packed.get("log", ""),
        metrics=packed["metrics"],
        curves=curves_title(cfg),
        result={**packed["result"], "trained_in": packed.get("trained_in")},
    )
    if packed.get("readings"):
        rd.atomic_write_text(run / rd.READINGS, "".join(json.dumps(r) + "\n" for r in packed["readings"]))
