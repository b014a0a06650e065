"""What one training run is made of, and one optimizer step, built alike for `train` and the benchmark.
Weight init and dropout draw from the global RNG (seeded here); augmentation and the batch order from
the run's own generator. `fast.apply.accelerate` draws nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import AugmentSpec, BatchAugment
from ..config import TrainConfig
from ..data import Dataset, load_dataset
from ..errors import MnistliteError
from ..fast.apply import accelerate
from ..models import ModelEntry, get_entry
from . import bn_path
from .average import WeightAverage
from .optim import Schedule, build_optimizer
from .precision import resolve as resolve_precision
from .whiten import whiten_input_conv

# The first step's share under which the average is judged: ~2,300 steps at decay 0.998, 4,600 at 0.999 (epoch 5).
EMA_START_SHARE = 0.01


@dataclass
class Parts:
    cfg: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    augment: BatchAugment
    generator: torch.Generator
    batch_size: int
    steps: int  # optimizer steps per epoch
    autocast: Callable[[], Any]
    memory_format: torch.memory_format
    ema: WeightAverage | None = None  # the weights' moving average, when cfg.ema > 0

    @property
    def eval_model(self) -> nn.Module:
        """The weights judged and saved: the average once the first step's share decay**(updates - 1) is small."""
        if self.ema is not None and self.cfg.ema ** (int(self.ema.n_averaged) - 1) < EMA_START_SHARE:
            return self.ema.module
        return self.model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A step's differentiable part on a batch: augment, forward, loss -> (logits, loss)."""
        x = self.augment(x).contiguous(memory_format=self.memory_format)
        with self.autocast():
            logits = self.model(x)
        return logits, F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, loss = self.forward(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.after_batch()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return logits, loss


def load_data(cfg: TrainConfig) -> Dataset:
    """The data set a run's config names (its own load; the planner's DataCache shares one across runs)."""
    return load_dataset(
        cfg.dataset, data_dir=cfg.data_dir, val_size=cfg.val_size, limit_train=cfg.limit_train, download=cfg.download
    )


def build_parts(
    cfg: TrainConfig,
    data: Dataset,
    device: torch.device,
    entry: ModelEntry | None = None,
    echo: Callable[[str], None] | None = None,
) -> Parts:
    torch.manual_seed(cfg.seed)
    entry = entry or get_entry(cfg.model)
    fused = bn_path.resolve(cfg, device).path == "fused"
    echo = echo or (lambda line: None)
    model, note = accelerate(entry.build(dropout=cfg.dropout), fused)
    echo(note)
    if cfg.whiten != "off":
        try:
            line = whiten_input_conv(model, data.train.images, frozen=cfg.whiten == "frozen")
        except ValueError as e:
            raise MnistliteError(f"--whiten {cfg.whiten}: {e}") from None
        echo(line)
    model = model.to(device)
    # oneDNN's and cuDNN's convolutions both run faster on NHWC for these tiny channel counts (docs/performance.md).
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)  # type: ignore[call-overload]  # torch's stubs omit memory_format
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    # Empty pixels are normalised black, so augmentation pads with that value.
    augment = BatchAugment(AugmentSpec.from_config(cfg), fill=-data.mean / data.std, generator=gen)
    n = len(data.train)
    bs = min(cfg.batch_size, n)
    # A final batch of one sample breaks BatchNorm's batch statistics: fold it away.
    steps = n // bs + (1 if n % bs > 1 else 0)
    optimizer = build_optimizer(model, cfg)
    autocast = resolve_precision(cfg, device).autocast(device.type)
    ema = WeightAverage(model, cfg.ema) if cfg.ema else None
    return Parts(cfg, model, optimizer, Schedule(optimizer, cfg, steps), augment, gen, bs, steps, autocast, fmt, ema)
