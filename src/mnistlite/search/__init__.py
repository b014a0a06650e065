"""Architecture and recipe search on Optuna, on one machine or many (the study on PostgreSQL).

* `space`     -- Optuna suggestions -> family NetSpec + recipe, budget check by formula
* `study`     -- the study: protocol, sampler, pruner, create/join, which trials count
* `objective` -- one trial: config sampled, trained, scored on validation only (never the test set)
* `worker`    -- the worker loop that stops at exactly n_trials counted trials over all workers
* `show`      -- the best trials as a table, best_trials.json, trials.json, history and importance plots
* `retrain`   -- the winner retrained per seed as ordinary runs (runs/plan.py), locally or shared

Storage and fixed-job sweeps live in runs/; submodules are imported on use (see docs/search.md).
"""
