"""The web page in headless Chromium, driven over the Chrome DevTools Protocol, against a real uvicorn server.

Skips when Chromium or the `websockets` package is missing (`apt-get install chromium`; `pip install websockets`).
Set INVDN_SCREENSHOT_DIR to keep screenshots of the page.
"""

from __future__ import annotations

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
import pytest
import torch
import uvicorn
from service_fixtures import encode, make_stubs, noisy_image, stub_provider, stub_settings

from service.app import create_app

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


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    app = create_app(stub_settings(), model_provider=stub_provider(make_stubs()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    threads = torch.get_num_threads()
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
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
        deadline = time.monotonic() + 30
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


def test_upload_shows_the_comparison(page: DevTools, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(noisy_image(96, 128, seed=3)))
    page.set_file("#file", photo)
    page.wait_for("document.getElementById('invdn-psnr').textContent.endsWith('dB')")
    text = page.evaluate(
        "Object.fromEntries(['noisy-psnr','invdn-psnr','invdn-ssim','invdn-ms','invdn-params','danet-psnr',"
        "'danet-ssim','danet-ms','danet-params'].map(id => [id, document.getElementById(id).textContent]))"
    )
    for key in ("noisy-psnr", "invdn-psnr", "danet-psnr"):
        assert float(text[key].removesuffix(" dB")) > 5, text
    for key in ("invdn-ssim", "danet-ssim"):
        assert 0 < float(text[key]) <= 1, text
    for key in ("invdn-ms", "danet-ms"):
        assert text[key].endswith("ms"), text
    assert int(text["invdn-params"].replace(",", "")) > 0, text
    bars = page.evaluate("[...document.querySelectorAll('#chart svg rect')].map(r => Number(r.dataset.parameters))")
    assert len(bars) == 3 and all(b > 0 for b in bars)
    assert page.evaluate("document.getElementById('ba-after').naturalWidth") == 128
    assert page.evaluate("document.getElementById('error').hidden") is True
    page.evaluate(
        "(() => { const s = document.getElementById('ba-slider'); s.value = 20;"
        " s.dispatchEvent(new Event('input')); })()"
    )
    assert "20%" in page.evaluate("document.getElementById('ba-after').style.clipPath")
    page.screenshot("compare.png")


def test_rejected_file_gets_a_clear_message(page: DevTools, tmp_path: Path) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture")
    page.set_file("#file", fake)
    message = page.wait_for("!document.getElementById('error').hidden && document.getElementById('error').textContent")
    assert "not supported" in message
    page.screenshot("rejected.png")
