"""The challenge's verdicts of a step: under budget, the goal held for every seed, and both."""

from __future__ import annotations

from ..challenge import BUDGET, LAST_EPOCHS, MAX_EPOCHS, TARGET
from .markdown import by_run, pct
from .step import Finding, StepMetrics, col, last, min_last


def budget(step: StepMetrics) -> Finding:
    """Parameters below BUDGET and at most MAX_EPOCHS epochs."""
    parts, ok = [], True
    if step.params is None:
        parts.append("The parameter count is unknown")
        ok = False
    elif step.params < BUDGET:
        parts.append(
            f"{step.params:,} parameters are within the {BUDGET:,}-parameter budget ({BUDGET - step.params:,} to spare)"
        )
    else:
        ok = False
        parts.append(
            f"{step.params:,} parameters are over the {BUDGET:,}-parameter budget ({step.params / BUDGET:.1f}x it)"
        )
    epochs = step.epochs if step.epochs is not None else max(len(r) for r in step.runs.values())
    if epochs <= MAX_EPOCHS:
        parts.append(f"{epochs} epochs are within the {MAX_EPOCHS}-epoch budget")
    else:
        ok = False
        parts.append(f"{epochs} epochs are over the {MAX_EPOCHS}-epoch budget")
    return Finding("budget", "within" if ok else "over", "; ".join(parts) + ".")


def goal(step: StepMetrics) -> Finding:
    """Test accuracy >= TARGET in each of the last LAST_EPOCHS epochs, for every run."""
    short = {k: len(r) for k, r in step.runs.items() if len(r) < LAST_EPOCHS}
    if short:
        return Finding(
            "goal",
            "misses",
            f"Misses the goal: it needs {TARGET}% in each of the last {LAST_EPOCHS} epochs, "
            f"but only {by_run(short)} epoch(s) ran.",
        )
    mins = step.per_run(min_last)
    failed = {k: v for k, v in mins.items() if v < TARGET}
    everyone = "" if step.n == 1 else " for both seeds" if step.n == 2 else f" for all {step.n} seeds"
    if not failed:
        return Finding(
            "goal",
            "meets",
            f"Meets the goal: {step.split} accuracy was at least {TARGET}% in each of the last {LAST_EPOCHS} epochs"
            f"{everyone} (lowest {pct(min(mins.values()))}).",
        )
    held = step.per_run(lambda rows: sum(1 for a in col(last(rows), "test_acc") if a >= TARGET))
    detail = "; ".join(
        f"{k} held {TARGET}% in {held[k]} of the last {LAST_EPOCHS} epochs (lowest {pct(v)}, {TARGET - v:.2f} pp short)"
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
            f"This step meets the challenge: under {BUDGET:,} parameters, at most {MAX_EPOCHS} epochs, "
            f"and {TARGET}% held over the last {LAST_EPOCHS} epochs.",
        )
    missing = []
    if budget_f.verdict != "within":
        missing.append("the budget")
    if goal_f.verdict != "meets":
        missing.append("the accuracy goal")
    return Finding("challenge", "misses", f"This step does not meet the challenge: it misses {' and '.join(missing)}.")
