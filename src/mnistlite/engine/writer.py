"""The one writer of a run directory's files, for the trainer and for a rebuilt run (`portable.unpack_run`);
result.json, the mark of a finished run, is written last. Each test-set reading appends to test_readings.jsonl."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import rundir as rd


def layer_table_text(table: str, macs: int, params: int) -> str:
    """summary.txt: the layer table, MACs per image and the budget verdict."""
    from ..modelinfo import budget_verdict

    return f"{table}\nMACs per image: {macs:,}\nBudget: {budget_verdict(params)}\n"


def model_file(model: nn.Module, config: dict[str, Any], params: int) -> dict[str, Any]:
    """model.pt's contents: the weights on the CPU, the config they were trained with, their count."""
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "config": config, "params": params}


def curves_title(config: Mapping[str, Any]) -> str:
    return f"{config['model']} (seed {config['seed']})"


def write_run_files(
    out: Path,
    *,
    config: dict[str, Any] | None = None,
    model_source: bytes | None = None,
    layer_table: str | None = None,
    log: str | None = None,
    metrics: Sequence[dict[str, Any]] | None = None,
    model: dict[str, Any] | None = None,
    curves: str | None = None,
    result: dict[str, Any] | None = None,
) -> None:
    """Write the given files of run directory `out` (each skipped when its argument is None).
    `curves` is the title of curves.png, drawn from `metrics`; a failure there raises OSError."""
    if config is not None:
        rd.write_json(out / rd.CONFIG, config)
    if model_source is not None:  # the exact bytes built from: a rebuild never depends on the user's file
        rd.atomic_write_bytes(out / rd.MODEL_SOURCE, model_source)
    if layer_table is not None:
        rd.atomic_write_text(out / rd.LAYER_TABLE, layer_table)
    if log is not None:
        rd.atomic_write_text(out / rd.LOG, log)
    if metrics is not None:
        rd.write_metrics(out / rd.METRICS, metrics)
    if model is not None:
        rd.atomic_torch_save(model, out / rd.MODEL)
    if curves is not None and metrics is not None:
        from .plots import plot_curves

        plot_curves(metrics, out / rd.CURVES, title=curves)
    if result is not None:
        rd.write_json(out / rd.RESULT, result)


def record_test_reading(
    out: Path,
    *,
    state: Mapping[str, torch.Tensor],
    config: dict[str, Any],
    params: int,
    rows: Sequence[Mapping[str, Any]],
    **extra: Any,
) -> None:
    """Append one line to `out`'s test_readings.jsonl for the test figures in `rows` (none: no line).
    One line per command (a training session lists its epochs): the audit orders commands, not epochs."""
    read = [r for r in rows if r.get("test_acc") is not None]
    if not read:
        return
    rd.append_jsonl(
        out / rd.READINGS,
        {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": os.environ.get(rd.COMMAND_ENV),
            "model": config["model"],
            "params": params,
            "model_hash": rd.model_hash(state, config.get("model_sha256")),
            "recipe_hash": rd.recipe_hash(config),
            "val_size": config.get("val_size", 0),
            "split": "test",
            "epochs": [r["epoch"] for r in read],
            "test_acc": [r["test_acc"] for r in read],
            **extra,
        },
    )
