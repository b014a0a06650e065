"""One search trial: a config sampled under the budget, trained, scored on final-epoch validation accuracy.

Trials train with `evaluate_test=False`, so no test number can reach the study; only retrain.py reads the test set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..data import load_dataset
from ..models import config_for
from ..models.family import count_params
from ..runs import storage as st
from .space import OverBudget, describe_spec, ensure_registered, spec_to_dict, suggest_recipe, suggest_spec
from .study import Protocol


def load_search_data(protocol: Protocol, data_dir: str | None = None):
    return load_dataset(
        protocol.dataset, data_dir=data_dir, val_size=protocol.val_size, limit_train=protocol.limit_train
    )


def trial_config(spec, recipe: dict[str, Any], protocol: Protocol, **run: Any):
    """The TrainConfig of one trial (model registered on the fly)."""
    name = ensure_registered(spec, recipe)
    shared = {k: v for k, v in asdict(protocol).items() if k != "budget"}  # the rest are TrainConfig fields
    return config_for(name, **shared, **recipe, **run)


def make_objective(protocol: Protocol, data, *, run: dict[str, Any] | None = None) -> Callable:
    """objective(trial) -> final validation accuracy; `run`: fields that do not change results (device, threads)."""
    optuna = st.import_optuna()
    from ..engine import TrainingDiverged, train  # imported here: tests wrap engine.train

    def objective(trial) -> float:
        try:
            spec = suggest_spec(trial, protocol.budget)
        except OverBudget as e:
            trial.set_user_attr("over_budget", e.params)
            trial.set_user_attr("rejected", f"over_budget: {e.params} > {e.budget} params")
            raise optuna.TrialPruned(str(e)) from None
        recipe = suggest_recipe(trial)
        trial.set_user_attr("params", count_params(spec))
        trial.set_user_attr("spec", spec_to_dict(spec))
        trial.set_user_attr("arch", describe_spec(spec))
        trial.set_user_attr("recipe", recipe)
        cfg = trial_config(spec, recipe, protocol, **(run or {}))

        def on_epoch(row: dict[str, Any]) -> None:
            trial.report(row["val_acc"], row["epoch"])
            # Never prune after the last epoch: a finished run is a complete result.
            if row["epoch"] < protocol.epochs and trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", row["epoch"])
                raise optuna.TrialPruned(f"epoch {row['epoch']}: val {row['val_acc']:.2f}%")

        t0 = time.perf_counter()
        try:
            result = train(cfg, data=data, progress=False, quiet=True, on_epoch=on_epoch, evaluate_test=False)
        except TrainingDiverged as e:
            trial.set_user_attr("diverged", str(e))
            raise optuna.TrialPruned(f"diverged: {e}") from None
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
        return float(result.metrics[-1]["val_acc"])

    return objective
