"""Architecture and recipe search, and multi-worker sweeps, on Optuna.

    study = open_search_study(storage, "s", protocol)      # study.py: create or join
    data = load_search_data(protocol)                       # objective.py: once per process
    run_search_worker(study, make_objective(protocol, data), n_trials=20)   # worker.py
    show_study(study, out_dir)                              # show.py: table, JSON, plots
    retrain_best(study, seeds=5, out_dir=out_dir)           # retrain.py: full train set, test once per seed

* `space`     -- Optuna suggestions -> family NetSpec + recipe, budget check by formula
* `study`     -- the study: protocol, sampler, pruner, create/join, which trials count
* `objective` -- one trial: config sampled, trained, scored on validation only (never the test set)
* `worker`    -- the worker loop that stops at exactly n_trials counted trials over all workers
* `show`      -- the best trials as a table, best_trials.json, trials.json, history and importance plots
* `retrain`   -- the winner retrained per seed as ordinary runs (runs/plan.py), locally or shared
* `sweep`     -- `run_sweep(jobs, storage, study_name, worker)`: fixed job lists on many workers
                 (the queue under runs/plan.execute_shared: `seeds`, `experiment`, `retrain`)
* `storage`   -- RDBStorage with heartbeats and retry-once of trials whose worker died

Submodules are imported on use: a sweep worker never imports torch through here.
See docs/search.md.
"""
