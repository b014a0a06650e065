"""Architecture and recipe search, and multi-worker sweeps, on Optuna.

* `space`  -- Optuna suggestions -> family NetSpec + recipe, budget check by formula
* `study`  -- the search: objective (validation accuracy only), worker loop, report, retrain
* `sweep`  -- `run_sweep(jobs, storage, study_name, worker)`: fixed job lists on many workers
* `storage`-- RDBStorage with heartbeats and retry-once of trials whose worker died

Submodules are imported on use: a sweep worker never imports torch through here.
See docs/search.md.
"""
