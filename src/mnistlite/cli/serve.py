"""`mnistlite serve`: a page to draw digits on, and a JSON prediction API."""

from __future__ import annotations

import ipaddress
import socket
import sys

from ..errors import MnistliteError
from .common import add_model_arg, add_trust_code, check_at_least


def register(sub) -> None:
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise MnistliteError(f"--port must be between 1 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise MnistliteError(f"--host {host!r}: cannot resolve it ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise MnistliteError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port") from None


def run(args) -> None:
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
