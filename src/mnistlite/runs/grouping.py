"""Which planned runs train together as one grouped network (engine/grouped_train.py), and whether it pays.

`--group off` trains every run on its own; `--group K` packs up to K runs of
one recipe (same config but the seed) into each group; `--group auto` does
the same with up to AUTO_MAX copies, but only after a short calibration on
this machine, with this model, batch size and thread count, measured grouping
faster per image than one copy by at least AUTO_MIN_GAIN (it pays on one
machine and not on another: benchmarks/grouped_probe.py, docs/performance.md).

Only fresh runs group: a folder to resume continues alone from its checkpoint.
With `--jobs 1` groups train in the planning process; with more, each group is
one pool worker's task (runs/plan.py), on whatever device the runs use. A model that cannot be packed
(engine/grouped.py refuses it) or a group that diverges falls back to separate
runs: the folders of the group's last good epoch resume one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import MnistliteError

AUTO_MAX = 5  # copies per group under --group auto
AUTO_MIN_GAIN = 1.10  # grouped images/s over one copy's, below which auto trains separately
_STEPS = 6  # timed steps per calibration


def parse_group(value: str) -> str:
    """'auto', 'off', or an integer K >= 1 (as text); anything else is a one-line error."""
    v = str(value).strip().lower()
    if v in ("auto", "off"):
        return v
    if v.isdigit() and int(v) >= 1:
        return str(int(v))
    raise MnistliteError(f"--group must be auto, off or a number of copies >= 1, got {value!r}")


def group_key(cfg: TrainConfig) -> str:
    """Runs with equal keys may share a group: every field but the seed equal."""
    return TrainConfig.from_dict({**cfg.to_dict(), "seed": 0}).to_json()


def _synthetic(n: int):
    from ..data import synthetic_data

    return synthetic_data(n)


def _rate(cfg: TrainConfig, copies: int, data) -> float:
    """Training images/s of `copies` packed copies (1: the plain model) on a fixed synthetic batch."""
    from ..engine.device import resolve_device
    from ..engine.grouped import group_models
    from ..engine.optim import build_optimizer
    from ..engine.parts import build_parts

    device = resolve_device(cfg.device)
    data = data.to(device)
    bs = len(data.train)
    parts = [build_parts(cfg.replace(seed=s), data, device) for s in range(copies)]
    net = parts[0].model if copies == 1 else group_models([p.model for p in parts])
    fmt = parts[0].memory_format
    net = net.to(memory_format=fmt)  # type: ignore[call-overload]
    opt = build_optimizer(net, cfg)
    x = data.train.images.repeat(1, copies, 1, 1).contiguous(memory_format=fmt)
    y = data.train.labels.repeat(copies)
    t0 = 0.0
    for i in range(2 + _STEPS):  # two warm-up steps
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x).view(bs * copies, -1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return _STEPS * bs * copies / (time.perf_counter() - t0)


def calibrate(cfg: TrainConfig, k: int) -> dict[str, Any]:
    """Training images/s of one copy and of k grouped copies of `cfg`'s model, on synthetic data.

    The grouped training step (engine/grouped_train.py) at the recipe's batch
    size and `cfg.threads`, without augmentation; no run folder, and the
    caller's RNG state is put back.
    """
    from ..engine.device import threads

    state = torch.get_rng_state()
    try:
        with threads(cfg.threads):
            data = _synthetic(min(cfg.batch_size, 512))
            one, many = _rate(cfg, 1, data), _rate(cfg, k, data)
    finally:
        torch.set_rng_state(state)
    return {"copies": k, "one_images_per_s": one, "grouped_images_per_s": many, "gain": many / one}


def form_groups(
    runs: list[Any], group: str, echo: Callable[[str], None] = print, spread: int = 1
) -> tuple[list[list[Any]], list[Any]]:
    """Split planned runs into groups to train packed (each of 2+ runs) and the rest, to train alone.

    `spread` is the number of jobs the groups will run on: a recipe's seeds are cut
    into at least that many groups, so that every job gets one (5 seeds on 2 jobs: 3 + 2).
    """
    group = parse_group(group)
    if group == "off" or (group.isdigit() and int(group) < 2):
        return [], list(runs)
    cap = AUTO_MAX if group == "auto" else int(group)
    by_key: dict[str, list[Any]] = {}
    alone = []
    for r in runs:
        if r.status == "resume":
            alone.append(r)
        else:
            by_key.setdefault(group_key(r.config), []).append(r)
    groups: list[list[Any]] = []
    for members in by_key.values():
        if len(members) < 2:
            alone += members
            continue
        limit = min(cap, -(-len(members) // max(1, spread)))
        chunks = [members[i : i + limit] for i in range(0, len(members), limit)]
        if group == "auto":
            try:
                cal = calibrate(members[0].config, len(chunks[0]))
            except MnistliteError as e:  # a model grouping cannot pack
                echo(f"grouping: {members[0].config.model}: {e}; training its seeds separately")
                alone += members
                continue
            verdict = "grouping" if cal["gain"] >= AUTO_MIN_GAIN else "training separately"
            echo(
                f"grouping calibration, {members[0].config.model}: {cal['copies']} copies at "
                f"{cal['grouped_images_per_s']:.0f} images/s against {cal['one_images_per_s']:.0f} for one "
                f"({cal['gain']:.2f}x; auto groups from {AUTO_MIN_GAIN:.2f}x): {verdict}"
            )
            if cal["gain"] < AUTO_MIN_GAIN:
                alone += members
                continue
        for chunk in chunks:
            (groups.append(chunk) if len(chunk) > 1 else alone.extend(chunk))
    return groups, alone


def train_groups(
    todo: list[Any], group: str, data, on_done, echo: Callable[[str], None], clear: Callable[[Any], object]
) -> tuple[list[Any], int]:
    """Train the groups `form_groups` finds among `todo`; (the runs left to train alone, their first number).

    `clear(run)` is the planner's stale-folder policy for a run about to start
    afresh (passed in, so this module does not import the planner back).

    A group that refuses or diverges leaves its runs to the ordinary path (they
    resume from their last good checkpoints); an interruption is not caught.
    """
    from ..engine.grouped_train import train_grouped
    from ..engine.result import TrainingInterrupted

    groups, alone = form_groups(todo, group, echo)
    n, i = len(todo), 1
    for members in groups:
        seeds = [r.config.seed for r in members]
        if members[0].setup is not None:  # one recipe: one model to register (tune's candidates)
            members[0].setup()
        for r in members:
            clear(r)
        echo(f"{members[0].config.model}: seeds {seeds} trained grouped, as one network of {len(members)} copies")
        try:
            results = train_grouped(
                [r.config for r in members], [r.run_dir for r in members], data=data(members[0].config)
            )
        except TrainingInterrupted:
            raise
        except MnistliteError as e:
            echo(f"grouping seeds {seeds}: {e}; training them separately")
            alone += members
            continue
        for r, res in zip(members, results):
            if on_done:
                on_done(i, n, r, res, None)
            i += 1
    return alone, i
