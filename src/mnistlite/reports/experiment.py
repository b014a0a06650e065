"""Run an experiment file (read by experiment_file.py): every step for every seed, resumably, then its report.

runs/plan.py decides for every run folder whether it is done, resumes or trains afresh;
a finished run made with a different config is moved aside only with --rerun-changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from ..challenge import LAST_EPOCHS
from ..engine import rundir as rd
from ..errors import MnistliteError
from ..runs import plan, splits
from .experiment_file import Experiment, Step, load_experiment  # noqa: F401  (the API)
from .render import render_experiment
from .sections import EXPERIMENT_JSON

FORMAT = 1


def run_dir_for(out: Path, step: Step, seed: int) -> Path:
    return out / step.name / f"seed{seed}"


def plan_experiment(
    exp: Experiment, out: Path, seeds: tuple[int, ...], overrides: dict[str, Any]
) -> list[plan.PlannedRun]:
    return [
        plan.plan_run(f"{step.name}/seed{seed}", exp.config(step, seed, overrides), run_dir_for(out, step, seed))
        for step in exp.steps
        for seed in seeds
    ]


def experiment_record(
    exp: Experiment,
    seeds: tuple[int, ...],
    overrides: dict[str, Any],
    out: Path,
    command: str = "",
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
        "steps": [
            {**asdict(s), "runs": [run_dir_for(out, s, seed).relative_to(out).as_posix() for seed in seeds]}
            for s in exp.steps
        ],
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
    runs = plan_experiment(exp, out, seeds, overrides)

    changed = [r for r in runs if r.status == "changed"]
    width = len(str(len(runs)))
    echo(f"{exp.title}: {len(exp.steps)} step(s) x {len(seeds)} seed(s) -> {out}")
    for i, r in enumerate(runs, 1):
        what = plan.STATUS_TEXT[r.status]
        echo(f"  [{i:>{width}}/{len(runs)}] {r.label}: {what}" + (f" ({r.detail})" if r.detail else ""))
    if changed and not rerun_changed:
        first = changed[0]
        raise MnistliteError(
            f"{len(changed)} run(s) under {out} were made with a different config "
            f"(e.g. {first.label}: {first.detail}); rerun them with --rerun-changed (moves those runs aside) "
            "or choose another --out"
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
            echo=echo,
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
    if "final_test_acc" not in s:  # sealed: a validation run
        echo(f"    done: final val {s['final_val_acc']:.2f}%, best {s['best_val_acc']:.2f}% in {res.wall_seconds:.1f}s")
        return
    echo(
        f"    done: final test {s['final_test_acc']:.2f}%, best {s['best_test_acc']:.2f}%, "
        f"last-{LAST_EPOCHS} min {s['last3_min_test_acc']:.2f}% in {res.wall_seconds:.1f}s"
    )
