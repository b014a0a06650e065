"""One run: the front door (`train`, `resume`), its parts, the epoch loop, and the folder it writes.

trainer.py     train(cfg) and resume(run_dir): settle a request into a session
parts.py       what a run is made of (the model put on the fast path here), and one optimizer step
loop.py        the epoch loop, the only one
evaluation.py  scoring each epoch, with hooks (the raw-weights pass behind an EMA)
average.py     the moving average of the weights, its update made cheap
optim.py       optimizers and learning-rate schedules
whiten.py      the optional whitened input convolution
bn_path.py     the fast path's one switch (`bn_fusion`) and its committed rule per CPU kind
precision.py   fp32 or bf16 autocast, and what `auto` resolves to
device.py      device choice, scoped thread counts, the opt-in allocator tuning
cuda_graph.py  the training step captured as a CUDA graph (on a GPU)
tta.py         test-time augmentation by small shifts (evaluate only)
checkpoint.py  checkpoint.pt: save, load, check, restore, RNG state, elapsed time
result.py      RunResult and the two ways a run stops early
console.py     log lines and stop signals
rundir.py      the files of one run folder (names, atomic writes, metrics, headline numbers)
writer.py      the one writer of a run folder, for the trainer and for a rebuilt run
plots.py       curves and overlays
"""

from .checkpoint import load_checkpoint
from .evaluation import evaluate
from .result import RunResult, TrainingDiverged, TrainingInterrupted
from .trainer import resume, train

__all__ = ["RunResult", "TrainingDiverged", "TrainingInterrupted", "evaluate", "load_checkpoint", "resume", "train"]
