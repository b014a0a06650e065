"""A run directory read back for reports: everything a report needs, no training.

The numbers come from metrics.csv through `rundir.headline_numbers`, the function that
wrote result.json, so the two never disagree. Params, MACs and wall time come from
result.json; a run still in progress has none yet, so they come from its layer table
(summary.txt) and its rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..engine import rundir as rd
from ..errors import MnistliteError


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]  # metrics.csv, one row per finished epoch
    result: dict[str, Any] | None  # result.json; None while the run is unfinished
    layer_table: str | None  # summary.txt
    log: str | None  # log.txt
    # A validation run (sealed: it never read the test set). Its rows carry the validation split's
    # figures under the test keys, so the rules read them alike; every label says `split`.
    sealed: bool = False

    @property
    def split(self) -> str:
        return "val" if self.sealed else "test"

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def seed(self) -> int | None:
        s = self.config.get("seed")
        return int(s) if s is not None else None

    @property
    def complete(self) -> bool:
        return self.result is not None

    @property
    def planned_epochs(self) -> int | None:
        e = self.config.get("epochs")
        return int(e) if e is not None else None

    @property
    def headline(self) -> dict[str, Any]:
        """The headline numbers of result.json, recomputed from the rows (also for an unfinished run)."""
        return rd.headline_numbers(self.rows) if self.rows else {}

    @property
    def params(self) -> int | None:
        return self._count("params", r"Trainable params:\s*([\d,]+)")

    @property
    def macs(self) -> int | None:
        return self._count("macs", r"MACs per image:\s*([\d,]+)")

    def _count(self, key: str, pattern: str) -> int | None:
        """result.json's count, else (a run still in progress) the layer table's."""
        if self.result and self.result.get(key) is not None:
            return int(self.result[key])
        m = re.search(pattern, self.layer_table or "")
        return int(m.group(1).replace(",", "")) if m else None

    @property
    def resumed(self) -> bool:
        if self.result and self.result.get("sessions") is not None:
            return int(self.result["sessions"]) > 1
        # Legacy: run directories written before result.json had `sessions` say so only in log.txt.
        return "Resumed after epoch" in (self.log or "")

    @property
    def wall_seconds(self) -> float | None:
        """result.json's wall time, which counts every session of a resumed run; for an
        unfinished run, the sum of its epochs' times."""
        if self.result and self.result.get("wall_seconds") is not None:
            if self.result.get("sessions") is not None or not self.resumed:
                return float(self.result["wall_seconds"])
            # Legacy: before result.json had `sessions`, a resumed run's wall_seconds counted only
            # its last session, so the epochs' own times are the better total.
        secs = [r.get("seconds") for r in self.rows]
        return float(sum(s for s in secs if s is not None)) if self.rows else None


# The columns a sealed run's report reads from its validation split.
_VAL_AS_TEST = {"val_acc": "test_acc", "val_loss": "test_loss", "raw_val_acc": "raw_test_acc"}


def is_run_dir(path: Path) -> bool:
    return (Path(path) / rd.CONFIG).is_file()


def load_run(path: str | Path) -> RunRecord:
    """Read a run directory; MnistliteError if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise MnistliteError(f"{path}: no such directory")
    if not is_run_dir(path):
        raise MnistliteError(f"{path}: not a run directory (no {rd.CONFIG})")
    config = rd.read_json(path / rd.CONFIG)
    if not isinstance(config, dict):
        raise MnistliteError(f"{path / rd.CONFIG}: expected a JSON object")
    rows = rd.read_metrics(path / rd.METRICS) if (path / rd.METRICS).is_file() else []
    result = rd.read_json(path / rd.RESULT) if (path / rd.RESULT).is_file() else None
    sealed = bool(rows) and not any("test_acc" in r for r in rows)
    if sealed:
        rows = [{**r, **{t: r[v] for v, t in _VAL_AS_TEST.items() if v in r}} for r in rows]
    return RunRecord(
        sealed=sealed,
        path=path,
        config=config,
        rows=rows,
        result=result,
        layer_table=_read_text(path / rd.LAYER_TABLE),
        log=_read_text(path / rd.LOG),
    )


def _read_text(path: Path) -> str | None:
    return path.read_text(errors="replace") if path.is_file() else None


def split_of(runs: Sequence[RunRecord], what: str) -> str:
    """The split all `runs` read ("val": sealed, no test column); runs on both are refused: `what` them apart."""
    splits = {r.split for r in runs}
    if len(splits) > 1:
        raise MnistliteError(f"these runs read different splits (test, or validation only): {what} them apart")
    return splits.pop() if splits else "test"


def log_excerpt(log: str | None, last_epoch: int, epochs: int) -> str:
    """The log from the start of epoch `last_epoch - epochs + 1` on (a resumed run's log repeats
    epoch headers: the last one wins)."""
    if not log:
        return ""
    lines = log.rstrip("\n").splitlines()
    first = max(1, last_epoch - epochs + 1)
    starts = [i for i, line in enumerate(lines) if line.strip() == f"Epoch {first}"]
    return "\n".join(lines[starts[-1] :] if starts else lines[-4 * epochs :])


# --- architecture features, for "what changed from the previous step" ------------


@cache
def _architecture(model: str, dropout: float | None) -> tuple[tuple[str, str], ...]:
    import torch

    from ..modelinfo import architecture_of, find_entry

    entry = find_entry(model)  # a candidate's old runs name it bare: found beside its rounds
    if entry is None:
        return ()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = entry.build(dropout=dropout)
    return tuple(architecture_of(net).items())


def architecture(model: str, dropout: float | None = None, result: dict[str, Any] | None = None) -> dict[str, str]:
    """Comparable features of a run's model: recorded in its result.json at training (which
    needs no code, so a user model's report runs none), else rebuilt from the registry
    or a candidate file (older runs), else {}."""
    recorded = (result or {}).get("architecture")
    if isinstance(recorded, dict) and recorded:
        return {str(k): str(v) for k, v in recorded.items()}
    from ..models.usercode import parse_ref

    if parse_ref(model) is not None:
        return {}  # a user model's run from before features were recorded: never import its code here
    try:
        return dict(_architecture(model, dropout))
    except MnistliteError:
        return {}
