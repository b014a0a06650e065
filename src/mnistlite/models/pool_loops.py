"""2x2, stride-2 max-pooling of NHWC maps as compiled loops (numba; imported only where numba is).

torch's CPU max-pool on channels_last maps cost 0.7 ms of a 14 ms float32
flagship step and 1.1 ms of a 10 ms bf16 one (its bf16 kernel is slower than
its float32 one; torch.profiler, the AMX Xeon). The pool is a selection, so
these loops copy elements as they are (float32, or bf16 as uint16 bits) and
only compare them widened to float32. The forward keeps which of the four
positions won (0-3, one byte per output) for the backward, which writes every
input position once: the winner's gradient, zero elsewhere.

Ties and NaN go as in torch's kernel: the window is walked row by row, a value
wins when it is greater than the best so far or NaN, so the first of equal
maxima wins and a NaN wins over numbers (tests/test_fused.py checks outputs
and gradients bit for bit against torch on maps full of ties).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .bn_loops import narrow, widen


@njit(parallel=True, cache=True)
def forward(x, y, win):  # pragma: no cover  (compiled)
    """x (N, H, W, C) -> y (N, H // 2, W // 2, C), win: the winner's place in its window (row * 2 + column)."""
    n, _, _, c = x.shape
    _, ho, wo, _ = y.shape
    for bi in prange(n * ho):  # one output row each; channels innermost, so the loop vectorises
        b, i = bi // ho, bi % ho
        for j in range(wo):
            for ch in range(c):
                best = x[b, 2 * i, 2 * j, ch]
                bv = widen(best)
                k = 0
                for t in range(1, 4):  # row by row, as torch: a greater value or a NaN takes over
                    v = x[b, 2 * i + t // 2, 2 * j + t % 2, ch]
                    vv = widen(v)
                    take = (vv > bv) | (vv != vv)
                    best = v if take else best
                    bv = vv if take else bv
                    k = t if take else k
                y[b, i, j, ch] = best
                win[b, i, j, ch] = k


@njit(parallel=True, cache=True)
def backward(dy, win, dx):  # pragma: no cover  (compiled)
    """dx (N, H, W, C): dy at each window's winning position, zero at the others and at an odd edge."""
    n, h, w, c = dx.shape
    _, ho, wo, _ = dy.shape
    zero = narrow(np.float32(0.0), dx)  # 0 as an element of dx (bf16 bits 0 are +0.0)
    for bi in prange(n * ho):
        b, i = bi // ho, bi % ho
        for t in range(4):
            r, dj = 2 * i + t // 2, t % 2
            for j in range(wo):
                for ch in range(c):
                    dx[b, r, 2 * j + dj, ch] = dy[b, i, j, ch] if win[b, i, j, ch] == t else zero
            if w % 2 and dj == 1:
                for ch in range(c):
                    dx[b, r, w - 1, ch] = zero
    for b in prange(n):
        if h % 2:
            for j in range(w):
                for ch in range(c):
                    dx[b, h - 1, j, ch] = zero
