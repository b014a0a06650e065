"""Does a step meet the challenge: under budget, the goal held for every seed, and both.

The challenge's numbers come from challenge.py, under the names these rules
(and the analysis rules in analysis.py, which report these verdicts last) read.
"""

from __future__ import annotations

from ..challenge import BUDGET, LAST_EPOCHS, MAX_EPOCHS, TARGET
from .markdown import by_run, pct
from .step import Finding, StepMetrics, col, last, min_last

BUDGET_PARAMS = BUDGET  # trainable parameters must stay strictly below this
BUDGET_EPOCHS = MAX_EPOCHS  # at most this many epochs
GOAL_ACC = TARGET  # test accuracy (%) to hold ...
LAST_N = LAST_EPOCHS  # ... in each of the last LAST_N epochs, for every seed


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
                f"but only {by_run(short)} epoch(s) ran."
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
