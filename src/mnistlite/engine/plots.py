"""Plots of runs: Matplotlib's Agg backend, except in Jupyter (where `result.plot()` shows inline)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .rundir import TARGET


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and accuracy for train (and val) and test, with the target line, into `path`."""
    curves_figure(rows, title).savefig(path, dpi=100)


def curves_figure(rows: Sequence[dict[str, Any]], title: str):
    """The figure of `plot_curves`, closed in pyplot (a notebook displays the returned figure once)."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("train", "val", "test"):
        loss = [r.get(f"{key}_loss") for r in rows]
        acc = [r.get(f"{key}_acc") for r in rows]
        if all(v is None for v in acc):
            continue
        ax_loss.plot(epochs, loss, marker="o", ms=3, label=key)
        ax_acc.plot(epochs, acc, marker="o", ms=3, label=key)
    ax_acc.axhline(TARGET, color="red", ls="--", lw=1, label=f"{TARGET}% target")
    lows = [v for r in rows for v in (r.get("test_acc"), r.get("train_acc")) if v is not None]
    ax_acc.set_ylim(max(min(lows) - 0.5, 90.0) if lows else 90.0, 100)
    ax_loss.set_yscale("log")
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_overlay(curves: dict[str, Sequence[tuple[int, float]]], path: Path, title: str, ylabel: str) -> None:
    """One line per named series of (epoch, value), with the target line."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lows: list[float] = []
    for name, pts in curves.items():
        xs, ys = zip(*pts) if pts else ((), ())
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=name)
        lows.extend(ys)
    ax.axhline(TARGET, color="red", ls="--", lw=1, label=f"{TARGET}% target")
    ax.set_ylim(max(min(lows) - 0.2, 97.0) if lows else 97.0, 100)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(curves) > 6 else 1)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
