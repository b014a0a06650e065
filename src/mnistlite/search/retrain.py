"""After a search: the best trial's config retrained on the full training set, tested once per seed.

The seeds are ordinary runs in `OUT/retrain-best/seed<k>/` (runs/plan.py); with a shared storage, one shared sweep.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ..engine import rundir as rd
from ..errors import MnistliteError
from ..runs import plan
from .objective import trial_config
from .space import spec_from_dict
from .study import Protocol, best_trials

RETRAIN_DIR = "retrain-best"
RETRAIN_JSON = "retrain_best.json"


def retrain_best(
    study,
    seeds: int,
    out_dir: Path,
    *,
    epochs: int | None = None,
    limit_train: int = 0,
    data_dir: str | None = None,
    run: dict[str, Any] | None = None,
    storage: str | None = None,
) -> None:
    """Retrain seeds 1..`seeds`, write retrain_best.json; with `storage` (a URL), as the sweep <study>-retrain-best."""
    top = best_trials(study, 1)
    if not top:
        raise MnistliteError(f"study {study.study_name!r} has no completed trial to retrain")
    t = top[0]
    # trial_config registers the trial's model in this process.
    protocol = Protocol(**study.user_attrs.get("protocol", {}))
    cfg = trial_config(spec_from_dict(t.user_attrs["spec"]), dict(t.user_attrs["recipe"]), protocol)
    cfg = cfg.replace(
        val_size=0, epochs=epochs or cfg.epochs, limit_train=limit_train, data_dir=data_dir, **(run or {})
    )
    runs_root = out_dir / RETRAIN_DIR
    rd.prepare_run_dir(runs_root, resume=True)
    runs = [plan.plan_run(f"seed {s}", cfg.replace(seed=s), runs_root / f"seed{s}") for s in range(1, seeds + 1)]
    print(
        f"retraining trial {t.number} ({t.user_attrs.get('arch')}, {t.user_attrs.get('params'):,} params, "
        f"search val {t.value:.2f}%) on the full training set"
        + (f" (first {limit_train:,} images)" if limit_train else "")
        + f", {cfg.epochs} epochs, seeds 1..{seeds}"
    )
    for r in runs:
        if r.status == "done":
            print(f"{r.label}: already done in {r.run_dir}")
    if storage is not None:
        plan.execute_shared(runs, runs_root, storage, f"{study.study_name}-{RETRAIN_DIR}", print)
    else:
        plan.execute(runs, on_done=lambda i, n, r, res, err: print(f"{r.label}: {_final_line(r.run_dir)}"))
    per_seed = []
    for r in runs:
        final, result = rd.read_metrics(r.run_dir / rd.METRICS)[-1], rd.read_json(r.run_dir / rd.RESULT)
        per_seed.append(
            {
                "seed": r.config.seed,
                "final_test_acc": final["test_acc"],
                "final_train_acc": final["train_acc"],
                "wall_seconds": round(result["wall_seconds"], 1),
                "run_dir": str(r.run_dir),
            }
        )
    last = runs[-1].config
    accs = [r["final_test_acc"] for r in per_seed]
    report = {
        "study": study.study_name,
        "trial": t.number,
        "search_val_acc": t.value,
        "params": t.user_attrs.get("params"),
        "arch": t.user_attrs.get("arch"),
        "spec": t.user_attrs.get("spec"),
        "model": last.model,
        "config": {k: v for k, v in last.to_dict().items() if k not in ("seed", "model", "data_dir")},
        "protocol": "trained on the full training set (val_size 0); the test set is evaluated after the "
        "final epoch and reported; nothing is chosen on it",
        "seeds": per_seed,
        "mean_test_acc": statistics.fmean(accs),
        "std_test_acc": statistics.stdev(accs) if len(accs) > 1 else 0.0,
    }
    rd.write_json(out_dir / RETRAIN_JSON, report)
    print(
        f"test accuracy over {seeds} seed(s): {report['mean_test_acc']:.2f} ± {report['std_test_acc']:.2f}% "
        f"-> {out_dir / RETRAIN_JSON}"
    )


def _final_line(run_dir: Path) -> str:
    final = rd.read_metrics(run_dir / rd.METRICS)[-1]
    wall = rd.read_json(run_dir / rd.RESULT)["wall_seconds"]
    return f"final test {final['test_acc']:.2f}% ({wall:.0f}s)"
