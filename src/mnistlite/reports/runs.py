"""A run directory read back for reports. The numbers come from metrics.csv through `rundir.headline_numbers`,
which wrote result.json, so the two never disagree; params, MACs and wall time come from result.json, or (a run
still in progress) from its layer table and rows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..engine import rundir as rd
from ..errors import MnistliteError

# The columns a sealed run's report reads from its validation split.
_VAL_AS_TEST = {"val_acc": "test_acc", "val_loss": "test_loss", "raw_val_acc": "raw_test_acc"}


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]  # metrics.csv, one row per finished epoch
    result: dict[str, Any] | None  # result.json; None while the run is unfinished
    layer_table: str | None  # summary.txt
    log: str | None  # log.txt
    # A sealed run (it never read the test set) keeps its val figures under the test keys; every label says `split`.
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
        """result.json's wall time (every session of a resumed run), else the sum of the epochs' times."""
        if self.result and self.result.get("wall_seconds") is not None:
            if self.result.get("sessions") is not None or not self.resumed:
                return float(self.result["wall_seconds"])
            # Legacy: before result.json had `sessions`, a resumed run's wall_seconds counted only
            # its last session, so the epochs' own times are the better total.
        return float(sum(r["seconds"] for r in self.rows if r.get("seconds") is not None)) if self.rows else None


def is_run_dir(path: Path) -> bool:
    return (Path(path) / rd.CONFIG).is_file()


def load_run(path: str | Path) -> RunRecord:
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
    layer_table, log = (
        p.read_text(errors="replace") if p.is_file() else None for p in (path / rd.LAYER_TABLE, path / rd.LOG)
    )
    return RunRecord(path, config, rows, result, layer_table, log, sealed)


def split_of(runs: Sequence[RunRecord], what: str) -> str:
    """The split all `runs` read ("val": sealed, no test column); runs on both are refused: `what` them apart."""
    splits = {r.split for r in runs}
    if len(splits) > 1:
        raise MnistliteError(f"these runs read different splits (test, or validation only): {what} them apart")
    return splits.pop() if splits else "test"


def log_excerpt(log: str | None, last_epoch: int, epochs: int) -> str:
    """The log from the start of epoch `last_epoch - epochs + 1` on (the last such header: a resumed run repeats it)."""
    if not log:
        return ""
    lines = log.rstrip("\n").splitlines()
    first = max(1, last_epoch - epochs + 1)
    starts = [i for i, line in enumerate(lines) if line.strip() == f"Epoch {first}"]
    return "\n".join(lines[starts[-1] :] if starts else lines[-4 * epochs :])


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
    """Comparable features of a run's model: from its result.json (so a user model's report runs no code),
    else (older runs) rebuilt from the registry or a candidate file, else {}."""
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
