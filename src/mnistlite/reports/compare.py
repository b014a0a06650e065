"""`mnistlite compare`: finished runs side by side, as a table and one overlay plot."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..engine import rundir as rd
from ..errors import MnistliteError
from .figures import plot_test_overlay
from .markdown import epoch_list
from .runs import RunRecord, is_run_dir, load_run
from .sections import EXPERIMENT_JSON, is_experiment_dir, sections_from_experiment


def expand_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories, with an experiment directory standing for all its runs."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            out.append(p)
        elif is_experiment_dir(p):
            _, sections = sections_from_experiment(p)
            out += [r.path for s in sections for r in s.runs]
        elif not p.exists():
            raise MnistliteError(f"{p}: no such directory")
        else:
            raise MnistliteError(
                f"{p}: neither a run directory ({rd.CONFIG}) nor an experiment directory ({EXPERIMENT_JSON})"
            )
    return out


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """The shortest path suffixes that tell the runs apart."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    # "seed1" alone says little: experiment runs get their step folder too.
    start = 2 if parts and all(re.fullmatch(r"seed\d+", x[-1]) for x in parts) else 1
    for k in range(start, max((len(x) for x in parts), default=1) + 1):
        labels = ["/".join(x[-k:]) for x in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def compare_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    rows = []
    for label, r in zip(unique_labels([r.path for r in runs]), runs):
        s = r.headline
        rows.append(
            {
                "run": label,
                "path": str(r.path),
                "model": r.model,
                "seed": r.seed,
                "params": r.params,
                "epochs": len(r.rows),
                "best_test_acc": s.get("best_test_acc"),
                "final_test_acc": s.get("final_test_acc"),
                "last3_min_test_acc": s.get("last3_min_test_acc"),
                "epochs_at_target": s.get("epochs_at_target", []),
                "wall_seconds": r.wall_seconds,
                "complete": r.complete,
            }
        )
    return rows


def format_compare(rows: Sequence[dict[str, Any]]) -> str:
    def f(v: Any, spec: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    table = [["run", "model", "params", "best test", "final test", "last-3 min", f"epochs >= {rd.TARGET}", "wall s"]]
    for r in rows:
        at = r["epochs_at_target"]
        table.append(
            [
                r["run"] + ("" if r["complete"] else " (incomplete)"),
                r["model"],
                f(r["params"], ","),
                f(r["best_test_acc"], ".2f"),
                f(r["final_test_acc"], ".2f"),
                f(r["last3_min_test_acc"], ".2f"),
                f"{len(at)}" + (f" ({epoch_list(at)})" if at else ""),
                f(r["wall_seconds"], ".1f"),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    left = {0, 1, 6}
    return "\n".join(
        "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in table
    )


def compare(paths: Sequence[str | Path], out_png: str | Path) -> tuple[list[dict[str, Any]], Path]:
    dirs = expand_dirs(paths)
    runs = [load_run(d) for d in dirs]
    rows = compare_rows(runs)
    curves = {row["run"]: [(x["epoch"], x["test_acc"]) for x in r.rows] for row, r in zip(rows, runs)}
    out_png = Path(out_png)
    plot_test_overlay(curves, out_png, "Test accuracy per epoch")
    return rows, out_png
