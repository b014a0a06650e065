"""train(config) -> RunResult: the one training loop every command uses.

The fast path, airbench style: the dataset lives in memory as one tensor on
the compute device, batches are `randperm` slices of it, and augmentation
warps each whole batch at once. No DataLoader, no per-sample Python.

Every epoch ends with a checkpoint (model, optimizer, schedule, every RNG
state, metrics so far) written atomically, so `--resume` continues an
interrupted run to the same final weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

from .. import __version__
from ..augment import AugmentSpec, BatchAugment
from ..config import TrainConfig, changed_fields
from ..data import Dataset, Split, load_dataset
from ..errors import MnistliteError
from ..models import ModelEntry, count_params, get_entry
from ..models.usercode import entry_from_run
from ..runs import rundir as rd
from .device import resolve_device, set_threads
from .optim import Schedule, build_optimizer


class TrainingInterrupted(MnistliteError):
    """Ctrl-C or SIGTERM: the run stopped cleanly at the last checkpoint."""

    exit_code = 130


class TrainingDiverged(MnistliteError):
    """The loss became NaN or infinite."""

    exit_code = 3


@dataclass
class RunResult:
    config: TrainConfig
    params: int
    metrics: list[dict[str, Any]]
    wall_seconds: float
    run_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    macs: int | None = None
    device: str = ""  # where it ran, e.g. "cpu" or "cuda (NVIDIA H100 80GB HBM3)"
    model: nn.Module | None = field(default=None, repr=False)  # the judged weights, in eval mode
    architecture: dict[str, str] = field(default_factory=dict)

    def plot(self, path: str | Path | None = None):
        """Loss and accuracy per epoch as a matplotlib Figure (a notebook shows it inline)."""
        from ..runs.plots import curves_figure

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
            "device": self.device,
            **({"architecture": self.architecture} if self.architecture else {}),
            "mnistlite_version": __version__,
            "torch_version": torch.__version__,
        }


class Echo:
    """Prints a line to stdout and appends it to the run's log.txt."""

    def __init__(self, log_path: Path | None, quiet: bool = False):
        self.log = open(log_path, "a") if log_path else None
        self.quiet = quiet

    def __call__(self, line: str) -> None:
        if not self.quiet:
            tqdm.write(line, file=sys.stdout)
        if self.log:
            try:
                self.log.write(line + "\n")
                self.log.flush()
            except OSError as e:  # a full disk: one line, not a traceback
                raise MnistliteError(f"cannot write {self.log.name} ({e.strerror or e})") from None

    def close(self) -> None:
        if self.log:
            try:
                self.log.close()
            except OSError:  # the write that failed has already been reported
                pass


@contextmanager
def _stop_requests() -> Iterator[list[str]]:
    """Turn the first Ctrl-C/SIGTERM into a flag checked after each batch.

    A second signal gets the default behaviour, so a stuck run can still be killed.
    """
    requested: list[str] = []
    handlers: dict[signal.Signals, Any] = {}

    def handler(signum, frame):
        if requested:
            signal.signal(signum, handlers[signum])
            raise KeyboardInterrupt
        requested.append(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling there
            pass
    try:
        yield requested
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int, autocast=nullcontext) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) over a split, in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=split.images.device)
    correct = torch.zeros((), dtype=torch.long, device=split.images.device)
    for start in range(0, len(split), batch_size):
        x = split.images[start : start + batch_size]
        y = split.labels[start : start + batch_size]
        with autocast():
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
    n = len(split)
    return loss_sum.item() / n, 100.0 * correct.item() / n


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["gen"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Checkpoints load with weights_only=True: a crafted pickle cannot run code.

    Whatever the bytes, only MnistliteError (one line) leaves here; torch's own
    message is not passed on, as it suggests retrying with weights_only=False.
    """
    import pickle
    import re
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": stderr stays one line
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MnistliteError(f"{path}: no checkpoint there; nothing to resume") from None
    except OSError as e:  # a directory, no permission, I/O error
        raise MnistliteError(f"{path}: cannot read ({e.strerror or e})") from None
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it would import {m.group(1)}" if m else "it holds more than tensors and plain data"
        raise MnistliteError(
            f"{path}: refused to load: not a plain weights file ({what}); mnistlite never runs code from a "
            "checkpoint, so only load files you made with mnistlite"
        ) from None
    except Exception as e:  # noqa: BLE001 -- unpickling damaged or hostile bytes raises anything
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise MnistliteError(
            f"{path}: corrupt or not a PyTorch checkpoint ({type(e).__name__}{': ' + first if first else ''})"
        ) from None


def _check_checkpoint(ckpt: Any, cfg: TrainConfig, run_dir: Path) -> None:
    """A resumable checkpoint of this very config, or a one-line MnistliteError."""
    keys = ("model", "optimizer", "schedule", "rng", "epoch", "metrics")
    missing = [k for k in keys if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise MnistliteError(
            f"{run_dir / rd.CHECKPOINT}: not a training checkpoint (no {', '.join(missing)}); nothing to resume"
        )
    saved = ckpt.get("config")
    if isinstance(saved, dict):
        changed = changed_fields(saved, cfg)  # where and how fast may change, not what
        if changed:
            raise MnistliteError(
                f"{run_dir / rd.CONFIG} no longer matches the checkpoint ({', '.join(changed)} changed); "
                "a run resumes with the config it started with: undo the edit, or train a new run"
            )


# The share of the first step's weights below which the moving average is judged
# instead of the raw weights: about 2,300 steps at decay 0.998 (epoch 5 of the
# flagship), 4,600 at 0.999 (epoch 5 of the frontier at batch 64).
EMA_START_SHARE = 0.01


@dataclass
class Parts:
    """What one training run is made of, built the same way for `train` and the benchmark."""

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
    ema: AveragedModel | None = None  # the weights' moving average, when cfg.ema > 0

    @property
    def ema_ready(self) -> bool:
        """Has the average forgotten where training started? It begins as a copy of the
        first step's weights, which keep a share decay**(updates - 1) of it: until that is
        under EMA_START_SHARE the average is mostly an untrained net (10% after a short run)."""
        if self.ema is None:
            return False
        return self.cfg.ema ** (int(self.ema.n_averaged) - 1) < EMA_START_SHARE

    @property
    def eval_model(self) -> nn.Module:
        """The weights a run is judged and saved by: the average once it is ready, else the raw ones."""
        return self.ema.module if self.ema is not None and self.ema_ready else self.model

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch: augment, forward, backward, update."""
        x = self.augment(x).contiguous(memory_format=self.memory_format)
        with self.autocast():
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.after_batch()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return logits, loss


def build_parts(
    cfg: TrainConfig,
    data: Dataset,
    device: torch.device,
    entry: ModelEntry | None = None,
    echo: Callable[[str], None] | None = None,
    fast_path: bool = True,
) -> Parts:
    torch.manual_seed(cfg.seed)
    entry = entry or get_entry(cfg.model)
    model = entry.build(dropout=cfg.dropout)
    # A user's plain-torch model gets the zoo's fused units (the zoo's models are written with them).
    if fast_path and "user" in entry.tags:
        from ..models.fastpath import accelerate

        model, note = accelerate(model)
        if echo is not None:
            echo(note)
    model = model.to(device)
    # channels_last: oneDNN's convolutions (CPU) and cuDNN's both run faster on
    # NHWC for these tiny channel counts; measured in docs/performance.md.
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
    # bf16 autocast: tensor cores on a GPU, avx512_bf16 on recent x86 CPUs.
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.bf16 else nullcontext
    # BN's running statistics are averaged too (use_buffers): they must match the averaged weights.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None
    return Parts(cfg, model, optimizer, Schedule(optimizer, cfg, steps), augment, gen, bs, steps, autocast, fmt, ema)


def train(
    cfg: TrainConfig | None,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    data: Dataset | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    model: ModelEntry | None = None,
    trust_code: bool = False,
) -> RunResult:
    """Train `cfg.model` under `cfg`; write the run directory when `run_dir` is given.

    `data` lets callers that run many configs (seeds, search) load MNIST once.
    `on_epoch` sees each epoch's metrics row (a search uses it to prune).
    `model` is the entry to build from instead of looking `cfg.model` up (the
    notebook API's in-memory models). Resuming a run of a user's model rebuilds
    it from the run's own copy of the source, which needs `trust_code=True`.
    """
    t_start = time.perf_counter()
    ckpt = None
    if resume:
        if run_dir is None:
            raise MnistliteError("resume needs a run directory")
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise MnistliteError(f"{run_dir}: no such run directory; nothing to resume")
        try:
            cfg = TrainConfig.from_dict(rd.read_json(run_dir / rd.CONFIG))
        except MnistliteError as e:
            raise MnistliteError(str(e) if str(run_dir) in str(e) else f"{run_dir / rd.CONFIG}: {e}") from None
        model = entry_from_run(run_dir, cfg.to_dict(), trust_code=trust_code) or model
        ckpt = load_checkpoint(run_dir / rd.CHECKPOINT)
        _check_checkpoint(ckpt, cfg, run_dir)
    if cfg is None:
        raise MnistliteError("train needs a config (or resume=True and a run directory)")
    entry = model or get_entry(cfg.model)
    if entry.code is not None and not resume:
        if cfg.model_sha256 is None:  # a config made by hand, not by TrainConfig.for_model
            cfg = cfg.replace(model_sha256=entry.code.sha256)
        elif cfg.model_sha256 != entry.code.sha256:
            raise MnistliteError(
                f"{entry.code.path} changed after this run was planned (its SHA-256 is no longer the config's); "
                "run the command again to train the file as it is now"
            )
    cfg = cfg.validated()
    out = rd.prepare_run_dir(run_dir, resume=resume) if run_dir is not None else None
    echo = Echo(out / rd.LOG if out else None, quiet=quiet)
    try:
        return _train(cfg, out, ckpt, data, progress, echo, on_epoch, t_start, entry)
    finally:
        echo.close()


def _train(
    cfg: TrainConfig,
    out: Path | None,
    ckpt: dict[str, Any] | None,
    data: Dataset | None,
    progress: bool | None,
    echo: Echo,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    t_start: float,
    entry: ModelEntry,
) -> RunResult:
    from ..modelinfo import architecture_of, budget_verdict, profile_entry

    threads = set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if out is not None and ckpt is None:
        rd.write_json(out / rd.CONFIG, cfg.to_dict())
        if entry.code is not None:  # the exact bytes built from: a rebuild never depends on the user's file
            rd.atomic_write_bytes(out / rd.MODEL_SOURCE, entry.code.data)
    echo(("Resuming" if ckpt else "Training") + f" with config:\n{cfg.to_json()}")

    if data is None:
        data = load_dataset(
            cfg.dataset,
            data_dir=cfg.data_dir,
            val_size=cfg.val_size,
            limit_train=cfg.limit_train,
            download=cfg.download,
        )
    data = data.to(device)
    prof = profile_entry(entry)
    if out is not None and ckpt is None:
        rd.atomic_write_text(
            out / rd.SUMMARY, f"{prof.table}\nMACs per image: {prof.macs:,}\nBudget: {budget_verdict(prof.params)}\n"
        )
    parts = build_parts(cfg, data, device, entry, echo)
    model, optimizer, schedule, gen = parts.model, parts.optimizer, parts.schedule, parts.generator
    params = count_params(model)
    echo(
        f"Model {cfg.model}: {params:,} trainable parameters, {budget_verdict(params)} | device {device}, "
        f"{threads} CPU threads"
    )
    train_x, train_y = data.train.images, data.train.labels
    n, bs, steps = len(train_y), parts.batch_size, parts.steps
    autocast = parts.autocast

    rows: list[dict[str, Any]] = []
    start_epoch = 1
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            schedule.load_state_dict(ckpt["schedule"])
            _set_rng_state(gen, ckpt["rng"])
            if parts.ema is not None:
                parts.ema.load_state_dict(ckpt["ema"])
            rows = list(ckpt["metrics"])
            start_epoch = int(ckpt["epoch"]) + 1
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            where = out / rd.CHECKPOINT if out is not None else "the checkpoint"
            raise MnistliteError(f"{where}: does not fit this run's model and config: {first}") from None
        echo(f"Resumed after epoch {ckpt['epoch']} of {cfg.epochs}")

    show_bar = sys.stderr.isatty() if progress is None else progress
    with _stop_requests() as stop:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            echo(f"Epoch {epoch}")
            model.train()
            perm = torch.randperm(n, generator=gen, device=device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            seen = 0
            bar = tqdm(total=steps, disable=not show_bar, leave=False, dynamic_ncols=True, file=sys.stderr)
            for b in range(steps):
                idx = perm[b * bs : (b + 1) * bs if b < steps - 1 else n]
                y = train_y[idx]
                logits, loss = parts.step(train_x[idx], y)
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                if show_bar and (b % 20 == 0 or b == steps - 1):
                    bar.set_description(
                        f"Train loss={loss.item():.4f} batch_id={b} Accuracy={100 * correct.item() / seen:.2f}",
                        refresh=False,
                    )
                    bar.update(b + 1 - bar.n)
                if stop:
                    break
            bar.close()
            if stop:
                raise _interrupted(stop[0], out, epoch, rows)
            train_loss = loss_sum.item() / seen
            # The last batch's update can break the weights with its loss still finite:
            # check them too, so a broken epoch is never checkpointed as good.
            weights_ok = all(bool(t.isfinite().all()) for t in model.state_dict().values() if t.is_floating_point())
            if not math.isfinite(train_loss) or not weights_ok:
                what = f"loss became {train_loss}" if not math.isfinite(train_loss) else "weights became non-finite"
                raise _diverged(what, epoch, cfg, out, rows)
            train_acc = 100.0 * correct.item() / seen
            echo(f"Train loss={loss.item():.4f} batch_id={steps - 1} Accuracy={train_acc:.2f}")
            schedule.after_epoch()
            row: dict[str, Any] = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": None,
                "val_acc": None,
            }
            judged = parts.eval_model
            if data.val is not None:
                row["val_loss"], row["val_acc"] = evaluate(judged, data.val, cfg.eval_batch_size, autocast)
                echo(f"Validation set: Average loss: {row['val_loss']:.4f}, Accuracy: {row['val_acc']:.2f}%")
            row["test_loss"], row["test_acc"] = evaluate(judged, data.test, cfg.eval_batch_size, autocast)
            if parts.ema is not None:  # the same trajectory without the average: what the EMA bought
                same = judged is model  # the average is not ready yet: the raw weights were judged
                if data.val is not None:
                    row["raw_val_acc"] = (
                        row["val_acc"] if same else evaluate(model, data.val, cfg.eval_batch_size, autocast)[1]
                    )
                row["raw_test_acc"] = (
                    row["test_acc"] if same else evaluate(model, data.test, cfg.eval_batch_size, autocast)[1]
                )
            n_test = len(data.test)
            echo(
                f"Test set: Average loss: {row['test_loss']:.4f}, Accuracy: "
                f"{round(row['test_acc'] * n_test / 100)}/{n_test} ({row['test_acc']:.2f}%)"
            )
            # Eval mode uses BatchNorm's running statistics, which can overflow while training looks fine.
            broken = [k for k in ("val_loss", "test_loss") if row[k] is not None and not math.isfinite(row[k])]
            if broken:
                raise _diverged(f"{broken[0].replace('_', ' ')} became {row[broken[0]]}", epoch, cfg, out, rows)
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            if out is not None:
                try:
                    _save_epoch(out, parts, epoch, rows)
                except MnistliteError as e:
                    raise MnistliteError(f"{e}; fix that, then continue with: mnistlite train --resume {out}") from None
            if on_epoch is not None:
                on_epoch(row)

    wall = time.perf_counter() - t_start
    where = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type
    result = RunResult(
        cfg,
        params,
        rows,
        wall,
        out,
        rd.summarize_metrics(rows),
        macs=prof.macs,
        device=where,
        model=parts.eval_model.eval(),
        architecture=architecture_of(parts.eval_model),
    )
    if out is not None:
        try:
            _finish_run_dir(out, parts.eval_model, cfg, result)
        except OSError as e:  # curves.png: the other files are written atomically and say so themselves
            raise MnistliteError(
                f"cannot write the final files in {out} ({e.strerror or e}); fix that, then finish with: "
                f"mnistlite train --resume {out}"
            ) from None
    echo(
        f"Done: final test {result.summary['final_test_acc']:.2f}%, best {result.summary['best_test_acc']:.2f}%, "
        f"last-3 min {result.summary['last3_min_test_acc']:.2f}% in {wall:.1f}s" + (f" -> {out}" if out else "")
    )
    return result


def _diverged(what: str, epoch: int, cfg: TrainConfig, out: Path | None, rows: list) -> TrainingDiverged:
    """Raised before the epoch is saved: checkpoint.pt keeps the last good epoch."""
    kept = f" (checkpoint.pt in {out} keeps epoch {rows[-1]['epoch']}, the last good one)" if out and rows else ""
    return TrainingDiverged(
        f"{what} in epoch {epoch}; training diverged, lower --{'max-lr' if cfg.scheduler == 'onecycle' else 'lr'}"
        + kept
    )


def _interrupted(signame: str, out: Path | None, epoch: int, rows: list) -> TrainingInterrupted:
    done = rows[-1]["epoch"] if rows else 0
    where = f"; continue with: mnistlite train --resume {out}" if out is not None and done else ""
    return TrainingInterrupted(f"{signame}: stopped during epoch {epoch}, {done} epoch(s) saved{where}")


def _save_epoch(out: Path, parts: Parts, epoch: int, rows: list) -> None:
    state = {
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "schedule": parts.schedule.state_dict(),
        "rng": _rng_state(parts.generator),
        "epoch": epoch,
        "metrics": rows,
        "config": parts.cfg.to_dict(),
    }
    if parts.ema is not None:
        state["ema"] = parts.ema.state_dict()
    rd.atomic_torch_save(state, out / rd.CHECKPOINT)
    rd.write_metrics(out / rd.METRICS, rows)


def _finish_run_dir(out: Path, model: nn.Module, cfg: TrainConfig, result: RunResult) -> None:
    from ..runs.plots import plot_curves

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    rd.atomic_torch_save({"model": state, "config": cfg.to_dict(), "params": result.params}, out / rd.MODEL)
    rd.write_json(out / rd.RESULT, result.to_dict())
    plot_curves(result.metrics, out / rd.CURVES, title=f"{cfg.model} (seed {cfg.seed})")
