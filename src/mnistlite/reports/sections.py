"""A report's sections: one per experiment step (from experiment.json) or per run directory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import rundir as rd
from ..errors import MnistliteError
from .markdown import rel_text, slug
from .runs import RunRecord, architecture, is_run_dir, load_run
from .step import StepMetrics

EXPERIMENT_JSON = "experiment.json"  # written by reports/experiment.py; what `mnistlite report DIR` re-renders from


@dataclass
class Section:
    name: str  # slug: image names
    heading: str
    runs: list[RunRecord]
    model: str = ""
    target: list[str] = field(default_factory=list)
    notes: str = ""
    missing: list[str] = field(default_factory=list)  # run dirs expected but absent
    image: str = ""  # file name under the images folder

    @property
    def with_data(self) -> list[RunRecord]:
        return [r for r in self.runs if r.rows]

    def metrics(self) -> StepMetrics:
        """What the rules read of a section with data."""
        runs = self.with_data
        first, model = runs[0], self.model or runs[0].model
        labelled = dict(zip(run_labels(runs), (r.rows for r in runs)))
        params = next((r.params for r in runs if r.params is not None), None)
        arch = architecture(model, first.config.get("dropout"), first.result) if model else {}
        # one split for all: render_report refuses a report whose runs read different splits
        return StepMetrics(self.name, labelled, params, first.planned_epochs, model, first.config, arch, first.split)


def run_labels(runs: Sequence[RunRecord]) -> list[str]:
    labels = [f"seed {r.seed}" for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{r.path.name} (seed {r.seed})" for r in runs]
    return labels


def sections_from_experiment(exp_dir: Path) -> tuple[dict[str, Any], list[Section]]:
    meta = rd.read_json(exp_dir / EXPERIMENT_JSON)
    if not isinstance(meta, dict) or not isinstance(meta.get("steps"), list):
        raise MnistliteError(f"{exp_dir / EXPERIMENT_JSON}: not an experiment record")
    sections = []
    for step in meta["steps"]:
        name, title, subs = step["name"], step.get("title") or "", step.get("runs", [])
        runs = [load_run(exp_dir / sub) for sub in subs if is_run_dir(exp_dir / sub)]
        missing = [sub for sub in subs if not is_run_dir(exp_dir / sub)]
        heading = f"{title} (`{name}`)" if title else f"`{name}`"
        model, target, notes = step.get("model", ""), list(step.get("target", [])), step.get("notes", "")
        sections.append(Section(name, heading, runs, model, target, notes, missing, f"step-{slug(name)}.png"))
    return meta, sections


def sections_from_runs(run_dirs: Sequence[Path], base: Path) -> list[Section]:
    sections = []
    for i, d in enumerate(run_dirs, 1):
        r, label, image = load_run(d), rel_text(d, base), f"{i:02d}-{slug(d.name)}.png"
        sections.append(Section(name=label, heading=f"`{label}`", runs=[r], model=r.model, image=image))
    return sections


def is_experiment_dir(path: Path) -> bool:
    return (Path(path) / EXPERIMENT_JSON).is_file()
