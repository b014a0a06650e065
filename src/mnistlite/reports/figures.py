"""A report's plots: accuracy per epoch against the target line, per step and for every step."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..engine import rundir as rd
from .runs import RunRecord
from .sections import Section, run_labels


def plot_lines(series: list[tuple[str, list[tuple[int, float]], dict]], path: Path, title: str, ylabel: str) -> None:
    """Lines of (epoch, accuracy) with the target line; the y-range follows the later epochs."""
    from matplotlib.ticker import MaxNLocator

    from ..engine.plots import plt  # Agg backend already selected there

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
    low = min(tails, default=97.0)
    ax.set(xlabel="epoch", ylabel=ylabel, ylim=(max(0.0, min(low - 0.3, 98.5)), min(100.0, top + 0.2)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(series) > 6 else 1, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mean_curve(runs: Sequence[RunRecord]) -> list[tuple[int, float]]:
    """Per epoch, the mean test accuracy over the runs that reached that epoch."""
    by_epoch: dict[int, list[float]] = {}
    for row in (row for r in runs for row in r.rows if row.get("test_acc") is not None):
        by_epoch.setdefault(int(row["epoch"]), []).append(float(row["test_acc"]))
    return [(e, sum(v) / len(v)) for e, v in sorted(by_epoch.items())]


def plot_step(section: Section, path: Path, split: str) -> None:
    """Every seed's train and `split` accuracy (a sealed run's test keys hold its val split)."""
    from ..engine.plots import plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    series = []
    runs = section.with_data
    for i, (label, r) in enumerate(zip(run_labels(runs), runs)):
        c = colors[i % len(colors)]
        series.append((f"{label} {split}", [(x["epoch"], x["test_acc"]) for x in r.rows], {"color": c}))
        series.append((f"{label} train", [(x["epoch"], x["train_acc"]) for x in r.rows], {"color": c, "ls": ":"}))
    plot_lines(series, path, f"{section.name}: accuracy per epoch (train dotted)", "accuracy (%)")


def plot_test_overlay(curves: dict[str, list[tuple[int, float]]], path: Path, title: str, split: str = "test") -> None:
    plot_lines([(k, v, {}) for k, v in curves.items()], path, title, f"{split} accuracy (%)")


def redraw_missing_curves(runs: Sequence[RunRecord]) -> None:
    """Draw curves.png from metrics.csv where a run folder lacks it: committed runs keep only
    the plots a page shows (docs/results stays small), and `mnistlite report` brings the rest back."""
    from ..engine.plots import plot_curves
    from ..engine.writer import curves_title

    for r in runs:
        if r.rows and not (r.path / rd.CURVES).is_file():
            plot_curves(r.rows, r.path / rd.CURVES, curves_title(r.config))
