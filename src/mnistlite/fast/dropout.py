"""Dropout with a mask drawn sparsely: exact Bernoulli, a fraction of the cost on a CPU."""

from __future__ import annotations

import math

import torch
from torch import nn

SPARSE_MAX_P = 0.25  # above this rate drawing the dropped positions stops paying: torch's mask is used


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of `t` in memory order (contiguous, or channels_last: NHWC in memory)."""
    return t.view(-1) if t.is_contiguous() else t.permute(0, 2, 3, 1).view(-1)


def drop_positions(n: int, p: float) -> torch.Tensor:
    """Positions to drop among n slots: an exact Bernoulli(p) mask from about n*p draws (`bernoulli_`'s n
    cost a quarter of a Model3 step). K ~ Poisson(lam) uniform positions, with repeats: by Poisson splitting
    each slot is hit independently, dropped with probability 1 - exp(-lam / n) = p for lam = -n * log1p(-p)."""
    lam = torch.tensor(-n * math.log1p(-p), dtype=torch.float64)
    return torch.randint(n, (int(torch.poisson(lam).item()),))


class _SparseDropout(torch.autograd.Function):
    """y = x / (1 - p) with the sampled positions zeroed; the same in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        idx = drop_positions(x.numel(), p)
        y = x * (1.0 / (1.0 - p))
        _flat(y)[idx] = 0.0
        ctx.save_for_backward(idx)
        ctx.p = p
        ctx.fmt = torch.contiguous_format if y.is_contiguous() else torch.channels_last
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (idx,) = ctx.saved_tensors
        # Positions index memory order, so the gradient must share y's layout.
        g = (grad * (1.0 / (1.0 - ctx.p))).contiguous(memory_format=ctx.fmt)
        _flat(g)[idx] = 0.0
        return g, None


class Dropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on the CPU (`drop_positions` for p <= SPARSE_MAX_P), same semantics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.inplace or x.dim() != 4:
            return super().forward(x)
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()
        return _SparseDropout.apply(x, self.p) if self.p <= SPARSE_MAX_P else super().forward(x)
