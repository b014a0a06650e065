"""The numba glue of the compiled loops (loops.py): whether they run here, threads, numpy views. Where numba
is missing or cannot compile, `available()` is False and a run takes torch's layers. The first `available()`
compiles the loops (about 4 s on 2 cores; numba caches them on disk)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

_STATE: dict[str, Any] = {}
DTYPES = (torch.float32, torch.bfloat16)  # the maps the loops take


def available() -> bool:
    """Can the compiled loops run here? The first call compiles them (or loads numba's cache)."""
    if "ok" not in _STATE:
        _STATE["ok"] = False
        try:
            from . import loops

            _STATE["kernels"] = loops
            _STATE["ok"] = _smoke()
        except ImportError as e:
            _STATE["why_not"] = f"numba is not installed ({e})"
        except Exception as e:  # noqa: BLE001  (a numba that cannot compile here: torch's layers still run)
            _STATE["why_not"] = f"numba failed to compile the loops: {type(e).__name__}: {e}"
    return bool(_STATE["ok"])


def why_not() -> str:
    """Why the loops do not run ("" where they do)."""
    return "" if available() else _STATE.get("why_not", "the loops failed their smoke check")


class _Threads:
    """Run the loops on torch's thread count and restore torch's: numba's OpenMP pool shares libgomp with torch
    and starting it resets both. numba's count is per thread: set only where this thread last set another."""

    _last = threading.local()

    def __enter__(self) -> None:
        self.n = n = torch.get_num_threads()
        if getattr(self._last, "n", None) != n:
            import numba

            numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
            self._last.n = n

    def __exit__(self, *exc: object) -> None:
        if torch.get_num_threads() != self.n:
            torch.set_num_threads(self.n)


def _np(t: torch.Tensor) -> np.ndarray:
    # numpy has no bfloat16: the loops read its bits as uint16 (loops.widen).
    t = t.detach()
    return (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy()


def run(loop: str, *args: Any) -> Any:
    """loops.`loop`(*args) on torch's thread count, each tensor passed as a numpy view."""
    with _Threads():
        return getattr(_STATE["kernels"], loop)(*(_np(a) if isinstance(a, torch.Tensor) else a for a in args))


def eval_forward(xv, weight, bias, running_mean, running_var, eps: float, c: int, yv) -> None:
    """Fill the wide view `yv` with relu(bn(x)) by the running statistics (inference, float32 maps)."""
    run("eval_forward", xv, weight, bias, running_mean, running_var, np.float32(eps), c, yv)


def maxpool_forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2, stride-2 max-pool of a channels_last map: (y, the winning positions for backward)."""
    n, c, h, w = x.shape
    y = torch.empty((n, c, h // 2, w // 2), dtype=x.dtype, memory_format=torch.channels_last)
    win = torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8)
    run("pool_forward", x.permute(0, 2, 3, 1), y.permute(0, 2, 3, 1), win)  # (N, H, W, C) views
    return y, win


def maxpool_backward(dy: torch.Tensor, win: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The input's gradient: dy at each window's winner, zero elsewhere (channels_last)."""
    dx = torch.empty(shape, dtype=dy.dtype, memory_format=torch.channels_last)
    dy = dy.contiguous(memory_format=torch.channels_last)
    run("pool_backward", dy.permute(0, 2, 3, 1), win, dx.permute(0, 2, 3, 1))
    return dx


def _smoke() -> bool:
    """The unit's and the pool's loops on tiny maps, checked by hand: compiles them, or loads numba's cache."""
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    y, rm, rv = torch.empty_like(x), torch.zeros(2), torch.ones(2)
    w, b = torch.ones(2), torch.zeros(2)
    mean, invstd = map(torch.from_numpy, run("forward", x, w, b, rm, rv, 0.1, 0.0, 1.0, 2, y))
    run("backward", torch.ones_like(x), y, x, w, mean, invstd, 1.0, 2, torch.empty_like(x))
    # Channel 0 holds 1 and 3 (mean 2, variance 1): its output is relu(x - 2); channel 1's mean is 1.
    ok = torch.allclose(mean, torch.tensor([2.0, 1.0])) and torch.allclose(y[:, 0], torch.tensor([0.0, 1.0]))
    eval_forward(x, w, b, torch.zeros(2), torch.ones(2), 0.0, 2, y)  # running mean 0, variance 1: relu(x)
    ok = ok and y.tolist() == [[1.0, 0.0], [3.0, 4.0]]
    m = torch.arange(8.0).view(1, 2, 2, 2).contiguous(memory_format=torch.channels_last)
    pooled, win = maxpool_forward(m)
    grad = maxpool_backward(torch.ones_like(pooled), win, m.shape)
    return bool(ok and pooled.flatten().tolist() == [3.0, 7.0] and grad.sum().item() == 2.0)
