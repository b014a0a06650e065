"""Inference throughput and web latency of one trained model.

    python benchmarks/infer.py RUN_DIR [--threads 2] [--batch 1000] [--requests 1000] [--json]

1. Batch inference of the whole test set (10,000 images, already normalised
   tensors in memory, batches of --batch) with torch and with onnxruntime
   (float, and the int8 dynamic/static variants), with --threads threads
   (torch and float onnxruntime also with 1); the best of --repeat passes,
   in images per second. The torch row's file is model.pt.
2. Web latency, once serving RUN_DIR (torch) and once the exported .onnx
   (onnxruntime): starts `mnistlite serve MODEL` (uvicorn, loopback, a free
   port, access log off) in a subprocess and times --requests sequential
   POST /api/predict calls of a 280x280 PNG (a test digit drawn white on
   black, like the page's canvas) from one httpx client: p50/p99/mean in ms
   over the timed requests, after --warmup untimed ones. The server is given
   one torch thread (its default).

Prints Markdown tables (or JSON). Needs `pip install 'mnistlite[deploy]'`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if (REPO / "src" / "mnistlite").is_dir():
    sys.path.insert(0, str(REPO / "src"))

from mnistlite.data import load_dataset  # noqa: E402
from mnistlite.deploy.export import export_onnx, metadata_for, quant_path, quantize, set_metadata  # noqa: E402
from mnistlite.deploy.predict import OnnxPredictor, load_run  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_pass(fn, images: torch.Tensor, batch: int, repeat: int) -> float:
    """Best wall time (s) of `repeat` passes of `fn` over `images` in batches."""
    fn(images[:batch])  # warm-up: allocations, first-run graph setup
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for s in range(0, len(images), batch):
            fn(images[s : s + batch])
        best = min(best, time.perf_counter() - t0)
    return best


def batch_throughput(
    run_dir: Path, onnx_path: Path, threads: int, batch: int, repeat: int, data_dir: str | None
) -> list[dict]:
    """Export `run_dir` to `onnx_path` (+ int8 variants beside it) and time every backend."""
    run = load_run(run_dir)
    data = load_dataset(run.config.dataset, data_dir=data_dir, download=False)
    images, labels = data.test.images, data.test.labels.numpy()
    model = run.model.eval()

    @torch.inference_mode()
    def torch_fn(x):
        return model(x).numpy()

    export_onnx(model, onnx_path)
    set_metadata(onnx_path, metadata_for(run))
    variants = []  # (backend, threads, fn, file bytes)
    for t in dict.fromkeys((threads, 1)):
        variants.append(("torch (eager, float32)", t, torch_fn, run.path.stat().st_size))
        variants.append(("onnxruntime float32", t, OnnxPredictor(onnx_path, t).logits, onnx_path.stat().st_size))
    for mode in ("dynamic", "static"):
        q = quant_path(onnx_path, mode)
        quantize(onnx_path, q, mode, data.train.images[:500] if mode == "static" else None)
        variants.append((f"onnxruntime int8 {mode}", threads, OnnxPredictor(q, threads).logits, q.stat().st_size))
    rows = []
    for name, t, fn, size in variants:
        torch.set_num_threads(t)
        seconds = time_pass(fn, images, batch, repeat)
        acc = 100.0 * float(
            np.mean(
                np.concatenate([fn(images[s : s + batch]).argmax(1) for s in range(0, len(images), batch)]) == labels
            )
        )
        rows.append(
            {
                "backend": name,
                "images": len(images),
                "batch": batch,
                "threads": t,
                "seconds": seconds,
                "images_per_s": len(images) / seconds,
                "test_acc": acc,
                "file_bytes": size,
            }
        )
    return rows


def digit_png(data_dir: str | None) -> bytes:
    from PIL import Image

    data = load_dataset("mnist", data_dir=data_dir, download=False)
    x = (data.test.images[0, 0] * data.std + data.mean).clamp(0, 1).numpy()
    img = Image.fromarray((x * 255).astype(np.uint8)).resize((280, 280), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def web_latency(model: Path, requests: int, warmup: int, data_dir: str | None) -> dict:
    """Serve `model` (run directory or .onnx) in a subprocess; time sequential POSTs from one client."""
    import httpx

    png = digit_png(data_dir)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "mnistlite", "serve", str(model), "--port", str(port), "--no-access-log"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10.0) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    info = client.get("/api/info").json()
                    break
                except httpx.TransportError as e:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:]}") from e
                    time.sleep(0.1)
            headers = {"content-type": "image/png"}
            for _ in range(warmup):
                client.post("/api/predict", content=png, headers=headers).raise_for_status()
            lat, server_ms = [], []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = client.post("/api/predict", content=png, headers=headers)
                lat.append(1000 * (time.perf_counter() - t0))
                r.raise_for_status()
                server_ms.append(r.json()["ms"])
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    q = statistics.quantiles(lat, n=100, method="inclusive")
    sq = statistics.quantiles(server_ms, n=100, method="inclusive")
    return {
        "requests": requests,
        "warmup": warmup,
        "png_bytes": len(png),
        "model": info["model"],
        "backend": info["backend"],
        "p50_ms": q[49],
        "p99_ms": q[98],
        "mean_ms": statistics.fmean(lat),
        "max_ms": max(lat),
        "server_p50_ms": sq[49],
        "server_p99_ms": sq[98],
        "requests_per_s": 1000 * requests / sum(lat),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--data-dir")
    ap.add_argument("--no-web", action="store_true", help="skip the web latency part")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    run = load_run(args.run_dir)
    out = {
        "model": run.config.model,
        "params": run.params,
        "run_test_acc": run.test_acc,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    import onnxruntime

    out["onnxruntime"] = onnxruntime.__version__
    with tempfile.TemporaryDirectory(prefix="mnistlite-bench-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        out["batch"] = batch_throughput(args.run_dir, onnx_path, args.threads, args.batch, args.repeat, args.data_dir)
        if not args.no_web:
            out["web"] = [web_latency(m, args.requests, args.warmup, args.data_dir) for m in (args.run_dir, onnx_path)]
    out["load_average_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"Model {out['model']} ({out['params']:,} params), torch {out['torch']}, onnxruntime {out['onnxruntime']}, "
        f"{out['cores']} cores, load average {out['load_average_before']:.1f} before / "
        f"{out['load_average_after']:.1f} after\n"
    )
    print("| backend | threads | batch | images/s | s per 10k | test acc | file |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in out["batch"]:
        print(
            f"| {r['backend']} | {r['threads']} | {r['batch']} | {r['images_per_s']:,.0f} | {r['seconds']:.3f} "
            f"| {r['test_acc']:.2f}% | {r['file_bytes'] / 1024:.1f} KiB |"
        )
    if "web" in out:
        w0 = out["web"][0]
        print(
            f"\nPOST /api/predict, {w0['requests']} sequential requests of a {w0['png_bytes']:,}-byte PNG "
            f"after {w0['warmup']} warm-up ones, one httpx client, server on loopback (1 thread):\n"
        )
        print("| server backend | p50 ms | p99 ms | mean ms | max ms | server handler p50 / p99 ms | requests/s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for w in out["web"]:
            print(
                f"| {w['backend']} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | {w['mean_ms']:.2f} | {w['max_ms']:.2f} "
                f"| {w['server_p50_ms']:.2f} / {w['server_p99_ms']:.2f} | {w['requests_per_s']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
