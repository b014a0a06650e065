"""The `serve` page in a real headless Chromium: draw digits with the mouse and
with touch, read the prediction the page shows, take a screenshot.

Needs Debian's chromium (/usr/bin/chromium, or $MNISTLITE_CHROMIUM) and the
playwright Python package (its own browser download is NOT used); skips with
the reason where either is missing. MNISTLITE_SCREENSHOT=1 also writes the
screenshot to docs/img/serve.png for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from mnistlite.engine import rundir as rd

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("MNISTLITE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip(f"no Chromium at {path}: apt-get install chromium (or set MNISTLITE_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(flagship_run):
    """uvicorn on a free loopback port in a thread, serving the session's trained model."""
    uvicorn = pytest.importorskip("uvicorn", reason="deploy extra not installed: pip install 'mnistlite[deploy]'")
    pytest.importorskip("fastapi", reason="deploy extra not installed: pip install 'mnistlite[deploy]'")
    from mnistlite.deploy.serve import create_app

    run = flagship_run
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(run), log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", run
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def _wait_for_answer(page) -> str:
    # A selector, not wait_for_function: the page's CSP forbids the eval() that would need.
    page.wait_for_selector("#result[data-pending='0'] #digit:not([data-digit=''])", timeout=15_000)
    return page.get_attribute("#digit", "data-digit")


def _probs(page) -> list[float]:
    bars = page.locator(".bar")
    return [float(bars.nth(i).get_attribute("data-prob")) for i in range(bars.count())]


def _mouse_path(page, points: list[tuple[float, float]], box) -> None:
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=12)
    page.mouse.up()


def test_draw_digits_on_the_page(browser, server, tmp_path):
    base, run = server
    context = browser.new_context(viewport={"width": 900, "height": 620}, device_scale_factor=1, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        result = json.loads((run / rd.RESULT).read_text())
        info = page.inner_text("#model-info")
        assert "mnistlite_flagship" in info and f"{result['params']:,}" in info
        assert f"{result['final_test_acc']:.2f}% test accuracy" in info
        assert page.get_attribute("#digit", "data-digit") == ""
        box = page.locator("#pad").bounding_box()
        assert box["width"] == 280 and box["height"] == 280

        # A "1": one vertical stroke with the mouse.
        _mouse_path(page, [(140, 45), (138, 235)], box)
        assert _wait_for_answer(page) == "1"
        probs = _probs(page)
        assert len(probs) == 10 and max(probs) == probs[1] and probs[1] > 0.5
        assert page.inner_text("#digit") == "1"
        page.screenshot(path=str(tmp_path / "serve-1.png"))

        # Clear resets the answer and the bars.
        page.click("#clear")
        assert page.get_attribute("#digit", "data-digit") == "" and page.inner_text("#digit") == "?"
        assert max(_probs(page)) == 0

        # A "7": top bar, then the diagonal.
        _mouse_path(page, [(70, 55), (210, 55), (120, 240)], box)
        assert _wait_for_answer(page) == "7"
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("MNISTLITE_SCREENSHOT"):
            (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, REPO / "docs" / "img" / "serve.png")

        # Touch: the same "1", drawn with a finger (CDP touch events -> pointer events).
        page.click("#clear")
        cdp = context.new_cdp_session(page)
        x, y0 = box["x"] + 140, box["y"] + 45

        def touch(kind, y):
            points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", y0)
        for i in range(1, 20):
            touch("touchMove", y0 + i * 10)
        touch("touchEnd", 0)
        assert _wait_for_answer(page) == "1"
    finally:
        context.close()
    assert errors == []
    # Everything the page loaded came from this server: no CDN, no fonts from elsewhere.
    assert requests and all(u.startswith(base + "/") or u.startswith("data:") for u in requests), requests
