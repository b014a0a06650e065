"""What a run hands back: `RunResult` (result.json) when it finishes, or one of the two ways it stops early."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import __version__
from ..config import TrainConfig
from ..errors import MnistliteError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class TrainingInterrupted(MnistliteError):
    """Ctrl-C or SIGTERM: the run stopped cleanly at the last checkpoint."""

    exit_code = 130


class TrainingDiverged(MnistliteError):
    """The loss became NaN or infinite."""

    exit_code = 3


def diverged(what: str, epoch: int, cfg: TrainConfig, out: Path | None, rows: list[dict[str, Any]]) -> TrainingDiverged:
    """Raised before the epoch is saved: checkpoint.pt keeps the last good epoch."""
    kept = f" (checkpoint.pt in {out} keeps epoch {rows[-1]['epoch']}, the last good one)" if out and rows else ""
    flag = "max-lr" if cfg.scheduler == "onecycle" else "lr"
    return TrainingDiverged(f"{what} in epoch {epoch}; training diverged, lower --{flag}{kept}")


def interrupted(signame: str, out: Path | None, epoch: int, rows: list[dict[str, Any]]) -> TrainingInterrupted:
    done = rows[-1]["epoch"] if rows else 0
    where = f"; continue with: mnistlite train --resume {out}" if out is not None and done else ""
    return TrainingInterrupted(f"{signame}: stopped during epoch {epoch}, {done} epoch(s) saved{where}")


@dataclass
class RunResult:
    config: TrainConfig
    params: int
    metrics: list[dict[str, Any]]
    wall_seconds: float  # all sessions of the run, resumes included
    run_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # the headline numbers (rundir.headline_numbers)
    macs: int | None = None
    device: str = ""  # where it ran, e.g. "cpu" or "cuda (NVIDIA H100 80GB HBM3)"
    model: nn.Module | None = field(default=None, repr=False)  # the judged weights, in eval mode
    architecture: dict[str, str] = field(default_factory=dict)
    sessions: int = 1  # 1 + the number of times the run was resumed
    precision_reason: str = ""  # why cfg.precision (engine/precision.py)
    bn_fusion_reason: str = ""  # why cfg.bn_fusion (engine/bn_path.py)
    cuda_graph_reason: str = ""  # why cfg.cuda_graph (engine/cuda_graph.py)

    def plot(self, path: str | Path | None = None) -> Figure:
        """Loss and accuracy per epoch as a matplotlib Figure (a notebook shows it inline)."""
        from .plots import curves_figure

        fig = curves_figure(self.metrics, title=f"{self.config.model} (seed {self.config.seed})")
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "seed": self.config.seed,
            "params": self.params,
            "macs": self.macs,
            **self.summary,
            "wall_seconds": round(self.wall_seconds, 3),
            "sessions": self.sessions,
            "device": self.device,
            "precision": self.config.precision,
            **({"precision_reason": self.precision_reason} if self.precision_reason else {}),
            "bn_fusion": self.config.bn_fusion,
            **({"bn_fusion_reason": self.bn_fusion_reason} if self.bn_fusion_reason else {}),
            "cuda_graph": self.config.cuda_graph,
            **({"cuda_graph_reason": self.cuda_graph_reason} if self.cuda_graph_reason else {}),
            **({"architecture": self.architecture} if self.architecture else {}),
            "mnistlite_version": __version__,
            "torch_version": torch.__version__,
        }
