"""Architecture + recipe search under a parameter budget, on Optuna.

    study = open_search_study(storage, "s", protocol)      # create or join
    data = load_search_data(protocol)                       # once per process
    run_search_worker(study, make_objective(protocol, data), n_trials=20)
    show_study(study, out_dir)                              # table, JSON, plots
    retrain_best(study, seeds=5, out_dir=out_dir)           # full train set; test once per seed

The objective is the FINAL-epoch validation accuracy on the held-out split.
The search process never evaluates the test set: every trial trains with
`evaluate_test=False`, so its test columns are None, no test number can reach
a choice, and nothing about the test set is stored in the study. Only `retrain_best`, after
the search, trains on the full training set and reads the test accuracy.

Counting. `n_trials` is the number of TRAINED trials the study should reach
across all its workers (COMPLETE, or PRUNED by the pruner); configs rejected
for the budget are pruned in milliseconds and do not count. A worker asks for
a new trial only while completed + running < n_trials, and after `ask()`
checks that fewer than n_trials live trials precede its own (trial numbers are
assigned in creation order by the storage); the rare loser of that race marks
its empty trial FAIL (user attr `surplus`) and waits. A worker whose process
dies leaves a RUNNING trial whose heartbeat stops; another worker fails it and
the retry callback re-enqueues it once (storage.py). So the study ends with
exactly n_trials counted trials.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import MnistliteError
from . import storage as st

# torch-free at import (the training pieces are imported where used): a worker
# process that only reports, or a test's fake-objective worker, starts fast.
KIND = "mnistlite-search"
MAX_REJECTED_IN_A_ROW = 500


@dataclass(frozen=True)
class Protocol:
    """What every trial of a study shares; stored on the study and checked on join."""

    budget: int = 8000
    epochs: int = 15
    val_size: int = 5000
    limit_train: int = 0
    dataset: str = "mnist"
    seed: int = 1  # the training seed of every trial (configs compete on equal terms)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- study ------------------------------------------------------------------------


def make_pruner(name: str = "median", epochs: int = 15):
    optuna = st.import_optuna()
    if name == "median":
        # No pruning before 4 trials completed, nor before epoch max(1, epochs // 4)
        # (steps are 1-based epochs; Optuna prunes from step n_warmup_steps on).
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=max(1, epochs // 4))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise MnistliteError(f"--pruner must be median, hyperband or none, got {name!r}")


def make_sampler(seed: int | None = None, startup: int = 8):
    optuna = st.import_optuna()
    # constant_liar: parallel workers do not all sample next to the same running trial.
    return optuna.samplers.TPESampler(n_startup_trials=startup, seed=seed, constant_liar=True)


def open_search_study(storage, study_name: str, protocol: Protocol, *, sampler=None, pruner=None):
    """Create the study, or join it when it exists with the same protocol."""
    optuna = st.import_optuna()
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction="maximize",
            load_if_exists=True,
            sampler=sampler,
            pruner=pruner,
        )
    except Exception as e:
        if type(e).__module__.startswith("sqlalchemy"):
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise MnistliteError(f"storage error opening study {study_name!r}: {first}") from None
        raise
    attrs = study.user_attrs
    if not attrs.get("kind"):
        # The protocol first: a worker that joins between the two writes and sees `kind`
        # must also see the protocol (it read an empty one and refused the study: seen in CI).
        study.set_user_attr("protocol", protocol.to_dict())
        study.set_user_attr("kind", KIND)
        attrs = study.user_attrs
    if attrs.get("kind") != KIND:
        raise MnistliteError(f"study {study_name!r} is a {attrs.get('kind')}, not a search; choose another --study")
    stored = attrs.get("protocol", {})
    diff = {k: (stored.get(k), v) for k, v in protocol.to_dict().items() if stored.get(k) != v}
    if diff:
        what = ", ".join(f"--{k.replace('_', '-')} {a} (this worker: {b})" for k, (a, b) in diff.items())
        raise MnistliteError(f"study {study_name!r} was started with {what}; use the same flags or another --study")
    return study


def load_study(storage, study_name: str):
    optuna = st.import_optuna()
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise MnistliteError(f"no study named {study_name!r} in {_where(storage)}") from None


def _where(storage) -> str:
    url = getattr(storage, "url", storage)
    return st.redact(url) if isinstance(url, str) else repr(storage)


def protocol_of(study) -> Protocol:
    return Protocol(**study.user_attrs.get("protocol", {}))


# --- data and objective -----------------------------------------------------------


def load_search_data(protocol: Protocol, data_dir: str | None = None, download: bool = True):
    """The data set, loaded once per process (its test split is never scored; see module doc)."""
    from ..data import load_dataset

    data = load_dataset(
        protocol.dataset,
        data_dir=data_dir,
        val_size=protocol.val_size,
        limit_train=protocol.limit_train,
        download=download,
    )
    if data.val is None:
        raise MnistliteError("a search needs a validation split: --val-size must be at least 1")
    return data


def trial_config(spec, recipe: dict[str, Any], protocol: Protocol, **run: Any):
    """The TrainConfig of one trial (model registered on the fly)."""
    from ..config import TrainConfig
    from .space import ensure_registered

    name = ensure_registered(spec, recipe)
    return TrainConfig.for_model(
        name,
        epochs=protocol.epochs,
        val_size=protocol.val_size,
        limit_train=protocol.limit_train,
        dataset=protocol.dataset,
        seed=protocol.seed,
        **recipe,
        **run,
    )


def make_objective(protocol: Protocol, data, *, run: dict[str, Any] | None = None) -> Callable:
    """objective(trial) -> final validation accuracy; raises optuna.TrialPruned.

    `run`: TrainConfig fields that do not change results' meaning (device, threads).
    """
    optuna = st.import_optuna()
    from ..engine import TrainingDiverged, train
    from .space import OverBudget, describe_spec, spec_to_dict, suggest_recipe, suggest_spec

    run = dict(run or {})

    def objective(trial) -> float:
        try:
            spec = suggest_spec(trial, protocol.budget)
        except OverBudget as e:
            trial.set_user_attr("over_budget", e.params)
            trial.set_user_attr("rejected", f"over_budget: {e.params} > {e.budget} params")
            raise optuna.TrialPruned(str(e)) from None
        recipe = suggest_recipe(trial)
        from ..models.family import count_params

        trial.set_user_attr("params", count_params(spec))
        trial.set_user_attr("spec", spec_to_dict(spec))
        trial.set_user_attr("arch", describe_spec(spec))
        trial.set_user_attr("recipe", recipe)
        cfg = trial_config(spec, recipe, protocol, **run)

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
        # Only validation numbers leave this function (the test columns are None).
        return float(result.metrics[-1]["val_acc"])

    return objective


# --- the worker loop ----------------------------------------------------------------


def _counts(t) -> bool:
    from optuna.trial import TrialState

    return t.state == TrialState.COMPLETE or (t.state == TrialState.PRUNED and "rejected" not in t.user_attrs)


def counted_trials(study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if _counts(t)]


def run_search_worker(
    study,
    objective: Callable,
    n_trials: int,
    *,
    timeout: float | None = None,
    poll: float = 2.0,
    log: Callable[[str], None] = print,
) -> int:
    """Run trials until the study holds `n_trials` counted trials; returns how many this worker trained.

    Any number of workers may run this on the same study at once (see the
    module docstring for why the total comes out exact).
    """
    optuna = st.import_optuna()
    from optuna.trial import TrialState

    storage = study._storage  # for the heartbeat thread
    t_start = time.monotonic()
    trained = rejected_in_a_row = 0
    while True:
        if timeout is not None and time.monotonic() - t_start > timeout:
            log(f"timeout: {timeout:g}s passed; this worker starts no more trials")
            break
        st.fail_stale(study)
        trials = study.get_trials(deepcopy=False)
        done = sum(map(_counts, trials))
        if done >= n_trials:
            break
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and done + running >= n_trials:
            time.sleep(poll)  # others hold the last trials; wait in case one of them dies
            continue
        trial = study.ask()
        ahead = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.number < trial.number and (_counts(t) or t.state == TrialState.RUNNING)
        ]
        if len(ahead) >= n_trials:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            time.sleep(poll)
            continue
        trial.set_user_attr("worker", st.worker_id())
        state, value, note = TrialState.COMPLETE, None, ""
        try:
            with st.heartbeat(storage, trial._trial_id):
                try:
                    value = objective(trial)
                except optuna.TrialPruned as e:
                    state, note = TrialState.PRUNED, str(e)
                except optuna.exceptions.UpdateFinishedTrialError:
                    raise
                except BaseException:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                    raise
            if state == TrialState.COMPLETE:
                study.tell(trial, value)
            else:
                study.tell(trial, state=TrialState.PRUNED)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker failed this trial as stale (missed heartbeats: the
            # machine stalled for longer than the grace period); its retry runs it.
            log(f"trial {trial.number}: failed by another worker after missed heartbeats; its retry takes its place")
            continue
        attrs = trial.user_attrs
        if "rejected" in attrs:
            rejected_in_a_row += 1
            if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                raise MnistliteError(f"{MAX_REJECTED_IN_A_ROW} configs in a row were over budget; raise --budget")
            continue
        rejected_in_a_row = 0
        trained += 1
        where = f"{attrs.get('params', 0):,} params, {attrs.get('arch', '')}"
        if state == TrialState.COMPLETE:
            log(f"trial {trial.number}: val {value:.2f}% ({where}) in {attrs.get('seconds', 0):.1f}s")
        else:
            log(f"trial {trial.number}: pruned, {note} ({where})")
    return trained


# --- reporting --------------------------------------------------------------------


def _trial_row(t) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "value_val_acc": t.value,
        "params": t.user_attrs.get("params"),
        "arch": t.user_attrs.get("arch"),
        "spec": t.user_attrs.get("spec"),
        "recipe": t.user_attrs.get("recipe"),
        "val_acc_per_epoch": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
        "seconds": t.user_attrs.get("seconds"),
        "worker": t.user_attrs.get("worker"),
    }


def best_trials(study, k: int = 10) -> list:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return sorted(done, key=lambda t: (-t.value, t.user_attrs.get("params", 0), t.number))[:k]


def state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        key = "REJECTED" if "rejected" in t.user_attrs else "SURPLUS" if "surplus" in t.user_attrs else t.state.name
        counts[key] = counts.get(key, 0) + 1
    return counts


def param_importances(study) -> tuple[dict[str, float], str]:
    """(importances, evaluator name): fANOVA where scikit-learn is installed, else PED-ANOVA.

    Only parameters every completed trial has are ranked (the space is conditional).
    """
    import warnings

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


def format_table(trials: list) -> str:
    head = ["#", "val %", "params", "architecture", "max_lr", "pct", "wd", "bs", "rot", "trans", "scale", "ls"]
    rows = [head]
    for t in trials:
        r = t.user_attrs.get("recipe", {})
        rows.append(
            [
                str(t.number),
                f"{t.value:.2f}",
                f"{t.user_attrs.get('params', 0):,}",
                t.user_attrs.get("arch", ""),
                f"{r.get('max_lr', 0):.3f}",
                f"{r.get('pct_start', 0):.2f}",
                f"{r.get('weight_decay', 0):.1e}",
                str(r.get("batch_size", "")),
                f"{r.get('rotation', 0):.1f}",
                f"{r.get('translate', 0):.3f}",
                f"{r.get('scale', 0):.3f}",
                f"{r.get('label_smoothing', 0):.3f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
    )


def show_study(study, out_dir: Path, k: int = 10, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Print the best trials; write best_trials.json, trials.json (every trial, one line each),
    history.png and importances.png into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    top = best_trials(study, k)
    counts = state_counts(study)
    log(f"study {study.study_name}: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())))
    log("protocol: " + json.dumps(study.user_attrs.get("protocol", {})))
    if not top:
        log("no completed trial yet")
    else:
        log(format_table(top))
    importances, evaluator = param_importances(study) if len(top) >= 2 else ({}, "none (fewer than 2 completed trials)")
    if importances:
        log(
            "parameter importances ("
            + evaluator
            + "): "
            + ", ".join(f"{k} {v:.2f}" for k, v in list(importances.items())[:8])
        )
    else:
        log(f"parameter importances skipped: {evaluator}")
    report = {
        "study": study.study_name,
        "objective": "final-epoch validation accuracy (%); the test set is not used by the search",
        "protocol": study.user_attrs.get("protocol"),
        "trial_states": counts,
        "counted_trials": len(counted_trials(study)),
        "best_trials": [_trial_row(t) for t in top],
        "importances": importances,
        "importance_evaluator": evaluator,
    }
    (out_dir / "best_trials.json").write_text(json.dumps(report, indent=2) + "\n")
    every = [
        {
            "number": t.number,
            "state": t.state.name,
            "value_val_acc": t.value,
            "params": t.user_attrs.get("params"),
            "arch": t.user_attrs.get("arch"),
            "rejected": t.user_attrs.get("rejected"),
            "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
            "seconds": t.user_attrs.get("seconds"),
            "val_acc_per_epoch": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
        }
        for t in study.get_trials(deepcopy=False)
    ]
    (out_dir / "trials.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in every) + "\n]\n")
    plot_history(study, out_dir / "history.png")
    if importances:
        plot_importances(importances, evaluator, out_dir / "importances.png")
    log(
        f"wrote {out_dir / 'best_trials.json'}, {out_dir / 'trials.json'}, {out_dir / 'history.png'}"
        + (f", {out_dir / 'importances.png'}" if importances else "")
    )
    return report


def plot_history(study, path: Path) -> None:
    from optuna.trial import TrialState

    from ..runs.plots import plt  # Agg backend

    fig, ax = plt.subplots(figsize=(8, 4.5))
    trials = [t for t in study.get_trials(deepcopy=False) if _counts(t)]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if done:
        ax.scatter([t.number for t in done], [t.value for t in done], s=18, label="completed (final val acc)")
        best, xs, ys = -math.inf, [], []
        for t in sorted(done, key=lambda t: t.number):
            best = max(best, t.value)
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    values = [t.value for t in done]
    low = max(min(values), max(values) - 8) - 0.2 if values else None
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        if low is not None:
            last = [max(v, low + 0.1) for v in last]  # far-off pruned trials sit on the bottom edge
        ax.scatter(
            [t.number for t in pruned],
            last,
            s=18,
            marker="x",
            color="grey",
            label="pruned (last val acc, clipped to the axis)",
        )
    if values:
        ax.set_ylim(low, max(values) + 0.3)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{study.study_name}: optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_importances(importances: dict[str, float], evaluator: str, path: Path) -> None:
    from ..runs.plots import plt

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set_xlabel(f"importance ({evaluator})")
    ax.set_title("hyperparameter importance for validation accuracy")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- retraining the winner --------------------------------------------------------


def best_config(study, **run: Any):
    """(trial, TrainConfig) of the best completed trial, on the full training set (val_size 0)."""
    top = best_trials(study, 1)
    if not top:
        raise MnistliteError(f"study {study.study_name!r} has no completed trial to retrain")
    t = top[0]
    from .space import spec_from_dict

    spec = spec_from_dict(t.user_attrs["spec"])
    protocol = protocol_of(study)
    cfg = trial_config(spec, dict(t.user_attrs["recipe"]), protocol)
    return t, cfg.replace(val_size=0, **run)


def retrain_best(
    study,
    seeds: int,
    out_dir: Path,
    *,
    epochs: int | None = None,
    limit_train: int = 0,
    data_dir: str | None = None,
    run: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Retrain the best trial's config on the full training set for seeds 1..`seeds`; test once each.

    Writes `retrain_best.json` (per-seed final test accuracy, mean and std) and
    one run directory per seed under `out_dir/retrain-best/`.
    """
    from ..data import load_dataset
    from ..engine import train

    if seeds < 1:
        raise MnistliteError(f"--seeds must be at least 1, got {seeds}")
    t, cfg = best_config(study, **(run or {}))
    cfg = cfg.replace(epochs=epochs or cfg.epochs, limit_train=limit_train)
    data = load_dataset(cfg.dataset, data_dir=data_dir, val_size=0, limit_train=limit_train)
    runs_root = out_dir / "retrain-best"
    per_seed = []
    log(
        f"retraining trial {t.number} ({t.user_attrs.get('arch')}, {t.user_attrs.get('params'):,} params, "
        f"search val {t.value:.2f}%) on {len(data.train):,} images, {cfg.epochs} epochs, seeds 1..{seeds}"
    )
    for seed in range(1, seeds + 1):
        c = cfg.replace(seed=seed)
        run_dir = runs_root / f"seed{seed}"
        if run_dir.exists():
            raise MnistliteError(f"{run_dir} already exists; pass another --out or move it away")
        res = train(c, run_dir=run_dir, data=data, progress=False, quiet=True)
        final = res.metrics[-1]
        per_seed.append(
            {
                "seed": seed,
                "final_test_acc": final["test_acc"],
                "final_train_acc": final["train_acc"],
                "wall_seconds": round(res.wall_seconds, 1),
                "run_dir": str(run_dir),
            }
        )
        log(f"seed {seed}: final test {final['test_acc']:.2f}% ({res.wall_seconds:.0f}s)")
    accs = [r["final_test_acc"] for r in per_seed]
    report = {
        "study": study.study_name,
        "trial": t.number,
        "search_val_acc": t.value,
        "params": t.user_attrs.get("params"),
        "arch": t.user_attrs.get("arch"),
        "spec": t.user_attrs.get("spec"),
        "model": c.model,
        "config": {k: v for k, v in c.to_dict().items() if k not in ("seed", "model", "data_dir")},
        "protocol": "trained on the full training set (val_size 0); the test set is evaluated after the "
        "final epoch and reported; nothing is chosen on it",
        "seeds": per_seed,
        "mean_test_acc": statistics.fmean(accs),
        "std_test_acc": statistics.stdev(accs) if len(accs) > 1 else 0.0,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "retrain_best.json").write_text(json.dumps(report, indent=2) + "\n")
    log(
        f"test accuracy over {seeds} seed(s): {report['mean_test_acc']:.2f} ± {report['std_test_acc']:.2f}% "
        f"-> {out_dir / 'retrain_best.json'}"
    )
    return report
