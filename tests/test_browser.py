"""The web page in headless Chromium, driven over the Chrome DevTools Protocol, against a real uvicorn server.

Skips when Chromium or the `websockets` package is missing (`apt-get install chromium`; `pip install websockets`).
Set INVDN_SCREENSHOT_DIR to keep screenshots of the page.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from helpers_service import encode, make_stubs, noisy_image, stub_provider, stub_settings
from PIL import Image

from invdn.eval.metrics import psnr
from invdn.models import registry
from invdn_service.app import create_app

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
websockets_sync = pytest.importorskip("websockets.sync.client", reason="websockets is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1600",
    "--remote-debugging-port=0",
]


class DevTools:
    """A minimal CDP client for one page target."""

    def __init__(self, connection: Any) -> None:
        self.socket = connection
        self.ids = itertools.count(1)

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def set_file(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("INVDN_SCREENSHOT_DIR")
        if folder:
            import base64

            data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
            Path(folder, name).write_bytes(base64.b64decode(data))


STUBS = make_stubs()  # the server's models; a test may slow them down (and must reset `delay`)
SYNC_MAX_PIXELS = 150 * 150  # photos over this go through the job API


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    settings = stub_settings(sync_max_pixels=SYNC_MAX_PIXELS, schedule_tile=64)
    app = create_app(settings, model_provider=stub_provider(STUBS))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    threads = torch.get_num_threads()
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    else:
        raise AssertionError("server did not become ready")
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    torch.set_num_threads(threads)


@pytest.fixture
def page(server_url: str, tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "profile"
    browser = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 90  # generous: Chromium starts slowly on a loaded 2-core machine
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        target = next(t for t in targets if t["type"] == "page")
        with websockets_sync.connect(target["webSocketDebuggerUrl"], max_size=64 * 2**20) as connection:
            tools = DevTools(connection)
            tools.call("Page.enable")
            tools.call("Runtime.enable")
            tools.call("Page.navigate", url=f"{server_url}/")
            tools.wait_for(
                "document.readyState === 'complete' && document.getElementById('status').textContent === 'Ready.'"
            )
            yield tools
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()


def test_default_upload_is_denoised_as_it_is(page: DevTools, tmp_path: Path) -> None:
    image = noisy_image(96, 128, seed=3)
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(image))
    page.set_file("#file", photo)
    page.wait_for("state.result !== null && document.getElementById('cards').children.length > 0")
    result = page.evaluate("({mode: state.result.mode, noise: state.result.noise, noisy: state.result.images.noisy})")
    assert result["mode"] == "blind" and result["noise"] is None  # no synthetic noise by default
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["noisy"]))))
    np.testing.assert_array_equal(shown, image)  # the input shown is the upload itself
    cards = page.evaluate(
        "[...document.querySelectorAll('#cards figure')].map(f => [f.id, f.querySelector('h3').textContent])"
    )
    assert cards == [["card-noisy", "Noisy input"], *[[f"card-{s.name}", s.label] for s in registry.MODELS]]
    for spec in registry.MODELS:
        text = page.evaluate(f"document.getElementById('{spec.name}-psnr').textContent")
        assert text == "-"  # no reference, no PSNR
        assert page.evaluate(f"document.getElementById('{spec.name}-ms').textContent").endswith("ms")
    bars = page.evaluate("[...document.querySelectorAll('#chart svg rect')].map(r => Number(r.dataset.parameters))")
    assert len(bars) >= len(registry.MODELS) and all(b > 0 for b in bars)
    assert page.evaluate("document.getElementById('ba-after').naturalWidth") == 128
    assert page.evaluate("document.getElementById('error').hidden") is True
    page.evaluate(
        "(() => { const s = document.getElementById('ba-slider'); s.value = 20;"
        " s.dispatchEvent(new Event('input')); })()"
    )
    assert "20%" in page.evaluate("document.getElementById('ba-after').style.clipPath")
    # every model's result can be downloaded; this one is small enough for /v1/denoise
    for spec in registry.MODELS:
        page.evaluate(f"document.getElementById('download-{spec.name}').click()")
        saved = page.wait_for(f"state.lastDownload && state.lastDownload.model === '{spec.name}' && state.lastDownload")
        assert saved["name"] == f"photo-{spec.name}.png" and saved["size"] > 0
    assert page.evaluate("state.progressSeen.length") == 0  # no job was needed
    page.screenshot("compare.png")


def test_pair_with_a_reference_is_scored(page: DevTools, tmp_path: Path) -> None:
    clean = noisy_image(64, 80, seed=4)
    rng = np.random.default_rng(1)
    noisy = np.clip(clean.astype(int) + rng.integers(-25, 26, clean.shape), 0, 255).astype(np.uint8)
    (tmp_path / "noisy.png").write_bytes(encode(noisy))
    (tmp_path / "clean.png").write_bytes(encode(clean))
    page.set_file("#file", tmp_path / "noisy.png")
    page.wait_for("state.result !== null")
    page.set_file("#reference", tmp_path / "clean.png")
    page.wait_for("state.result !== null && state.result.mode === 'reference'")
    noisy_psnr = page.wait_for(
        "document.getElementById('noisy-psnr').textContent.endsWith('dB') && "
        "document.getElementById('noisy-psnr').textContent"
    )
    assert float(noisy_psnr.removesuffix(" dB")) == pytest.approx(psnr(noisy, clean), abs=0.01)
    for spec in registry.MODELS:
        text = page.evaluate(f"document.getElementById('{spec.name}-psnr').textContent")
        assert float(text.removesuffix(" dB")) > 5, text
        assert 0 < float(page.evaluate(f"document.getElementById('{spec.name}-ssim').textContent")) <= 1
    assert page.evaluate("document.getElementById('demo-noise').disabled") is True
    assert "clean reference" in page.evaluate("document.getElementById('status').textContent")


def test_demo_mode_adds_noise_only_when_asked(page: DevTools, tmp_path: Path) -> None:
    photo = tmp_path / "clean.png"
    photo.write_bytes(encode(noisy_image(48, 48, seed=6)))
    page.set_file("#file", photo)
    page.wait_for("state.result !== null && state.result.mode === 'blind'")
    page.evaluate(
        "(() => { const c = document.getElementById('demo-noise'); c.checked = true;"
        " c.dispatchEvent(new Event('change')); })()"
    )
    page.wait_for("state.result.mode === 'synthetic'")
    assert page.evaluate("state.result.noise").startswith("awgn:25")
    assert page.evaluate("document.getElementById('invdn-psnr').textContent").endswith("dB")


def test_big_photo_goes_through_a_job_with_progress(page: DevTools, tmp_path: Path) -> None:
    photo = tmp_path / "big.png"
    photo.write_bytes(encode(noisy_image(256, 256, seed=8)))  # 65536 pixels > SYNC_MAX_PIXELS
    page.set_file("#file", photo)
    page.wait_for("state.result !== null && document.getElementById('download-invdn') !== null")
    STUBS["invdn"].delay = 0.1  # 16+ tiles of 64: a couple of seconds, enough to see progress
    try:
        page.evaluate("document.getElementById('download-invdn').click()")
        page.wait_for("!document.getElementById('job').hidden")
        page.wait_for("state.progressSeen.some(p => p > 0 && p < 1)")
        text = page.evaluate("document.getElementById('job-text').textContent")
        assert "tiles" in text
        page.screenshot("job.png")
        saved = page.wait_for("state.lastDownload && state.lastDownload.model === 'invdn' && state.lastDownload")
    finally:
        STUBS["invdn"].delay = 0.0
    assert saved["name"] == "big-invdn.png" and saved["size"] > 0
    assert page.evaluate("document.getElementById('job').hidden") is True
    assert "Saved big-invdn.png" in page.evaluate("document.getElementById('status').textContent")


def test_rejected_file_gets_a_clear_message(page: DevTools, tmp_path: Path) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture")
    page.set_file("#file", fake)
    message = page.wait_for("!document.getElementById('error').hidden && document.getElementById('error').textContent")
    assert "not supported" in message
    page.screenshot("rejected.png")
