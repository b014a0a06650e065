"""Deployment: preprocessing, ONNX export (+ int8), predict CLI, serve API.

One small model is trained once per session (real MNIST subset, ~10 s) and
shared with tests/test_browser.py through pytest's base temp directory.
"""

from __future__ import annotations

import io
import json
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")
onnx = pytest.importorskip("onnx", reason="deploy extra not installed: pip install 'mnistlite[deploy]'")
ort = pytest.importorskip("onnxruntime", reason="deploy extra not installed: pip install 'mnistlite[deploy]'")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from mnistlite.cli import main  # noqa: E402
from mnistlite.deploy import preprocess as pp  # noqa: E402
from mnistlite.deploy.export import export_run  # noqa: E402
from mnistlite.deploy.predict import META_MEAN, META_MODEL, META_STD, load_predictor  # noqa: E402
from mnistlite.engine import rundir as rd  # noqa: E402
from mnistlite.errors import MnistliteError  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(flagship_run) -> Path:
    return flagship_run


def to_png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def mnist_as_photo(pixels: np.ndarray, size: int = 140, margin: int = 40) -> Image.Image:
    """A [0,1] MNIST digit as dark ink on a light page, enlarged, with extra margin."""
    big = Image.fromarray(((1 - np.clip(pixels, 0, 1)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    page = Image.new("L", (size + 2 * margin, size + margin), 255)
    page.paste(big, (margin + 13, margin // 3))  # off-centre on purpose
    return page


def raw_pixels(data, i: int) -> np.ndarray:
    return (data.test.images[i, 0] * data.std + data.mean).clamp(0, 1).numpy()


def com(a: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    return float((a * ys).sum() / a.sum()), float((a * xs).sum() / a.sum())


# --- preprocessing -------------------------------------------------------------------


def _valid_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    arr = (rng.random((24, 17)) * 255).astype(np.uint8)
    out = [to_png(Image.fromarray(arr), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")]
    out.append(to_png(Image.fromarray(arr).convert("RGBA")))
    return out


VALID = _valid_images()


def _mutate(args: tuple[bytes, int, bytes, bool]) -> bytes:
    data, at, patch, cut = args
    at %= len(data)
    return data[:at] if cut else data[:at] + patch + data[at + len(patch) :]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.binary(max_size=600),
        st.tuples(st.sampled_from(VALID), st.integers(0, 10**6), st.binary(min_size=1, max_size=6), st.booleans()).map(
            _mutate
        ),
    )
)
def test_preprocess_random_bytes_raise_only_mnistlite_error(data):
    try:
        x = pp.preprocess_image(data)
    except MnistliteError:
        return
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32 and torch.isfinite(x).all()


def test_preprocess_recovers_mnist_digits(mnist_small):
    """An MNIST digit printed dark-on-light, enlarged and off-centre comes back as (nearly) itself."""
    errs = []
    for i in range(20):
        a = raw_pixels(mnist_small, i)
        got = pp.mnist_pixels(to_png(mnist_as_photo(a)))
        assert got.shape == (28, 28) and got.min() >= 0 and got.max() <= 1
        errs.append(np.abs(got - a).mean())
        cy, cx = com(got)
        assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6
    # Pixel-perfect is impossible (two resamplings); a wrong inversion/crop/centring is ~0.2-0.4.
    assert np.mean(errs) < 0.05, errs
    # The normalisation is MNIST's: background pixels map to -mean/std.
    x = pp.preprocess_image(to_png(mnist_as_photo(raw_pixels(mnist_small, 0))))
    assert x[0, 0, 0, 0].item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_preprocess_geometry_and_color_variants():
    # A tall black bar on white, far off-centre: inverted, fitted to 20 px high, centred by mass.
    page = Image.new("RGB", (300, 200), "white")
    page.paste((0, 0, 0), (20, 30, 40, 190))
    got = pp.mnist_pixels(to_png(page))
    rows = np.flatnonzero(got.max(1) > 0.5)
    assert rows[-1] - rows[0] + 1 in (19, 20)
    assert got[0].max() == 0 and got[:, 0].max() == 0  # background black after inversion
    assert com(got) == pytest.approx((14, 14), abs=0.6)
    # The same shape as white ink on a transparent canvas, and as 16-bit grayscale.
    rgba = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    rgba.paste((255, 255, 255, 255), (20, 30, 40, 190))
    assert np.abs(pp.mnist_pixels(to_png(rgba)) - got).max() < 0.05
    i16 = Image.fromarray(np.asarray(page.convert("L"), dtype=np.uint16) * 257)
    assert np.abs(pp.mnist_pixels(to_png(i16)) - got).max() < 0.05
    # A wide shape keeps its aspect ratio: 20 px wide, ~4 px tall.
    wide = Image.new("L", (400, 400), 0)
    wide.paste(255, (50, 100, 350, 160))
    w = pp.mnist_pixels(to_png(wide))
    assert (w.max(0) > 0.5).sum() in (19, 20) and 3 <= (w.max(1) > 0.5).sum() <= 5


def _bad_inputs(tmp: Path) -> dict[str, tuple[object, type]]:
    digit = Image.new("L", (60, 60), 255)
    digit.paste(0, (25, 10, 35, 50))
    png = to_png(digit)
    (tmp / "dir").mkdir()
    big = tmp / "big.png"
    with open(big, "wb") as f:
        f.truncate(pp.MAX_BYTES + 1)
    return {
        "empty": (b"", pp.ImageError),
        "text": (b"this is not an image\n", pp.ImageError),
        "truncated": (png[: len(png) // 2], pp.ImageError),
        "blank": (to_png(Image.new("L", (64, 64), 255)), pp.NoInk),
        "flat gray": (to_png(Image.new("RGB", (64, 64), (90, 90, 90))), pp.NoInk),
        "50 megapixels": (to_png(Image.new("1", (10_000, 5_000))), pp.ImageTooLarge),
        "over 20 MB": (b"\x89PNG" + b"\0" * pp.MAX_BYTES, pp.ImageTooLarge),
        "over 20 MB file": (big, pp.ImageTooLarge),
        "missing file": (tmp / "nope.png", pp.ImageError),
        "directory": (tmp / "dir", pp.ImageError),
        "eps (never handed to Ghostscript)": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", pp.ImageError),
    }


def test_preprocess_bad_inputs_name_the_problem(tmp_path):
    for name, (src, kind) in _bad_inputs(tmp_path).items():
        with pytest.raises(kind) as e:
            pp.preprocess_image(src)
        assert "\n" not in str(e.value), name
    assert pp.ImageTooLarge.http_status == 413 and pp.NoInk.http_status == 422 and pp.ImageError.http_status == 400


# --- export --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(run_dir, data_root, tmp_path_factory):
    """export_run with both int8 variants, once per module: (report, printed lines)."""
    out = tmp_path_factory.mktemp("export") / "m.onnx"
    lines: list[str] = []
    rep = export_run(run_dir, out, quantize_modes=["dynamic", "static"], data_dir=str(data_root), echo=lines.append)
    return rep, lines


@pytest.mark.slow
def test_export_verifies_quantizes_and_carries_metadata(exported, run_dir, mnist_small):
    rep, lines = exported
    out = rep.path
    assert rep.opset == 17 and rep.verify_n == 1000 and rep.argmax_agree == 1000
    assert rep.max_abs_diff <= 1e-3
    assert rep.size_bytes == out.stat().st_size and rep.size_bytes > 4 * rep.params
    assert rep.onnx_test_acc == pytest.approx(rep.torch_test_acc, abs=0.02) and rep.onnx_test_acc > 90
    text = "\n".join(lines)
    assert "opset 17" in text and "max |logit diff|" in text and "1,000/1,000" in text and "KiB" in text

    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    assert {o.version for o in m.opset_import if o.domain in ("", "ai.onnx")} == {17}
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic: dynamic batch
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta[META_MODEL] == "mnistlite_flagship"
    assert float(meta[META_MEAN]) == 0.1307 and float(meta[META_STD]) == 0.3081

    # Any batch size runs, and matches torch.
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    torch_model = load_predictor(run_dir)
    for n in (1, 7):
        x = mnist_small.test.images[:n]
        got = sess.run(None, {"input": x.numpy()})[0]
        assert got.shape == (n, 10)
        assert np.abs(got - torch_model.logits(x)).max() <= 1e-3

    assert [q["mode"] for q in rep.quantized] == ["dynamic", "static"]
    for q in rep.quantized:
        path = Path(q["path"])
        assert path.is_file() and path.name == f"m.int8-{q['mode']}.onnx"
        assert q["size_bytes"] < rep.size_bytes
        assert abs(q["test_acc"] - rep.onnx_test_acc) < 2.0, q  # int8 costs little on this model
        assert q["argmax_agree_with_float"] > 9500
        assert load_predictor(path).info.mean == 0.1307  # metadata survives quantisation
    assert rep.quantized[1]["calibration_images"] == 500
    assert "int8 (static" in text and "float" in text


def test_export_fails_loudly_and_leaves_no_file(run_dir, data_root, tmp_path, monkeypatch, capsys):
    import mnistlite.deploy.export as ex

    real = ex.export_onnx

    def export_wrong_weights(model, path, opset=17):
        wrong = load_predictor(run_dir).model
        with torch.no_grad():
            for p in wrong.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        real(wrong, path, opset)

    monkeypatch.setattr(ex, "export_onnx", export_wrong_weights)
    out = tmp_path / "bad.onnx"
    code = main(["export", str(run_dir), "--out", str(out), "--data-dir", str(data_root)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "verification failed" in err and "argmax agrees on" in err
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_export_usage_errors(run_dir, tmp_path, capsys):
    for argv, msg in [
        (["export", str(tmp_path / "nope")], "no such file"),
        (["export", str(tmp_path)], "not a finished run directory"),
        (["export", str(run_dir), "--opset", "5"], "--opset must be between"),
        (["export", str(run_dir), "--out", str(tmp_path / "x.txt")], "must end in .onnx"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err


def test_unsafe_or_foreign_model_files_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "model.pt"
    torch.save({"model": Evil(), "config": {}}, evil)
    with pytest.raises(MnistliteError, match="refused to load"):
        load_predictor(evil)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(MnistliteError, match="not a loadable ONNX model"):
        load_predictor(junk)


def test_onnx_without_metadata_is_refused(exported, tmp_path):
    out = tmp_path / "m.onnx"
    m = onnx.load(str(exported[0].path))
    del m.metadata_props[:]
    onnx.save(m, str(out))
    with pytest.raises(MnistliteError, match="no normalisation metadata"):
        load_predictor(out)


# --- predict -------------------------------------------------------------------------


def test_predict_cli_all_model_kinds_and_bad_files(run_dir, exported, tmp_path, mnist_small, capsys):
    onnx_path = exported[0].path
    images, labels = [], []
    for i in range(12):
        p = tmp_path / f"digit{i}.png"
        mnist_as_photo(raw_pixels(mnist_small, i)).save(p)
        images.append(str(p))
        labels.append(int(mnist_small.test.labels[i]))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a garbage")
    blank = tmp_path / "blank.png"
    Image.new("L", (30, 30), 0).save(blank)
    files = [images[0], str(bad), *images[1:], str(blank)]

    answers = {}
    for model in (run_dir, run_dir / rd.MODEL, onnx_path):
        code = main(["predict", str(model), *files, "--json"])
        out, err = capsys.readouterr()
        assert code == 2
        assert err.count("\n") == 2 and f"{bad}:" in err and f"{blank}: no digit found" in err
        entries = json.loads(out)
        assert [e["file"] for e in entries] == files
        assert "error" in entries[1] and "error" in entries[-1]
        good = [e for e in entries if "error" not in e]
        for e in good:
            assert len(e["top"]) == 3 and e["top"][0]["digit"] == e["digit"]
            assert sum(e["probs"]) == pytest.approx(1, abs=1e-4)
        answers[str(model)] = good
        # ~97% model on clean digits: allow one miss.
        assert sum(e["digit"] == y for e, y in zip(good, labels)) >= len(labels) - 1
    torch_probs = np.array([e["probs"] for e in answers[str(run_dir)]])
    onnx_probs = np.array([e["probs"] for e in answers[str(onnx_path)]])
    assert np.abs(torch_probs - onnx_probs).max() < 1e-4

    # Human-readable form: one line per good image with its top 3.
    assert main(["predict", str(run_dir), images[0]]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith(f"{images[0]}: {labels[0]}  (") and out.count("%") == 3


def test_predict_cli_missing_model_is_one_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "none"), "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


# --- serve ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(run_dir):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's notice that it prefers httpx2 over httpx
        from fastapi.testclient import TestClient
    from mnistlite.deploy.serve import create_app

    with TestClient(create_app(run_dir)) as c:
        yield c


@pytest.mark.slow
def test_serve_page_and_info(client, run_dir):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert '<canvas id="pad"' in html and 'id="clear"' in html
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in html
        a = client.get(asset)
        assert a.status_code == 200 and "https://" not in a.text
    info = client.get("/api/info").json()
    result = json.loads((run_dir / rd.RESULT).read_text())
    assert info["model"] == "mnistlite_flagship" and info["params"] == result["params"]
    assert info["test_acc"] == result["final_test_acc"] and info["backend"] == "torch"
    assert info["max_upload_bytes"] == 2 * 1024 * 1024
    assert str(run_dir) not in json.dumps(info)  # no server paths leak
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_serve_predict_raw_and_multipart_match_cli(client, run_dir, mnist_small):
    png = to_png(mnist_as_photo(raw_pixels(mnist_small, 0)))
    predictor = load_predictor(run_dir)
    want = predictor.classify(predictor.preprocess(png))[0]
    raw = client.post("/api/predict", content=png, headers={"content-type": "image/png"})
    multi = client.post("/api/predict", files={"file": ("d.png", png, "image/png")})
    other_field = client.post("/api/predict", files={"upload": ("d.png", png, "application/octet-stream")})
    for r in (raw, multi, other_field):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["digit"] == want["digit"] == int(mnist_small.test.labels[0])
        assert body["probs"] == pytest.approx(want["probs"], abs=1e-6)
        assert body["ms"] > 0 and "pixels" not in body
    px = client.post("/api/predict?pixels=1", content=png, headers={"content-type": "image/png"}).json()["pixels"]
    assert len(px) == 784 and max(px) == 255 and min(px) == 0


def test_serve_errors_are_json_4xx(client):
    blank = to_png(Image.new("L", (50, 50), 0))
    big = b"\x89PNG" + b"\0" * (2 * 1024 * 1024)

    def chunks():
        for _ in range(25):
            yield b"\0" * 100_000

    cases = [
        (dict(content=b"", headers={"content-type": "image/png"}), 400, "empty"),
        (dict(content=b"hello", headers={"content-type": "image/png"}), 400, "not an image"),
        (dict(content=b"x", headers={"content-type": "multipart/form-data"}), 400, "multipart"),
        (
            dict(content=b"--zz\r\nbroken", headers={"content-type": "multipart/form-data; boundary=zz"}),
            422,
            "no file part",
        ),
        (dict(data={"name": "x"}, files={"other": ("a.txt", b"", "text/plain")}), 400, "empty"),
        (dict(content=b"abc", headers={"content-type": "text/plain"}), 415, "Content-Type"),
        (dict(json={"image": "..."}), 415, "Content-Type"),
        (dict(content=big, headers={"content-type": "image/png"}), 413, "limit"),
        (dict(content=chunks(), headers={"content-type": "image/png"}), 413, "limit"),  # no Content-Length
        (dict(content=blank, headers={"content-type": "image/png"}), 422, "no digit"),
    ]
    for kwargs, status, words in cases:
        r = client.post("/api/predict", **kwargs)
        assert r.status_code == status, (kwargs.get("headers"), r.status_code, r.text)
        assert r.headers["content-type"] == "application/json"
        detail = r.json()["detail"]
        assert isinstance(detail, str) and (words is None or words in detail), detail
    form_without_file = client.post("/api/predict", files={"f": (None, b"text only")})
    assert form_without_file.status_code == 422 and "no file part" in form_without_file.json()["detail"]
    assert client.get("/api/predict").status_code == 405


def test_serve_cli_refuses_busy_port(run_dir, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err
