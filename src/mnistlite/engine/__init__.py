"""Training: the front door (`train`, `resume`), the epoch loop, checkpoints, optimizers, devices.

trainer.py     train(cfg) and resume(run_dir): settle a request into a session
loop.py        the epoch loop
parts.py       what a run is made of, and one optimizer step
evaluation.py  scoring each epoch, with hooks (the raw-weights pass behind an EMA)
checkpoint.py  checkpoint.pt: save, load, check, restore, RNG state, elapsed time
result.py      RunResult and the two ways a run stops early
console.py     log lines and stop signals
device.py      device choice, scoped thread counts, the opt-in allocator tuning
optim.py       optimizers and learning-rate schedules
"""

from .checkpoint import load_checkpoint
from .evaluation import evaluate
from .result import RunResult, TrainingDiverged, TrainingInterrupted
from .trainer import resume, train

__all__ = [
    "RunResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
    "load_checkpoint",
    "resume",
    "train",
]
