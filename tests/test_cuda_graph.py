"""The CUDA-graph step's arithmetic, checked eagerly on the CPU against torch's SGD and Parts.step.

The capture itself needs a GPU (benchmarks/gpu_check.sh runs it there); what it
replays is `GraphStep._body`, which these tests run uncaptured.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnistlite.config import TrainConfig
from mnistlite.data.loading import synthetic_data
from mnistlite.engine.cuda_graph import GraphSafeSGD, GraphStep, resolve, why_not
from mnistlite.engine.optim import Schedule, build_optimizer
from mnistlite.engine.parts import build_parts
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def _loss(model: nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    return nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("bias_lr_scale", [1.0, 4.0])
def test_graph_safe_sgd_equals_torch_sgd_under_a_cycling_schedule(nesterov, bias_lr_scale):
    """Ten steps of OneCycle (lr and momentum change every step), two param groups, weight decay:
    torch's SGD throughout against torch's for the first step and the graph-safe update after."""
    cfg = TrainConfig(
        optimizer="sgd", momentum=0.9, nesterov=nesterov, weight_decay=1e-3, scheduler="onecycle",
        max_lr=0.2, epochs=1, bias_lr_scale=bias_lr_scale,
    )  # fmt: skip
    runs = []
    for graph_safe in (False, True):
        model = _net()
        opt = build_optimizer(model, cfg)
        sched = Schedule(opt, cfg, steps_per_epoch=10)
        sgd = None
        for step in range(10):
            opt.zero_grad(set_to_none=True)
            _loss(model, step).backward()
            if graph_safe and step > 0:
                sgd = sgd or GraphSafeSGD(opt)
                sgd.load_hyper()
                sgd.step()
            else:
                opt.step()
            sched.after_batch()
        runs.append(model)
    assert getattr(sched.sched, "cycle_momentum", False)  # momentum did move every step
    for a, b in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_graph_safe_sgd_shares_the_optimizers_momentum_buffers():
    """A checkpoint saves optimizer.state: the update must keep its buffers in it, not copies."""
    model = _net()
    cfg = TrainConfig(optimizer="sgd", momentum=0.9, lr=0.1, scheduler="none")
    opt = build_optimizer(model, cfg)
    _loss(model, 0).backward()
    sgd = GraphSafeSGD(opt)  # before any torch step: buffers start at zero
    sgd.step()
    p = next(model.parameters())
    assert opt.state[p]["momentum_buffer"] is sgd.groups[0][2][0]
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], p.grad)  # first step: buf = grad


def test_uncaptured_graph_body_trains_as_parts_step():
    """The flagship recipe (augmentation, dropout, EMA, OneCycle) for 8 steps: Parts.step against
    GraphStep's body run eagerly after 2 warm-up steps, with a remainder batch at the end."""
    data = synthetic_data(160)
    cfg = config_for("mnistlite_flagship", epochs=1, batch_size=16, device="cpu", threads=1, val_size=0)
    finals = []
    for graphed in (False, True):
        parts = build_parts(cfg.validated(), data, torch.device("cpu"))
        step = GraphStep(parts, warmup=2, capture=False) if graphed else parts.step
        torch.manual_seed(7)  # dropout's draws: the same global stream for both
        for b in range(9):
            n = 16 if b < 8 else 12  # the last one eager in both: a remainder batch
            x, y = data.train.images[b * 16 : b * 16 + n], data.train.labels[b * 16 : b * 16 + n]
            logits, loss = step(x, y)
            assert torch.isfinite(loss)
        assert parts.ema is not None
        finals.append((parts, int(parts.ema.n_averaged), parts.generator.get_state()))
    (a, na, ga), (b, nb, gb) = finals
    assert na == nb == 9 and torch.equal(ga, gb)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    for x, y in zip(a.ema.state_dict().values(), b.ema.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    assert a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]


def test_decision_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    sgd = TrainConfig(optimizer="sgd")
    assert not resolve(sgd, cpu).on and "cpu" in resolve(sgd, cpu).reason
    assert resolve(sgd.replace(cuda_graph="off"), cuda).line == "CUDA graph: off (asked)"
    assert "SGD only" in why_not(TrainConfig(optimizer="adam"), cuda)
    assert not resolve(TrainConfig(optimizer="adamw"), cuda).on
    with pytest.raises(MnistliteError, match="--cuda-graph on cannot run here"):
        resolve(sgd.replace(cuda_graph="on"), cpu)
    with pytest.raises(MnistliteError, match="--cuda-graph must be"):
        TrainConfig(cuda_graph="yes").validated()


def test_a_cpu_run_records_the_graph_decision(tmp_path):
    import json

    from mnistlite.engine import rundir as rd
    from mnistlite.engine import train

    data = synthetic_data(64)
    cfg = config_for("mnistlite_3k", epochs=1, batch_size=32, device="cpu", threads=1, val_size=0)
    train(cfg, run_dir=tmp_path / "r", data=data, progress=False, quiet=True)
    assert json.loads((tmp_path / "r" / rd.CONFIG).read_text())["cuda_graph"] == "off"
    result = json.loads((tmp_path / "r" / rd.RESULT).read_text())
    assert result["cuda_graph"] == "off" and "cpu" in result["cuda_graph_reason"]
    assert "CUDA graph: off" in (tmp_path / "r" / rd.LOG).read_text()


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh)")


@cuda
@pytest.mark.parametrize(
    "model, extra", [("mnistlite_flagship", {}), ("mnistlite_flagship", {"elastic_alpha": 8.0}), ("mnistlite_3k", {})]
)
def test_captured_step_replays_the_uncaptured_one(model, extra):
    """On a GPU: 12 steps captured and replayed against the same steps run eagerly through the same
    body: the same random draws (generator offsets), the same weights up to float rounding."""
    device = torch.device("cuda")
    data = synthetic_data(13 * 64).to(device)
    cfg = config_for(model, epochs=1, batch_size=64, device="cuda", val_size=0, **extra).validated()
    runs = []
    for capture in (False, True):
        parts = build_parts(cfg, data, device)
        step = GraphStep(parts, warmup=3, capture=capture)
        torch.cuda.manual_seed(7)
        for b in range(13):
            n = 64 if b < 12 else 40
            logits, loss = step(data.train.images[b * 64 : b * 64 + n], data.train.labels[b * 64 : b * 64 + n])
        torch.cuda.synchronize()
        assert (step.graph is not None) == capture and torch.isfinite(loss)
        runs.append((parts, parts.generator.get_state(), torch.cuda.get_rng_state()))
    (a, ga, da), (b, gb, db) = runs
    assert torch.equal(ga, gb) and torch.equal(da, db)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4)
    if a.ema is not None and b.ema is not None:
        assert int(a.ema.n_averaged) == int(b.ema.n_averaged) == 13
        for x, y in zip(a.ema.state_dict().values(), b.ema.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4)
