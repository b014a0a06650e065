"""Markdown reports from run directories, and the `compare` table.

A report is GitHub-flavoured markdown with no HTML: pipe tables, fenced code,
and images linked by paths relative to the report (so the folder can be moved
or committed as a whole). Every section links the run directories its numbers
come from.

    <experiment>/report.md           the experiment's report
    <experiment>/images/overview.png test accuracy per epoch, mean over seeds, every step
    <experiment>/images/step-<name>.png  train and test accuracy of every seed of a step
    <experiment>/<step>/seed<k>/     the run directories (config.json, metrics.csv, ...)

A report written elsewhere (`mnistlite report ... --out FILE`) keeps its
images in `<FILE stem>-images/` beside it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import __version__
from ..errors import MnistliteError
from ..runs import rundir as rd
from . import analysis as an
from .runs import RunRecord, architecture, is_run_dir, load_run, log_excerpt

EXPERIMENT_JSON = "experiment.json"  # written by reports/experiment.py; what `mnistlite report DIR` re-renders from
REPORT = "report.md"

LOG_EPOCHS = 3  # epochs of log.txt quoted per step
IMAGES = "images"
OVERVIEW = "overview.png"


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

    def metrics(self) -> an.StepMetrics:
        runs = self.with_data or self.runs
        labels = _run_labels(runs)
        first = runs[0] if runs else None
        cfg = first.config if first else {}
        model = self.model or (first.model if first else "")
        return an.StepMetrics(
            name=self.name,
            runs={labels[i]: r.rows for i, r in enumerate(runs)},
            params=next((r.params for r in runs if r.params is not None), None),
            epochs=first.planned_epochs if first else None,
            model=model,
            config=cfg,
            arch=architecture(model, cfg.get("dropout"), first.result if first else None) if model else {},
        )


def _run_labels(runs: Sequence[RunRecord]) -> list[str]:
    labels = [f"seed {r.seed}" for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{r.path.name} (seed {r.seed})" for r in runs]
    return labels


# --- paths and small formatting ---------------------------------------------------------


def rel(target: Path, base: Path) -> str:
    """`target` relative to the folder `base`, in URL form (forward slashes, spaces escaped)."""
    return quote(Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix())


def rel_text(target: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "run"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "| " + " | ".join(sep) + " |",
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
    ]


def _int(v: int | None) -> str:
    return f"{v:,}" if v is not None else "n/a"


def recipe_text(cfg: dict[str, Any]) -> str:
    """A run's recipe in one readable line."""
    if not cfg:
        return "unknown"
    parts = []
    opt = str(cfg.get("optimizer", "sgd"))
    if opt == "sgd":
        mom = cfg.get("momentum", 0)
        parts.append("SGD" + (f" (momentum {mom:g}{', Nesterov' if cfg.get('nesterov') else ''})" if mom else ""))
    else:
        parts.append({"adam": "Adam", "adamw": "AdamW"}.get(opt, opt))
    sched = cfg.get("scheduler", "none")
    if sched == "onecycle":
        parts.append(
            f"OneCycle LR to {cfg.get('max_lr'):g} (starts /{cfg.get('div_factor'):g}, ends "
            f"/{cfg.get('final_div_factor'):g} lower, {cfg.get('pct_start'):.0%} warm-up, {cfg.get('anneal_strategy')})"
        )
    elif sched == "step":
        parts.append(f"LR {cfg.get('lr'):g}, x{cfg.get('gamma'):g} every {cfg.get('step_size')} epochs")
    else:
        parts.append(f"constant LR {cfg.get('lr'):g}")
    if cfg.get("weight_decay"):
        parts.append(f"weight decay {cfg['weight_decay']:g}")
    if cfg.get("label_smoothing"):
        parts.append(f"label smoothing {cfg['label_smoothing']:g}")
    parts.append(f"batch {cfg.get('batch_size')}")
    parts.append(f"{cfg.get('epochs')} epochs")
    aug = []
    if cfg.get("rotation"):
        aug.append(f"rotation ±{cfg['rotation']:g}°")
    if cfg.get("translate"):
        aug.append(f"translate ±{cfg['translate']:.0%}")
    if cfg.get("scale"):
        aug.append(f"scale ±{cfg['scale']:.0%}")
    if cfg.get("shear"):
        aug.append(f"shear ±{cfg['shear']:g}°")
    if cfg.get("crop_p"):
        aug.append(f"centre-crop zoom p={cfg['crop_p']:g} ({cfg.get('crop_size')} px)")
    parts.append("augmentation: " + (", ".join(aug) if aug else "none"))
    if cfg.get("ema"):
        parts.append(f"judged and saved by a moving average of the weights (decay {cfg['ema']:g})")
    d = cfg.get("dropout")
    parts.append("dropout: the model's own" if d is None else f"dropout {d:g}")
    text = "; ".join(parts)
    if cfg.get("limit_train"):
        text += f"; **trained on the first {cfg['limit_train']:,} images only**"
    if cfg.get("val_size"):
        text += f"; {cfg['val_size']:,} training images held out for validation"
    return text


# --- plots ---------------------------------------------------------------------------------


def _plot(series: list[tuple[str, list[tuple[int, float]], dict]], path: Path, title: str, ylabel: str) -> None:
    """Lines of (epoch, accuracy) with the target line; the y-range follows the later epochs."""
    from matplotlib.ticker import MaxNLocator

    from ..runs.plots import plt  # Agg backend already selected there

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    tails: list[float] = []
    top = rd.TARGET
    for label, pts, style in series:
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=label, **style)
        tails.extend(ys[len(ys) // 2 :])
        top = max(top, *ys)
    ax.axhline(rd.TARGET, color="red", ls="--", lw=1, label=f"{rd.TARGET}% target")
    low = min(tails) if tails else 97.0
    ax.set_ylim(max(0.0, min(low - 0.3, 98.5)), min(100.0, top + 0.2))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(series) > 6 else 1, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mean_curve(runs: Sequence[RunRecord], key: str = "test_acc") -> list[tuple[int, float]]:
    """Per epoch, the mean of `key` over the runs that reached that epoch."""
    by_epoch: dict[int, list[float]] = {}
    for r in runs:
        for row in r.rows:
            if row.get(key) is not None:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(row[key]))
    return [(e, sum(v) / len(v)) for e, v in sorted(by_epoch.items())]


def plot_step(section: Section, path: Path) -> None:
    from ..runs.plots import plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    series = []
    runs = section.with_data
    for i, (label, r) in enumerate(zip(_run_labels(runs), runs)):
        c = colors[i % len(colors)]
        series.append((f"{label} test", [(x["epoch"], x["test_acc"]) for x in r.rows], {"color": c}))
        series.append((f"{label} train", [(x["epoch"], x["train_acc"]) for x in r.rows], {"color": c, "ls": ":"}))
    _plot(series, path, f"{section.name}: accuracy per epoch (train dotted)", "accuracy (%)")


def plot_test_overlay(curves: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    _plot([(k, v, {}) for k, v in curves.items()], path, title, "test accuracy (%)")


# --- sections ---------------------------------------------------------------------------------


def sections_from_experiment(exp_dir: Path) -> tuple[dict[str, Any], list[Section]]:
    meta = rd.read_json(exp_dir / EXPERIMENT_JSON)
    if not isinstance(meta, dict) or not isinstance(meta.get("steps"), list):
        raise MnistliteError(f"{exp_dir / EXPERIMENT_JSON}: not an experiment record")
    sections = []
    for step in meta["steps"]:
        runs, missing = [], []
        for sub in step.get("runs", []):
            d = exp_dir / sub
            if is_run_dir(d):
                runs.append(load_run(d))
            else:
                missing.append(sub)
        title = step.get("title") or ""
        sections.append(
            Section(
                name=step["name"],
                heading=f"{title} (`{step['name']}`)" if title else f"`{step['name']}`",
                runs=runs,
                model=step.get("model", ""),
                target=list(step.get("target", [])),
                notes=step.get("notes", ""),
                missing=missing,
                image=f"step-{_slug(step['name'])}.png",
            )
        )
    return meta, sections


def sections_from_runs(run_dirs: Sequence[Path], base: Path) -> list[Section]:
    sections = []
    for i, d in enumerate(run_dirs, 1):
        r = load_run(d)
        label = rel_text(d, base)
        sections.append(
            Section(
                name=label,
                heading=f"`{label}`",
                runs=[r],
                model=r.model,
                image=f"{i:02d}-{_slug(d.name)}.png",
            )
        )
    return sections


# --- markdown -----------------------------------------------------------------------------------


def _verdicts(findings: list[an.Finding]) -> dict[str, an.Finding]:
    return {f.rule: f for f in findings}


def _at_target(rows: list[dict[str, Any]]) -> list[int]:
    return [int(r["epoch"]) for r in rows if r["test_acc"] >= rd.TARGET]


def _comparison(sections: list[Section], analyses: list[list[an.Finding]], base: Path) -> list[str]:
    header = [
        "#",
        "Step",
        "Model",
        "Params",
        "MACs",
        "n",
        "Best test",
        "Final test",
        "Lowest last-3",
        f"Epochs ≥ {rd.TARGET}%",
        "Budget",
        "Goal",
        "Runs",
    ]
    rows = []
    for i, (s, findings) in enumerate(zip(sections, analyses), 1):
        runs = s.with_data
        links = " ".join(f"[{r.path.name}]({rel(r.path, base)}/)" for r in s.runs)
        if not runs:
            rows.append([i, s.name, s.model, "", "", 0, "", "", "", "", "", "", links or "not run"])
            continue
        v = _verdicts(findings)
        first = runs[0]
        rows.append(
            [
                i,
                s.name,
                s.model,
                _int(first.params),
                _int(first.macs),
                len(runs),
                an.pm([r.summary["best_test_acc"] for r in runs]),
                an.pm([r.summary["final_test_acc"] for r in runs]),
                an.pct(min(an.min_last(r.rows) for r in runs)),
                an.pm([len(_at_target(r.rows)) for r in runs], unit="", digits=1),
                v["budget"].verdict,
                v["goal"].verdict,
                links,
            ]
        )
    return _table(header, rows, align="rllrrrrrrrlll")


def _results(s: Section, base: Path) -> list[str]:
    runs = s.with_data
    if not runs:
        return ["No epoch has finished yet."]
    seeds = ", ".join(str(r.seed) for r in runs)
    n = len(runs)
    lines = [
        f"n = {n} ({'seed' if n == 1 else 'seeds'} {seeds})"
        + (": mean ± sample standard deviation across seeds." if n > 1 else "."),
        "",
    ]
    first = runs[0]
    sums = [r.summary for r in runs]
    epochs = first.planned_epochs
    at = [_at_target(r.rows) for r in runs]
    walls = [r.wall_seconds for r in runs if r.wall_seconds is not None]
    lines += [
        f"- Parameters: {_int(first.params)}; MACs per image: {_int(first.macs)}",
        f"- Best train accuracy: {an.pm([x['best_train_acc'] for x in sums])}",
        f"- Final train accuracy: {an.pm([x['final_train_acc'] for x in sums])}",
        f"- Best test accuracy: {an.pm([x['best_test_acc'] for x in sums])}",
        f"- Final test accuracy: {an.pm([x['final_test_acc'] for x in sums])}",
        f"- Lowest test accuracy over the last {an.LAST_N} epochs: {an.pm([an.min_last(r.rows) for r in runs])}"
        + (f" (worst seed {an.pct(min(an.min_last(r.rows) for r in runs))})" if n > 1 else ""),
        f"- Epochs at {rd.TARGET}% or above: {an.pm([len(a) for a in at], unit='', digits=1)} of {epochs}"
        + (f" (epochs {an.epoch_list(at[0])})" if n == 1 and at[0] else ""),
    ]
    if walls:
        lines.append(f"- Wall time per run: {an.pm(walls, unit=' s', digits=0)}")
    lines += [
        "",
        *_table(
            [
                "Seed",
                "Best train",
                "Final train",
                "Best test",
                "Final test",
                "Lowest last-3",
                f"Epochs ≥ {rd.TARGET}%",
                "First ≥ 99%",
                "Wall s",
                "Run directory",
            ],
            [
                [
                    r.seed,
                    an.pct(x["best_train_acc"]),
                    an.pct(x["final_train_acc"]),
                    an.pct(x["best_test_acc"]),
                    an.pct(x["final_test_acc"]),
                    an.pct(an.min_last(r.rows)),
                    f"{len(a)}" + (f": {an.epoch_list(a)}" if a else ""),
                    an.first_epoch_at(r.rows, an.FIRST_LEVEL) or "never",
                    f"{r.wall_seconds:.0f}" if r.wall_seconds is not None else "",
                    f"[{rel_text(r.path, base)}]({rel(r.path, base)}/)"
                    + ("" if r.complete else f" (incomplete: {len(r.rows)}/{r.planned_epochs} epochs)"),
                ]
                for r, x, a in zip(runs, sums, at)
            ],
            align="lrrrrrrrrl",
        ),
    ]
    return lines


def _section(i: int, s: Section, findings: list[an.Finding], base: Path, images: Path) -> list[str]:
    out = [f"## {i}. {s.heading}", ""]
    first = (s.with_data or s.runs or [None])[0]
    if s.model:
        try:
            from ..models import get_entry

            e = get_entry(s.model)
            desc = f": {e.description or e.source}"
        except MnistliteError:
            desc = " (not a registered model in this version)"
        out += [f"**Model** `{s.model}`{desc}", ""]
    if first is not None:
        out += [f"**Recipe**: {recipe_text(first.config)}", ""]
    if s.target:
        out += ["### Target", "", *[f"- {t}" for t in s.target], ""]
    if s.notes:
        out += [f"*Notes:* {s.notes}", ""]
    out += ["### Results", "", *_results(s, base), ""]
    if s.missing:
        out += ["Not run yet: " + ", ".join(f"`{m}`" for m in s.missing), ""]
    if not s.with_data:
        return out
    out += ["### Analysis", "", *[f"- {f.text}" for f in findings], ""]
    out += ["### Curves", ""]
    runs = s.with_data
    if len(runs) > 1:
        out += [f"![{s.name}: train and test accuracy of every seed]({rel(images / s.image, base)})", ""]
        curves = [f"[seed {r.seed}]({rel(r.path / rd.CURVES, base)})" for r in runs if (r.path / rd.CURVES).is_file()]
        if curves:
            out += ["Loss and accuracy curves per run: " + ", ".join(curves), ""]
    elif (runs[0].path / rd.CURVES).is_file():
        out += [f"![{s.name}: loss and accuracy per epoch]({rel(runs[0].path / rd.CURVES, base)})", ""]
    else:
        out += [f"![{s.name}: train and test accuracy]({rel(images / s.image, base)})", ""]
    if first is not None and first.layer_table:
        out += [
            "### Layer table",
            "",
            f"From `{rel_text(first.path / rd.SUMMARY, base)}`:",
            "",
            "```text",
            first.layer_table.rstrip("\n"),
            "```",
            "",
        ]
    log = log_excerpt(runs[0].log, int(runs[0].rows[-1]["epoch"]), LOG_EPOCHS)
    if log:
        out += [
            "### Log excerpt",
            "",
            f"The last {LOG_EPOCHS} epochs of `{rel_text(runs[0].path / rd.LOG, base)}`:",
            "",
            "```text",
            log,
            "```",
            "",
        ]
    return out


def render_report(
    title: str,
    sections: list[Section],
    report: Path,
    images: Path,
    intro: Sequence[str] = (),
) -> Path:
    """Write the report and its plots; returns the report's path."""
    report = Path(report)
    base = report.parent
    base.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    analyses: list[list[an.Finding]] = []
    prev: an.StepMetrics | None = None
    for s in sections:
        if s.with_data:
            m = s.metrics()
            analyses.append(an.analyse(m, prev))
            prev = m
        else:
            analyses.append([])

    curves = {s.name: mean_curve(s.with_data) for s in sections if s.with_data}
    lines = [f"# {title}", "", *intro]
    lines += [
        f"**The challenge**: MNIST test accuracy of at least {rd.TARGET}% in each of the last {an.LAST_N} epochs, "
        f"for every seed, with fewer than {an.BUDGET_PARAMS:,} parameters and at most {an.BUDGET_EPOCHS} epochs. "
        "Train accuracy is the running accuracy on the augmented training batches of each epoch, with dropout "
        "on (as the seeds measure it); test accuracy is the full test set after each epoch, in eval mode.",
        "",
        "## Comparison",
        "",
        *_comparison(sections, analyses, base),
        "",
        f"Best and final test: mean ± sample std across seeds (n = the column n). Lowest last-3: the lowest test "
        f"accuracy of the last {an.LAST_N} epochs, worst seed. Epochs ≥ {rd.TARGET}%: per run, mean ± std. "
        f"Budget: < {an.BUDGET_PARAMS:,} parameters and ≤ {an.BUDGET_EPOCHS} epochs. Goal: ≥ {rd.TARGET}% in each "
        f"of the last {an.LAST_N} epochs, every seed.",
        "",
    ]
    if curves:
        overview = images / OVERVIEW
        plot_test_overlay(curves, overview, "Test accuracy per epoch (mean over seeds)")
        lines += [f"![Test accuracy per epoch, mean over seeds, every step]({rel(overview, base)})", ""]
    for i, (s, findings) in enumerate(zip(sections, analyses), 1):
        if len(s.with_data) > 1 or (s.with_data and not (s.with_data[0].path / rd.CURVES).is_file()):
            plot_step(s, images / s.image)
        lines += _section(i, s, findings, base, images)
    lines += [
        "---",
        "",
        f"Generated by mnistlite {__version__}. The analysis rules and their thresholds are in "
        "`src/mnistlite/reports/analysis.py`.",
        "",
    ]
    rd.atomic_write_text(report, "\n".join(lines))
    return report


def _images_for(report: Path, default_report: Path | None) -> Path:
    if default_report is not None and report.resolve() == default_report.resolve():
        return report.parent / IMAGES
    return report.parent / f"{report.stem}-images"


def render_experiment(exp_dir: str | Path, report: str | Path | None = None) -> Path:
    """(Re)write an experiment's report from its experiment.json and run directories."""
    exp_dir = Path(exp_dir)
    meta, sections = sections_from_experiment(exp_dir)
    report = Path(report) if report else exp_dir / REPORT
    base = report.parent
    intro = []
    if meta.get("description"):
        intro += [meta["description"], ""]
    source = meta.get("source")
    src_path = (exp_dir / source) if source else None
    src = (
        f"[`{Path(source).name}`]({rel(src_path, base)})"
        if src_path and src_path.exists()
        else f"`{source}`"
        if source
        else "an experiment file"
    )
    cmd = meta.get("command") or ""
    intro += [
        f"Experiment {src}, seeds {', '.join(map(str, meta.get('seeds', [])))}"
        + (f", run as `{cmd}`" if cmd else "")
        + ". "
        f"Every number below is read from the run directories linked in each section "
        f"(metrics.csv, result.json); `mnistlite report {meta.get('out') or exp_dir}` regenerates this "
        "file without training.",
        "",
    ]
    over = meta.get("overrides") or {}
    if over:
        intro += [
            "**Command-line overrides**: "
            + ", ".join(f"{k}={v}" for k, v in over.items())
            + (". These runs are smoke tests, not results." if {"limit_train", "epochs"} & set(over) else "."),
            "",
        ]
    return render_report(
        meta.get("title", exp_dir.name), sections, report, _images_for(report, exp_dir / REPORT), intro
    )


def render_runs(run_dirs: Sequence[str | Path], report: str | Path | None = None) -> Path:
    """A report with one section per run directory (in the order given)."""
    dirs = [Path(d) for d in run_dirs]
    for d in dirs:
        load_run(d)  # fail on a bad directory before writing anything
    if report is None:
        parents = [str(d.resolve().parent) for d in dirs]
        report = Path(os.path.commonpath(parents)) / REPORT
    report = Path(report)
    sections = sections_from_runs(dirs, report.parent)
    intro = [
        "One section per run directory, in the order given; every number is read from the linked "
        "directory (metrics.csv, result.json). Each section's Analysis compares it with the section before.",
        "",
    ]
    return render_report(f"Report on {len(dirs)} run(s)", sections, report, _images_for(report, None), intro)


def is_experiment_dir(path: Path) -> bool:
    return (Path(path) / EXPERIMENT_JSON).is_file()


# --- compare ---------------------------------------------------------------------------------


def expand_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories, with an experiment directory standing for all its runs."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            out.append(p)
        elif is_experiment_dir(p):
            _, sections = sections_from_experiment(p)
            out += [r.path for s in sections for r in s.runs]
        elif not p.exists():
            raise MnistliteError(f"{p}: no such directory")
        else:
            raise MnistliteError(
                f"{p}: neither a run directory ({rd.CONFIG}) nor an experiment directory ({EXPERIMENT_JSON})"
            )
    return out


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """The shortest path suffixes that tell the runs apart."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    # "seed1" alone says little: experiment runs get their step folder too.
    start = 2 if parts and all(re.fullmatch(r"seed\d+", x[-1]) for x in parts) else 1
    for k in range(start, max((len(x) for x in parts), default=1) + 1):
        labels = ["/".join(x[-k:]) for x in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def compare_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    rows = []
    for label, r in zip(unique_labels([r.path for r in runs]), runs):
        s = r.summary
        rows.append(
            {
                "run": label,
                "path": str(r.path),
                "model": r.model,
                "seed": r.seed,
                "params": r.params,
                "epochs": len(r.rows),
                "best_test_acc": s.get("best_test_acc"),
                "final_test_acc": s.get("final_test_acc"),
                "last3_min_test_acc": s.get("last3_min_test_acc"),
                "epochs_at_target": s.get("epochs_at_target", []),
                "wall_seconds": r.wall_seconds,
                "complete": r.complete,
            }
        )
    return rows


def format_compare(rows: Sequence[dict[str, Any]]) -> str:
    def f(v: Any, spec: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    table = [["run", "model", "params", "best test", "final test", "last-3 min", f"epochs >= {rd.TARGET}", "wall s"]]
    for r in rows:
        at = r["epochs_at_target"]
        table.append(
            [
                r["run"] + ("" if r["complete"] else " (incomplete)"),
                r["model"],
                f(r["params"], ","),
                f(r["best_test_acc"], ".2f"),
                f(r["final_test_acc"], ".2f"),
                f(r["last3_min_test_acc"], ".2f"),
                f"{len(at)}" + (f" ({an.epoch_list(at)})" if at else ""),
                f(r["wall_seconds"], ".1f"),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    left = {0, 1, 6}
    return "\n".join(
        "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in table
    )


def compare(paths: Sequence[str | Path], out_png: str | Path) -> tuple[list[dict[str, Any]], Path]:
    dirs = expand_dirs(paths)
    runs = [load_run(d) for d in dirs]
    rows = compare_rows(runs)
    curves = {row["run"]: [(x["epoch"], x["test_acc"]) for x in r.rows] for row, r in zip(rows, runs)}
    out_png = Path(out_png)
    plot_test_overlay(curves, out_png, "Test accuracy per epoch")
    return rows, out_png
