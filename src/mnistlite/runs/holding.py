"""Held consistently, as numbers: the interval for new seeds, the test set's own sampling error, the margin in
images, and two sweeps paired seed by seed. Plain math (no scipy), so every figure can be checked by hand."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def _binom_tail_ge(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def _bisect(f: Callable[[float], float], lo: float = 0.0, hi: float = 1.0) -> float:
    """The root of an increasing f on [lo, hi] (f(lo) <= 0 <= f(hi)), to machine precision."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95, *, one_sided: bool = False) -> tuple[float, float]:
    """Exact binomial interval for a share from k successes in n trials (`one_sided`: the lower bound
    at alpha, and 1.0). 10/10: 0.6915 two-sided, 0.7411 one-sided (alpha^(1/n))."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    tail = (1 - confidence) if one_sided else (1 - confidence) / 2
    lower = 0.0 if k == 0 else _bisect(lambda p: _binom_tail_ge(k, n, p) - tail)
    if one_sided:
        return lower, 1.0
    # P(X <= k | p) = 1 - P(X >= k + 1 | p) falls as p grows: find where it reaches `tail`.
    upper = 1.0 if k == n else _bisect(lambda p: _binom_tail_ge(k + 1, n, p) - (1 - tail))
    return lower, upper


def holding(k: int, n: int) -> dict[str, Any]:
    """k of n seeds holding, and the 95% interval for the share of new seeds that would hold."""
    return {
        "k": k,
        "n": n,
        "share": k / n,
        "interval95": list(clopper_pearson(k, n)),
        "one_sided_lower95": clopper_pearson(k, n, one_sided=True)[0],
        "method": "Clopper-Pearson exact (binomial), two-sided 95%; one-sided 95% lower bound beside it",
    }


def binomial_sd(acc: float, n_test: int) -> float:
    """The binomial SD, in points, of an accuracy `acc` (percent) read on `n_test` images."""
    p = acc / 100
    return math.sqrt(p * (1 - p) / n_test) * 100


def margin(lows: Sequence[float], target: float, n_test: int | None, split: str = "test") -> dict[str, Any]:
    """The worst of `lows` (each seed's last-epochs minimum) minus the target, and how many seeds read it."""
    worst = min(lows)
    return {
        f"worst_{split}_acc": worst,
        "target": target,
        "points": round(worst - target, 9),
        "images": None if n_test is None else round((worst - target) / 100 * n_test),  # negative: that many short
        "n_test": n_test,
        "seeds_at_worst": sum(x == worst for x in lows),
    }


def claim(
    lows: Sequence[float], finals: Sequence[float], target: float, n_images: int | None, split: str = "test"
) -> dict[str, Any]:
    """One consistency claim over seeds: k/n holding, the set's sampling SD, the margin (`n_images` None: unknown)."""
    acc = statistics.fmean(finals)
    return {
        "holding": holding(sum(x >= target for x in lows), len(lows)),
        f"{split}_set_sampling": {
            "n_test": n_images,
            "accuracy": acc,
            "binomial_sd_points": None if n_images is None else binomial_sd(acc, n_images),
            "across_seeds_sd_points": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "formula": f"sqrt(p(1-p)/n_test)*100, p the mean final {split} accuracy; "
            f"every seed reads the same {split} set",
        },
        "margin": margin(lows, target, n_images, split),
    }


def holding_text(h: Mapping[str, Any]) -> str:
    """k/n with the 95% interval in whole percent."""
    lo, hi = h["interval95"]
    return f"{h['k']}/{h['n']} ({100 * lo:.0f}-{100 * hi:.0f}%)"


def images_text(m: Mapping[str, Any]) -> str:
    """The margin in images, signed ("+5", "-39", "0"); "n/a" where the set's size is unknown."""
    return "n/a" if m["images"] is None else f"{m['images']:+d}" if m["images"] else "0"


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any]:
    """A minus B over the seeds both have: mean difference, its standard error, wins, ties and losses."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("no seed in common")
    diffs = [round(a[s] - b[s], 9) for s in common]
    n = len(diffs)
    sd = statistics.stdev(diffs) if n > 1 else None
    return {
        "seeds": common,
        "n": n,
        "per_seed": {str(s): {"a": a[s], "b": b[s], "diff": d} for s, d in zip(common, diffs)},
        "mean_diff": statistics.fmean(diffs),
        "sd_diff": sd,
        "se_diff": None if sd is None else sd / math.sqrt(n),
        "a_wins": sum(d > 0 for d in diffs),
        "ties": sum(d == 0 for d in diffs),
        "a_loses": sum(d < 0 for d in diffs),
        "only_in_a": sorted(set(a) - set(b)),
        "only_in_b": sorted(set(b) - set(a)),
    }
