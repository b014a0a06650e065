"""The search space: Optuna suggestions -> a family NetSpec (models/family.py) and a training recipe.

The parameter count is exact by formula: an over-budget spec is rejected (pruned, not counted) before it is built.
"""

from __future__ import annotations

import json
from typing import Any

from ..config_files import check_keys
from ..errors import MnistliteError
from ..models.family import NetSpec, count_params, output_size
from ..models.mnistlite_zoo import register_spec

WIDTHS = (4, 24, 2)  # low, high, step of every conv and transition width
MAX_BLOCKS = {2: (3, 4), 3: (3, 2, 1)}  # stages -> most convs per stage (keeps the map >= 1x1)
BATCH_SIZES = (64, 128, 256)
SPEC_KEYS = ("stages", "transitions", "first_padding", "dropout", "bn", "sep_stages")


class OverBudget(Exception):
    def __init__(self, params: int, budget: int):
        super().__init__(f"{params:,} parameters > budget {budget:,}")
        self.params, self.budget = params, budget


def suggest_spec(trial, budget: int) -> NetSpec:
    """A NetSpec from `trial`'s suggestions; `OverBudget` when it would not fit. Only architecture
    parameters are suggested before the budget check: a rejected trial says nothing about the recipe."""
    n_stages = trial.suggest_int("stages", 2, 3)
    lo, hi, step = WIDTHS
    stages, transitions = [], []
    for i, most in enumerate(MAX_BLOCKS[n_stages], start=1):
        if i > 1:
            transitions.append(trial.suggest_int(f"t{i - 1}", lo, hi, step=step))
        # Dynamic upper bound: Optuna allows an int range to differ between trials.
        blocks = trial.suggest_int(f"blocks{i}", 1, most) if most > 1 else 1
        stages.append(tuple(trial.suggest_int(f"w{i}_{j}", lo, hi, step=step) for j in range(1, blocks + 1)))
    pad, dropout = trial.suggest_int("first_padding", 0, 1), round(trial.suggest_float("dropout", 0.0, 0.15), 4)
    spec = NetSpec(stages=tuple(stages), transitions=tuple(transitions), first_padding=pad, bn=True, dropout=dropout)
    params = count_params(spec)
    if params > budget:
        raise OverBudget(params, budget)
    return spec


def suggest_recipe(trial) -> dict[str, Any]:
    """TrainConfig overrides for one trial."""
    return {
        "max_lr": trial.suggest_float("max_lr", 0.01, 0.3, log=True),
        "pct_start": trial.suggest_float("pct_start", 0.1, 0.4),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True),
        "rotation": trial.suggest_float("rotation", 0.0, 15.0),
        "translate": trial.suggest_float("translate", 0.0, 0.15),
        "scale": trial.suggest_float("scale", 0.0, 0.15),
        "batch_size": trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.1),
    }


def spec_to_dict(spec: NetSpec) -> dict[str, Any]:
    d = {**spec.to_dict(), "stages": [list(s) for s in spec.stages], "transitions": list(spec.transitions)}
    if not d["sep_stages"]:  # left out when 0: the names of specs without it stay the same
        del d["sep_stages"]
    return d


def spec_from_dict(d: dict[str, Any]) -> NetSpec:
    stages = tuple(tuple(int(w) for w in s) for s in d["stages"])
    return NetSpec(**{**d, "stages": stages, "transitions": tuple(int(t) for t in d["transitions"])})


def spec_name(spec: NetSpec) -> str:
    """`family:<compact json>`: the registry name a trial's model trains under."""
    return "family:" + json.dumps(spec_to_dict(spec), separators=(",", ":"), sort_keys=True)


def describe_spec(spec: NetSpec) -> str:
    """Short human form, e.g. `8-16 |10| 16-16-16 pad0 drop0.05`."""
    parts = ["-".join(map(str, spec.stages[0]))]
    for t, stage in zip(spec.transitions, spec.stages[1:]):
        parts += [f"|{t}|", "-".join(map(str, stage))]
    extra = f" pad{spec.first_padding}" + (f" drop{spec.dropout:g}" if spec.dropout else "")
    extra += f" sep{spec.sep_stages}" if spec.sep_stages else ""
    return " ".join(parts) + extra + ("" if spec.bn else " noBN")


def ensure_registered(spec: NetSpec, recipe: dict[str, Any] | None = None) -> str:
    """Register `spec` (idempotently) and return its model name."""
    name = spec_name(spec)
    register_spec(name, spec, recipe or {})
    return name


def parse_spec(raw: Any, where: str) -> NetSpec:
    where = f"{where}: spec"
    if not isinstance(raw, dict):
        raise MnistliteError(f"{where} must be a table like {{stages = [[6, 12], [12, 12, 12]], transitions = [8]}}")
    check_keys(raw, SPEC_KEYS, where)

    def widths(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(type(w) is int and w >= 1 for w in v)

    stages, transitions = raw.get("stages"), raw.get("transitions")
    if not isinstance(stages, list) or not stages or not all(widths(s) for s in stages):
        raise MnistliteError(f"{where}.stages must be a list of non-empty lists of positive integers, got {stages}")
    if not (transitions == [] or widths(transitions)) or len(transitions) != len(stages) - 1:
        raise MnistliteError(
            f"{where}.transitions must list {len(stages) - 1} positive width(s), one per stage boundary, "
            f"got {transitions!r}"
        )
    pad, dropout, bn = raw.get("first_padding", 0), raw.get("dropout", 0.0), raw.get("bn", True)
    if pad not in (0, 1) or isinstance(pad, bool):
        raise MnistliteError(f"{where}.first_padding must be 0 or 1, got {pad!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise MnistliteError(f"{where}.dropout must be in [0, 1), got {dropout!r}")
    if not isinstance(bn, bool):
        raise MnistliteError(f"{where}.bn must be true or false, got {bn!r}")
    sep = raw.get("sep_stages", 0)
    if type(sep) is not int:
        raise MnistliteError(f"{where}.sep_stages must be an integer, got {sep!r}")
    try:  # NetSpec checks the rest of its own invariants
        spec = spec_from_dict({**raw, "dropout": float(dropout)})
    except ValueError as e:
        raise MnistliteError(f"{where}.{e}") from None
    if output_size(spec) < 1:
        raise MnistliteError(f"{where} shrinks the 28x28 image below 1x1 before the head; use fewer convs")
    return spec
