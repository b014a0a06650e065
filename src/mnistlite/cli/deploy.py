"""`mnistlite export`, `predict` and `serve`: a trained model as a verified ONNX file, as a classifier of image
files, and as a drawing page with a JSON prediction API."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import sys

from ..errors import MnistliteError
from .common import add_model_arg, add_trust_code, check_at_least, shipped_names


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to ONNX, verified against torch with onnxruntime",
        description="Export RUN_DIR/model.pt to ONNX (dynamic batch axis) and verify it with onnxruntime "
        "on 1,000 test images: fails unless every argmax agrees and logits differ by at most --atol.",
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help=f"a run directory (or its model.pt), or a model with shipped weights ({shipped_names()})",
    )
    p.add_argument("--format", choices=["onnx"], default="onnx", help="output format (only onnx)")
    p.add_argument("--out", metavar="FILE", help="output .onnx file (default: RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset version (default 17)")
    p.add_argument(
        "--quantize",
        action="append",
        choices=["dynamic", "static"],
        default=[],
        help="also write an int8 model (onnxruntime.quantization) and report its test accuracy; repeatable",
    )
    p.add_argument("--atol", type=float, default=1e-3, help="max |logit difference| allowed (default 1e-3)")
    p.add_argument("--data-dir", metavar="DIR", help="data root for verification (default: the usual search)")
    add_trust_code(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_export)

    p = sub.add_parser(
        "predict",
        help="classify image files (PNG, JPEG, ...) with a trained or exported model",
        description="Each image is prepared the way MNIST was made (grayscale, inverted when the background is light, "
        "cropped to the ink, fitted into 20x20, centred by mass in 28x28) and classified. Files that cannot be used "
        "get one line on stderr; the others are still classified; the exit code is then 2.",
    )
    add_model_arg(p)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    add_trust_code(p)
    p.add_argument(
        "--json", action="store_true", help="print a JSON list, one object per image (failed files have an 'error' key)"
    )
    p.set_defaults(func=run_predict)

    p = sub.add_parser(
        "serve",
        help="web page to draw a digit and see the model's probabilities live (+ JSON API)",
        description="Serve MODEL (a run directory, model.pt or .onnx) over HTTP: GET / is a drawing page, "
        "POST /api/predict takes an image (raw body or multipart, at most 2 MB), GET /api/info describes "
        "the model. Listens on loopback unless --host says otherwise.",
    )
    add_model_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/onnxruntime threads per prediction (default 1: requests run in parallel instead)",
    )
    add_trust_code(p)
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=run_serve)


def run_export(args) -> None:
    from ..deploy.export import export_run

    report = export_run(
        args.run_dir,
        args.out,
        opset=args.opset,
        quantize_modes=list(dict.fromkeys(args.quantize)),
        data_dir=args.data_dir,
        atol=args.atol,
        trust_code=args.trust_code,
        echo=(lambda s: None) if args.json else print,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))


def run_predict(args) -> int:
    from ..deploy.predict import load_predictor, predict_files

    predictor = load_predictor(args.model, trust_code=args.trust_code)
    entries = predict_files(predictor, args.images)
    failed = sum("error" in e for e in entries)
    for e in entries:
        if "error" in e:
            sys.stdout.flush()
            print(f"mnistlite predict: error: {e['file']}: {e['error']}", file=sys.stderr, flush=True)
        elif not args.json:
            top = ", ".join(f"{t['label']} {100 * t['prob']:.1f}%" for t in e["top"])
            print(f"{e['file']}: {e['label']}  ({top})")
    if args.json:
        keep = ("file", "digit", "label", "prob", "top", "probs", "error")
        print(json.dumps([{k: e[k] for k in keep if k in e} for e in entries], indent=2))
    sys.stdout.flush()
    return 2 if failed else 0


def _is_loopback(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    return False


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise MnistliteError(f"--port must be between 1 and 65535, got {port}")
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise MnistliteError(f"--host {host!r}: cannot resolve it ({e.strerror})") from None
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise MnistliteError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port") from None


def run_serve(args) -> None:
    import torch

    from ..deploy import require
    from ..deploy.predict import load_predictor
    from ..deploy.serve import create_app

    check_at_least(args, threads=1)
    uvicorn = require("uvicorn", "mnistlite serve")
    _check_port(args.host, args.port)
    torch.set_num_threads(args.threads)
    predictor = load_predictor(args.model, threads=args.threads, trust_code=args.trust_code)
    app = create_app(predictor=predictor)
    info = predictor.info
    acc = f"{info.test_acc:.2f}% test accuracy" if info.test_acc is not None else "test accuracy unknown"
    params = f"{info.params:,} params" if info.params is not None else "params unknown"
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"Serving {info.model} ({params}, {acc}, {info.backend}) on http://{shown}:{args.port}/  (Ctrl-C stops)",
        flush=True,
    )
    if not _is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: other machines can reach this server; it has no authentication",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=not args.no_access_log)
