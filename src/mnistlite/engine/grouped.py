"""k copies of one architecture as one network: the packing behind grouped training.

Several seeds of one model train faster as one wide network than one after
another on a small CPU: every tiny layer's fixed cost (dispatch, oneDNN
primitive setup, thread hand-off) is paid once for k copies, and the convs get
k times the channels to fill a vector register with (benchmarks/grouped_probe.py).

The packed network takes (N, k*C, H, W): channel block j is copy j's batch.
Each layer keeps every copy's channels in its own block, so the copies never
mix:

* Conv2d(in, out, groups=g)  -> Conv2d(k*in, k*out, groups=k*g)
* BatchNorm2d(C)             -> BatchNorm2d(k*C): per-channel, hence per-copy, statistics
* Linear(in, out)            -> GroupedLinear: one batched matmul, copy j's block in, its block out
* ReLU, pools, Dropout(2d), Flatten, Identity: per-channel (or per-element) already;
  Flatten of channel blocks gives feature blocks in copy order, as Linear wants.

Every tensor of the packed state_dict is its copies' tensors concatenated on
dim 0 (a scalar, like num_batches_tracked, is shared), so packing is
`torch.cat` and unpacking is `chunk`, for the weights, the optimizer's
elementwise state and a weight average alike. The model's own `forward` is
kept; `group_models` checks on a probe batch that the packed network computes
exactly the k separate ones (a forward that reshapes across channels, like
`view(-1, 10)` or a softmax over dim 1, fails it) and refuses otherwise.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import MnistliteError
from ..fast.dropout import Dropout

# Modules without state that act per channel or per element: kept as they are.
STATELESS = (
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Dropout2d,
    Dropout,
    nn.Flatten,
    nn.Identity,
)
STATEFUL = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


class GroupedLinear(nn.Module):
    """k Linear(in, out) layers on (..., k*in) features: weight (k*out, in), bias (k*out)."""

    def __init__(self, k: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.empty(k * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k * out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, i, o = self.k, self.in_features, self.out_features
        lead = x.shape[:-1]
        xs = x.reshape(-1, k, i).transpose(0, 1)  # (k, M, in)
        w = self.weight.view(k, o, i).transpose(1, 2)  # (k, in, out)
        y = torch.bmm(xs, w) if self.bias is None else torch.baddbmm(self.bias.view(k, 1, o), xs, w)
        return y.transpose(0, 1).reshape(*lead, k * o)


def unsupported_modules(model: nn.Module) -> list[str]:
    """Names (and types) of the modules grouping cannot pack; empty when it can."""
    bad = []
    for name, m in model.named_modules():
        own_state = any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))
        if isinstance(m, STATEFUL):
            if isinstance(m, nn.BatchNorm2d) and type(m) is not nn.BatchNorm2d:
                bad.append(f"{name or 'model'} ({type(m).__name__})")
            continue
        if isinstance(m, STATELESS) or (not own_state and any(True for _ in m.children())):
            continue  # a container's own forward is checked numerically by group_models
        bad.append(f"{name or 'model'} ({type(m).__name__})")
    return bad


def _packed_layer(m: nn.Module, k: int) -> nn.Module | None:
    """The k-copy version of one stateful layer (weights not yet filled), or None if it has no state."""
    if isinstance(m, nn.Conv2d):
        return nn.Conv2d(
            k * m.in_channels,
            k * m.out_channels,
            m.kernel_size,  # type: ignore[arg-type]
            stride=m.stride,  # type: ignore[arg-type]
            padding=m.padding,  # type: ignore[arg-type]
            dilation=m.dilation,  # type: ignore[arg-type]
            groups=k * m.groups,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
        )
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            k * m.num_features,
            eps=m.eps,
            momentum=m.momentum,
            affine=m.affine,
            track_running_stats=m.track_running_stats,
        )
    if isinstance(m, nn.Linear):
        return GroupedLinear(k, m.in_features, m.out_features, bias=m.bias is not None)
    return None


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def pack_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One packed state_dict from k per-copy ones: tensors concatenated on dim 0, scalars shared."""
    return {key: v if v.dim() == 0 else torch.cat([s[key] for s in states]) for key, v in states[0].items()}


def unpack_state(state: dict[str, torch.Tensor], k: int) -> list[dict[str, torch.Tensor]]:
    """The k per-copy state_dicts of a packed one (views, not copies)."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(k)]
    for key, v in state.items():
        parts = [v] * k if v.dim() == 0 else list(v.chunk(k))
        for j in range(k):
            out[j][key] = parts[j]
    return out


def group_models(models: Sequence[nn.Module], *, check_shape: tuple[int, ...] = (1, 28, 28)) -> nn.Module:
    """One network computing `models` side by side; raises MnistliteError where that cannot be done.

    `models` must share one architecture (a seed's run each); the packed network
    is on the first model's device and memory format. `check_shape` is one
    sample's (C, H, W) for the equivalence check.
    """
    k = len(models)
    if k < 2:
        raise MnistliteError("grouping needs at least two models")
    bad = unsupported_modules(models[0])
    if bad:
        raise MnistliteError(f"cannot group {type(models[0]).__name__}: unsupported module(s) {', '.join(bad[:3])}")
    keys = list(models[0].state_dict())
    if any(list(m.state_dict()) != keys for m in models[1:]):
        raise MnistliteError("cannot group models of different architectures")
    grouped = copy.deepcopy(models[0])
    for name, m in list(models[0].named_modules()):
        new = _packed_layer(m, k)
        if new is not None:
            _replace(grouped, name, new)
    p0 = next(models[0].parameters())
    grouped = grouped.to(p0.device)
    grouped.load_state_dict(pack_state([m.state_dict() for m in models]))
    grouped.train(models[0].training)
    _check_equivalence(grouped, models, check_shape, p0.device)
    return grouped


@torch.no_grad()
def _check_equivalence(grouped: nn.Module, models: Sequence[nn.Module], shape: tuple[int, ...], device) -> None:
    """The packed network must give each copy's own output (eval mode: no batch statistics
    or dropout to update); restores each module's training flag."""
    k = len(models)
    flags = [(m, m.training) for net in (grouped, *models) for m in net.modules()]
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, *shape, generator=gen).to(device) for _ in range(k)]
    try:
        grouped.eval()
        for m in models:
            m.eval()
        want = [m(x) for m, x in zip(models, xs)]
        got = grouped(torch.cat(xs, 1))
        ok = got.shape == (3, k * want[0].shape[1], *want[0].shape[2:]) and all(
            torch.allclose(g, w, rtol=1e-4, atol=1e-5) for g, w in zip(got.chunk(k, 1), want)
        )
    except RuntimeError as e:  # a forward that reshapes by a fixed channel count
        raise MnistliteError(f"cannot group {type(models[0]).__name__}: its forward fails on k copies ({e})") from None
    finally:
        for m, flag in flags:
            m.training = flag
    if not ok:
        raise MnistliteError(
            f"cannot group {type(models[0]).__name__}: its forward mixes the copies' channels "
            "(a reshape or softmax across channels); train the seeds separately"
        )


def ungroup_into(grouped: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copy the packed weights and buffers back into the k ordinary `models`."""
    for m, state in zip(models, unpack_state(grouped.state_dict(), len(models))):
        m.load_state_dict(state)
