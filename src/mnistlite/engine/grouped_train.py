"""`train_grouped(cfgs, run_dirs)`: several seeds of one recipe trained at once as one network.

Each seed is set up exactly as its own `train` would set it up (`build_parts`
with its seed: the same initial weights, the same generator for its batch
order and its augmentation draws), then the k models are packed into one
(engine/grouped.py) and trained together:

* a step takes every copy's next batch from its own permutation, warps each
  with its own generator's draws (one grid_sample for all k), and minimises the
  sum of the copies' mean losses, so each copy's gradient is its own run's;
* SGD/Adam state, weight decay and the weight average are elementwise, so the
  packed optimizer and average are k independent ones; the LR schedule is the
  recipe's, shared. (Nothing here clips gradients: a global norm would mix copies.)
* scoring feeds each split to all copies at once and splits the logits.

The result differs from k separate runs only by float rounding (grouped
convolutions sum in another order) and by dropout masks, which come from the
global RNG: equal in distribution, not in bits. Each run folder is written
as a separate run's, with ordinary per-seed checkpoints, so an interrupted
group resumes seed by seed through `resume`; result.json adds `trained_grouped`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..augment import apply_affine, random_affine_matrices
from ..config import TrainConfig, changed_fields
from ..data import Dataset, Split
from ..errors import MnistliteError
from ..models import count_params, get_entry
from ..runs import rundir as rd
from ..runs.writer import curves_title, layer_table_text, model_file, write_run_files
from . import bn_path
from .average import WeightAverage
from .checkpoint import Progress, save_checkpoint
from .console import Echo, stop_requests
from .cuda_graph import Decision as GraphDecision
from .cuda_graph import Forward, GraphStep
from .cuda_graph import resolve as resolve_cuda_graph
from .device import resolve_device, threads
from .grouped import group_models, unpack_state
from .optim import Schedule, build_optimizer
from .parts import Parts, build_parts, load_data
from .precision import resolve as resolve_precision
from .result import RunResult, diverged, interrupted

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]


@dataclass
class Copy:
    """One seed of the group: its own parts (weights unpacked into them at each save), folder and log."""

    cfg: TrainConfig
    parts: Parts
    out: Path
    echo: Echo
    progress: Progress


def train_grouped(
    cfgs: Sequence[TrainConfig], run_dirs: Sequence[Path], *, data: Dataset | None = None
) -> list[RunResult]:
    """Train `cfgs` (one recipe, different seeds) into `run_dirs` as one grouped network."""
    t_start = time.perf_counter()
    cfgs = [c.validated() for c in cfgs]
    base = cfgs[0]
    odd = [c.seed for c in cfgs[1:] if [f for f in changed_fields(base.to_dict(), c) if f != "seed"]]
    if odd or len({c.seed for c in cfgs}) != len(cfgs):
        raise MnistliteError("a group trains one recipe under distinct seeds; these configs differ otherwise")
    entry = get_entry(base.model)
    if entry.code is not None and base.model_sha256 not in (None, entry.code.sha256):
        raise MnistliteError(f"{entry.code.path} changed after these runs were planned; run the command again")
    with threads(base.threads) as n_threads:
        device = resolve_device(base.device)
        if data is None:
            data = load_data(base)
        data = data.to(device)
        # One precision for the group, resolved once and recorded as a single run records it.
        decision = resolve_precision(base, device)
        # The BN path as asked; auto is not calibrated for a grouped network (its k*C channels
        # are another workload): it takes the unit wherever the unit applies, as before the switch.
        why_not = bn_path.applies(base, device)
        if base.bn_fusion != "auto":
            path = bn_path.Decision(base.bn_fusion if not why_not else "torch", "asked")
        else:
            path = bn_path.Decision("torch" if why_not else "fused", f"auto, grouped: {why_not or 'not calibrated'}")
        graph = resolve_cuda_graph(base, device)
        cfgs = [c.replace(precision=decision.precision, bn_fusion=path.path, cuda_graph=graph.value) for c in cfgs]
        # Everything that can refuse (packing, its equivalence check) happens before any folder is written.
        notes: list[str] = []
        parts = [build_parts(cfg, data, device, entry, notes.append) for cfg in cfgs]
        net = group_models([p.model for p in parts], check_shape=tuple(data.train.images.shape[1:]))
        copies = []
        for cfg, run_dir, p in zip(cfgs, run_dirs, parts):
            out = rd.prepare_run_dir(run_dir)
            echo = Echo(out / rd.LOG, quiet=True)
            write_run_files(out, config=cfg.to_dict(), model_source=entry.code.data if entry.code else None)
            echo(f"Training with config:\n{cfg.to_json()}")
            echo(decision.line)
            echo(path.line)
            echo(graph.line)
            for line in notes[: len(notes) // len(cfgs)]:
                echo(line)
            copies.append(Copy(cfg, p, out, echo, Progress(session_start=t_start)))
        try:
            return _train(net, copies, data, device, n_threads, graph)
        finally:
            for c in copies:
                c.echo.close()


def _train(
    net: torch.nn.Module,
    copies: list[Copy],
    data: Dataset,
    device: torch.device,
    n_threads: int,
    graph: GraphDecision,
) -> list[RunResult]:
    from ..modelinfo import architecture_of, budget_verdict, profile_entry

    k, p0 = len(copies), copies[0].parts
    cfg = p0.cfg
    net = net.to(memory_format=p0.memory_format)  # type: ignore[call-overload]
    optimizer = build_optimizer(net, cfg)
    ema = WeightAverage(net, cfg.ema) if cfg.ema else None
    # The group's own Parts: its eval_model/ema_ready rules are the same as a single run's.
    group = Parts(
        cfg, net, optimizer, Schedule(optimizer, cfg, p0.steps), p0.augment, p0.generator, p0.batch_size,
        p0.steps, p0.autocast, p0.memory_format, ema,
    )  # fmt: skip
    prof = profile_entry(get_entry(cfg.model))
    params = count_params(p0.model)
    seeds = [c.cfg.seed for c in copies]
    for c in copies:
        write_run_files(c.out, layer_table=layer_table_text(prof.table, prof.macs, prof.params))
        c.echo(
            f"Model {cfg.model}: {params:,} trainable parameters, {budget_verdict(params)} | device {device}, "
            f"{n_threads} CPU threads | trained grouped with seeds {seeds}"
        )
    splits = {name: s for name, s in (("val", data.val), ("test", data.test)) if s is not None}
    step = _stepper(group, copies, graph)
    with stop_requests() as stop:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            losses, accs = _train_epoch(group, copies, data.train, stop, step)
            if stop:
                raise interrupted(stop[0], None, epoch, copies[0].progress.rows)
            group.schedule.after_epoch()
            judged = group.eval_model
            scores = {name: _score(judged, split, k, cfg.eval_batch_size, group) for name, split in splits.items()}
            raw = {}
            if ema is not None:
                raw = (
                    scores
                    if judged is net
                    else {n: _score(net, s, k, cfg.eval_batch_size, group) for n, s in splits.items()}
                )
            seconds = time.perf_counter() - t0
            _unpack(group, copies)
            for j, c in enumerate(copies):
                row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": losses[j], "train_acc": accs[j]}
                for name in ("val", "test"):
                    row[f"{name}_loss"], row[f"{name}_acc"] = scores[name][j] if name in scores else (None, None)
                for name in raw:
                    row[f"raw_{name}_acc"] = raw[name][j][1]
                bad = [
                    v for v in (losses[j], row["val_loss"], row["test_loss"]) if v is not None and not math.isfinite(v)
                ]
                if bad or not all(
                    bool(t.isfinite().all()) for t in c.parts.model.state_dict().values() if t.is_floating_point()
                ):
                    raise diverged(f"seed {c.cfg.seed}: training became non-finite", epoch, cfg, c.out, c.progress.rows)
                row["seconds"] = seconds
                c.echo(f"Epoch {epoch}: train loss {losses[j]:.4f}, accuracy {accs[j]:.2f}" + "".join(
                    f", {n} {row[f'{n}_acc']:.2f}%" for n in scores
                ))  # fmt: skip
                c.progress.add(row)
            for c in copies:  # every copy's epoch is known good before any is saved
                save_checkpoint(c.out, c.parts, c.progress)
                rd.write_metrics(c.out / rd.METRICS, c.progress.rows)
    results = []
    for c in copies:
        judged_j = c.parts.eval_model
        result = RunResult(
            config=c.cfg,
            params=params,
            metrics=c.progress.rows,
            wall_seconds=c.progress.elapsed(),
            run_dir=c.out,
            summary=rd.headline_numbers(c.progress.rows),
            macs=prof.macs,
            device=f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type,
            model=judged_j.eval(),
            architecture=architecture_of(judged_j),
            cuda_graph_reason=graph.reason,
        )
        # wall_seconds stays the run's own wall time, which is the whole group's.
        info = {"trained_grouped": {"copies": k, "seeds": seeds}}
        write_run_files(
            c.out,
            metrics=c.progress.rows,
            model=model_file(judged_j, c.cfg.to_dict(), params),
            curves=curves_title(c.cfg.to_dict()),
            result={**result.to_dict(), **info},
        )
        c.echo(f"Done (grouped): final test {result.summary.get('final_test_acc')} in {result.wall_seconds:.1f}s")
        results.append(result)
    return results


def _forward(group: Parts, copies: list[Copy]) -> Forward:
    """The grouped step's differentiable part: each copy's warp, one forward, the sum of the mean losses."""
    k = len(copies)
    spec = copies[0].parts.augment.spec
    fill = copies[0].parts.augment.fill

    def forward(x: torch.Tensor, y: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        m = y.shape[1]
        if spec.active:  # each copy's draws from its own generator, in its own run's order
            theta = torch.cat([random_affine_matrices(m, spec, c.parts.generator, x.device) for c in copies])
            x = apply_affine(x, theta, fill)
        c_in, h, w = x.shape[1:]
        x = x.view(k, m, c_in, h, w).transpose(0, 1).reshape(m, k * c_in, h, w)
        x = x.contiguous(memory_format=group.memory_format)
        with group.autocast():
            logits = group.model(x)
        logits = logits.float().view(m, k, -1).transpose(0, 1)  # (k, B, classes)
        per_sample = F.cross_entropy(
            logits.reshape(k * m, -1), y.reshape(-1), reduction="none", label_smoothing=group.cfg.label_smoothing
        ).view(k, m)
        return (logits, per_sample), per_sample.mean(1).sum()  # the sum of the copies' own mean losses

    return forward


def _stepper(group: Parts, copies: list[Copy], graph: GraphDecision) -> Step:
    """The grouped step: replayed from a CUDA graph where decided, else eager (the same order)."""
    forward = _forward(group, copies)
    if graph.on:
        return GraphStep(group, forward=forward, generators=[c.parts.generator for c in copies])

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, loss = forward(x, y)
        group.update(loss)
        return out

    return step


def _train_epoch(
    group: Parts, copies: list[Copy], train: Split, stop: list[str], step: Step
) -> tuple[list[float], list[float]]:
    """One pass of every copy over the training split in its own order: per-copy (mean loss, accuracy %)."""
    k, bs, steps = len(copies), group.batch_size, group.steps
    x_all, y_all = train.images, train.labels
    n, device = len(y_all), x_all.device
    group.model.train()
    perms = torch.stack([torch.randperm(n, generator=c.parts.generator, device=device) for c in copies])
    loss_sum = torch.zeros(k, device=device)
    correct = torch.zeros(k, dtype=torch.long, device=device)
    seen = 0
    for b in range(steps):
        idx = perms[:, b * bs : (b + 1) * bs if b < steps - 1 else n]  # (k, B)
        y = y_all[idx]  # (k, B)
        logits, per_sample = step(x_all[idx.reshape(-1)], y)  # x: (k*B, C, H, W), copy-major
        m = y.shape[1]
        loss_sum += per_sample.detach().sum(1)
        correct += (logits.detach().argmax(2) == y).sum(1)
        seen += m
        if stop:
            break
    return (loss_sum / seen).tolist(), (100.0 * correct / seen).tolist()


@torch.no_grad()
def _score(net: torch.nn.Module, split: Split, k: int, batch_size: int, group: Parts) -> list[tuple[float, float]]:
    """Each copy's (mean cross-entropy, accuracy %) on `split`: every batch goes to all copies at once."""
    net.eval()
    device = split.images.device
    loss_sum = torch.zeros(k, device=device)
    correct = torch.zeros(k, dtype=torch.long, device=device)
    for start in range(0, len(split), batch_size):
        x = split.images[start : start + batch_size]
        y = split.labels[start : start + batch_size]
        xk = x.repeat(1, k, 1, 1)
        with group.autocast():
            out = net(xk)
        out = out.float().view(len(y), k, -1).transpose(0, 1)  # (k, B, classes)
        yk = y.expand(k, -1)
        loss_sum += F.cross_entropy(out.reshape(-1, out.shape[-1]), yk.reshape(-1), reduction="none").view(k, -1).sum(1)
        correct += (out.argmax(2) == yk).sum(1)
    n = len(split)
    return [(loss_sum[j].item() / n, 100.0 * correct[j].item() / n) for j in range(k)]


def _unpack(group: Parts, copies: list[Copy]) -> None:
    """Give each copy's own parts the group's state for it: weights, optimizer, schedule, average.

    Then each copy's checkpoint.pt is an ordinary run's, which `resume` continues alone.
    """
    k = len(copies)
    for c, state in zip(copies, unpack_state(group.model.state_dict(), k)):
        c.parts.model.load_state_dict(state)
    opt = group.optimizer.state_dict()
    sched = group.schedule.state_dict()
    for j, c in enumerate(copies):
        per = {
            i: {key: (v.chunk(k)[j] if torch.is_tensor(v) and v.dim() > 0 else v) for key, v in s.items()}
            for i, s in opt["state"].items()
        }
        c.parts.optimizer.load_state_dict({"state": per, "param_groups": opt["param_groups"]})
        c.parts.schedule.load_state_dict(sched)
    if group.ema is not None:
        for c, state in zip(copies, unpack_state(group.ema.state_dict(), k)):
            assert c.parts.ema is not None  # same config: every copy has its average
            c.parts.ema.load_state_dict(state)
