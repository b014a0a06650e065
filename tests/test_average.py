"""WeightAverage against torch's AveragedModel (EMA, use_buffers=True): the same averages, bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mnistlite.engine.average import WeightAverage
from mnistlite.models import create_model


def _train(model: nn.Module, averages: list, steps: int, seed: int = 0) -> None:
    """SGD steps in training mode (BatchNorm's running stats and counters move), each followed by an update."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x = torch.randn(8, 1, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        for avg in averages:
            avg.update_parameters(model)


def _same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)  # checkpoints keep their keys
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def _flagship() -> nn.Module:
    torch.manual_seed(0)
    return create_model("mnistlite_flagship").to(memory_format=torch.channels_last)


@pytest.mark.slow
def test_weight_average_is_torchs_ema_bit_for_bit():
    model = _flagship()
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ours = WeightAverage(model, 0.9)
    _train(model, [ref, ours], steps=12)
    assert int(ours.n_averaged) == int(ref.n_averaged) == 12
    _same(ref, ours)
    # The average moved away from the model: a test that copied would fail above.
    assert not torch.equal(ours.module.head.weight, model.head.weight)
    counts = [b for n, b in ours.module.named_buffers() if n.endswith("num_batches_tracked")]
    assert counts and all(int(c) > 0 for c in counts)  # the integer buffers are averaged too


def test_count_false_leaves_the_counter_to_the_caller():
    model = _flagship()
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.99), use_buffers=True)
    ours = WeightAverage(model, 0.99)
    _train(model, [ref, ours], steps=2)
    ours.update_parameters(model, count=False)
    ref.update_parameters(model)
    assert int(ours.n_averaged) == 2 and int(ref.n_averaged) == 3
    ours.n_averaged += 1
    _same(ref, ours)


def test_a_copy_updates_its_own_tensors():
    """A deepcopy must not keep the original's collected pairs, or it would average into
    the original's tensors."""
    model = _flagship()
    ours = WeightAverage(model, 0.9)
    _train(model, [ours], steps=3)  # pairs collected
    twin = copy.deepcopy(ours)
    before = ours.module.head.weight.clone()
    ref = copy.deepcopy(ours)
    ref.__class__ = AveragedModel  # torch's update from the same state
    _train(model, [twin, ref], steps=2, seed=1)
    assert torch.equal(ours.module.head.weight, before)
    assert not torch.equal(twin.module.head.weight, before)
    _same(twin, ref)


def test_another_model_or_forget_collects_again():
    model = _flagship()
    ours = WeightAverage(model, 0.9)
    _train(model, [ours], steps=2)
    moved = model.to(memory_format=torch.contiguous_format)  # the same module, new tensors
    ours.forget()
    ref = copy.deepcopy(ours)
    ref.__class__ = AveragedModel  # torch's update from the same state
    _train(moved, [ours, ref], steps=2, seed=2)
    _same(ref, ours)
    other = _flagship()
    _train(other, [ours, ref], steps=1, seed=3)  # a different model object: collected anew
    _same(ref, ours)
