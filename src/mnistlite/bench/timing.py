"""The timers behind `mnistlite bench`, and the seeds' per-sample pipeline written here as they run it. The epochs
are timed in turns: a 2-core cloud CPU does not run at one speed (one step 15-16 ms for some seconds, then 21-22)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..config import TrainConfig
from ..engine import bn_path
from ..engine.evaluation import evaluate
from ..engine.parts import build_parts
from ..fast.apply import accelerate
from ..models import create_model


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


def time_ours(cfg: TrainConfig, data, batches: int | None, device: torch.device) -> Timing:
    """Training steps of the real fast path (the trainer's own `Parts.step`), on cfg's BN path as a run settles it."""
    parts = build_parts(cfg, data, device)
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

    # Warm-up: oneDNN builds its kernels and the heap grows to the step's working set (3 batches were not enough).
    for i in range(10):
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    seen = sum(step(i) for i in range(steps))
    _sync(device)
    return Timing(time.perf_counter() - t0, seen)


def time_eval(cfg: TrainConfig, data, device: torch.device) -> Timing:
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    fused = bn_path.resolve(cfg, device).path == "fused"
    model = accelerate(create_model(cfg.model), fused)[0].to(device).to(memory_format=fmt)
    evaluate(model, data.test, cfg.eval_batch_size)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    evaluate(model, data.test, cfg.eval_batch_size)
    _sync(device)
    return Timing(time.perf_counter() - t0, len(data.test))


class _PerSampleDataset(Dataset):
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


def time_baseline(cfg: TrainConfig, data, batches: int | None, workers: int) -> Timing:
    """The per-sample DataLoader pipeline, on the CPU, as the seeds run it: the same model, optimizer and batch size.
    The workers' start-up is measured apart, as `Timing.startup`: an epoch pays it once, not once per `batches`."""
    u8 = (data.train.images[:, 0] * data.std + data.mean).mul(255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    ds = _PerSampleDataset(u8, data.train.labels.cpu().numpy(), cfg.rotation, data.mean, data.std)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, generator=gen)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, dropout=cfg.dropout).train()  # plain torch, as the seeds write it
    # torch's defaults, as the seeds call them: for-loop SGD, no foreach.
    nesterov = cfg.nesterov and cfg.momentum > 0
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=nesterov
    )
    seen, start, t0, startup = 0, time.perf_counter(), 0.0, 0.0
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


def epoch_rounds(
    cfg: TrainConfig,
    data,
    data_dev,
    dev: torch.device,
    rounds: int,
    epoch: bool,
    baseline_batches: int | None,
    workers: int,
    throughput: Timing,
) -> dict[str, Any]:
    """The epoch figures of `run_bench`: medians over `rounds` turns, each round under "epoch_rounds"."""
    baseline = baseline_batches != 0
    if not (epoch or baseline):
        return {}
    rows: list[dict[str, Any]] = []
    for _ in range(rounds):
        row: dict[str, Any] = {}
        test_s = time_eval(cfg, data_dev, dev).seconds
        if baseline:
            bl = time_baseline(cfg, data, baseline_batches, workers)
            row["baseline_train_images_per_s"] = round(bl.images_per_s)
            row["baseline_startup_seconds"] = round(bl.startup, 3)
            first = cfg.batch_size if bl.startup else 0  # the untimed first batch, if there was one
            row["baseline_epoch_seconds"] = round(bl.startup + (len(data.train) - first) / bl.images_per_s + test_s, 3)
        if epoch:
            ep = time_ours(cfg, data_dev, None, dev)
            row["epoch_train_seconds"] = round(ep.seconds, 3)
            row["epoch_test_seconds"] = round(test_s, 3)
            row["epoch_seconds"] = round(ep.seconds + test_s, 3)
        if baseline and epoch:
            row["speedup_epoch"] = round(row["baseline_epoch_seconds"] / row["epoch_seconds"], 2)
        rows.append(row)
    out: dict[str, Any] = {"epoch_rounds": rows}
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "speedup_epoch"}
    if epoch:
        for k in ("epoch_seconds", "epoch_train_seconds", "epoch_test_seconds"):
            out[k] = round(med[k], 3)
    if baseline:
        out["baseline_train_images_per_s"] = round(med["baseline_train_images_per_s"])
        out["baseline_batches"] = baseline_batches or "all"
        out["baseline_workers"] = workers
        out["baseline_epoch_seconds"] = round(med["baseline_epoch_seconds"], 3)
        out["speedup_train"] = round(throughput.images_per_s / med["baseline_train_images_per_s"], 2)
        if epoch:
            # The ratio of the medians; the rounds' own ratios show its spread.
            out["speedup_epoch"] = round(med["baseline_epoch_seconds"] / med["epoch_seconds"], 2)
            out["speedup_epoch_range"] = [min(r["speedup_epoch"] for r in rows), max(r["speedup_epoch"] for r in rows)]
    return out


def format_lines(r: dict[str, Any]) -> list[str]:
    rows = r.get("epoch_rounds") or []
    if len(rows) < 2 or "speedup_epoch" not in r:
        return []
    each = ", ".join(f"{x['epoch_seconds']:.2f} s vs {x['baseline_epoch_seconds']:.1f} s" for x in rows)
    lo, hi = r["speedup_epoch_range"]
    return [f"epoch rounds, ours vs baseline, in turns: {each} (ratios {lo}x-{hi}x; medians used above)"]
