"""A step's metrics as the analysis rules read them, and a rule's Finding.

A step: one configuration under one or more seeds; `runs` maps a label ("seed 1") to its metrics.csv rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import mean, stdev
from typing import Any

from ..challenge import LAST_EPOCHS


@dataclass
class StepMetrics:
    name: str
    runs: dict[str, list[dict[str, Any]]]  # label -> metric rows, epoch order
    params: int | None = None
    epochs: int | None = None  # planned epochs per run (config)
    model: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # one run's config.json
    arch: dict[str, str] = field(default_factory=dict)  # runs.architecture(model)
    split: str = "test"  # "val" for sealed runs, whose rows hold the validation split under the test keys

    @property
    def n(self) -> int:
        return len(self.runs)

    def per_run(self, fn: Callable[[list[dict[str, Any]]], Any]) -> dict[str, Any]:
        return {label: fn(rows) for label, rows in self.runs.items() if rows}

    def values(self, fn: Callable[[list[dict[str, Any]]], Any]) -> list[Any]:
        return list(self.per_run(fn).values())


@dataclass(frozen=True)
class Finding:
    rule: str  # which rule: change, fit, speed, stability, seeds, budget, goal, challenge
    verdict: str  # one word or two, e.g. "overfits", "stable", "meets"
    text: str  # plain sentences for the report


def last(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(rows[-LAST_EPOCHS:])


def col(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) is not None]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for fewer than two values)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, None
    return mean(vals), (stdev(vals) if len(vals) > 1 else None)


def first_epoch_at(rows: Sequence[dict[str, Any]], level: float) -> int | None:
    return next((int(r["epoch"]) for r in rows if r.get("test_acc") is not None and r["test_acc"] >= level), None)


def min_last(rows: Sequence[dict[str, Any]]) -> float:
    return min(col(last(rows), "test_acc"))


def final_test(rows: Sequence[dict[str, Any]]) -> float:
    return float(rows[-1]["test_acc"])


def best_test(rows: Sequence[dict[str, Any]]) -> float:
    return max(col(rows, "test_acc"))
