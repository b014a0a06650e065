"""Experiments and their reports.

experiment.py       TOML experiment files: load, validate, run (planned by runs/plan.py), then the report
leaderboard.py      multi-seed tables over every model with a tag (`mnistlite table`)
tuning.py           the tuning ranking as markdown (tuning.md)
runs.py             a run directory read back: config, metrics, result, layer table, log
step.py             a step's metric rows as the rules read them, and a rule's Finding
analysis.py         the rules that turn metrics into plain sentences (thresholds named), the challenge's verdicts
recipe.py           a run's recipe in one line, the fields that matter, what changed
markdown.py         report text: relative links, table cells, numbers, epoch lists
sections.py         a report's sections: one per experiment step or per run directory
figures.py          a report's plots: accuracy per epoch against the target line
render.py           markdown reports (`mnistlite report`): comparison, sections, analysis
compare.py          finished runs side by side (`mnistlite compare`)
audit.py            every test reading under a folder, and the claims after them (`mnistlite audit`)
"""
