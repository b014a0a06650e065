"""Experiments and their reports.

experiment.py  TOML experiment files: load, validate, plan, run (resumably)
runs.py        a run directory read back: config, metrics, result, layer table, log
analysis.py    the rules that turn metrics into plain sentences (thresholds named)
render.py      markdown reports and their plots; the `compare` table
"""
