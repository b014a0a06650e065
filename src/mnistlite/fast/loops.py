"""The compiled loops behind kernels.py (numba, where installed): the BatchNorm-ReLU unit's forward, backward
and inference pass, and the 2x2 max-pool's. Per channel all is plain scalar loops on purpose: under `parallel`
numba makes each array expression a parallel region, whose wake-ups cost 5 ms of a Model3 step (loops: ~1 ms)."""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

BLOCKS = 64  # row blocks per reduction: enough for any thread count here, few enough for small partial sums


@intrinsic
def _bitcast(typingctx, v, to):  # pragma: no cover  (compiled)
    """v's bits as the scalar type `to`: uint32 -> float32 or float32 -> uint32."""
    target = to.instance_type

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(target))

    return target(types.uint32 if target == types.float32 else types.float32, to), codegen


# Maps are float32, or bf16 as uint16 bits: `widen` reads either as float32, `narrow` turns a result into
# one (one specialisation per dtype). They only convert values: one that stored into the array lost its
# stores inside `prange`.
def widen(v): ...  # pragma: no cover  (stubs: numba compiles the overloads below)
def narrow(v, a): ...  # pragma: no cover
def _zero(a): ...  # pragma: no cover


@overload(widen, inline="always")
def _widen_impl(v):  # pragma: no cover  (compiled)
    if v == types.uint16:  # a bf16 is the high half of a float32
        return lambda v: _bitcast(np.uint32(v) << np.uint32(16), np.float32)  # type: ignore[call-arg]
    return lambda v: v


@overload(narrow, inline="always")
def _narrow_impl(v, a):  # pragma: no cover  (compiled)
    """v as an element of array a: for bf16 bits, rounded to nearest, ties to even (as torch)."""
    if a.dtype == types.uint16:

        def to_bf16(v, a):
            # torch's rounding without its NaN branch, which cost a third of the loops' time: a NaN made by
            # arithmetic is the default NaN (low 16 bits zero), and one read from bf16 has them zero too, so
            # rounding cannot carry it into the exponent and every NaN stays NaN (tested).
            u = _bitcast(np.float32(v), np.uint32)  # type: ignore[call-arg,var-annotated]
            return np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))

        return to_bf16
    return lambda v, a: v


@overload(_zero, inline="always")
def _zero_impl(a):  # pragma: no cover  (compiled)
    """The 0 of a select next to a's elements: float32 for bf16 maps (float32 lanes, ~1.7x faster backward);
    float64 for float32 maps, which keeps their established rounding bit for bit."""
    if a.dtype == types.uint16:
        return lambda a: np.float32(0.0)
    return lambda a: 0.0


@njit(cache=True)
def _per_channel(part, c):  # pragma: no cover  (compiled)
    """The (blocks, 2, k * C) float32 partial sums (each thread's block of rows) to two float64 sums per channel."""
    nb, _, width = part.shape
    s1, s2 = np.zeros(c, np.float64), np.zeros(c, np.float64)
    # Lane j = kk * c + i is channel i's: walking kk then i adds in `j % c`'s order (bit-identical sums)
    # without an integer division per lane, which alone cost ~15 us a call at the late layers' sizes.
    for t in range(nb):
        for kk in range(width // c):
            for i in range(c):
                s1[i] += part[t, 0, kk * c + i]
                s2[i] += part[t, 1, kk * c + i]
    return s1, s2


@njit(parallel=True, cache=True)
def forward(xv, weight, bias, run_mean, run_var, momentum, eps, keep, c, y):  # pragma: no cover  (compiled)
    """Fill the wide view y with relu(bn(x)) * keep, update the running statistics; return (mean, invstd)."""
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
                v = widen(xv[r, j])
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
            v = widen(xv[r, j]) * scale[j] + shift[j]
            # Not `v > 0`: a NaN must pass, as through torch's relu, so a diverged run's loss turns NaN at once.
            y[r, j] = narrow(_zero(y) if v <= 0.0 else v, y)
    return mean, invstd


@njit(parallel=True, cache=True)
def backward(dyv, yv, xv, weight, mean, invstd, keep, c, dx):  # pragma: no cover  (compiled)
    """Fill the wide view dx with the input's gradient; return (grad weight, grad bias)."""
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
                g = widen(dyv[r, j]) if widen(yv[r, j]) > 0.0 else _zero(dyv)
                s[j] += g
                q[j] += g * widen(xv[r, j])
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
            g = widen(dyv[r, j]) if widen(yv[r, j]) > 0.0 else _zero(dyv)
            dx[r, j] = narrow(g * a[j] + widen(xv[r, j]) * k2[j] + k3[j], dx)
    return grad_w, grad_b


@intrinsic
def _fma(typingctx, a, b, c):  # pragma: no cover  (compiled)
    """a * b + c rounded once, in float32."""

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32] * 3))
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(parallel=True, cache=True)
def eval_forward(xv, weight, bias, run_mean, run_var, eps, c, y):  # pragma: no cover  (compiled)
    """Inference on float32 maps: y = max(x * alpha + beta, 0), formed as torch's CPU BatchNorm does
    (batch_norm_kernel.cpp) with its AVX2/AVX-512 builds' fused multiply-adds: bit for bit there."""
    rows, width = xv.shape
    alpha = np.empty(width, np.float32)
    beta = np.empty(width, np.float32)
    for j in range(width):
        i = j % c
        a = np.float32(1.0) / np.sqrt(run_var[i] + eps) * weight[i]
        alpha[j] = a
        beta[j] = _fma(-run_mean[i], a, bias[i])  # type: ignore[call-arg]
    for r in prange(rows):
        for j in range(width):
            v = _fma(xv[r, j], alpha[j], beta[j])  # type: ignore[call-arg,var-annotated]
            y[r, j] = np.float32(0.0) if v <= 0.0 else v  # a NaN passes, as through torch's relu


# The 2x2, stride-2 max-pool of NHWC maps: elements are copied as they are and compared widened; ties and
# NaN go as in torch's kernel (the first of equal maxima wins, a NaN wins over numbers), bit for bit.


@njit(parallel=True, cache=True)
def pool_forward(x, y, win):  # pragma: no cover  (compiled)
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
def pool_backward(dy, win, dx):  # pragma: no cover  (compiled)
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
