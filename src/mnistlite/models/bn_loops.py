"""The compiled loops behind models/bn_kernels.py (numba; imported only where numba is installed).

Each thread sums its block of rows of the wide (rows, k * C) view in float32
lanes; the blocks, and the k lanes of each channel, are added in float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Row blocks per reduction: enough for any thread count here, few enough that the
# (blocks, 2, k * C) partial sums stay small.
BLOCKS = 64


@njit(parallel=True, cache=True)
def forward(xv, weight, bias, run_mean, run_var, momentum, eps, keep, c, y):
    rows, width = xv.shape
    k = width // c
    nb = max(1, min(rows, BLOCKS))
    part = np.zeros((nb, 2, width), np.float32)
    for t in prange(nb):
        s, q = part[t, 0], part[t, 1]
        for r in range(t * rows // nb, (t + 1) * rows // nb):
            for j in range(width):
                v = xv[r, j]
                s[j] += v
                q[j] += v * v
    m = rows * k
    mean = np.zeros(c, np.float64)
    sq = np.zeros(c, np.float64)
    for t in range(nb):
        for j in range(width):
            mean[j % c] += part[t, 0, j]
            sq[j % c] += part[t, 1, j]
    mean /= m
    var = np.maximum(sq / m - mean * mean, 0.0)
    invstd = 1.0 / np.sqrt(var + eps)
    unbias = m / max(m - 1, 1)
    for i in range(c):
        run_mean[i] += momentum * (mean[i] - run_mean[i])
        run_var[i] += momentum * (var[i] * unbias - run_var[i])
    scale = np.empty(width, np.float32)
    shift = np.empty(width, np.float32)
    for j in range(width):
        sc = weight[j % c] * invstd[j % c] * keep
        scale[j] = sc
        shift[j] = bias[j % c] * keep - mean[j % c] * sc
    for r in prange(rows):
        for j in range(width):
            v = xv[r, j] * scale[j] + shift[j]
            # Not `v > 0`: a NaN must pass, as through torch's relu, so that a diverged run's
            # loss turns NaN at once (engine/loop.py stops on it) instead of training on.
            y[r, j] = 0.0 if v <= 0.0 else v
    return mean.astype(np.float32), invstd.astype(np.float32)


@njit(parallel=True, cache=True)
def backward(dyv, yv, xv, weight, mean, invstd, keep, c, dx):
    rows, width = xv.shape
    k = width // c
    nb = max(1, min(rows, BLOCKS))
    part = np.zeros((nb, 2, width), np.float32)
    for t in prange(nb):
        s, q = part[t, 0], part[t, 1]
        for r in range(t * rows // nb, (t + 1) * rows // nb):
            for j in range(width):
                g = dyv[r, j] if yv[r, j] > 0.0 else 0.0
                s[j] += g
                q[j] += g * xv[r, j]
    m = rows * k
    sum_g = np.zeros(c, np.float64)
    sum_gx = np.zeros(c, np.float64)
    for t in range(nb):
        for j in range(width):
            sum_g[j % c] += part[t, 0, j]
            sum_gx[j % c] += part[t, 1, j]
    sum_gxhat = (sum_gx - mean * sum_g) * invstd
    # dx = a * (g - mean(g) - xhat * mean(g * xhat)), as a*g + k2*x + k3 per channel.
    a64 = weight * invstd * keep
    k2_64 = -a64 * invstd * sum_gxhat / m
    k3_64 = -a64 * sum_g / m - k2_64 * mean
    a = np.empty(width, np.float32)
    k2 = np.empty(width, np.float32)
    k3 = np.empty(width, np.float32)
    for j in range(width):
        a[j], k2[j], k3[j] = a64[j % c], k2_64[j % c], k3_64[j % c]
    for r in prange(rows):
        for j in range(width):
            g = dyv[r, j] if yv[r, j] > 0.0 else 0.0
            dx[r, j] = g * a[j] + xv[r, j] * k2[j] + k3[j]
    return (sum_gxhat * keep).astype(np.float32), (sum_g * keep).astype(np.float32)
