"""Many runs planned and executed together: locally, on a worker pool, or shared through a database.
One run's folder (its file names, atomic writes, the writer, plots) is engine's: engine/rundir.py.

plan.py      planner and executor: the same-run rule, stale folders, the worker pool, shared sweeps
seeds.py     one recipe under several seeds and its aggregate (`mnistlite seeds`)
holding.py   "held consistently" as numbers: the interval for new seeds, the test set's own error, the margin
splits.py    how many runs train at once, and on how many threads each (`--jobs auto`)
portable.py  a finished run as JSON and back (shared sweeps)
sweep.py     a fixed job list worked through by any number of workers on one Optuna storage
storage.py   that storage: RDBStorage with heartbeats, retry-once of trials whose worker died
patient_storage.py  the PostgreSQL storage that waits out a restart or outage (--storage-patience)
"""
