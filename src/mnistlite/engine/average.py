"""The weights' moving average (`--ema`): torch's AveragedModel, updated without its per-step walk
(torch regroups every tensor per call: 0.23 ms a flagship step against 0.05 ms, benchmarks/ema_ab.py),
bit for bit (tests/test_average.py). Moving the model (`.to()`) replaces its buffers: call `forget()`."""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

# (the model, as a weak reference; float averages, their sources; integer averages, their sources)
_Pairs = tuple[Any, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


class WeightAverage(AveragedModel):
    """An exponential moving average of a model's weights and buffers (AveragedModel, use_buffers=True)."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay = decay
        self._pairs: _Pairs | None = None

    def forget(self) -> None:
        """Drop the collected pairs (after a module's tensors were replaced)."""
        self._pairs = None

    def __getstate__(self) -> dict[str, Any]:
        # A copy (deepcopy, pickle) has other tensors: it collects its own pairs.
        return {**super().__getstate__(), "_pairs": None}

    def _collect(self, model: nn.Module) -> _Pairs:
        avg = [*self.module.parameters(), *self.module.buffers()]
        src = [*model.parameters(), *model.buffers()]
        fa: list[torch.Tensor] = []
        fm: list[torch.Tensor] = []
        ia: list[torch.Tensor] = []
        im: list[torch.Tensor] = []
        for a, m in zip(avg, src, strict=True):
            (fa if a.is_floating_point() else ia).append(a)
            (fm if a.is_floating_point() else im).append(m)
        return weakref.ref(model), fa, fm, ia, im

    @torch.no_grad()
    def update_parameters(self, model: nn.Module, count: bool = True) -> None:
        """One EMA step towards `model`. `count=False` leaves n_averaged alone (a CUDA graph
        cannot advance a CPU counter; the replay loop counts on the host)."""
        if int(self.n_averaged) == 0:  # n_averaged lives on the CPU: no device sync
            super().update_parameters(model)  # the first update copies
            return
        if self._pairs is None or self._pairs[0]() is not model:
            self._pairs = self._collect(model)
        _, fa, fm, ia, im = self._pairs
        if fa:
            torch._foreach_lerp_(fa, fm, 1 - self.decay)
        if ia:  # one stacked op instead of three per buffer; the same elementwise arithmetic
            new = torch.stack(ia) * self.decay + torch.stack(im) * (1 - self.decay)
            for a, v in zip(ia, new.unbind(0), strict=True):
                a.copy_(v)
        if count:
            self.n_averaged += 1
