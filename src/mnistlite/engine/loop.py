"""The epoch loop: train, score, check, checkpoint, repeat. Batches are `randperm` slices of one on-device tensor
(no DataLoader); an epoch is saved only once known good, so a NaN or a stop leaves the last good checkpoint."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import Split
from ..errors import MnistliteError
from . import rundir as rd
from .checkpoint import Progress, save_checkpoint
from .console import stop_requests
from .evaluation import Judge
from .parts import Parts
from .result import diverged, interrupted


@dataclass(frozen=True)
class Loop:
    """One session's fixed inputs to the loop."""

    parts: Parts
    train: Split
    judge: Judge
    echo: Callable[[str], None]
    out: Path | None  # the run directory; None trains in memory only
    show_bar: bool
    on_epoch: Callable[[dict[str, Any]], None] | None  # sees each saved row (a search prunes here)
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]  # Parts.step or its CUDA-graph replay


def run_epochs(loop: Loop, progress: Progress) -> None:
    """Train from the epoch after `progress.epochs_done` to the config's last, appending to `progress`."""
    parts, echo = loop.parts, loop.echo
    with stop_requests() as stop:
        for epoch in range(progress.epochs_done + 1, parts.cfg.epochs + 1):
            t0 = time.perf_counter()
            lr = parts.optimizer.param_groups[0]["lr"]
            echo(f"Epoch {epoch}")
            train_loss, train_acc, last_loss = _train_epoch(loop, stop)
            if stop:
                raise interrupted(stop[0], loop.out, epoch, progress.rows)
            # The last batch's update can break the weights with its loss still finite: never save those.
            if not math.isfinite(train_loss):
                raise diverged(f"loss became {train_loss}", epoch, parts.cfg, loop.out, progress.rows)
            if not all(t.isfinite().all() for t in parts.model.state_dict().values() if t.is_floating_point()):
                raise diverged("weights became non-finite", epoch, parts.cfg, loop.out, progress.rows)
            echo(f"Train loss={last_loss:.4f} batch_id={parts.steps - 1} Accuracy={train_acc:.2f}")
            parts.schedule.after_epoch()
            row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc}
            loop.judge(parts, row)
            if row["val_acc"] is not None:
                echo(f"Validation set: Average loss: {row['val_loss']:.4f}, Accuracy: {row['val_acc']:.2f}%")
            if "test" in loop.judge.splits:
                n = len(loop.judge.splits["test"])
                echo(
                    f"Test set: Average loss: {row['test_loss']:.4f}, Accuracy: "
                    f"{round(row['test_acc'] * n / 100)}/{n} ({row['test_acc']:.2f}%)"
                )
            # Eval mode uses BatchNorm's running statistics, which can overflow while training looks fine.
            broken = [k for k in ("val_loss", "test_loss") if row.get(k) is not None and not math.isfinite(row[k])]
            if broken:
                what = f"{broken[0].replace('_', ' ')} became {row[broken[0]]}"
                raise diverged(what, epoch, parts.cfg, loop.out, progress.rows)
            row["seconds"] = time.perf_counter() - t0
            progress.rows.append(row)
            progress.epochs_done = epoch
            if loop.out is not None:
                try:
                    save_checkpoint(loop.out, parts, progress)
                    rd.write_metrics(loop.out / rd.METRICS, progress.rows)
                except MnistliteError as e:
                    raise MnistliteError(
                        f"{e}; fix that, then continue with: mnistlite train --resume {loop.out}"
                    ) from None
            if loop.on_epoch is not None:
                loop.on_epoch(row)


def _train_epoch(loop: Loop, stop: list[str]) -> tuple[float, float, float]:
    """One pass over the split in a fresh random order: (mean loss, accuracy %, last batch's loss); stops on `stop`."""
    parts, step = loop.parts, loop.step
    train_x, train_y = loop.train.images, loop.train.labels
    device = train_x.device
    n, bs, steps = len(train_y), parts.batch_size, parts.steps
    parts.model.train()
    perm = torch.randperm(n, generator=parts.generator, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    loss = torch.zeros(())
    bar = tqdm(total=steps, disable=not loop.show_bar, leave=False, dynamic_ncols=True, file=sys.stderr)
    for b in range(steps):
        idx = perm[b * bs : (b + 1) * bs if b < steps - 1 else n]
        y = train_y[idx]
        logits, loss = step(train_x[idx], y)
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if loop.show_bar and (b % 20 == 0 or b == steps - 1):
            bar.set_description(
                f"Train loss={loss.item():.4f} batch_id={b} Accuracy={100 * correct.item() / seen:.2f}",
                refresh=False,
            )
            bar.update(b + 1 - bar.n)
        if stop:
            break
    bar.close()
    return loss_sum.item() / seen, 100.0 * correct.item() / seen, loss.item()
