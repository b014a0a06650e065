"""BatchNorm -> ReLU (-> Dropout) as one autograd op on the compiled loops (torch's BatchNorm, not the convs,
was the costliest layer on these small maps), the compiled 2x2 pool, and `FusedSequential`, a drop-in
nn.Sequential that takes them only where exact: no hooks, so torchinfo's tables see the plain layers."""

from __future__ import annotations

from typing import TypeGuard

import torch
from torch import nn

from . import kernels
from .dropout import SPARSE_MAX_P, Dropout, drop_positions

_LANES = 256  # floats per row of the wide view, k*C: 8 channels alone would waste most of an AVX-512 register


def _tile_factor(m: int, c: int) -> int:
    """Largest k <= _LANES // c dividing m: rows of the (m/k, k*c) view stay whole."""
    k = max(1, _LANES // c)
    while m % k:
        k -= 1
    return k


def _wide(t: torch.Tensor, k: int) -> torch.Tensor:
    n, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(n * h * w // k, k * c)  # a view for NHWC memory


class _BNReLUDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float, p: float):
        n, c, h, w = x.shape
        k = _tile_factor(n * h * w, c)
        keep = 1.0 / (1.0 - p)
        y = torch.empty_like(x, memory_format=torch.channels_last)
        yv = _wide(y, k)
        args = (_wide(x, k), weight, bias, running_mean, running_var, momentum, eps, keep, c, yv)
        mean, invstd = map(torch.from_numpy, kernels.run("forward", *args))
        if p > 0:  # dropout's rescale is in `keep`; its zeros in y make `y > 0` its mask in backward too
            yv.view(-1)[drop_positions(yv.numel(), p)] = 0.0
        ctx.save_for_backward(x, y, weight, mean, invstd)
        ctx.k, ctx.keep = k, keep
        return y

    @staticmethod
    def backward(ctx, dy):
        x, y, weight, mean, invstd = ctx.saved_tensors
        c, k, keep = x.shape[1], ctx.k, ctx.keep
        dyv = _wide(dy.contiguous(memory_format=torch.channels_last), k)
        # dy has y's dtype (autograd returns a gradient in its tensor's dtype).
        dx = torch.empty_like(x, memory_format=torch.channels_last)
        args = (dyv, _wide(y, k), _wide(x, k), weight, mean, invstd, keep, c, _wide(dx, k))
        gw, gb = map(torch.from_numpy, kernels.run("backward", *args))
        return dx, gw, gb, None, None, None, None, None


def bn_relu_dropout(x: torch.Tensor, bn: nn.BatchNorm2d, p: float = 0.0) -> torch.Tensor:
    """dropout(relu(bn(x))) in training mode, fused; x must be NHWC-contiguous on the CPU."""
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    return _BNReLUDropout.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps, p)


class _MaxPool2(torch.autograd.Function):
    """nn.MaxPool2d(2) on a channels_last CPU map, torch's bit for bit (0.4-0.6 ms less a step: benchmarks/pool_ab)."""

    @staticmethod
    def forward(ctx, x):
        y, win = kernels.maxpool_forward(x)
        ctx.save_for_backward(win)
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, dy):
        (win,) = ctx.saved_tensors
        return kernels.maxpool_backward(dy, win, ctx.shape)


def is_plain_pool2(mod: nn.Module) -> bool:
    return (
        type(mod) is nn.MaxPool2d
        and mod.kernel_size in (2, (2, 2))
        and mod.stride in (None, 2, (2, 2))
        and mod.padding in (0, (0, 0))
        and mod.dilation in (1, (1, 1))
        and not mod.ceil_mode
        and not mod.return_indices
    )


def fusable_bn(bn: nn.Module | None) -> TypeGuard[nn.BatchNorm2d]:
    return type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats and bn.momentum is not None


def _nhwc_cpu(x: torch.Tensor) -> bool:
    """A float32 or bf16 (the convs' maps under autocast) channels_last CPU map?"""
    on_cpu = x.device.type == "cpu" and x.dtype in kernels.DTYPES and x.dim() == 4
    return on_cpu and x.is_contiguous(memory_format=torch.channels_last)


def _eval_unit(x: torch.Tensor, bn: nn.BatchNorm2d, drop: nn.Module | None) -> bool:
    idle_drop = drop is None or not drop.training
    return not torch.is_grad_enabled() and not bn.training and x.dtype == torch.float32 and idle_drop


def bn_relu_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """relu(bn(x)) in inference (no autograd, BN in eval mode, float32 NHWC): torch's result bit for bit."""
    n, c, h, w = x.shape
    k = _tile_factor(n * h * w, c)
    y = torch.empty_like(x, memory_format=torch.channels_last)
    assert bn.running_mean is not None and bn.running_var is not None  # fusable_bn: tracked statistics
    kernels.eval_forward(_wide(x, k), bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps, c, _wide(y, k))
    return y


def _hooked(*mods: nn.Module | None) -> bool:
    return any(mod is not None and (mod._forward_hooks or mod._forward_pre_hooks) for mod in mods)


class FusedSequential(nn.Sequential):
    """nn.Sequential running each BatchNorm2d -> ReLU [-> Dropout] run as one op, each plain 2x2 pool on the loops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Without autograd nothing is saved for a backward pass: the loops run plain.
        if not ((self.training or not torch.is_grad_enabled()) and _nhwc_cpu(x)):
            return super().forward(x)
        mods = list(self)
        i = 0
        while i < len(mods):
            mod, y = mods[i], None
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            # A layer before may have changed the layout (a flatten, a pool): check again.
            if fusable_bn(mod) and type(nxt) is nn.ReLU and _nhwc_cpu(x):
                drop = mods[i + 2] if i + 2 < len(mods) else None
                p, span = 0.0, 2
                if isinstance(drop, nn.Dropout) and type(drop) in (Dropout, nn.Dropout):
                    if not drop.inplace and drop.p <= SPARSE_MAX_P:
                        p, span = float(drop.p), 3
                if not _hooked(*mods[i : i + span]):
                    # A BN left in eval mode inside a training model runs as torch's layers.
                    if self.training and mod.training:
                        y = bn_relu_dropout(x, mod, p)
                    elif not self.training and _eval_unit(x, mod, drop if span == 3 else None):
                        y = bn_relu_eval(x, mod)
            if y is None:
                span = 1
                y = max_pool2_unit(x, mod) if is_plain_pool2(mod) else mod(x)
            x, i = y, i + span
        return x


def max_pool2_unit(x: torch.Tensor, pool: nn.Module | None = None) -> torch.Tensor:
    """A 2x2 max-pool (`pool`, or F.max_pool2d(x, 2)): the loops where FusedSequential would take them, else torch's."""
    if _nhwc_cpu(x) and min(x.shape[2:]) >= 2 and not _hooked(pool):  # under 2x2: torch's own error
        if not torch.is_grad_enabled():  # nothing will ask for the gradient: the winners are not kept
            return kernels.maxpool_forward(x)[0]
        if pool is None or pool.training:  # autograd is on here
            return _MaxPool2.apply(x)
    return pool(x) if pool is not None else nn.functional.max_pool2d(x, 2)


def bn_relu_unit(x: torch.Tensor, bn: nn.Module, drop: nn.Dropout | None = None) -> torch.Tensor:
    """dropout(relu(bn(x))): the fused op where it is exact (as in FusedSequential), else the layers."""
    p = float(drop.p) if drop is not None else 0.0
    if fusable_bn(bn) and _nhwc_cpu(x) and not _hooked(bn, drop):
        if bn.training and p <= SPARSE_MAX_P and not (drop is not None and drop.inplace):
            return bn_relu_dropout(x, bn, p if (drop is not None and drop.training) else 0.0)
        if _eval_unit(x, bn, drop):
            return bn_relu_eval(x, bn)
    y = torch.relu(bn(x))
    return drop(y) if drop is not None else y
