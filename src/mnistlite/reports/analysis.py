"""The Analysis of a report: rules from a step's metrics to a `Finding` (a verdict and plain sentences).

Every threshold is a named constant, so a verdict can be checked by hand against the numbers printed beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from statistics import mean
from typing import Any

from ..challenge import BUDGET, LAST_EPOCHS, MAX_EPOCHS, TARGET
from .markdown import by_run, pct, pp
from .recipe import diff, recipe_diff
from .step import Finding, StepMetrics, best_test, col, final_test, first_epoch_at, last, mean_std, min_last

# Fit: the train-test gap (pp) over the last LAST_EPOCHS epochs, read only once the curves have settled.
OVERFIT_GAP_PP = 0.5  # train ahead of test by more than this: overfits
UNDERFIT_GAP_PP = -0.1  # test ahead of train by more than 0.1 pp: underfits the (augmented) training data
UNDERFIT_TRAIN_ACC = 99.0  # or train accuracy itself stays below this: underfits
RISING_PP_PER_EPOCH = 0.1  # test accuracy still rising by more than this per epoch: "still improving"
FIRST_LEVEL = 99.0  # speed: "first epoch at 99%"
STABLE_RANGE_PP = 0.1  # test accuracy range over the last LAST_EPOCHS epochs within this: stable
UNSTABLE_RANGE_PP = 0.3  # beyond this: unstable (in between: fluctuates), and no steady gap to read
SEED_SPREAD_PP = 0.1  # sample std of final test accuracy across seeds above this: seed-sensitive
NOISE_PP = 0.05  # a change of final test accuracy within max(this, its standard error) is noise


def _trend(rows: Sequence[dict[str, Any]]) -> float:
    """Test accuracy change per epoch over the last LAST_EPOCHS epochs (pp)."""
    acc = col(last(rows), "test_acc")
    return (acc[-1] - acc[0]) / (len(acc) - 1) if len(acc) > 1 else 0.0


def _swings(rows: Sequence[dict[str, Any]]) -> bool:
    """Does the tail go down and up again by more than UNSTABLE_RANGE_PP (not a steady climb or plateau)?"""
    acc = col(last(rows), "test_acc")
    steps = [b - a for a, b in zip(acc, acc[1:])]
    return max(acc) - min(acc) > UNSTABLE_RANGE_PP and any(d < 0 for d in steps) and any(d > 0 for d in steps)


def fit(step: StepMetrics) -> Finding:
    """Too short, still improving, unstable, overfits, underfits or balanced. Only a settled tail is read as
    a gap: early on, test accuracy still climbs and can sit above train accuracy."""
    runs, t = [rows for rows in step.runs.values() if rows], step.split
    shortest = min(len(r) for r in runs)
    if shortest < LAST_EPOCHS:
        end_train = mean(float(rows[-1]["train_acc"]) for rows in runs)
        end_test = mean(float(rows[-1]["test_acc"]) for rows in runs)
        text = (
            f"Only {shortest} epoch(s) ran, too few to judge over- or underfitting: the curves "
            f"have not settled (at the end train {pct(end_train)}, {t} {pct(end_test)}). "
            f"Train for at least {LAST_EPOCHS} epochs (the challenge allows {MAX_EPOCHS}) before reading the gap."
        )
        return Finding("fit", "too short", text)
    train = mean(mean(col(last(rows), "train_acc")) for rows in runs)
    test = mean(mean(col(last(rows), "test_acc")) for rows in runs)
    gap = mean(mean(col(last(rows), "train_acc")) - mean(col(last(rows), "test_acc")) for rows in runs)
    text = (
        f"Over the last {LAST_EPOCHS} epoch(s) train accuracy averaged {pct(train)} and {t} {pct(test)}, "
        f"a train-{t} gap of {pp(gap)} (train accuracy is measured on the augmented training batches "
        f"during each epoch, with dropout on, as the seeds do)."
    )
    trend = mean(_trend(rows) for rows in runs)
    swinging = [label for label, rows in step.runs.items() if rows and _swings(rows)]
    if round(trend, 6) > RISING_PP_PER_EPOCH:  # rounded: 0.1 in floats is not above 0.1
        verdict = "still improving"
        why = f"{t.capitalize()} accuracy was still rising by {trend:.2f} pp per epoch, so the model is undertrained "
        why += "rather than over- or underfitting: more epochs, or a faster learning-rate schedule, should help."
    elif swinging:
        who = "" if step.n == 1 else f" ({', '.join(swinging)})"
        verdict = "unstable"
        why = f"{t.capitalize()} accuracy went down and up again by more than {UNSTABLE_RANGE_PP} pp{who}, so the gap "
        why += "is no steady reading: a lower or decaying learning rate should settle it first."
    elif gap > OVERFIT_GAP_PP:
        verdict = "overfits"
        why = f"Train is more than {OVERFIT_GAP_PP} pp ahead of {t}, so the model overfits: "
        why += "more regularisation or augmentation should help."
    elif gap < UNDERFIT_GAP_PP:
        verdict = "underfits"
        why = f"{t.capitalize()} is ahead of train by more than {-UNDERFIT_GAP_PP} pp: the training batches are harder "
        why += f"than the {t} set, so the model underfits them and could be trained harder "
        why += "(more epochs, a higher learning rate, or less regularisation)."
    elif train < UNDERFIT_TRAIN_ACC:
        verdict = "underfits"
        why = f"Train accuracy itself stays below {UNDERFIT_TRAIN_ACC}%, so the model underfits: "
        why += "it lacks capacity or training time."
    else:
        verdict = "balanced"
        why = f"The gap lies within {UNDERFIT_GAP_PP:+} to {OVERFIT_GAP_PP:+} pp: no sign of over- or underfitting."
    return Finding("fit", verdict, f"{text} {why}")


def speed(step: StepMetrics) -> Finding:
    """The first epoch at FIRST_LEVEL and at TARGET."""
    first = step.per_run(lambda rows: first_epoch_at(rows, FIRST_LEVEL))
    at_goal = step.per_run(lambda rows: first_epoch_at(rows, TARGET))
    epochs = max(len(r) for r in step.runs.values())

    def when(d: dict[str, int | None], level: float) -> str:
        reached = {k: v for k, v in d.items() if v is not None}
        if not reached:
            return f"never reached {level:g}% in {epochs} epoch(s)"
        at = f"first reached {level:g}% at epoch"
        if step.n == 1:
            return f"{at} {next(iter(reached.values()))}"
        if len(reached) == step.n and len(set(reached.values())) == 1:
            return f"{at} {next(iter(reached.values()))} for every seed"
        missing = [k for k, v in d.items() if v is None]
        return f"{at} {by_run(reached)}" + (f", never for {', '.join(missing)}" if missing else "")

    n_reached = sum(v is not None for v in first.values())
    verdict = "reached" if n_reached == len(first) else "never" if not n_reached else "partly"
    text = f"{step.split.capitalize()} accuracy {when(first, FIRST_LEVEL)}, and {when(at_goal, TARGET)}."
    return Finding("speed", verdict, text)


def stability(step: StepMetrics) -> Finding:
    """Range and minimum of test accuracy over the last LAST_EPOCHS epochs of each run."""
    shortest = min(len(r) for r in step.runs.values())
    if shortest < LAST_EPOCHS:
        text = f"Only {shortest} epoch(s) ran, so stability over the last {LAST_EPOCHS} epochs cannot be judged."
        return Finding("stability", "too short", text)
    ranges = step.per_run(lambda rows: max(col(last(rows), "test_acc")) - min(col(last(rows), "test_acc")))
    mins = step.per_run(min_last)
    worst, low = max(ranges, key=ranges.get), min(mins, key=mins.get)
    r = ranges[worst]
    if r <= STABLE_RANGE_PP:
        verdict, word = "stable", f"stable (within {STABLE_RANGE_PP} pp)"
    elif r > UNSTABLE_RANGE_PP:
        verdict, word = "unstable", f"unstable (more than {UNSTABLE_RANGE_PP} pp)"
    else:
        verdict, word = "fluctuates", f"it fluctuates (between {STABLE_RANGE_PP} and {UNSTABLE_RANGE_PP} pp)"
    moved = f"Over the last {LAST_EPOCHS} epochs {step.split} accuracy moved within"
    if step.n == 1:
        text = f"{moved} {r:.2f} pp (lowest {pct(mins[low])}): {word}."
    else:
        text = f"{moved} at most {r:.2f} pp ({worst}); the lowest value was {pct(mins[low])} ({low}): {word}."
    return Finding("stability", verdict, text)


def seed_spread(step: StepMetrics) -> Finding | None:
    """Across seeds: the sample std of the final test accuracy (None for one seed)."""
    finals = step.values(final_test)
    if len(finals) < 2:
        return None
    m, s = mean_std(finals)
    text = f"Across {len(finals)} seeds the final {step.split} accuracy is {m:.2f}% ± {s:.2f} pp (sample std)"
    if s <= SEED_SPREAD_PP:
        return Finding("seeds", "consistent", f"{text}: consistent.")
    return Finding("seeds", "seed-sensitive", f"{text}, more than {SEED_SPREAD_PP} pp: the result depends on the seed.")


def change(prev: StepMetrics, step: StepMetrics) -> Finding:
    """What changed from the previous step, and what that did to the numbers."""
    parts = [f"the model changed from `{prev.model}` to `{step.model}`"] if prev.model != step.model else []
    arch = diff(prev.arch, step.arch) if prev.arch and step.arch else []
    changed = {"architecture": arch, "recipe": recipe_diff(prev.config, step.config)}
    parts += [f"{kind}: " + ", ".join(diffs) for kind, diffs in changed.items() if diffs]
    what = "; ".join(parts) if parts else "nothing in the model or the recipe changed"
    nums = []
    if prev.params is not None and step.params is not None:
        d = step.params - prev.params
        rel = f", {d / prev.params:+.0%}" if prev.params else ""
        nums.append(f"parameters {prev.params:,} -> {step.params:,} ({d:+,}{rel})")
    fa, fb = prev.values(final_test), step.values(final_test)
    (ma, sa), (mb, sb) = mean_std(fa), mean_std(fb)
    delta = mb - ma
    t = step.split
    nums.append(f"mean final {t} accuracy {pct(ma)} -> {pct(mb)} ({pp(delta)})")
    ba, bb = mean(prev.values(best_test)), mean(step.values(best_test))
    nums.append(f"mean best {t} accuracy {pct(ba)} -> {pct(bb)} ({pp(bb - ba)})")
    la, lb = min(prev.values(min_last)), min(step.values(min_last))
    nums.append(f"lowest last-{LAST_EPOCHS} {t} accuracy {pct(la)} -> {pct(lb)} ({pp(lb - la)})")
    se = math.sqrt(sa**2 / len(fa) + sb**2 / len(fb)) if sa is not None and sb is not None else 0.0
    noise = max(NOISE_PP, se)
    if delta > noise:
        verdict, judged = "better", "an improvement"
    elif delta < -noise:
        verdict, judged = "worse", "a loss"
    else:
        verdict, judged = "same", "within noise"
    text = f"Compared with `{prev.name}`: {what}. Effect: {'; '.join(nums)}. The change in final {t} accuracy is "
    return Finding("change", verdict, f"{text}{judged} (noise band ±{noise:.2f} pp).")


def budget(step: StepMetrics) -> Finding:
    """Parameters below BUDGET and at most MAX_EPOCHS epochs."""
    p = step.params
    if p is None:
        params = "The parameter count is unknown"
    elif p < BUDGET:
        params = f"{p:,} parameters are within the {BUDGET:,}-parameter budget ({BUDGET - p:,} to spare)"
    else:
        params = f"{p:,} parameters are over the {BUDGET:,}-parameter budget ({p / BUDGET:.1f}x it)"
    epochs = step.epochs if step.epochs is not None else max(len(r) for r in step.runs.values())
    within = epochs <= MAX_EPOCHS
    ok = p is not None and p < BUDGET and within
    text = f"{params}; {epochs} epochs are {'within' if within else 'over'} the {MAX_EPOCHS}-epoch budget."
    return Finding("budget", "within" if ok else "over", text)


def goal(step: StepMetrics) -> Finding:
    """Test accuracy >= TARGET in each of the last LAST_EPOCHS epochs, for every run."""
    short = {k: len(r) for k, r in step.runs.items() if len(r) < LAST_EPOCHS}
    if short:
        text = f"it needs {TARGET}% in each of the last {LAST_EPOCHS} epochs, but only {by_run(short)} epoch(s) ran"
        return Finding("goal", "misses", f"Misses the goal: {text}.")
    mins = step.per_run(min_last)
    failed = {k: v for k, v in mins.items() if v < TARGET}
    everyone = "" if step.n == 1 else " for both seeds" if step.n == 2 else f" for all {step.n} seeds"
    if not failed:
        text = f"{step.split} accuracy was at least {TARGET}% in each of the last {LAST_EPOCHS} epochs{everyone}"
        return Finding("goal", "meets", f"Meets the goal: {text} (lowest {pct(min(mins.values()))}).")
    held = step.per_run(lambda rows: sum(1 for a in col(last(rows), "test_acc") if a >= TARGET))
    detail = "; ".join(
        f"{k} held {TARGET}% in {held[k]} of the last {LAST_EPOCHS} epochs (lowest {pct(v)}, {TARGET - v:.2f} pp short)"
        for k, v in failed.items()
    )
    met = [k for k in mins if k not in failed]
    also = f"; {', '.join(met)} met it" if met else ""
    return Finding("goal", "misses", f"Misses the goal: {detail}{also}.")


def challenge(budget_f: Finding, goal_f: Finding) -> Finding:
    """Both together: the challenge is met only within budget and at goal."""
    if budget_f.verdict == "within" and goal_f.verdict == "meets":
        text = (
            f"This step meets the challenge: under {BUDGET:,} parameters, at most {MAX_EPOCHS} epochs, "
            f"and {TARGET}% held over the last {LAST_EPOCHS} epochs."
        )
        return Finding("challenge", "meets", text)
    missing = ["the budget"] if budget_f.verdict != "within" else []
    missing += ["the accuracy goal"] if goal_f.verdict != "meets" else []
    return Finding("challenge", "misses", f"This step does not meet the challenge: it misses {' and '.join(missing)}.")


def analyse(step: StepMetrics, prev: StepMetrics | None = None) -> list[Finding]:
    """All rules, in report order. Runs without any finished epoch are left out."""
    step = replace(step, runs={k: v for k, v in step.runs.items() if v})
    if not step.runs:
        return [Finding("data", "none", "No epoch has finished yet, so there is nothing to analyse.")]
    findings: list[Finding] = []
    if prev is not None and any(prev.runs.values()):
        prev = replace(prev, runs={k: v for k, v in prev.runs.items() if v})
        findings.append(change(prev, step))
    findings += [fit(step), speed(step), stability(step)]
    spread = seed_spread(step)
    findings += [spread] if spread else []
    b, g = budget(step), goal(step)
    return [*findings, b, g, challenge(b, g)]
