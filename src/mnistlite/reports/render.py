"""Markdown reports from run directories: the comparison table, a section per step, the analysis.

GitHub-flavoured markdown, no HTML; images and runs are linked relative to the report, so it can move whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..challenge import BUDGET, LAST_EPOCHS, MAX_EPOCHS
from ..engine import rundir as rd
from ..errors import MnistliteError
from ..runs.holding import claim, holding_text, images_text
from ..runs.seeds import common_test_images, format_holding
from . import analysis as an
from .figures import mean_curve, plot_step, plot_test_overlay, redraw_missing_curves
from .markdown import epoch_list, int_text, pct, pm, rel, rel_text, table
from .recipe import recipe_text
from .runs import log_excerpt, split_of
from .sections import Section, sections_from_experiment, sections_from_runs
from .step import Finding, StepMetrics, final_test, first_epoch_at, min_last

REPORT = "report.md"
LOG_EPOCHS = 3  # epochs of log.txt quoted per step


def _claim(s: Section) -> dict[str, Any] | None:
    """Held consistently over the step's seeds (runs/holding.py); None until every run has its last epochs."""
    runs = s.with_data
    if not runs or any(len(r.rows) < LAST_EPOCHS for r in runs):
        return None
    sealed = runs[0].sealed
    n = runs[0].config.get("val_size") if sealed else common_test_images([r.path for r in runs])
    lows, finals = [min_last(r.rows) for r in runs], [final_test(r.rows) for r in runs]
    return claim(lows, finals, rd.TARGET, n or None, "val" if sealed else "test")


def _comparison(sections: list[Section], analyses: list[list[Finding]], base: Path, w: str) -> list[str]:
    header = ["#", "Step", "Model", "Params", "MACs", "n", f"Best {w}", f"Final {w}", "Lowest last-3"]
    header += [f"Epochs ≥ {rd.TARGET}%", "Budget", "Goal", "Seeds holding (95% CI)", "Margin (images)", "Runs"]
    rows = []
    for i, (s, findings) in enumerate(zip(sections, analyses), 1):
        runs = s.with_data
        links = " ".join(f"[{r.path.name}]({rel(r.path, base)}/)" for r in s.runs)
        if not runs:
            rows.append([i, s.name, s.model, "", "", 0, "", "", "", "", "", "", "", "", links or "not run"])
            continue
        v, c = {f.rule: f for f in findings}, _claim(s)
        accs = [pm([r.headline[k] for r in runs]) for k in ("best_test_acc", "final_test_acc")]
        at = pm([len(r.headline["epochs_at_target"]) for r in runs], unit="", digits=1)
        row = [i, s.name, s.model, int_text(runs[0].params), int_text(runs[0].macs), len(runs), *accs]
        row += [pct(min(min_last(r.rows) for r in runs)), at, v["budget"].verdict, v["goal"].verdict]
        rows.append([*row, holding_text(c["holding"]) if c else "", images_text(c["margin"]) if c else "", links])
    return table(header, rows, align="rllrrrrrrrllrrl")


def _results(s: Section, base: Path, w: str) -> list[str]:
    runs = s.with_data
    if not runs:
        return ["No epoch has finished yet."]
    seeds = ", ".join(str(r.seed) for r in runs)
    n = len(runs)
    spread = ": mean ± sample standard deviation across seeds." if n > 1 else "."
    lines = [f"n = {n} ({'seed' if n == 1 else 'seeds'} {seeds}){spread}", ""]
    first = runs[0]
    sums = [r.headline for r in runs]
    at = [x["epochs_at_target"] for x in sums]
    walls = [r.wall_seconds for r in runs if r.wall_seconds is not None]
    lines += [
        f"- Parameters: {int_text(first.params)}; MACs per image: {int_text(first.macs)}",
        f"- Best train accuracy: {pm([x['best_train_acc'] for x in sums])}",
        f"- Final train accuracy: {pm([x['final_train_acc'] for x in sums])}",
        f"- Best {w} accuracy: {pm([x['best_test_acc'] for x in sums])}",
        f"- Final {w} accuracy: {pm([x['final_test_acc'] for x in sums])}",
        f"- Lowest {w} accuracy over the last {LAST_EPOCHS} epochs: {pm([min_last(r.rows) for r in runs])}"
        + (f" (worst seed {pct(min(min_last(r.rows) for r in runs))})" if n > 1 else ""),
        f"- Epochs at {rd.TARGET}% or above: {pm([len(a) for a in at], unit='', digits=1)} of {first.planned_epochs}"
        + (f" (epochs {epoch_list(at[0])})" if n == 1 and at[0] else ""),
    ]
    c = _claim(s)
    if c:  # in the words of the `seeds` console
        held = "; ".join(x.strip() for x in format_holding({**c, "split": w}))
        lines.append(f"- Held consistently: {c['holding']['k']}/{c['holding']['n']} seeds hold the goal; {held}")
    if walls:
        lines.append(f"- Wall time per run: {pm(walls, unit=' s', digits=0)}")
    header = ["Seed", "Best train", "Final train", f"Best {w}", f"Final {w}", "Lowest last-3"]
    header += [f"Epochs ≥ {rd.TARGET}%", "First ≥ 99%", "Wall s", "Run directory"]
    rows = []
    for r, x, a in zip(runs, sums, at):
        accs = [pct(x[k]) for k in ("best_train_acc", "final_train_acc", "best_test_acc", "final_test_acc")]
        row = [r.seed, *accs, pct(min_last(r.rows)), f"{len(a)}" + (f": {epoch_list(a)}" if a else "")]
        wall = f"{r.wall_seconds:.0f}" if r.wall_seconds is not None else ""
        incomplete = "" if r.complete else f" (incomplete: {len(r.rows)}/{r.planned_epochs} epochs)"
        link = f"[{rel_text(r.path, base)}]({rel(r.path, base)}/){incomplete}"
        rows.append([*row, first_epoch_at(r.rows, an.FIRST_LEVEL) or "never", wall, link])
    lines += ["", *table(header, rows, align="lrrrrrrrrl")]
    return lines


def _quoted(heading: str, caption: str, text: str) -> list[str]:
    return [f"### {heading}", "", caption, "", "```text", text, "```", ""]


def _section(i: int, s: Section, findings: list[Finding], base: Path, images: Path, w: str) -> list[str]:
    out = [f"## {i}. {s.heading}", ""]
    first = (s.with_data or s.runs or [None])[0]
    if s.model:
        from ..modelinfo import find_entry

        try:  # a candidate's old runs name it bare: find_entry looks beside the rounds (./experiments)
            e = find_entry(s.model)
        except MnistliteError:
            e = None
        desc = f": {e.description or e.source}" if e else " (not a registered model in this version)"
        out += [f"**Model** `{s.model}`{desc}", ""]
    if first is not None:
        out += [f"**Recipe**: {recipe_text(first.config)}", ""]
    if s.target:
        out += ["### Target", "", *[f"- {t}" for t in s.target], ""]
    if s.notes:
        out += [f"*Notes:* {s.notes}", ""]
    out += ["### Results", "", *_results(s, base, w), ""]
    if s.missing:
        out += ["Not run yet: " + ", ".join(f"`{m}`" for m in s.missing), ""]
    if not s.with_data:
        return out
    out += ["### Analysis", "", *[f"- {f.text}" for f in findings], "", "### Curves", ""]
    runs = s.with_data
    if len(runs) > 1:
        out += [f"![{s.name}: train and {w} accuracy of every seed]({rel(images / s.image, base)})", ""]
        curves = [f"[seed {r.seed}]({rel(r.path / rd.CURVES, base)})" for r in runs]
        out += ["Loss and accuracy curves per run: " + ", ".join(curves), ""]
    else:  # render_report has drawn any missing curves.png
        out += [f"![{s.name}: loss and accuracy per epoch]({rel(runs[0].path / rd.CURVES, base)})", ""]
    if first is not None and first.layer_table:
        where = rel_text(first.path / rd.LAYER_TABLE, base)
        out += _quoted("Layer table", f"From `{where}`:", first.layer_table.rstrip("\n"))
    log = log_excerpt(runs[0].log, int(runs[0].rows[-1]["epoch"]), LOG_EPOCHS)
    if log:
        where = rel_text(runs[0].path / rd.LOG, base)
        out += _quoted("Log excerpt", f"The last {LOG_EPOCHS} epochs of `{where}`:", log)
    return out


def render_report(title: str, sections: list[Section], report: Path, images: Path, intro: Sequence[str]) -> Path:
    """Write the report and its plots; returns the report's path."""
    w = split_of([r for s in sections for r in s.with_data], "report")  # before anything is written
    base = report.parent
    images.mkdir(parents=True, exist_ok=True)  # under base
    redraw_missing_curves([r for s in sections for r in s.with_data])
    analyses: list[list[Finding]] = []
    prev: StepMetrics | None = None
    for s in sections:
        m = s.metrics() if s.with_data else None
        analyses.append(an.analyse(m, prev) if m else [])
        prev = m or prev

    curves = {s.name: mean_curve(s.with_data) for s in sections if s.with_data}
    lines = [f"# {title}", "", *intro]
    lines += [
        f"**The challenge**: MNIST test accuracy of at least {rd.TARGET}% in each of the last {LAST_EPOCHS} epochs, "
        f"for every seed, with fewer than {BUDGET:,} parameters and at most {MAX_EPOCHS} epochs. "
        "Train accuracy is the running accuracy on the augmented training batches of each epoch, with dropout "
        "on (as the seeds measure it); test accuracy is the full test set after each epoch, in eval mode.",
        "",
    ]
    if w == "val":
        lines += [
            "**Sealed validation runs**: these runs hold out training images as a validation split and never "
            "read the test set, so every accuracy below is the validation split's, labelled val.",
            "",
        ]
    lines += [
        "## Comparison",
        "",
        *_comparison(sections, analyses, base, w),
        "",
        f"Best and final {w}: mean ± sample std across seeds (n = the column n). Lowest last-3: the lowest {w} "
        f"accuracy of the last {LAST_EPOCHS} epochs, worst seed. Epochs ≥ {rd.TARGET}%: per run, mean ± std. "
        f"Budget: < {BUDGET:,} parameters and ≤ {MAX_EPOCHS} epochs. Goal: ≥ {rd.TARGET}% in each "
        f"of the last {LAST_EPOCHS} epochs, every seed. Seeds holding: the seeds at the goal, with the "
        f"Clopper-Pearson 95% interval for the share of new seeds that would be. Margin: the worst last-"
        f"{LAST_EPOCHS} reading minus {rd.TARGET:.2f}, in images of the {w} set.",
        "",
    ]
    if curves:
        overview = images / "overview.png"
        plot_test_overlay(curves, overview, f"{w.capitalize()} accuracy per epoch (mean over seeds)", w)
        lines += [f"![{w.capitalize()} accuracy per epoch, mean over seeds, every step]({rel(overview, base)})", ""]
    for i, (s, findings) in enumerate(zip(sections, analyses), 1):
        if len(s.with_data) > 1:
            plot_step(s, images / s.image, w)
        lines += _section(i, s, findings, base, images, w)
    rules = "The analysis rules and their thresholds are in `src/mnistlite/reports/analysis.py`."
    lines += ["---", "", f"Generated by mnistlite {__version__}. {rules}", ""]
    rd.atomic_write_text(report, "\n".join(lines))
    return report


def render_experiment(exp_dir: str | Path, report: str | Path | None = None) -> Path:
    """(Re)write an experiment's report from its experiment.json and run directories."""
    exp_dir = Path(exp_dir)
    meta, sections = sections_from_experiment(exp_dir)
    report = Path(report) if report else exp_dir / REPORT
    base = report.parent
    intro = [meta["description"], ""] if meta.get("description") else []
    source = meta.get("source")
    src = f"`{source}`" if source else "an experiment file"
    if source and (exp_dir / source).exists():
        src = f"[`{Path(source).name}`]({rel(exp_dir / source, base)})"
    seeds = ", ".join(map(str, meta.get("seeds", [])))
    cmd = f", run as `{meta['command']}`" if meta.get("command") else ""
    intro += [
        f"Experiment {src}, seeds {seeds}{cmd}. Every number below is read from the run directories linked in each "
        f"section (metrics.csv, result.json); `mnistlite report {meta.get('out') or exp_dir}` regenerates this "
        "file without training.",
        "",
    ]
    if meta.get("read_test"):
        intro += [
            "**Final report**: the experiment file opts in to the test set (`read_test = true`), so its runs "
            "train on the full training set and are scored on the test set; without it they would be sealed "
            "validation runs.",
            "",
        ]
    over = meta.get("overrides") or {}
    if over:
        smoke = ". These runs are smoke tests, not results." if {"limit_train", "epochs"} & set(over) else "."
        intro += ["**Command-line overrides**: " + ", ".join(f"{k}={v}" for k, v in over.items()) + smoke, ""]
    images = base / ("images" if report.resolve() == (exp_dir / REPORT).resolve() else f"{report.stem}-images")
    return render_report(meta.get("title", exp_dir.name), sections, report, images, intro)


def render_runs(run_dirs: Sequence[str | Path], report: str | Path | None = None) -> Path:
    """A report with one section per run directory (in the order given)."""
    dirs = [Path(d) for d in run_dirs]
    if report is None:
        report = Path(os.path.commonpath([d.resolve().parent for d in dirs])) / REPORT
    report = Path(report)
    sections = sections_from_runs(dirs, report.parent)  # fails on a bad directory before anything is written
    intro = [
        "One section per run directory, in the order given; every number is read from the linked "
        "directory (metrics.csv, result.json). Each section's Analysis compares it with the section before.",
        "",
    ]
    images = report.parent / f"{report.stem}-images"
    return render_report(f"Report on {len(dirs)} run(s)", sections, report, images, intro)
