"""The Analysis of a report, generated from metrics by explicit rules.

Each rule is one small function from a step's metrics to a `Finding`: a
short verdict (for tables and tests) and plain sentences (for the report).
Every threshold is a named constant below, so a verdict can be checked by
hand against the numbers printed beside it.

A step is one configuration trained under one or more seeds. Its `runs` map
a label ("seed 1") to that run's per-epoch rows (metrics.csv): `epoch`,
`train_acc` and `test_acc` in percent are what the rules read. Train accuracy
is the running accuracy on the augmented training batches of each epoch, in
training mode (dropout on), as the seeds' logs report it; test accuracy is the
whole test set after the epoch, in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import mean, stdev
from typing import Any

from ..challenge import BUDGET, LAST_EPOCHS, MAX_EPOCHS, TARGET
from ..config import RUN_ONLY_FIELDS

# --- the challenge (challenge.py), under the names the rules read -----------------
BUDGET_PARAMS = BUDGET  # trainable parameters must stay strictly below this
BUDGET_EPOCHS = MAX_EPOCHS  # at most this many epochs
GOAL_ACC = TARGET  # test accuracy (%) to hold ...
LAST_N = LAST_EPOCHS  # ... in each of the last LAST_N epochs, for every seed

# --- fit: train-test gap over the last LAST_N epochs (percentage points) ----------
OVERFIT_GAP_PP = 0.5  # train ahead of test by more than this: overfits
UNDERFIT_GAP_PP = -0.1  # test ahead of train by more than 0.1 pp: underfits the (augmented) training data
UNDERFIT_TRAIN_ACC = 99.0  # or train accuracy itself stays below this: underfits
# A gap is only read once the curves have settled: test accuracy still rising by
# more than this per epoch over the last LAST_N epochs means "still improving"
# (an undertrained model, whatever its gap), and a tail that goes up and down by
# more than UNSTABLE_RANGE_PP means the gap is no steady reading ("unstable").
RISING_PP_PER_EPOCH = 0.1

# --- speed ------------------------------------------------------------------------
FIRST_LEVEL = 99.0  # "first epoch at 99%"

# --- stability: test accuracy range over the last LAST_N epochs of a run ------------
STABLE_RANGE_PP = 0.1  # within this: stable
UNSTABLE_RANGE_PP = 0.3  # beyond this: unstable (in between: fluctuates)

# --- seeds ------------------------------------------------------------------------
SEED_SPREAD_PP = 0.1  # sample std of final test accuracy across seeds above this: seed-sensitive

# --- change from the previous step ------------------------------------------------
NOISE_PP = 0.05  # a change of final test accuracy within max(this, its standard error) is noise

# Config fields a report does not list as the recipe: what differs between
# steps by construction (model, seed), and the run-only fields of the same-run
# rule (config.RUN_ONLY_FIELDS: where or how fast a run happened).
NOT_RECIPE = RUN_ONLY_FIELDS | {"model", "seed"}


@dataclass
class StepMetrics:
    """What the rules see of one step."""

    name: str
    runs: dict[str, list[dict[str, Any]]]  # label -> metric rows, epoch order
    params: int | None = None
    epochs: int | None = None  # planned epochs per run (config)
    model: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # one run's config.json
    arch: dict[str, str] = field(default_factory=dict)  # runs.architecture(model)

    @property
    def n(self) -> int:
        return len(self.runs)

    def per_run(self, fn: Callable[[list[dict[str, Any]]], Any]) -> dict[str, Any]:
        return {label: fn(rows) for label, rows in self.runs.items() if rows}

    def values(self, fn: Callable[[list[dict[str, Any]]], Any]) -> list[Any]:
        return list(self.per_run(fn).values())


@dataclass(frozen=True)
class Finding:
    rule: str  # which rule: change, fit, speed, stability, seeds, budget, goal, challenge
    verdict: str  # one word or two, e.g. "overfits", "stable", "meets"
    text: str  # plain sentences for the report


# --- small helpers -----------------------------------------------------------------


def last(rows: Sequence[dict[str, Any]], n: int = LAST_N) -> list[dict[str, Any]]:
    return list(rows[-n:])


def col(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) is not None]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for fewer than two values)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, None
    return mean(vals), (stdev(vals) if len(vals) > 1 else None)


def pct(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.2f}%"


def pp(v: float) -> str:
    """A signed difference in percentage points."""
    return f"{v:+.2f} pp"


def pm(values: Sequence[float], unit: str = "%", digits: int = 2) -> str:
    """'99.41%' for one value, '99.41 ± 0.03%' for several (sample std); a mean that two
    decimals would round across the target gets a third ('99.396 ± 0.04%')."""
    m, s = mean_std(values)
    if math.isnan(m):
        return "n/a"
    md = digits
    if unit == "%" and (round(m, digits) >= TARGET) != (m >= TARGET):
        md = digits + 1  # a mean of 99.396 must not print as 99.40 beside a verdict that it misses
    if s is None:
        return f"{m:.{md}f}{unit}"
    return f"{m:.{md}f} ± {s:.{digits}f}{unit}"


def epoch_list(epochs: Sequence[int]) -> str:
    """[3, 5, 6, 7] -> '3, 5-7'."""
    out: list[str] = []
    eps = sorted(epochs)
    i = 0
    while i < len(eps):
        j = i
        while j + 1 < len(eps) and eps[j + 1] == eps[j] + 1:
            j += 1
        out.append(str(eps[i]) if i == j else f"{eps[i]}-{eps[j]}")
        i = j + 1
    return ", ".join(out)


def _by_run(values: dict[str, Any], fmt: Callable[[Any], str] = str) -> str:
    return ", ".join(f"{fmt(v)} ({label})" for label, v in values.items())


def first_epoch_at(rows: Sequence[dict[str, Any]], level: float) -> int | None:
    return next((int(r["epoch"]) for r in rows if r.get("test_acc") is not None and r["test_acc"] >= level), None)


def gap_last(rows: Sequence[dict[str, Any]]) -> float:
    """Mean train accuracy minus mean test accuracy over the last LAST_N epochs."""
    tail = last(rows)
    return mean(col(tail, "train_acc")) - mean(col(tail, "test_acc"))


def range_last(rows: Sequence[dict[str, Any]]) -> float:
    acc = col(last(rows), "test_acc")
    return max(acc) - min(acc)


def min_last(rows: Sequence[dict[str, Any]]) -> float:
    return min(col(last(rows), "test_acc"))


def final_test(rows: Sequence[dict[str, Any]]) -> float:
    return float(rows[-1]["test_acc"])


def best_test(rows: Sequence[dict[str, Any]]) -> float:
    return max(col(rows, "test_acc"))


# --- the rules ---------------------------------------------------------------------


def _trend(rows: Sequence[dict[str, Any]]) -> float:
    """Test accuracy change per epoch over the last LAST_N epochs (pp)."""
    acc = col(last(rows), "test_acc")
    return (acc[-1] - acc[0]) / (len(acc) - 1) if len(acc) > 1 else 0.0


def _swings(rows: Sequence[dict[str, Any]]) -> bool:
    """Does the tail go down and up again by more than UNSTABLE_RANGE_PP (not a steady climb or plateau)?"""
    acc = col(last(rows), "test_acc")
    steps = [b - a for a, b in zip(acc, acc[1:])]
    return max(acc) - min(acc) > UNSTABLE_RANGE_PP and any(d < 0 for d in steps) and any(d > 0 for d in steps)


def fit(step: StepMetrics) -> Finding:
    """The final epochs' level and trend: too short, still improving, unstable, overfits, underfits or balanced.

    Only a settled tail is read as a train-test gap: early in training (a student's first
    models, 1-5 epochs) test accuracy is still climbing and can sit above train accuracy
    (measured during the epoch, with augmentation and dropout on), which says nothing
    about over- or underfitting.
    """
    runs = [rows for rows in step.runs.values() if rows]
    k = min(LAST_N, min(len(r) for r in runs))
    train = mean(mean(col(last(rows), "train_acc")) for rows in runs)
    test = mean(mean(col(last(rows), "test_acc")) for rows in runs)
    end_train = mean(float(rows[-1]["train_acc"]) for rows in runs)
    end_test = mean(float(rows[-1]["test_acc"]) for rows in runs)
    if min(len(r) for r in runs) < LAST_N:
        return Finding(
            "fit",
            "too short",
            (
                f"Only {min(len(r) for r in runs)} epoch(s) ran, too few to judge over- or underfitting: the curves "
                f"have not settled (at the end train {pct(end_train)}, test {pct(end_test)}). "
                f"Train for at least {LAST_N} epochs (the challenge allows {BUDGET_EPOCHS}) before reading the gap."
            ),
        )
    gap = mean(step.values(gap_last))
    text = (
        f"Over the last {k} epoch(s) train accuracy averaged {pct(train)} and test {pct(test)}, "
        f"a train-test gap of {pp(gap)} (train accuracy is measured on the augmented training batches "
        f"during each epoch, with dropout on, as the seeds do)."
    )
    trend = mean(_trend(rows) for rows in runs)
    if round(trend, 6) > RISING_PP_PER_EPOCH:  # rounded: 0.1 in floats is not above 0.1
        return Finding(
            "fit",
            "still improving",
            text
            + (
                f" Test accuracy was still rising by {trend:.2f} pp per epoch, so the model is undertrained "
                "rather than over- or underfitting: more epochs, or a faster learning-rate schedule, should help."
            ),
        )
    swinging = [label for label, rows in step.runs.items() if rows and _swings(rows)]
    if swinging:
        who = "" if step.n == 1 else f" ({', '.join(swinging)})"
        return Finding(
            "fit",
            "unstable",
            text
            + (
                f" Test accuracy went down and up again by more than {UNSTABLE_RANGE_PP} pp{who}, so the gap is no "
                "steady reading: a lower or decaying learning rate should settle it first."
            ),
        )
    if gap > OVERFIT_GAP_PP:
        return Finding(
            "fit",
            "overfits",
            text
            + (
                f" Train is more than {OVERFIT_GAP_PP} pp ahead of test, so the model overfits: "
                "more regularisation or augmentation should help."
            ),
        )
    if gap < UNDERFIT_GAP_PP:
        return Finding(
            "fit",
            "underfits",
            text
            + (
                f" Test is ahead of train by more than {-UNDERFIT_GAP_PP} pp: the training batches are harder "
                "than the test set, so the model underfits them and could be trained harder "
                "(more epochs, a higher learning rate, or less regularisation)."
            ),
        )
    if train < UNDERFIT_TRAIN_ACC:
        return Finding(
            "fit",
            "underfits",
            text
            + (
                f" Train accuracy itself stays below {UNDERFIT_TRAIN_ACC}%, so the model underfits: "
                "it lacks capacity or training time."
            ),
        )
    return Finding(
        "fit",
        "balanced",
        text
        + (f" The gap lies within {UNDERFIT_GAP_PP:+} to {OVERFIT_GAP_PP:+} pp: no sign of over- or underfitting."),
    )


def speed(step: StepMetrics) -> Finding:
    """The first epoch at FIRST_LEVEL and at GOAL_ACC."""
    first = step.per_run(lambda rows: first_epoch_at(rows, FIRST_LEVEL))
    goal = step.per_run(lambda rows: first_epoch_at(rows, GOAL_ACC))
    epochs = max(len(r) for r in step.runs.values())

    def when(d: dict[str, int | None], level: float) -> str:
        reached = {k: v for k, v in d.items() if v is not None}
        if not reached:
            return f"never reached {level:g}% in {epochs} epoch(s)"
        if step.n == 1:
            return f"first reached {level:g}% at epoch {next(iter(reached.values()))}"
        if len(reached) == step.n and len(set(reached.values())) == 1:
            return f"first reached {level:g}% at epoch {next(iter(reached.values()))} for every seed"
        s = f"first reached {level:g}% at epoch {_by_run(reached)}"
        missing = [k for k, v in d.items() if v is None]
        return s + (f", never for {', '.join(missing)}" if missing else "")

    verdict = (
        "reached"
        if all(v is not None for v in first.values())
        else ("never" if all(v is None for v in first.values()) else "partly")
    )
    return Finding("speed", verdict, f"Test accuracy {when(first, FIRST_LEVEL)}, and {when(goal, GOAL_ACC)}.")


def stability(step: StepMetrics) -> Finding:
    """Range and minimum of test accuracy over the last LAST_N epochs of each run."""
    shortest = min(len(r) for r in step.runs.values())
    if shortest < LAST_N:
        return Finding(
            "stability",
            "too short",
            (f"Only {shortest} epoch(s) ran, so stability over the last {LAST_N} epochs cannot be judged."),
        )
    ranges = step.per_run(range_last)
    mins = step.per_run(min_last)
    worst = max(ranges, key=ranges.get)
    low = min(mins, key=mins.get)
    r = ranges[worst]
    if r <= STABLE_RANGE_PP:
        verdict, word = "stable", f"stable (within {STABLE_RANGE_PP} pp)"
    elif r > UNSTABLE_RANGE_PP:
        verdict, word = "unstable", f"unstable (more than {UNSTABLE_RANGE_PP} pp)"
    else:
        verdict, word = "fluctuates", f"it fluctuates (between {STABLE_RANGE_PP} and {UNSTABLE_RANGE_PP} pp)"
    if step.n == 1:
        text = f"Over the last {LAST_N} epochs test accuracy moved within {r:.2f} pp (lowest {pct(mins[low])}): {word}."
    else:
        text = (
            f"Over the last {LAST_N} epochs test accuracy moved within at most {r:.2f} pp ({worst}); "
            f"the lowest value was {pct(mins[low])} ({low}): {word}."
        )
    return Finding("stability", verdict, text)


def seed_spread(step: StepMetrics) -> Finding | None:
    """Across seeds: the sample std of the final test accuracy (None for one seed)."""
    finals = step.values(final_test)
    if len(finals) < 2:
        return None
    m, s = mean_std(finals)
    assert s is not None
    if s > SEED_SPREAD_PP:
        return Finding(
            "seeds",
            "seed-sensitive",
            (
                f"Across {len(finals)} seeds the final test accuracy is {m:.2f}% ± {s:.2f} pp (sample std), "
                f"more than {SEED_SPREAD_PP} pp: the result depends on the seed."
            ),
        )
    return Finding(
        "seeds",
        "consistent",
        (f"Across {len(finals)} seeds the final test accuracy is {m:.2f}% ± {s:.2f} pp (sample std): consistent."),
    )


def budget(step: StepMetrics) -> Finding:
    """Parameters below BUDGET_PARAMS and at most BUDGET_EPOCHS epochs."""
    parts, ok = [], True
    if step.params is None:
        parts.append("The parameter count is unknown")
        ok = False
    elif step.params < BUDGET_PARAMS:
        parts.append(
            f"{step.params:,} parameters are within the {BUDGET_PARAMS:,}-parameter budget "
            f"({BUDGET_PARAMS - step.params:,} to spare)"
        )
    else:
        ok = False
        parts.append(
            f"{step.params:,} parameters are over the {BUDGET_PARAMS:,}-parameter budget "
            f"({step.params / BUDGET_PARAMS:.1f}x it)"
        )
    epochs = step.epochs if step.epochs is not None else max(len(r) for r in step.runs.values())
    if epochs <= BUDGET_EPOCHS:
        parts.append(f"{epochs} epochs are within the {BUDGET_EPOCHS}-epoch budget")
    else:
        ok = False
        parts.append(f"{epochs} epochs are over the {BUDGET_EPOCHS}-epoch budget")
    return Finding("budget", "within" if ok else "over", "; ".join(parts) + ".")


def goal(step: StepMetrics) -> Finding:
    """Test accuracy >= GOAL_ACC in each of the last LAST_N epochs, for every run."""
    short = {k: len(r) for k, r in step.runs.items() if len(r) < LAST_N}
    if short:
        return Finding(
            "goal",
            "misses",
            (
                f"Misses the goal: it needs {GOAL_ACC}% in each of the last {LAST_N} epochs, "
                f"but only {_by_run(short)} epoch(s) ran."
            ),
        )
    mins = step.per_run(min_last)
    failed = {k: v for k, v in mins.items() if v < GOAL_ACC}
    everyone = "" if step.n == 1 else " for both seeds" if step.n == 2 else f" for all {step.n} seeds"
    if not failed:
        return Finding(
            "goal",
            "meets",
            (
                f"Meets the goal: test accuracy was at least {GOAL_ACC}% in each of the last {LAST_N} epochs"
                f"{everyone} (lowest {pct(min(mins.values()))})."
            ),
        )
    held = step.per_run(lambda rows: sum(1 for a in col(last(rows), "test_acc") if a >= GOAL_ACC))
    detail = "; ".join(
        f"{k} held {GOAL_ACC}% in {held[k]} of the last {LAST_N} epochs (lowest {pct(v)}, {GOAL_ACC - v:.2f} pp short)"
        for k, v in failed.items()
    )
    met = [k for k in mins if k not in failed]
    return Finding(
        "goal", "misses", (f"Misses the goal: {detail}" + (f"; {', '.join(met)} met it" if met else "") + ".")
    )


def challenge(budget_f: Finding, goal_f: Finding) -> Finding:
    """Both together: the challenge is met only within budget and at goal."""
    if budget_f.verdict == "within" and goal_f.verdict == "meets":
        return Finding(
            "challenge",
            "meets",
            (
                f"This step meets the challenge: under {BUDGET_PARAMS:,} parameters, at most {BUDGET_EPOCHS} epochs, "
                f"and {GOAL_ACC}% held over the last {LAST_N} epochs."
            ),
        )
    missing = []
    if budget_f.verdict != "within":
        missing.append("the budget")
    if goal_f.verdict != "meets":
        missing.append("the accuracy goal")
    return Finding("challenge", "misses", f"This step does not meet the challenge: it misses {' and '.join(missing)}.")


def recipe_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config fields that matter for this config (an inactive scheduler's knobs do not)."""
    sched, opt = cfg.get("scheduler"), cfg.get("optimizer")
    skip = set(NOT_RECIPE)
    if sched != "step":
        skip |= {"step_size", "gamma"}
    if sched != "onecycle":
        skip |= {"max_lr", "pct_start", "div_factor", "final_div_factor", "anneal_strategy", "three_phase"}
    else:
        skip.add("lr")  # OneCycle starts at max_lr / div_factor
    if opt != "sgd":
        skip |= {"momentum", "nesterov"}
    if not cfg.get("crop_p"):
        skip.add("crop_size")
    return {k: v for k, v in cfg.items() if k not in skip}


def _fmt_value(v: Any) -> str:
    if v is None:
        return "model default"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """'key a -> b' for every key of both sides whose value differs."""
    return [
        f"{k} {_fmt_value(before[k])} -> {_fmt_value(after[k])}" for k in before if k in after and before[k] != after[k]
    ]


def recipe_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Changed recipe fields; fields only the new recipe uses (a new scheduler's knobs) are listed as set."""
    a, b = recipe_fields(before), recipe_fields(after)
    out = diff(a, b)
    new = [f"{k} {_fmt_value(v)}" for k, v in b.items() if k not in a]
    if new:
        out.append("now also " + ", ".join(new))
    return out


def change(prev: StepMetrics, step: StepMetrics) -> Finding:
    """What changed from the previous step, and what that did to the numbers."""
    parts = []
    if prev.model != step.model:
        parts.append(f"the model changed from `{prev.model}` to `{step.model}`")
    arch = diff(prev.arch, step.arch) if prev.arch and step.arch else []
    if arch:
        parts.append("architecture: " + ", ".join(arch))
    rec = recipe_diff(prev.config, step.config)
    if rec:
        parts.append("recipe: " + ", ".join(rec))
    what = "; ".join(parts) if parts else "nothing in the model or the recipe changed"
    nums = []
    if prev.params is not None and step.params is not None:
        d = step.params - prev.params
        rel = f", {d / prev.params:+.0%}" if prev.params else ""
        nums.append(f"parameters {prev.params:,} -> {step.params:,} ({d:+,}{rel})")
    fa, fb = prev.values(final_test), step.values(final_test)
    ma, sa = mean_std(fa)
    mb, sb = mean_std(fb)
    delta = mb - ma
    nums.append(f"mean final test accuracy {pct(ma)} -> {pct(mb)} ({pp(delta)})")
    ba, bb = mean(prev.values(best_test)), mean(step.values(best_test))
    nums.append(f"mean best test accuracy {pct(ba)} -> {pct(bb)} ({pp(bb - ba)})")
    la, lb = min(prev.values(min_last)), min(step.values(min_last))
    nums.append(f"lowest last-{LAST_N} test accuracy {pct(la)} -> {pct(lb)} ({pp(lb - la)})")
    se = math.sqrt(sa**2 / len(fa) + sb**2 / len(fb)) if sa is not None and sb is not None else 0.0
    noise = max(NOISE_PP, se)
    if delta > noise:
        verdict, judged = "better", "an improvement"
    elif delta < -noise:
        verdict, judged = "worse", "a loss"
    else:
        verdict, judged = "same", "within noise"
    return Finding(
        "change",
        verdict,
        (
            f"Compared with `{prev.name}`: {what}. Effect: "
            + "; ".join(nums)
            + f". The change in final test accuracy is {judged} (noise band ±{noise:.2f} pp)."
        ),
    )


def analyse(step: StepMetrics, prev: StepMetrics | None = None) -> list[Finding]:
    """All rules, in report order. Runs without any finished epoch are left out."""
    step = StepMetrics(**{**step.__dict__, "runs": {k: v for k, v in step.runs.items() if v}})
    if not step.runs:
        return [Finding("data", "none", "No epoch has finished yet, so there is nothing to analyse.")]
    findings: list[Finding] = []
    if prev is not None and any(prev.runs.values()):
        prev = StepMetrics(**{**prev.__dict__, "runs": {k: v for k, v in prev.runs.items() if v}})
        findings.append(change(prev, step))
    findings += [fit(step), speed(step), stability(step)]
    spread = seed_spread(step)
    if spread is not None:
        findings.append(spread)
    b, g = budget(step), goal(step)
    findings += [b, g, challenge(b, g)]
    return findings
