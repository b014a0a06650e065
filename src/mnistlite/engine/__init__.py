"""Training: the loop, optimizers and schedules, device selection."""

from .trainer import RunResult, TrainingDiverged, TrainingInterrupted, evaluate, train  # noqa: F401
