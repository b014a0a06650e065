"""One `Predictor` over a run directory, a model.pt or an exported .onnx file. model.pt loads with weights_only=True
(a crafted pickle cannot run code); an .onnx carries what preprocessing needs in its metadata_props."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engine import rundir as rd
from ..errors import MnistliteError
from . import require
from .preprocess import Source, preprocess_image

# ONNX metadata_props keys written by `mnistlite export` (export.metadata_for): mnistlite.<field>.
META_PREFIX = "mnistlite."
META_MODEL = META_PREFIX + "model"
META_MEAN = META_PREFIX + "mean"
META_STD = META_PREFIX + "std"


@dataclass
class ModelInfo:
    model: str
    params: int | None
    test_acc: float | None  # percent, final epoch, from result.json (or the ONNX metadata)
    mean: float
    std: float
    classes: list[str]
    dataset: str
    backend: str  # "torch" | "onnxruntime"
    path: str


@dataclass
class RunModel:
    """A model.pt loaded back: the eval-mode module plus what the run recorded about it."""

    model: nn.Module
    config: Any  # TrainConfig
    params: int
    result: dict[str, Any] | None
    path: Path  # the model.pt
    mean: float
    std: float
    classes: list[str] = field(default_factory=list)

    @property
    def test_acc(self) -> float | None:
        acc = (self.result or {}).get("final_test_acc")
        return float(acc) if isinstance(acc, (int, float)) else None


def load_run(path: str | Path, *, trust_code: bool = False) -> RunModel:
    """A run directory, a model.pt (or checkpoint.pt) or a shipped model's name -> RunModel. A user model's run
    is rebuilt from the run's own copy of its source, which runs that code: only with trust_code."""
    from ..config import TrainConfig
    from ..data import DATASETS
    from ..engine.checkpoint import load_checkpoint
    from ..models import count_params, create_model
    from ..models.pretrained import has_pretrained, pretrained_file
    from ..models.usercode import entry_from_run

    path = Path(path)
    meta: dict[str, Any] | None = None
    if not path.exists() and has_pretrained(str(path)):
        pt, meta = pretrained_file(str(path))
    else:
        pt = path / rd.MODEL if path.is_dir() else path
    if not pt.is_file():
        if path.is_dir():
            raise MnistliteError(
                f"{path}: not a finished run directory (no {rd.MODEL}); train one with 'mnistlite train'"
            )
        raise MnistliteError(f"{path}: no such file or directory (nor a model with shipped weights)")
    ckpt = load_checkpoint(pt)
    if not (isinstance(ckpt, dict) and all(isinstance(ckpt.get(k), dict) for k in ("model", "config"))):
        raise MnistliteError(f"{pt}: not a mnistlite model file (expected a dict with 'model' and 'config')")
    cfg = TrainConfig.from_dict(ckpt["config"])
    entry = None if meta else entry_from_run(pt.parent, ckpt["config"], trust_code=trust_code)
    model = entry.build(dropout=cfg.dropout) if entry else create_model(cfg.model, dropout=cfg.dropout)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise MnistliteError(f"{pt}: weights do not fit model {cfg.model!r}: {first}") from None
    model.eval()
    result = {"final_test_acc": meta["final_test_acc"], "pretrained": meta} if meta else None
    if meta is None and (pt.parent / rd.RESULT).is_file():
        try:
            result = rd.read_json(pt.parent / rd.RESULT)
        except MnistliteError:
            result = None  # a damaged result.json only loses the accuracy display
    spec = DATASETS[cfg.dataset]  # from_dict validated the name
    params = int(ckpt.get("params") or count_params(model))
    result = result if isinstance(result, dict) else None
    return RunModel(model, cfg, params, result, pt, spec.mean, spec.std, list(spec.classes))


class Predictor:
    """Logits for normalised (N, 1, 28, 28) batches, whatever the backend."""

    info: ModelInfo

    def logits(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def classify(self, x: torch.Tensor | np.ndarray) -> list[dict[str, Any]]:
        """One dict per image: the best class's digit (index), label and prob, the top 3, all probs."""
        z = self.logits(x).astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        out = []
        for p in e / e.sum(axis=1, keepdims=True):
            best3 = np.argsort(-p, kind="stable")[:3]
            top = [{"digit": int(i), "label": self.info.classes[i], "prob": round(float(p[i]), 6)} for i in best3]
            out.append({**top[0], "top": top, "probs": [round(float(v), 6) for v in p]})
        return out

    def preprocess(self, src: Source) -> torch.Tensor:
        return preprocess_image(src, self.info.mean, self.info.std)


class TorchPredictor(Predictor):
    def __init__(self, run: RunModel):
        self.model = run.model.eval()
        self.info = ModelInfo(
            model=run.config.model,
            params=run.params,
            test_acc=run.test_acc,
            mean=run.mean,
            std=run.std,
            classes=run.classes,
            dataset=run.config.dataset,
            backend="torch",
            path=str(run.path),
        )

    @torch.inference_mode()
    def logits(self, x):
        return self.model(torch.as_tensor(x, dtype=torch.float32)).float().numpy()


class OnnxPredictor(Predictor):
    def __init__(self, path: str | Path, threads: int | None = None):
        ort = require("onnxruntime", "running an .onnx model")
        path = Path(path)
        if not path.is_file():
            raise MnistliteError(f"{path}: no such file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: no warnings on stderr for every session
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own types for a bad file
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise MnistliteError(f"{path}: not a loadable ONNX model: {first}") from None
        found = self.session.get_modelmeta().custom_metadata_map
        if META_MEAN not in found or META_STD not in found:
            raise MnistliteError(
                f"{path}: no normalisation metadata ({META_MEAN}, {META_STD}); export it with 'mnistlite export'"
            )
        meta = {k.removeprefix(META_PREFIX): v for k, v in found.items()}
        try:
            classes = json.loads(meta.get("classes") or "null") or [str(i) for i in range(10)]
            self.info = ModelInfo(
                model=meta.get("model", path.stem),
                params=int(meta["params"]) if meta.get("params") else None,
                test_acc=float(meta["test_acc"]) if meta.get("test_acc") else None,
                mean=float(meta["mean"]),
                std=float(meta["std"]),
                classes=[str(c) for c in classes],
                dataset=meta.get("dataset", "mnist"),
                backend="onnxruntime",
                path=str(path),
            )
        except (ValueError, TypeError) as e:
            raise MnistliteError(f"{path}: malformed mnistlite metadata: {e}") from None
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, x):
        x = np.ascontiguousarray(torch.as_tensor(x, dtype=torch.float32).numpy())
        return self.session.run(None, {self.input_name: x})[0]


def load_predictor(path: str | Path, threads: int | None = None, *, trust_code: bool = False) -> Predictor:
    """A run directory (its model.pt, else its model.onnx), a model.pt, an .onnx file, or a shipped model's name."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxPredictor(path, threads)
    if path.is_dir() and not (path / rd.MODEL).exists() and (path / "model.onnx").is_file():
        return OnnxPredictor(path / "model.onnx", threads)
    return TorchPredictor(load_run(path, trust_code=trust_code))


def predict_files(predictor: Predictor, files: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One entry per file, in order: the prediction, or {"file", "error"} for a file that failed."""
    entries: list[dict[str, Any]] = []
    batch: list[torch.Tensor] = []
    slots: list[int] = []
    for f in files:
        try:
            batch.append(predictor.preprocess(f))
            slots.append(len(entries))
            entries.append({"file": str(f)})
        except MnistliteError as e:
            entries.append({"file": str(f), "error": str(e)})
    if batch:
        for i, pred in zip(slots, predictor.classify(torch.cat(batch))):
            entries[i].update(pred)
    return entries
