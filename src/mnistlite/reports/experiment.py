"""Experiment files: titled [[steps]] (a model and a recipe each; starter/experiment.toml shows one), trained per
seed, then a report. A run's config, later winning: TrainConfig defaults, the model's recipe, [defaults], the step's
recipe, the command line, the seed. Sealed unless `read_test = true` (a final report): runs hold out VAL_SIZE images."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..challenge import LAST_EPOCHS
from ..config import TrainConfig
from ..config_files import NAME_RE, check_keys, check_recipe, check_text, hint, load_toml, parse_seeds
from ..engine import rundir as rd
from ..errors import MnistliteError
from ..models import config_for, get_entry
from ..models.usercode import named_models, rebase
from ..runs import plan, splits
from ..tuning_file import DEFAULT_VAL_SIZE as VAL_SIZE
from .render import render_experiment
from .sections import EXPERIMENT_JSON

# Optional besides title and steps: description (markdown), seeds (default [1]), models (files whose @register_model
# names steps may use; paths relative to the file), defaults (TrainConfig overrides for every step), read_test.
TOP_KEYS = ("title", "description", "seeds", "models", "defaults", "steps", "read_test")
# name is the run folder (<out>/<name>/seed<k>/); target, the step's bullets; recipe, its TrainConfig overrides.
STEP_KEYS = ("name", "model", "title", "target", "notes", "recipe")
FORMAT = 1  # of experiment.json
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


def load_experiment(path: str | Path) -> Experiment:
    """Load and validate an experiment file; every error names the file and the step."""
    path = Path(path)
    doc, src = load_toml(path, "experiment file"), str(path)
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
        try:
            get_entry(model)
        except MnistliteError as e:
            raise MnistliteError(f"{label}: {e}") from None
        target = [raw["target"]] if isinstance(raw["target"], str) else raw["target"]
        if not isinstance(target, list) or not target or not all(isinstance(t, str) and t.strip() for t in target):
            raise MnistliteError(f"{label}: target must be a non-empty list of strings (one per bullet)")
        recipe = check_recipe(raw.get("recipe", {}), f"{label}: [steps.recipe]", NOT_IN_RECIPE)
        heading = check_text(raw.get("title", ""), f"{label}: title")
        notes = check_text(raw.get("notes", ""), f"{label}: notes")
        steps.append(Step(name, model, heading, tuple(t.strip() for t in target), notes, recipe))
    exp = Experiment(path, title, description, seeds, defaults, tuple(steps), read_test)
    for i, step in enumerate(exp.steps, 1):  # every value checked now, not at step 4 an hour in
        try:
            exp.config(step, seeds[0])
        except MnistliteError as e:
            raise MnistliteError(f"{src}: step {i} ({step.name!r}): {e}") from None
    return exp


def experiment_record(
    exp: Experiment, seeds: tuple[int, ...], overrides: dict[str, Any], out: Path, command: str
) -> dict[str, Any]:
    """experiment.json: the validated experiment plus where each run lives."""
    try:
        source = os.path.relpath(exp.path.resolve(), out.resolve())
    except ValueError:  # another drive (Windows)
        source = str(exp.path)
    return {
        "format": FORMAT,
        "mnistlite_version": __version__,
        "title": exp.title,
        "description": exp.description,
        "source": Path(source).as_posix(),
        "command": command,
        "out": out.as_posix(),
        "seeds": list(seeds),
        "overrides": dict(overrides),
        "defaults": dict(exp.defaults),
        "read_test": exp.read_test,  # a final report; else sealed (validation runs)
        "steps": [{**asdict(s), "runs": [f"{s.name}/seed{seed}" for seed in seeds]} for s in exp.steps],
    }


def run_experiment(
    exp: Experiment,
    out: str | Path,
    *,
    seeds: tuple[int, ...] | None = None,
    overrides: dict[str, Any] | None = None,
    rerun_changed: bool = False,
    plan_only: bool = False,
    progress: bool | None = None,
    command: str = "",
    storage: str | None = None,
    study: str | None = None,
    echo: Callable[[str], None] = print,
    jobs: int | str = 1,
) -> Path | None:
    """Train every step for every seed into `out`, then write `out`/report.md and return its path."""
    out = Path(out)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    seeds = tuple(seeds or exp.seeds)
    runs = [
        plan.plan_run(f"{step.name}/seed{seed}", exp.config(step, seed, overrides), out / step.name / f"seed{seed}")
        for step in exp.steps
        for seed in seeds
    ]
    changed = [r for r in runs if r.status == "changed"]
    width = len(str(len(runs)))
    echo(f"{exp.title}: {len(exp.steps)} step(s) x {len(seeds)} seed(s) -> {out}")
    for i, r in enumerate(runs, 1):
        detail = f" ({r.detail})" if r.detail else ""
        echo(f"  [{i:>{width}}/{len(runs)}] {r.label}: {plan.STATUS_TEXT[r.status]}{detail}")
    if changed and not rerun_changed:
        raise MnistliteError(
            f"{len(changed)} run(s) under {out} were made with a different config (e.g. {changed[0].label}: "
            f"{changed[0].detail}); rerun them with --rerun-changed (moves those runs aside) or choose another --out"
        )
    if plan_only:
        return None
    out.mkdir(parents=True, exist_ok=True)
    rd.write_json(out / EXPERIMENT_JSON, experiment_record(exp, seeds, overrides, out, command))
    if storage is not None:
        plan.execute_shared(runs, out, storage, study or f"experiment-{out.name}", echo)
    else:
        threads = 0
        if jobs == "auto":
            jobs, threads = splits.resolve([r for r in runs if r.status != "done"], jobs, 0, echo=echo, record=out)
        plan.execute(
            runs,
            jobs=jobs,
            threads=threads,
            progress=progress,
            on_start=lambda i, n, r: _started(i, n, r, echo),
            on_done=lambda i, n, r, res, err: _finished(res, echo, r),
            again="run the same `mnistlite experiment` command again to resume",
        )
    report = render_experiment(out)
    echo(f"report: {report}")
    return report


def _started(i: int, n: int, r: plan.PlannedRun, echo) -> Callable[[dict[str, Any]], None]:
    resume = r.status == "resume"
    echo(f"[{i}/{n}] {r.label}: {'resuming' if resume else 'training'} {r.config.model} for {r.config.epochs} epoch(s)")

    def on_epoch(row: dict[str, Any], epochs=r.config.epochs) -> None:
        split = "test" if "test_acc" in row else "val"  # a validation run is sealed: no test figure
        echo(
            f"    epoch {row['epoch']:>2}/{epochs}: train {row['train_acc']:.2f}%  {split} {row[f'{split}_acc']:.2f}%"
            f"  ({row['seconds']:.1f}s)"
        )

    return on_epoch


def _finished(res, echo, r: plan.PlannedRun) -> None:
    if res is None:  # trained in a worker process (--jobs): its result.json says the rest
        echo(f"    done: {r.label} -> {r.run_dir}")
        return
    s = res.summary
    sp = "test" if "final_test_acc" in s else "val"  # a sealed (validation) run has no last-3 figure
    last = f", last-{LAST_EPOCHS} min {s['last3_min_test_acc']:.2f}%" if sp == "test" else ""
    echo(
        f"    done: final {sp} {s[f'final_{sp}_acc']:.2f}%, best {s[f'best_{sp}_acc']:.2f}%"
        f"{last} in {res.wall_seconds:.1f}s"
    )
