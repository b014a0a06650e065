"""The timers behind `mnistlite bench`: our training steps, the evaluation pass, and the seeds' pipeline.

The baseline is written here, inside the benchmark, on purpose: a
`torch.utils.data.Dataset` that converts and rotates one PIL image at a time,
behind a shuffling DataLoader with worker processes, which is what the seed
repositories do with torchvision. Both sides train the same model with the
same optimizer and batch size in the same process, so the ratio is fair.

The baseline's model uses torch's own Dropout and for-loop SGD, as the seeds
do; NCHW input keeps BatchNorm, ReLU and Dropout as separate layers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import TrainConfig
from .engine import bn_path
from .engine import precision as prec
from .engine.evaluation import evaluate
from .engine.parts import build_parts
from .models import create_model


@dataclass
class Timing:
    seconds: float
    images: int
    startup: float = 0.0  # seconds before the timed part that a whole epoch pays once

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ours(cfg: TrainConfig, data, batches: int | None, device: torch.device, fast_path: bool = True) -> Timing:
    """Training steps of the real fast path (the trainer's own `Parts.step`), on cfg's BN path as a run settles it."""
    path = bn_path.resolve(cfg.replace(precision=prec.resolve(cfg, device).precision), device)
    with path.applied():
        return _time_steps(build_parts(cfg, data, device, fast_path=fast_path), data, batches, device)


def _time_steps(parts, data, batches: int | None, device: torch.device) -> Timing:
    x_all, y_all = data.train.images, data.train.labels
    n, bs = len(y_all), parts.batch_size
    steps = parts.steps if batches is None else batches
    perm = torch.randperm(n, generator=parts.generator, device=device)
    parts.model.train()

    def step(i: int) -> int:
        lo = (i * bs) % n
        idx = perm[lo : lo + bs]
        parts.step(x_all[idx], y_all[idx])
        return len(idx)

    # Warm-up: oneDNN builds its kernels and the allocator's heap grows to the
    # step's working set during the first batches (3 were not enough: measured).
    for i in range(10):
        step(i)
    _sync(device)
    seen, t0 = 0, time.perf_counter()
    for i in range(steps):
        seen += step(i)
    _sync(device)
    return Timing(time.perf_counter() - t0, seen)


def time_eval(cfg: TrainConfig, data, device: torch.device) -> Timing:
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = create_model(cfg.model).to(device).to(memory_format=fmt)
    evaluate(model, data.test, cfg.eval_batch_size)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    evaluate(model, data.test, cfg.eval_batch_size)
    _sync(device)
    return Timing(time.perf_counter() - t0, len(data.test))


class _PerSampleDataset(torch.utils.data.Dataset):
    """The seeds' way: one PIL image at a time, rotated, converted, normalised."""

    def __init__(self, images_u8: np.ndarray, labels: np.ndarray, rotation: float, mean: float, std: float):
        self.images, self.labels = images_u8, labels
        self.rotation, self.mean, self.std = rotation, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")
        if self.rotation:
            angle = float(np.random.uniform(-self.rotation, self.rotation))
            img = img.rotate(angle, resample=Image.NEAREST, fillcolor=0)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)
        return (x - self.mean) / self.std, int(self.labels[i])


def stock_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """The seeds use torch's own Dropout: put it back in place of mnistlite's cheaper mask."""
    from .models.dropout import Dropout

    for name, child in model.named_children():
        if isinstance(child, Dropout):
            setattr(model, name, torch.nn.Dropout(child.p))
        else:
            stock_dropout(child)
    return model


def time_baseline(cfg: TrainConfig, data, batches: int | None, workers: int) -> Timing:
    """The per-sample DataLoader pipeline, on the CPU, as the seeds run it.

    The clock starts at the first batch: the workers' start-up (forking, the
    first batch's warps) is measured apart, as `Timing.startup`, because an
    epoch pays it once, not once per `batches` (bench_epoch.py adds it once).
    """
    # Undo the normalisation to get back the uint8 images the seeds start from.
    u8 = (data.train.images[:, 0] * data.std + data.mean).mul(255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    ds = _PerSampleDataset(u8, data.train.labels.cpu().numpy(), cfg.rotation, data.mean, data.std)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    torch.manual_seed(cfg.seed)
    model = stock_dropout(create_model(cfg.model, dropout=cfg.dropout)).train()
    # torch's defaults, as the seeds call them: for-loop SGD, no foreach.
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )
    seen, start, t0 = 0, time.perf_counter(), 0.0
    startup = 0.0
    for i, (x, y) in enumerate(loader):
        if i == 1:  # the first batch's step is start-up too (oneDNN builds its kernels)
            t0 = time.perf_counter()
            startup = t0 - start
        if batches is not None and i >= batches + 1:
            break
        loss = F.nll_loss(F.log_softmax(model(x), 1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 1:
            seen += len(y)
    if seen == 0:  # a split of one batch: all of it is the timing
        return Timing(time.perf_counter() - start, len(ds))
    return Timing(time.perf_counter() - t0, seen, startup)
