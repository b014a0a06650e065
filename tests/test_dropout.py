"""fast/dropout.py: mnistlite's CPU Dropout must behave like torch's: rate, scaling, gradient, eval."""

import pytest
import torch

from mnistlite.fast.dropout import Dropout


@pytest.mark.parametrize("p", [0.01, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_dropout_rate_scale_and_gradient(p, fmt):
    torch.manual_seed(0)
    x = torch.rand(64, 8, 20, 20).add_(0.5).contiguous(memory_format=fmt).requires_grad_()
    y = Dropout(p).train()(x)
    dropped = y == 0
    n = x.numel()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(dropped.float().mean().item() - p) < 5 * sigma  # a Bernoulli(p) mask
    kept = ~dropped
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    w = torch.randn_like(y)
    (y * w).sum().backward()
    assert torch.equal(x.grad == 0, dropped)  # the gradient flows where the output kept x
    assert torch.allclose(x.grad[kept], w[kept] / (1 - p))


def test_dropout_eval_is_identity_and_seeded_masks_repeat():
    x = torch.rand(4, 3, 10, 10)
    assert Dropout(0.1).eval()(x) is x
    torch.manual_seed(3)
    a = Dropout(0.05).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.05).train()(x)
    assert torch.equal(a, b)
