"""Experiment files: a titled list of steps, each a model and a recipe, trained per seed.

    title = "From a 26.5k baseline to a sub-8k flagship"
    description = "optional, markdown"
    seeds = [1, 2]                      # optional; default [1]; --seeds/--seed-list override
    models = ["my_models.py"]           # optional: files whose @register_model names steps may use
    read_test = true                    # optional: a final report, scored on the test set (see below)

    [defaults]                          # optional: TrainConfig overrides for every step
    epochs = 15

    [[steps]]
    name = "baseline"                   # the run folder: <out>/<name>/seed<k>/
    model = "mnistlite8k_model1"        # a registered model ('mnistlite models'), or models/net.py:Net
    title = "Baseline"                  # optional heading
    target = ["Get the set-up right"]   # what the step is meant to show (the seeds' "Target")
    notes = "optional, markdown"
    [steps.recipe]                      # optional: TrainConfig overrides for this step
    lr = 0.03

Model files and references are relative to the experiment file's folder.

A run's config is, later winning: TrainConfig defaults, the model's registered
recipe, [defaults], the step's recipe, the command line (--epochs, ...), the seed.

Sealed by default: every run holds out VAL_SIZE training images (or its recipe's `val_size`)
and never reads the test set, so an experiment can guide choices without spending it. A final
report opts in with `read_test = true`: its runs train on the full training set and are scored
on the test set, and experiment.json and the report say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..config_files import NAME_RE, check_keys, check_recipe, check_text, hint, load_toml, parse_seeds
from ..errors import MnistliteError
from ..models import config_for, get_entry, list_models
from ..models.usercode import named_models, rebase
from ..tuning_file import DEFAULT_VAL_SIZE as VAL_SIZE

TOP_KEYS = ("title", "description", "seeds", "models", "defaults", "steps", "read_test")
STEP_KEYS = ("name", "model", "title", "target", "notes", "recipe")
# Set by the step (model) or by the seed list (seed), never by a recipe table.
NOT_IN_RECIPE = {"model": "set it with the step's `model` key", "seed": "list seeds in the top-level `seeds`"}


@dataclass(frozen=True)
class Step:
    name: str
    model: str
    title: str
    target: tuple[str, ...]
    notes: str
    recipe: dict[str, Any]


@dataclass(frozen=True)
class Experiment:
    path: Path
    title: str
    description: str
    seeds: tuple[int, ...]
    defaults: dict[str, Any]
    steps: tuple[Step, ...]
    read_test: bool = False  # a final report: the runs read the test set

    def config(self, step: Step, seed: int, overrides: dict[str, Any] | None = None) -> TrainConfig:
        over = {"val_size": 0 if self.read_test else VAL_SIZE, **self.defaults, **step.recipe, **(overrides or {})}
        cfg = config_for(step.model, **over, seed=seed)
        if self.read_test and cfg.val_size:
            raise MnistliteError(
                f"val_size {cfg.val_size} holds out a validation split, so its runs never read the "
                "test set that `read_test = true` asks for: drop val_size or read_test"
            )
        if not self.read_test and not cfg.val_size:
            raise MnistliteError(
                "val_size 0 would read the test set: experiments are sealed unless the file "
                "says `read_test = true` at the top (a final report)"
            )
        return cfg


def parse_experiment(doc: dict[str, Any], path: Path) -> Experiment:
    """Validate a parsed TOML document; every error names the file and the step."""
    src = str(path)
    for key in doc:
        if key not in TOP_KEYS:
            raise MnistliteError(
                f"{src}: unknown top-level key {key!r}{hint(key, TOP_KEYS)}; allowed: {', '.join(TOP_KEYS)}"
            )
    if "title" not in doc:
        raise MnistliteError(f"{src}: missing `title`")
    title = check_text(doc["title"], f"{src}: title")
    description = check_text(doc.get("description", ""), f"{src}: description")
    seeds = parse_seeds(doc["seeds"], src) if "seeds" in doc else (1,)
    read_test = doc.get("read_test", False)
    if not isinstance(read_test, bool):
        raise MnistliteError(f"{src}: read_test must be true or false, got {read_test!r}")
    defaults = check_recipe(doc.get("defaults", {}), f"{src}: [defaults]", NOT_IN_RECIPE)
    named = named_models(doc.get("models", []), path)
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise MnistliteError(f"{src}: no steps; add at least one [[steps]] table")
    steps: list[Step] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_steps, 1):
        label = f"{src}: step {i}"
        if not isinstance(raw, dict):
            raise MnistliteError(f"{label}: must be a table ([[steps]])")
        if isinstance(raw.get("name"), str):
            label += f" ({raw['name']!r})"
        check_keys(raw, STEP_KEYS, label)
        for key in ("name", "model", "target"):
            if key not in raw:
                raise MnistliteError(f"{label}: missing `{key}`")
        name = check_text(raw["name"], f"{label}: name")
        if not NAME_RE.match(name):
            raise MnistliteError(
                f"{label}: name must be letters, digits, '.', '_' or '-' (it names a folder), got {name!r}"
            )
        if name in seen:
            raise MnistliteError(f"{label}: another step is already named {name!r}")
        seen.add(name)
        model = check_text(raw["model"], f"{label}: model")
        model = named.get(model) or rebase(model, path.parent)
        if model not in list_models():
            try:
                get_entry(model)
            except MnistliteError as e:
                raise MnistliteError(f"{label}: {e}") from None
        target = raw["target"]
        if isinstance(target, str):
            target = [target]
        if not isinstance(target, list) or not target or not all(isinstance(t, str) and t.strip() for t in target):
            raise MnistliteError(f"{label}: target must be a non-empty list of strings (one per bullet)")
        recipe = check_recipe(raw.get("recipe", {}), f"{label}: [steps.recipe]", NOT_IN_RECIPE)
        steps.append(
            Step(
                name=name,
                model=model,
                title=check_text(raw.get("title", ""), f"{label}: title"),
                target=tuple(t.strip() for t in target),
                notes=check_text(raw.get("notes", ""), f"{label}: notes"),
                recipe=recipe,
            )
        )
    exp = Experiment(path, title, description, seeds, defaults, tuple(steps), read_test)
    for i, step in enumerate(exp.steps, 1):  # every value checked now, not at step 4 an hour in
        try:
            exp.config(step, seeds[0])
        except MnistliteError as e:
            raise MnistliteError(f"{src}: step {i} ({step.name!r}): {e}") from None
    return exp


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    return parse_experiment(load_toml(path, "experiment file"), path)
