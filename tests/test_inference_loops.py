"""Inference through the compiled loops (BN + ReLU as one pass, the 2x2 pool without winners)
must give torch's layers' result bit for bit, and must step aside wherever it would not."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlite.fast import kernels
from mnistlite.fast.apply import accelerate
from mnistlite.fast.unit import FusedSequential, bn_relu_eval
from mnistlite.models import create_model, list_models

CL = torch.channels_last
needs_loops = pytest.mark.skipif(not kernels.available(), reason="the compiled loops do not run here")
# torch's AVX2 and AVX-512 builds compute BatchNorm's inference terms with fused multiply-adds, as
# the loops do; its scalar ("DEFAULT") build rounds each product, so there the two may differ by an ulp.
EXACT = torch.backends.cpu.get_cpu_capability() != "DEFAULT"


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine terms far from their initial 0/1, so every term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g))
                m.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.05)
                m.weight.copy_(torch.randn(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g))
    return model


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    if EXACT:
        assert torch.equal(a, b)
    else:
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_loops
@pytest.mark.parametrize("name", [m for m in list_models() if not m.startswith("family:")])
def test_every_model_infers_torchs_logits(name):
    torch.manual_seed(0)
    plain = _randomize_bn(create_model(name)).to(memory_format=CL).eval()
    fast, _ = accelerate(copy.deepcopy(plain))
    x = torch.rand(24, 1, 28, 28)
    with torch.no_grad():
        want = plain(x)
        got = fast(x)
    _same(got, want)


@needs_loops
@pytest.mark.parametrize("shape", [(500, 16, 24, 24), (64, 30, 3, 3), (3, 300, 1, 1), (2, 3, 5, 7)])
def test_unit_is_torchs_bn_relu_with_zeros_and_nan(shape):
    bn = _randomize_bn(nn.BatchNorm2d(shape[1]), seed=3).eval()
    x = (torch.randn(shape) * 3).contiguous(memory_format=CL)
    flat = x.permute(0, 2, 3, 1).reshape(-1)  # a view of x's memory
    flat[::13] = 0.0
    flat[::29] = -0.0
    flat[::31] = float("nan")
    with torch.no_grad():
        got, want = bn_relu_eval(x, bn), torch.relu(bn(x))
    assert got.is_contiguous(memory_format=CL)
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    _same(got[~nan], want[~nan])


@needs_loops
def test_pool_in_inference_is_torchs():
    x = torch.relu(torch.randint(-3, 4, (6, 10, 13, 11)).float() / 2).contiguous(memory_format=CL)
    x[:, :, ::5, ::3] = float("nan")
    seq = FusedSequential(nn.MaxPool2d(2)).eval()
    with torch.no_grad():
        got = seq(x)
    want = F.max_pool2d(x, 2)
    assert got.is_contiguous(memory_format=CL)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = kernels.eval_forward
    monkeypatch.setattr(kernels, "eval_forward", lambda *a: calls.append(1) or real(*a))
    return calls


@needs_loops
def test_inference_loops_step_aside_where_they_would_not_be_torchs(monkeypatch):
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    seq = _randomize_bn(FusedSequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1)))
    seq = seq.to(memory_format=CL).eval()
    x = torch.randn(4, 1, 12, 12).contiguous(memory_format=CL)
    with torch.no_grad():
        seq(x)
    assert calls == [1]
    calls.clear()
    # Autograd on (an input gradient, a saliency map): torch's layers, and the gradient flows.
    xx = x.clone().requires_grad_()
    y = seq(xx)
    assert y.requires_grad and calls == []
    (g,) = torch.autograd.grad(y.sum(), [xx])
    assert g.abs().sum() > 0
    with torch.no_grad():
        # bf16 maps (autocast): torch's layers.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            seq(x)
        # A dropout left in training mode, or a BN in training mode: torch's layers, as written.
        seq[3].train()
        seq(x)
        seq[3].eval()
        before = seq[1].running_mean.clone()
        seq[1].train()
        seq(x)
        assert not torch.equal(seq[1].running_mean, before)  # torch's BN updated its statistics
        # NCHW maps (a model left in torch's default layout): torch's layers.
        copy.deepcopy(seq).eval().to(memory_format=torch.contiguous_format)(x.contiguous())
    assert calls == []


@needs_loops
def test_eval_mode_bn_inside_a_training_model_runs_as_torchs_layers():
    """A BN frozen with .eval() while the rest trains uses its running statistics, fused or not."""
    torch.manual_seed(0)
    seq = _randomize_bn(FusedSequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU())).to(memory_format=CL)
    plain = nn.Sequential(*copy.deepcopy(list(seq)))
    seq.train()[1].eval()
    plain.train()[1].eval()
    x = torch.randn(4, 1, 12, 12).contiguous(memory_format=CL)
    before = seq[1].running_mean.clone()
    want = plain(x)
    got = seq(x)
    assert torch.equal(seq[1].running_mean, before)
    assert torch.allclose(got, want)


class _UserNet(nn.Module):
    """A plain-torch model as a student writes it: BN-ReLU and the pool in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.max_pool2d(torch.relu(self.b2(self.c2(x))), 2)
        return self.head(x.mean((2, 3)))


@needs_loops
def test_user_models_infer_through_the_loops(monkeypatch):
    torch.manual_seed(0)
    plain = _randomize_bn(_UserNet()).to(memory_format=CL).eval()
    fast, _ = accelerate(copy.deepcopy(plain))
    calls = _counting(monkeypatch)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        got = fast(x)
        assert len(calls) == 2
        want = plain(x)
    _same(got, want)
