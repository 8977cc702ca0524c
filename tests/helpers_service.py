"""Plain helpers for the service tests: stand-in models, settings, a started client, images and uploads (no
shipped weights needed). The fixtures built on them are in conftest.py."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from fastapi.testclient import TestClient
from helpers import png_chunk
from PIL import Image
from torch import nn

from invdn.models import registry
from invdn_service.app import create_app
from invdn_service.config import Settings


class StubDenoiser(nn.Module):
    """A 3x3 box blur with the denoiser interface; `gate`, when set, makes each call wait for it; `delay` adds
    seconds to each call; `global_mix` mixes in the input's mean, so tiled and whole-image outputs differ."""

    def __init__(self, model_type: str) -> None:
        super().__init__()
        self.model_type = model_type
        self.pretrained = False
        self.model_args: dict = {}
        self.blur = nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate", bias=False, groups=3)
        with torch.no_grad():
            self.blur.weight.fill_(1.0 / 9.0)
        self.gate: threading.Event | None = None
        self.delay = 0.0
        self.global_mix = 0.0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(x)

    def denoise(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(timeout=30)
        if self.delay:
            time.sleep(self.delay)
        out = self.blur(x)
        if self.global_mix:
            out = (1 - self.global_mix) * out + self.global_mix * x.mean()
        return out


def stub_provider(models: dict[str, StubDenoiser]) -> Callable[[str], nn.Module]:
    """A model provider handing out the given stubs by canonical registry name."""

    def provide(name: str) -> nn.Module:
        return models[name]

    return provide


def make_stubs() -> dict[str, StubDenoiser]:
    """One stub per registry model, keyed by canonical name, with the model's `model_type`."""
    return {spec.name: StubDenoiser(spec.model_type) for spec in registry.MODELS}


def stub_settings(**overrides: object) -> Settings:
    """Settings for tests: one torch thread, small warm-up, no env influence on the given fields."""
    values: dict = {"torch_threads": 1, "warmup_size": 32, "tile": 0}
    values.update(overrides)
    return Settings(**values)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/health/ready")
        if response.status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"service not ready after {timeout} s: {response.json()}")


@contextmanager
def service_client(
    stubs: dict[str, StubDenoiser] | None = None, **settings: object
) -> Iterator[tuple[TestClient, dict[str, StubDenoiser]]]:
    """A TestClient on a fresh app with stub models, started and ready."""
    stubs = stubs or make_stubs()
    app = create_app(stub_settings(**settings), model_provider=stub_provider(stubs))
    with keep_torch_threads(), TestClient(app) as client:
        wait_ready(client)
        yield client, stubs


@contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restores torch's thread count, which the app's start-up sets for the whole process."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def noisy_image(height: int = 48, width: int = 64, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A seeded smooth gradient plus Gaussian noise, uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (xx / max(width - 1, 1) * 160 + yy / max(height - 1, 1) * 60 + 20)[..., None]
    base = np.repeat(base, channels, axis=2)
    noisy = base + rng.normal(0, 20, size=base.shape)
    out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


def upload(data: bytes, name: str = "photo.png", content_type: str = "image/png") -> dict:
    """The `files=` of a multipart upload of `data` as the form field "file"."""
    return {"file": (name, data, content_type)}


def encode(array: np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_bomb(width: int = 50000, height: int = 50000) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header declares width x height RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x00" * (3 * min(width, 64))
    idat = zlib.compress(row * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def denoise_post_scope(headers: list[tuple[bytes, bytes]]) -> dict:
    """The ASGI scope of a POST /v1/denoise, for tests that drive the app's receive/send by hand."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/denoise",
        "raw_path": b"/v1/denoise",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
