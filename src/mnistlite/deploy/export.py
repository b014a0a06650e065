"""model.pt -> ONNX, verified against torch with onnxruntime (or no file is left); optional int8 variants.
The TorchScript exporter (`dynamo=False`) writes the requested opset exactly (the dynamo exporter starts at 18
and needs onnxscript) and keeps the weights in the one file; metadata_props carry what predict/serve need."""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..engine import rundir as rd
from ..errors import MnistliteError
from . import require
from .predict import META_MODEL, META_PREFIX, OnnxPredictor, RunModel, load_run

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 11, 20
VERIFY_N = 1000
ATOL = 1e-3
CALIB_N = 500
QUANT_MODES = ("dynamic", "static")
INPUT, OUTPUT = "input", "logits"


@dataclass
class ExportReport:
    model: str
    params: int
    path: Path
    opset: int
    size_bytes: int
    verify_n: int
    max_abs_diff: float
    argmax_agree: int
    torch_test_acc: float | None = None  # full test set, percent
    onnx_test_acc: float | None = None
    test_n: int = 0
    quantized: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def metadata_for(run: RunModel) -> dict[str, str]:
    meta = {
        "model": run.config.model,
        "mean": repr(float(run.mean)),
        "std": repr(float(run.std)),
        "classes": json.dumps(run.classes),
        "dataset": run.config.dataset,
        "params": str(run.params),
        "version": __version__,
    }
    if run.test_acc is not None:
        meta["test_acc"] = repr(run.test_acc)
    return {META_PREFIX + k: v for k, v in meta.items()}


def set_metadata(path: Path, meta: dict[str, str]) -> None:
    """Replace the mnistlite.* metadata_props of the ONNX file at `path`, in place."""
    onnx = require("onnx", "ONNX export")
    m = onnx.load(str(path))
    keep = {p.key: p.value for p in m.metadata_props if p.key not in meta}
    onnx.helper.set_model_props(m, {**keep, **meta})
    m.doc_string = f"mnistlite {meta.get(META_MODEL, '')}: input (N,1,28,28) normalised with mnistlite.mean/std"
    onnx.save(m, str(path))


def export_onnx(model: torch.nn.Module, path: Path, opset: int = DEFAULT_OPSET) -> None:
    require("onnx", "ONNX export")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise MnistliteError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    model = model.eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
        torch.onnx.export(
            model,
            (torch.zeros(2, 1, 28, 28),),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            opset_version=opset,
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            do_constant_folding=True,
            dynamo=False,
        )


def accuracy(
    logits_fn: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor, labels: torch.Tensor, batch: int = 2000
) -> tuple[float, np.ndarray]:
    """(accuracy in percent, the argmax of every image)."""
    pred = np.concatenate([logits_fn(images[s : s + batch]).argmax(1) for s in range(0, len(labels), batch)])
    return 100.0 * float((pred == labels.numpy()).mean()), pred


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a tensor of images: one pass, batches of 50."""

    def __init__(self, images: torch.Tensor, batch: int = 50):
        self.batches = iter([{INPUT: images[s : s + batch].numpy()} for s in range(0, len(images), batch)])

    def get_next(self):
        return next(self.batches, None)


def quantize(float_path: Path, out: Path, mode: str, calib: torch.Tensor | None = None) -> None:
    q = require("onnxruntime.quantization", "int8 quantisation")
    with tempfile.TemporaryDirectory(prefix="mnistlite-quant-") as tmp:
        prep = Path(tmp) / "prep.onnx"
        q.quant_pre_process(str(float_path), str(prep), skip_symbolic_shape=True)
        if mode == "dynamic":
            q.quantize_dynamic(str(prep), str(out), weight_type=q.QuantType.QUInt8)
        else:
            q.quantize_static(
                str(prep),
                str(out),
                _Calibration(calib),
                quant_format=q.QuantFormat.QDQ,
                activation_type=q.QuantType.QInt8,
                weight_type=q.QuantType.QInt8,
                per_channel=True,
                calibrate_method=q.CalibrationMethod.MinMax,
            )


def quant_path(out: Path, mode: str) -> Path:
    return out.with_name(f"{out.stem}.int8-{mode}{out.suffix}")


def export_run(
    model_path: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    quantize_modes: tuple[str, ...] | list[str] = (),
    data_dir: str | None = None,
    atol: float = ATOL,
    echo: Callable[[str], None] = lambda s: None,
    trust_code: bool = False,
) -> ExportReport:
    """Export, verify and (optionally) quantise the model of a run directory or model.pt."""
    from ..data import load_dataset

    for m in quantize_modes:
        if m not in QUANT_MODES:
            raise MnistliteError(f"--quantize must be one of {', '.join(QUANT_MODES)}, got {m!r}")
    require("onnxruntime", "verifying the export")
    run = load_run(model_path, trust_code=trust_code)
    if out:
        out = Path(out)
    elif run.result and run.result.get("pretrained"):  # shipped weights: never write into the installed package
        out = Path(f"{run.config.model}.onnx")
    else:
        out = run.path.parent / "model.onnx"
    if out.suffix.lower() != ".onnx":
        raise MnistliteError(f"--out {out}: the file name must end in .onnx")
    if out.is_dir():
        raise MnistliteError(f"--out {out} is a directory; give a file name ending in .onnx")
    if not out.parent.is_dir():
        raise MnistliteError(f"--out {out}: folder {out.parent} does not exist")
    chosen = data_dir or (run.config.data_dir if run.config.data_dir and Path(run.config.data_dir).is_dir() else None)
    data = load_dataset(run.config.dataset, data_dir=chosen, download=run.config.download)
    test = data.test
    n = min(VERIFY_N, len(test))
    model = run.model.eval()

    with tempfile.TemporaryDirectory(prefix="mnistlite-export-") as tmp_dir:
        tmp = Path(tmp_dir) / out.name  # onnx writes by name; `out` appears only whole and verified
        export_onnx(model, tmp, opset)
        set_metadata(tmp, metadata_for(run))
        with torch.inference_mode():
            ref = model(test.images[:n]).float().numpy()
        got = OnnxPredictor(tmp).logits(test.images[:n])
        diff, agree = float(np.abs(ref - got).max()), int((ref.argmax(1) == got.argmax(1)).sum())
        if agree != n or not diff <= atol:
            raise MnistliteError(
                f"verification failed on {n} test images: max |logit diff| {diff:.3g} (limit {atol:g}), "
                f"argmax agrees on {agree}/{n}; no file written"
            )
        rd.atomic_write_bytes(out, tmp.read_bytes())
    report = ExportReport(
        run.config.model, run.params, out, opset, out.stat().st_size, n, diff, agree, test_n=len(test)
    )
    echo(
        f"Exported {run.config.model} ({run.params:,} params) -> {out}\n"
        f"  ONNX opset {opset}, dynamic batch axis, {_size(report.size_bytes)}; "
        f"input '{INPUT}' (N,1,28,28) normalised with mean {run.mean} std {run.std} (stored in the metadata)"
    )
    echo(
        f"  verified with onnxruntime on {n:,} test images: max |logit diff| vs torch {diff:.2e} "
        f"(limit {atol:g}), argmax agrees on {agree:,}/{n:,}"
    )
    with torch.inference_mode():
        report.torch_test_acc = accuracy(lambda x: model(x).numpy(), test.images, test.labels)[0]
    report.onnx_test_acc, float_argmax = accuracy(OnnxPredictor(out).logits, test.images, test.labels)
    echo(
        f"  test accuracy ({len(test):,} images): torch {report.torch_test_acc:.2f}%, "
        f"onnx float {report.onnx_test_acc:.2f}%"
    )
    for mode in quantize_modes:
        qpath = quant_path(out, mode)
        calib, how = None, "weights only, activations at run time"
        if mode == "static":
            calib = data.train.images[:CALIB_N]
            how = f"calibrated on {len(calib)} training images"
        quantize(out, qpath, mode, calib)
        set_metadata(qpath, metadata_for(run))
        qacc, q_argmax = accuracy(OnnxPredictor(qpath).logits, test.images, test.labels)
        agree_q = int((q_argmax == float_argmax).sum())
        entry = {
            "mode": mode,
            "path": str(qpath),
            "size_bytes": qpath.stat().st_size,
            "test_acc": qacc,
            "float_test_acc": report.onnx_test_acc,
            "argmax_agree_with_float": agree_q,
            "calibration_images": len(calib) if calib is not None else 0,
        }
        report.quantized.append(entry)
        echo(
            f"Quantized int8 ({mode}, {how}) -> {qpath}, {_size(entry['size_bytes'])}\n"
            f"  test accuracy {qacc:.2f}% (float {report.onnx_test_acc:.2f}%, "
            f"{qacc - report.onnx_test_acc:+.2f} points); same argmax as float on {agree_q:,}/{len(test):,}"
        )
    return report


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / 1024:.1f} KiB)"
