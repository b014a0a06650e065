"""Run directories, and many runs planned and executed together.

rundir.py    the files of one run directory (names, atomic writes, metrics, headline numbers)
writer.py    the one writer of a run directory, for the trainer and for a rebuilt run
plots.py     curves and overlays
portable.py  a finished run as JSON and back (shared sweeps)
plan.py      planner and executor: the same-run rule, stale folders, the worker pool, shared sweeps
seeds.py     one recipe under several seeds and its aggregate (`mnistlite seeds`)
"""
