"""The compiled loops behind models/bn_kernels.py (numba; imported only where numba is installed).

Each thread sums its block of rows of the wide (rows, k * C) view in float32
lanes; the blocks, and the k lanes of each channel, are added in float64.

Only the `prange` loops run in parallel. Everything per channel is written as
plain scalar loops on purpose: under `parallel=True` numba turns every array
expression (`a / m`, `np.sqrt(v)`, even `np.zeros`) into a parallel region of
its own, and waking the threads for each cost more than the arithmetic (a
Model3 step spent 5 ms in the units with array expressions, against about
1 ms of loops).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Row blocks per reduction: enough for any thread count here, few enough that the
# (blocks, 2, k * C) partial sums stay small.
BLOCKS = 64


@njit(cache=True)
def _per_channel(part, c):  # pragma: no cover  (compiled)
    """The (blocks, 2, k * C) float32 partial sums reduced to two float64 sums per channel."""
    nb, _, width = part.shape
    s1 = np.zeros(c, np.float64)
    s2 = np.zeros(c, np.float64)
    # Lane j = kk * c + i belongs to channel i. Walking kk then i adds in the same order
    # as walking j with `j % c` (so the sums are bit-identical), without an integer
    # division per lane: that alone cost about 15 us a call at the late layers' sizes.
    for t in range(nb):
        for kk in range(width // c):
            for i in range(c):
                s1[i] += part[t, 0, kk * c + i]
                s2[i] += part[t, 1, kk * c + i]
    return s1, s2


@njit(parallel=True, cache=True)
def forward(xv, weight, bias, run_mean, run_var, momentum, eps, keep, c, y):  # pragma: no cover  (compiled)
    rows, width = xv.shape
    m = rows * (width // c)
    nb = max(1, min(rows, BLOCKS))
    part = np.empty((nb, 2, width), np.float32)
    for t in prange(nb):  # sums of x and x^2
        s = part[t, 0]
        q = part[t, 1]
        for j in range(width):
            s[j] = 0.0
            q[j] = 0.0
        for r in range(t * rows // nb, (t + 1) * rows // nb):
            for j in range(width):
                v = xv[r, j]
                s[j] += v
                q[j] += v * v
    s1, s2 = _per_channel(part, c)
    mean = np.empty(c, np.float32)
    invstd = np.empty(c, np.float32)
    scale = np.empty(width, np.float32)
    shift = np.empty(width, np.float32)
    for i in range(c):
        mu = s1[i] / m
        var = max(s2[i] / m - mu * mu, 0.0)
        inv = 1.0 / math.sqrt(var + eps)
        mean[i] = mu
        invstd[i] = inv
        run_mean[i] += momentum * (mu - run_mean[i])
        run_var[i] += momentum * (var * m / max(m - 1, 1) - run_var[i])
    for j in range(width):
        i = j % c
        scale[j] = weight[i] * invstd[i] * keep
        shift[j] = bias[i] * keep - mean[i] * scale[j]
    for r in prange(rows):
        for j in range(width):
            v = xv[r, j] * scale[j] + shift[j]
            # Not `v > 0`: a NaN must pass, as through torch's relu, so that a diverged run's
            # loss turns NaN at once (engine/loop.py stops on it) instead of training on.
            y[r, j] = 0.0 if v <= 0.0 else v
    return mean, invstd


@njit(parallel=True, cache=True)
def backward(dyv, yv, xv, weight, mean, invstd, keep, c, dx):  # pragma: no cover  (compiled)
    rows, width = xv.shape
    m = rows * (width // c)
    nb = max(1, min(rows, BLOCKS))
    part = np.empty((nb, 2, width), np.float32)
    for t in prange(nb):  # sums of g and g * x, g = dy where y > 0 (ReLU and dropout's zeros)
        s = part[t, 0]
        q = part[t, 1]
        for j in range(width):
            s[j] = 0.0
            q[j] = 0.0
        for r in range(t * rows // nb, (t + 1) * rows // nb):
            for j in range(width):
                g = dyv[r, j] if yv[r, j] > 0.0 else 0.0
                s[j] += g
                q[j] += g * xv[r, j]
    sum_g, sum_gx = _per_channel(part, c)
    grad_w = np.empty(c, np.float32)
    grad_b = np.empty(c, np.float32)
    a = np.empty(width, np.float32)
    k2 = np.empty(width, np.float32)
    k3 = np.empty(width, np.float32)
    coef = np.empty((3, c), np.float64)
    for i in range(c):
        gxhat = (sum_gx[i] - mean[i] * sum_g[i]) * invstd[i]
        grad_w[i] = gxhat * keep
        grad_b[i] = sum_g[i] * keep
        # dx = a * (g - mean(g) - xhat * mean(g * xhat)), as a*g + k2*x + k3 per channel.
        ai = weight[i] * invstd[i] * keep
        coef[0, i] = ai
        coef[1, i] = -ai * invstd[i] * gxhat / m
        coef[2, i] = -ai * sum_g[i] / m - coef[1, i] * mean[i]
    for j in range(width):
        a[j] = coef[0, j % c]
        k2[j] = coef[1, j % c]
        k3[j] = coef[2, j % c]
    for r in prange(rows):
        for j in range(width):
            g = dyv[r, j] if yv[r, j] > 0.0 else 0.0
            dx[r, j] = g * a[j] + xv[r, j] * k2[j] + k3[j]
    return grad_w, grad_b
