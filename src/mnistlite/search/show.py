"""What a study found: the best trials as a table, best_trials.json, trials.json and two plots."""

from __future__ import annotations

import json
import warnings
from itertools import accumulate
from pathlib import Path
from typing import Any

from ..runs import storage as st
from .study import best_trials, counted_trials, state_counts

BEST_FIELDS = ("params", "arch", "spec", "recipe", "val_acc_per_epoch", "seconds", "worker")
EVERY_FIELDS = ("params", "arch", "rejected", "pruned_at_epoch", "seconds", "val_acc_per_epoch")


def trial_row(t, fields: tuple[str, ...]) -> dict[str, Any]:
    per_epoch = [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
    extra = {k: per_epoch if k == "val_acc_per_epoch" else t.user_attrs.get(k) for k in fields}
    return {"number": t.number, "state": t.state.name, "value_val_acc": t.value, **extra}


def param_importances(study) -> tuple[dict[str, float], str]:
    """(importances, evaluator name): fANOVA where scikit-learn is installed, else PED-ANOVA.
    Only parameters every completed trial has are ranked (the space is conditional)."""
    optuna = st.import_optuna()
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    errors = []
    for name, make in (("fANOVA", FanovaImportanceEvaluator), ("PED-ANOVA", PedAnovaImportanceEvaluator)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "some regimes have less than 2 trials" on small studies
                imp = optuna.importance.get_param_importances(study, evaluator=make())
            return {k: float(v) for k, v in imp.items()}, name
        except Exception as e:  # noqa: BLE001  (missing scikit-learn, too few trials, ...)
            errors.append(f"{name}: {(str(e).splitlines() or [type(e).__name__])[0]}")
    return {}, "none (" + "; ".join(errors) + ")"


# The recipe columns of the table: (header, recipe field, format).
RECIPE_COLUMNS = (
    ("max_lr", "max_lr", ".3f"),
    ("pct", "pct_start", ".2f"),
    ("wd", "weight_decay", ".1e"),
    ("bs", "batch_size", ""),
    ("rot", "rotation", ".1f"),
    ("trans", "translate", ".3f"),
    ("scale", "scale", ".3f"),
    ("ls", "label_smoothing", ".3f"),
)


def format_table(trials: list) -> str:
    rows = [["#", "val %", "params", "architecture", *(c[0] for c in RECIPE_COLUMNS)]]
    for t in trials:
        r, a = t.user_attrs.get("recipe", {}), t.user_attrs
        recipe = [format(r.get(k, 0 if spec else ""), spec) for _, k, spec in RECIPE_COLUMNS]
        rows.append([str(t.number), f"{t.value:.2f}", f"{a.get('params', 0):,}", a.get("arch", ""), *recipe])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
    )


def show_study(study, out_dir: Path) -> None:
    """Print the 10 best trials; write best_trials.json, trials.json, history.png and importances.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    top = best_trials(study, 10)
    counts = state_counts(study)
    print(f"study {study.study_name}: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())))
    print("protocol: " + json.dumps(study.user_attrs.get("protocol", {})))
    print(format_table(top) if top else "no completed trial yet")
    importances, evaluator = param_importances(study) if len(top) >= 2 else ({}, "none (fewer than 2 completed trials)")
    if importances:
        first = ", ".join(f"{k} {v:.2f}" for k, v in list(importances.items())[:8])
        print(f"parameter importances ({evaluator}): {first}")
    else:
        print(f"parameter importances skipped: {evaluator}")
    report = {
        "study": study.study_name,
        "objective": "final-epoch validation accuracy (%); the test set is not used by the search",
        "protocol": study.user_attrs.get("protocol"),
        "trial_states": counts,
        "counted_trials": len(counted_trials(study)),
        "best_trials": [trial_row(t, BEST_FIELDS) for t in top],
        "importances": importances,
        "importance_evaluator": evaluator,
    }
    (out_dir / "best_trials.json").write_text(json.dumps(report, indent=2) + "\n")
    every = [trial_row(t, EVERY_FIELDS) for t in study.get_trials(deepcopy=False)]
    (out_dir / "trials.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in every) + "\n]\n")
    plot_history(study, out_dir / "history.png")
    if importances:
        plot_importances(importances, evaluator, out_dir / "importances.png")
    wrote = ["best_trials.json", "trials.json", "history.png"] + (["importances.png"] if importances else [])
    print("wrote " + ", ".join(str(out_dir / name) for name in wrote))


def plot_history(study, path: Path) -> None:
    from optuna.trial import TrialState

    from ..engine.plots import plt  # Agg backend

    fig, ax = plt.subplots(figsize=(8, 4.5))
    trials = counted_trials(study)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    values = [t.value for t in done]
    low = max(min(values), max(values) - 8) - 0.2 if values else None
    if done:
        ax.scatter([t.number for t in done], values, s=18, label="completed (final val acc)")
        ax.step([t.number for t in done], list(accumulate(values, max)), where="post", color="C3", label="best so far")
        ax.set_ylim(low, max(values) + 0.3)
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        if low is not None:
            last = [max(v, low + 0.1) for v in last]  # far-off pruned trials sit on the bottom edge
        label = "pruned (last val acc, clipped to the axis)"
        ax.scatter([t.number for t in pruned], last, s=18, marker="x", color="grey", label=label)
    ax.set(xlabel="trial", ylabel="validation accuracy (%)", title=f"{study.study_name}: optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_importances(importances: dict[str, float], evaluator: str, path: Path) -> None:
    from ..engine.plots import plt

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set(xlabel=f"importance ({evaluator})", title="hyperparameter importance for validation accuracy")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
