"""Deployment: export to ONNX, predict on image files, serve a drawing page.

export.py      model.pt -> model.onnx (+ int8 variants), verified with onnxruntime
preprocess.py  any image file -> a (1, 1, 28, 28) tensor prepared the way MNIST was
predict.py     load a run directory, model.pt or .onnx as one `Predictor`
serve.py       the FastAPI app (`create_app`) behind `mnistlite serve`
static/        the drawing page it serves
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MnistliteError

EXTRA = "pip install 'mnistlite[deploy]'"


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or fail with a message naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise MnistliteError(f"{purpose} needs the Python package {top!r} ({e}); install it with: {EXTRA}") from None
