"""The web app behind `mnistlite serve`: a drawing page (static/), GET /api/info and POST /api/predict
(requests, answers and error codes in docs/deploy.md). Nothing loads from a CDN (a Content-Security-Policy
of 'self' enforces it), so the interactive API docs, which would, are off."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time,
# and `Request` is imported inside create_app (fastapi is an optional dependency).
import time
from pathlib import Path
from typing import Any

from . import require
from .predict import Predictor, load_predictor
from .preprocess import ImageError, mnist_pixels, normalise

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
IMAGE_TYPES = ("png", "jpeg", "gif", "bmp", "tiff", "webp", "x-portable-anymap", "x-portable-graymap")
RAW_TYPES = {"", "application/octet-stream", *(f"image/{t}" for t in IMAGE_TYPES)}
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def create_app(model_path: str | Path | None = None, *, predictor: Predictor | None = None):
    """The FastAPI app for one model (a run directory, model.pt or .onnx; or a loaded `predictor`)."""
    fastapi = require("fastapi", "mnistlite serve")
    try:
        import python_multipart  # noqa: F401  (the package's import name since 0.0.13)
    except ImportError:
        require("multipart", "mnistlite serve (multipart uploads, package python-multipart)")
    from fastapi import Request
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.formparsers import MultiPartException, MultiPartParser

    if predictor is None:
        predictor = load_predictor(model_path)
    info = predictor.info
    app = fastapi.FastAPI(title="mnistlite", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.predictor = predictor

    def predict_bytes(data: bytes):
        pixels = mnist_pixels(data)
        return pixels, predictor.classify(normalise(pixels, info.mean, info.std))[0]

    def error(status: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get("/api/info")
    def api_info() -> dict[str, Any]:
        shown = {k: getattr(info, k) for k in ("model", "params", "test_acc", "dataset", "classes", "backend")}
        return {**shown, "file": Path(info.path).name, "max_upload_bytes": MAX_UPLOAD_BYTES}

    @app.post("/api/predict")
    async def api_predict(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        base = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if base not in RAW_TYPES and base != "multipart/form-data":
            return error(
                415,
                f"unsupported Content-Type {base!r}: send the image bytes as image/png "
                "(or another image/* type), or as a file in multipart/form-data",
            )
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return error(400, f"bad Content-Length {length!r}")
            if int(length) > MAX_UPLOAD_BYTES:
                return error(413, f"request body is {int(length):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UPLOAD_BYTES:
                return error(413, f"request body exceeds the limit of {MAX_UPLOAD_BYTES:,} bytes")
        data = bytes(body)
        if base == "multipart/form-data":

            async def once():
                yield data

            try:
                form = await MultiPartParser(request.headers, once(), max_files=4, max_fields=16).parse()
            except MultiPartException as e:
                return error(400, f"malformed multipart body: {e.message}")
            uploads = [v for _, v in form.multi_items() if hasattr(v, "read")]
            preferred = [form.get(k) for k in ("file", "image") if hasattr(form.get(k), "read")]
            if not uploads:
                await form.close()
                return error(422, "multipart body has no file part: send the image as field 'file'")
            data = await (preferred or uploads)[0].read()
            await form.close()
        if not data:
            return error(400, "empty image: no bytes received (send the PNG itself, or a non-empty file part)")
        try:
            pixels, result = await run_in_threadpool(predict_bytes, data)
        except ImageError as e:
            return error(e.http_status, str(e))
        if request.query_params.get("pixels") in ("1", "true", "yes"):
            result["pixels"] = [int(round(v * 255)) for v in pixels.reshape(-1)]
        result["ms"] = round(1000 * (time.perf_counter() - t0), 3)
        return JSONResponse(result)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
