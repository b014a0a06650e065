"""Experiment files: a titled list of steps, each a model and a recipe, trained per seed.

    title = "From a 26.5k baseline to a sub-8k flagship"
    description = "optional, markdown"
    seeds = [1, 2]                      # optional; default [1]; --seeds/--seed-list override
    models = ["my_models.py"]           # optional: files whose @register_model names steps may use

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

Running is resumable: a run whose directory has result.json and the same
config.json is skipped; one with config.json and checkpoint.pt but no result
(interrupted) is resumed; one with neither is restarted. A run made with a
different config is never overwritten unless asked (--rerun-changed).
"""

from __future__ import annotations

import difflib
import re
import shutil
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .. import __version__
from ..config import RUN_ONLY_FIELDS, TrainConfig, same_value, saved_value
from ..data import load_dataset
from ..engine import TrainingInterrupted, train
from ..errors import MnistliteError
from ..models import get_entry, list_models
from ..models.usercode import named_models, rebase
from ..runs import rundir as rd
from .runs import RUN_FILES

EXPERIMENT_JSON = "experiment.json"  # what `mnistlite report DIR` re-renders from
REPORT = "report.md"
FORMAT = 1

TOP_KEYS = ("title", "description", "seeds", "models", "defaults", "steps")
STEP_KEYS = ("name", "model", "title", "target", "notes", "recipe")
# Set by the step (model) or by the seed list (seed), never by a recipe table.
NOT_IN_RECIPE = {"model": "set it with the step's `model` key", "seed": "list seeds in the top-level `seeds`"}
# Fields that say where the data is or how fast to run, not what is trained:
# a finished run is still "the same run" when only these differ.
IGNORED_FOR_MATCH = RUN_ONLY_FIELDS | {"channels_last"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Step:
    name: str
    model: str
    title: str
    target: tuple[str, ...]
    notes: str
    recipe: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "title": self.title,
            "target": list(self.target),
            "notes": self.notes,
            "recipe": dict(self.recipe),
        }


@dataclass(frozen=True)
class Experiment:
    path: Path
    title: str
    description: str
    seeds: tuple[int, ...]
    defaults: dict[str, Any]
    steps: tuple[Step, ...]

    def config(self, step: Step, seed: int, overrides: dict[str, Any] | None = None) -> TrainConfig:
        over = {**self.defaults, **step.recipe, **(overrides or {}), "seed": seed}
        return TrainConfig.for_model(step.model, **over)


# --- loading and validation ----------------------------------------------------------


def _hint(key: str, allowed: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in fields(TrainConfig):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        out[f.name] = args[0] if args else hints[f.name]
    return out


def _check_recipe(table: Any, where: str) -> dict[str, Any]:
    """A recipe table: known TrainConfig fields with values of the right type."""
    if not isinstance(table, dict):
        raise MnistliteError(f"{where} must be a table of recipe fields, got {type(table).__name__}")
    types = _field_types()
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in NOT_IN_RECIPE:
            raise MnistliteError(f"{where}: `{key}` cannot be set here; {NOT_IN_RECIPE[key]}")
        if key not in types:
            if key == "seeds":
                raise MnistliteError(f"{where}: `seeds` goes at the top level of the file (seeds = [1, 2])")
            raise MnistliteError(f"{where}: unknown recipe field {key!r}{_hint(key, types)}")
        typ = types[key]
        ok = (
            isinstance(value, bool)
            if typ is bool
            else isinstance(value, (int, float)) and not isinstance(value, bool)
            if typ is float
            else isinstance(value, int) and not isinstance(value, bool)
            if typ is int
            else isinstance(value, str)
        )
        if not ok:
            want = {bool: "true or false", float: "a number", int: "an integer", str: "a string"}[typ]
            raise MnistliteError(f"{where}: recipe field {key!r} must be {want}, got {value!r}")
        out[key] = float(value) if typ is float else value
    return out


def _check_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MnistliteError(f"{where} must be a string, got {value!r}")
    return value.strip()


def _check_seeds(value: Any, where: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        raise MnistliteError(f"{where}: seeds must be a non-empty list of integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise MnistliteError(f"{where}: seeds repeat: {value!r}")
    return tuple(value)


def parse_experiment(doc: dict[str, Any], path: Path) -> Experiment:
    """Validate a parsed TOML document; every error names the file and the step."""
    src = str(path)
    for key in doc:
        if key not in TOP_KEYS:
            raise MnistliteError(
                f"{src}: unknown top-level key {key!r}{_hint(key, TOP_KEYS)}; allowed: {', '.join(TOP_KEYS)}"
            )
    if "title" not in doc:
        raise MnistliteError(f"{src}: missing `title`")
    title = _check_text(doc["title"], f"{src}: title")
    description = _check_text(doc.get("description", ""), f"{src}: description")
    seeds = _check_seeds(doc["seeds"], src) if "seeds" in doc else (1,)
    defaults = _check_recipe(doc.get("defaults", {}), f"{src}: [defaults]")
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
        for key in raw:
            if key not in STEP_KEYS:
                raise MnistliteError(
                    f"{label}: unknown key {key!r}{_hint(key, STEP_KEYS)}; allowed: {', '.join(STEP_KEYS)}"
                )
        for key in ("name", "model", "target"):
            if key not in raw:
                raise MnistliteError(f"{label}: missing `{key}`")
        name = _check_text(raw["name"], f"{label}: name")
        if not NAME_RE.match(name):
            raise MnistliteError(
                f"{label}: name must be letters, digits, '.', '_' or '-' (it names a folder), got {name!r}"
            )
        if name in seen:
            raise MnistliteError(f"{label}: another step is already named {name!r}")
        seen.add(name)
        model = _check_text(raw["model"], f"{label}: model")
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
        recipe = _check_recipe(raw.get("recipe", {}), f"{label}: [steps.recipe]")
        step = Step(
            name=name,
            model=model,
            title=_check_text(raw.get("title", ""), f"{label}: title"),
            target=tuple(t.strip() for t in target),
            notes=_check_text(raw.get("notes", ""), f"{label}: notes"),
            recipe=recipe,
        )
        steps.append(step)
    exp = Experiment(path, title, description, seeds, defaults, tuple(steps))
    for i, step in enumerate(exp.steps, 1):  # every value checked now, not at step 4 an hour in
        try:
            exp.config(step, seeds[0])
        except MnistliteError as e:
            raise MnistliteError(f"{src}: step {i} ({step.name!r}): {e}") from None
    return exp


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MnistliteError(f"{path}: experiment file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MnistliteError(f"{path}: cannot read: {e}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid TOML"
        raise MnistliteError(f"{path}: not valid TOML: {first}") from None
    return parse_experiment(doc, path)


# --- planning: what each run directory needs ----------------------------------------


@dataclass
class PlannedRun:
    step: Step
    seed: int
    config: TrainConfig
    run_dir: Path
    status: str  # new | done | resume | restart | changed
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.step.name}/seed{self.seed}"


def run_dir_for(out: Path, step: Step, seed: int) -> Path:
    return out / step.name / f"seed{seed}"


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Fields whose saved value differs from `cfg` (IGNORED_FOR_MATCH aside)."""
    want = cfg.to_dict()
    keys = [k for k in want if k not in IGNORED_FOR_MATCH] + [
        k for k in saved if k not in want and k not in IGNORED_FOR_MATCH
    ]
    old = {k: saved_value(saved, k) for k in keys}
    return [
        f"{k} {old[k]!r} -> {want.get(k)!r}" for k in keys if k not in want or not same_value(saved, k, want[k], want)
    ]


def run_status(run_dir: Path, cfg: TrainConfig) -> tuple[str, str]:
    """(status, detail) of one run directory against the config it should hold."""
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "new", ""
    if not run_dir.is_dir():
        raise MnistliteError(f"{run_dir} exists and is not a directory; move it away or choose another --out")
    if not (run_dir / rd.CONFIG).is_file():
        return "restart", "no config.json: the run never got going"
    saved = rd.read_json(run_dir / rd.CONFIG)
    if not isinstance(saved, dict):
        raise MnistliteError(f"{run_dir / rd.CONFIG}: expected a JSON object")
    changed = config_differences(saved, cfg)
    if changed:
        return "changed", ", ".join(changed)
    if (run_dir / rd.RESULT).is_file():
        return "done", ""
    if (run_dir / rd.CHECKPOINT).is_file():
        return "resume", "interrupted: continuing from its last checkpoint"
    return "restart", "interrupted before its first checkpoint"


def plan(
    exp: Experiment, out: Path, seeds: tuple[int, ...] | None = None, overrides: dict[str, Any] | None = None
) -> list[PlannedRun]:
    runs = []
    for step in exp.steps:
        for seed in seeds or exp.seeds:
            cfg = exp.config(step, seed, overrides)
            d = run_dir_for(out, step, seed)
            status, detail = run_status(d, cfg)
            runs.append(PlannedRun(step, seed, cfg, d, status, detail))
    return runs


def _clear_run_dir(run_dir: Path) -> None:
    """Delete a run directory, refusing if it holds anything but run files."""
    foreign = [p.name for p in run_dir.iterdir() if p.name not in RUN_FILES and not p.name.startswith(".")]
    if foreign:
        raise MnistliteError(
            f"{run_dir} holds files that are not a run's ({', '.join(sorted(foreign)[:3])}); "
            "move them away or choose another --out"
        )
    shutil.rmtree(run_dir)


# --- running -------------------------------------------------------------------------


class _Data:
    """Loads each distinct data set once; runs differing only in limit_train share it."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}

    def __call__(self, cfg: TrainConfig):
        key = (cfg.dataset, cfg.data_dir, cfg.val_size, cfg.download)
        if key not in self._cache:
            self._cache[key] = load_dataset(
                cfg.dataset, data_dir=cfg.data_dir, val_size=cfg.val_size, download=cfg.download
            )
        data = self._cache[key]
        return data.subset_train(cfg.limit_train) if cfg.limit_train else data


def experiment_record(
    exp: Experiment,
    runs: list[PlannedRun],
    seeds: tuple[int, ...],
    overrides: dict[str, Any],
    out: Path,
    command: str = "",
) -> dict[str, Any]:
    """experiment.json: the validated experiment plus where each run lives."""
    import os

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
        "steps": [
            {**s.to_dict(), "runs": [r.run_dir.relative_to(out).as_posix() for r in runs if r.step is s]}
            for s in exp.steps
        ],
    }


def _run_shared(todo: list[PlannedRun], out: Path, storage: str, study: str, echo) -> None:
    """Spread the runs over every worker of one sweep (search/sweep.py), then
    rebuild here the run directories that other machines trained."""
    from ..runs.portable import pack_run, unpack_run
    from ..search.sweep import run_sweep

    jobs = []
    for r in todo:
        over = {k: v for k, v in r.config.to_dict().items() if k not in ("model", "seed")}
        jobs.append(
            {
                "model": r.config.model,
                "seed": r.config.seed,
                "overrides": over,
                "run_dir": str(r.run_dir.relative_to(out)),
            }
        )
    data = _Data()

    def worker(job: dict[str, Any]) -> dict[str, Any]:
        run_dir = out / job["run_dir"]
        cfg = TrainConfig.for_model(job["model"], seed=job["seed"], **job["overrides"])
        resume = (run_dir / rd.CHECKPOINT).is_file() and not (run_dir / rd.RESULT).is_file()
        if run_dir.exists() and not resume:
            _clear_run_dir(run_dir)
        train(None if resume else cfg, run_dir=run_dir, resume=resume, data=data(cfg), progress=False, quiet=True)
        return pack_run(run_dir)

    for o in run_sweep(jobs, storage, study, worker, log=echo):
        if o.state != "COMPLETE" or not isinstance(o.result, dict):
            raise MnistliteError(f"run {o.job['run_dir']} of sweep {study!r} did not complete ({o.state})")
        unpack_run(o.result, out / o.job["run_dir"])


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
) -> Path | None:
    """Train every step for every seed into `out`, then write `out`/report.md.

    Returns the report's path (None when `plan_only`).
    """
    out = Path(out)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    seeds = tuple(seeds or exp.seeds)
    runs = plan(exp, out, seeds, overrides)

    changed = [r for r in runs if r.status == "changed"]
    todo = [r for r in runs if r.status != "done"]
    width = len(str(len(runs)))
    echo(f"{exp.title}: {len(exp.steps)} step(s) x {len(seeds)} seed(s) -> {out}")
    for i, r in enumerate(runs, 1):
        what = {
            "new": "to train",
            "done": "done, skipped",
            "resume": "to resume",
            "restart": "to restart",
            "changed": "made with another config",
        }[r.status]
        echo(f"  [{i:>{width}}/{len(runs)}] {r.label}: {what}" + (f" ({r.detail})" if r.detail else ""))
    if changed and not rerun_changed:
        first = changed[0]
        raise MnistliteError(
            f"{len(changed)} run(s) under {out} were made with a different config "
            f"(e.g. {first.label}: {first.detail}); rerun them with --rerun-changed (deletes those runs) "
            "or choose another --out"
        )
    if plan_only:
        return None

    out.mkdir(parents=True, exist_ok=True)
    rd.write_json(out / EXPERIMENT_JSON, experiment_record(exp, runs, seeds, overrides, out, command))

    if storage is not None:
        _run_shared(todo, out, storage, study or f"experiment-{out.name}", echo)
        todo = []
    data = _Data()
    for i, r in enumerate(todo, 1):
        head = f"[{i}/{len(todo)}] {r.label}"
        if r.status in ("changed", "restart"):
            _clear_run_dir(r.run_dir)
        resume = r.status == "resume"
        echo(f"{head}: {'resuming' if resume else 'training'} {r.config.model} for {r.config.epochs} epoch(s)")

        def on_epoch(row: dict[str, Any], n=r.config.epochs) -> None:
            echo(
                f"    epoch {row['epoch']:>2}/{n}: train {row['train_acc']:.2f}%  test {row['test_acc']:.2f}%"
                f"  ({row['seconds']:.1f}s)"
            )

        try:
            res = train(
                None if resume else r.config,
                run_dir=r.run_dir,
                resume=resume,
                data=data(r.config),
                progress=progress,
                quiet=True,
                on_epoch=on_epoch,
            )
        except TrainingInterrupted as e:
            why = str(e).split("; continue with")[0]
            raise TrainingInterrupted(
                f"{r.label}: {why}; run the same `mnistlite experiment` command again to resume"
            ) from None
        except MnistliteError as e:
            err = type(e)(f"{r.label}: {e}")
            raise err from None
        s = res.summary
        echo(
            f"    done: final test {s['final_test_acc']:.2f}%, best {s['best_test_acc']:.2f}%, "
            f"last-3 min {s['last3_min_test_acc']:.2f}% in {res.wall_seconds:.1f}s"
        )

    from .render import render_experiment

    report = render_experiment(out)
    echo(f"report: {report}")
    return report
