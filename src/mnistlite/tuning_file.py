"""Tuning files (TOML): a parameter budget, the validation split and the seeds, then the candidates:

    budget = 4999                 # most trainable parameters a candidate may have
    val_size = 5000               # held-out training images (default 5000)
    seeds = [1, 2]                # default [1, 2]
    models = ["my_models.py"]     # optional: files whose @register_model names candidates may use

    [[candidates]]
    name = "reference"            # its runs go to OUT/<name>/seed<S>/
    model = "mnistlite_frontier"  # a registered model with its registered recipe, or my_models.py:Net...

    [[candidates]]
    name = "pad1_bs64"
    spec = {stages = [[6, 12], [12, 12, 12]], transitions = [8], first_padding = 1}  # ...or a family NetSpec
    recipe = {batch_size = 64}    # TrainConfig overrides (on mnistlite_zoo.BASE_RECIPE for a spec)
    reuse = "../runs/round1/pad1_bs64"  # optional: earlier folder(s) whose same finished runs are linked

Paths (model files, `reuse`) are relative to the tuning file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .config_files import NAME_RE, check_int, check_keys, check_recipe, load_toml, parse_seeds
from .errors import MnistliteError
from .modelinfo import profile_registered
from .models import config_for, get_entry
from .models.family import NetSpec, count_params
from .models.mnistlite_zoo import register_spec
from .models.usercode import named_models, rebase
from .search.space import parse_spec, spec_name

DEFAULT_VAL_SIZE = 5000
DEFAULT_SEEDS = (1, 2)
TOP_KEYS = ("budget", "val_size", "seeds", "models", "candidates")
CANDIDATE_KEYS = ("name", "model", "spec", "recipe", "reuse")
# Set by the file or the command line for every candidate alike, so candidates compete on equal terms.
NOT_IN_RECIPE = {
    "model": "use the candidate's `model` or `spec`",
    "seed": "list seeds in the top-level `seeds`",
    "val_size": "set the top-level `val_size`",
    **{k: f"use --{k.replace('_', '-')}" for k in ("limit_train", "device", "threads", "data_dir")},
    "download": "it is not a recipe field",
}


@dataclass(frozen=True)
class Candidate:
    name: str
    model: str  # registry name; `family:<json>` for a spec
    spec: NetSpec | None  # the file's spec, else the registered model's own (None outside the family)
    from_spec: bool
    recipe: dict[str, Any]  # the file's overrides only
    params: int
    reuse: tuple[Path, ...] = ()  # earlier folders of this candidate's runs (runs/plan.py link_reused)


@dataclass(frozen=True)
class TuningFile:
    path: Path
    budget: int
    val_size: int
    seeds: tuple[int, ...]
    candidates: tuple[Candidate, ...]

    def config(self, c: Candidate, seed: int, overrides: dict[str, Any] | None = None) -> TrainConfig:
        return config_for(c.model, **{**c.recipe, **(overrides or {}), "val_size": self.val_size, "seed": seed})


def parse_candidate(raw: Any, i: int, budget: int, src: str, named: dict[str, str]) -> Candidate:
    if not isinstance(raw, dict):
        raise MnistliteError(f"{src}: candidate {i}: must be a table ([[candidates]])")
    name = raw.get("name")
    label = f"{src}: candidate {name!r}" if isinstance(name, str) else f"{src}: candidate {i}"
    check_keys(raw, CANDIDATE_KEYS, label)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise MnistliteError(f"{label}: `name` must be letters, digits, '.', '_' or '-' (a folder name), got {name!r}")
    if ("model" in raw) == ("spec" in raw):
        raise MnistliteError(f"{label}: give exactly one of `model` (a registered name) or `spec` (a family NetSpec)")
    recipe = check_recipe(raw.get("recipe", {}), f"{label}: recipe", NOT_IN_RECIPE)
    if "spec" in raw:
        spec = parse_spec(raw["spec"], label)
        model, params = spec_name(spec), count_params(spec)
    else:
        model = raw["model"]
        if not isinstance(model, str):
            raise MnistliteError(f"{label}: `model` must be a registered model name, got {model!r}")
        model = named.get(model) or rebase(model, Path(src).parent)  # your file.py:Name, beside the file
        try:
            spec = getattr(get_entry(model).factory, "spec", None)
            params = count_params(spec) if spec is not None else profile_registered(model).params
        except MnistliteError as e:
            raise MnistliteError(f"{label}: {e}") from None
    if params > budget:
        raise MnistliteError(f"{label}: {params:,} parameters > budget {budget:,}")
    return Candidate(name, model, spec, "spec" in raw, recipe, params, parse_reuse(raw.get("reuse", []), label, src))


def parse_reuse(raw: Any, label: str, src: str) -> tuple[Path, ...]:
    """`reuse`: a folder or a list of folders, relative to the tuning file, each of which must exist."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(d, str) for d in items):
        raise MnistliteError(f"{label}: `reuse` must be a folder or a list of folders, got {raw!r}")
    folders = tuple(Path(os.path.normpath(Path(src).parent / d)) for d in items)
    missing = next((d for d in folders if not d.is_dir()), None)
    if missing is not None:
        raise MnistliteError(f"{label}: reuse folder {missing} does not exist")
    return folders


def load_tuning(path: str | Path) -> TuningFile:
    """Validate everything before anything trains; every error is one line naming the file."""
    path = Path(path)
    doc, src = load_toml(path, "tuning file"), str(path)
    check_keys(doc, TOP_KEYS, src)
    if "budget" not in doc:
        raise MnistliteError(f"{src}: missing `budget` (the most trainable parameters a candidate may have)")
    budget = check_int(doc["budget"], f"{src}: budget", 1)
    val_size = check_int(doc.get("val_size", DEFAULT_VAL_SIZE), f"{src}: val_size", 1)
    seeds = parse_seeds(doc["seeds"], src) if "seeds" in doc else DEFAULT_SEEDS
    raw = doc.get("candidates")
    if not isinstance(raw, list) or not raw:
        raise MnistliteError(f"{src}: no candidates; add at least one [[candidates]] table")
    named = named_models(doc.get("models", []), path)
    candidates = [parse_candidate(r, i, budget, src, named) for i, r in enumerate(raw, 1)]
    names = [c.name for c in candidates]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise MnistliteError(f"{src}: two candidates are named {dup!r}")
    tf = TuningFile(path, budget, val_size, seeds, tuple(candidates))
    for c in candidates:
        register_candidate(c)
        try:  # types and ranges of every recipe value, now rather than an hour in
            tf.config(c, seeds[0])
        except MnistliteError as e:
            raise MnistliteError(f"{src}: candidate {c.name!r}: {e}") from None
    return tf


def register_candidate(c: Candidate) -> None:
    """Spec candidates exist only in the processes that register them (like search trials)."""
    if c.from_spec and c.spec is not None:
        register_spec(c.model, c.spec, tags=("family", "tuning"), description=f"Tuning candidate {c.name}.")
