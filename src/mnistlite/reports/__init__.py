"""Experiments and their reports.

experiment_file.py  TOML experiment files: load and validate
experiment.py       run an experiment (planned by runs/plan.py), then write its report
leaderboard.py      multi-seed tables over every model with a tag (`mnistlite table`)
tuning.py           the tuning ranking as markdown (tuning.md)
runs.py             a run directory read back: config, metrics, result, layer table, log
analysis.py         the rules that turn metrics into plain sentences (thresholds named)
render.py           markdown reports and their plots; the `compare` table
"""
