"""Limits and bad input: every rejection status, the decompression bomb, the queue, and nothing on disk."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time

import numpy as np
import pytest
from helpers_service import (
    denoise_post_scope,
    encode,
    make_stubs,
    noisy_image,
    png_bomb,
    service_client,
    stub_provider,
    stub_settings,
    upload,
)

from invdn.io import decode as imageio
from invdn.models import registry
from invdn_service.app import create_app
from invdn_service.config import Settings


def rejects(client, reason: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'invdn_rejects_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def client():
    """Overrides conftest's `client`: a service with small upload, pixel and compare limits."""
    with service_client(max_upload_bytes=64 * 1024, max_pixels=100 * 100, compare_max_pixels=40 * 40) as (c, _):
        yield c


def test_upload_over_the_byte_limit_is_413(client):
    big = encode(np.random.default_rng(0).integers(0, 256, (100, 200, 3), dtype=np.uint8))  # ~60 KB of noise
    big = big + b"\x00" * (70 * 1024 - len(big))  # trailing bytes after IEND: still a PNG, now over 64 KiB
    response = client.post("/v1/denoise", files=upload(big))
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"
    assert "65536 bytes" in response.json()["detail"]
    assert rejects(client, "upload_bytes") >= 1


def _multipart(boundary: bytes, payload: bytes) -> bytes:
    return (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + payload + b"\r\n--" + boundary + b"--\r\n"
    )


async def _call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes, int]:
    """Sends one request straight to the ASGI app; returns status, body and how many chunks were read."""
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = denoise_post_scope(headers)
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, pulled


def test_byte_limit_is_enforced_while_streaming_without_content_length():
    app = create_app(stub_settings(max_upload_bytes=100_000), model_provider=stub_provider(make_stubs()))
    app.state.models.ready = True  # no lifespan here; the upload is refused while parsing, before any model runs
    boundary = b"xyzzy"
    body = _multipart(boundary, b"\x89PNG\r\n\x1a\n" + b"\x00" * 1_000_000)  # ~1 MB, no Content-Length
    chunks = [body[i : i + 10_000] for i in range(0, len(body), 10_000)]
    headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]
    status, answer, pulled = asyncio.run(_call(app, headers, chunks))
    assert status == 413 and b"upload_too_large" in answer
    assert pulled <= 11  # stopped at the first chunk past 100 kB, not after reading all 100 chunks


def test_content_length_over_the_limit_is_refused_before_reading():
    app = create_app(stub_settings(max_upload_bytes=100_000), model_provider=stub_provider(make_stubs()))
    headers = [(b"content-type", b"multipart/form-data; boundary=b"), (b"content-length", b"5000000")]
    status, answer, pulled = asyncio.run(_call(app, headers, [b"x" * 1000] * 5))
    assert status == 413 and b"upload_too_large" in answer
    assert pulled == 0


def test_image_over_the_pixel_limit_is_413(client):
    response = client.post("/v1/denoise", files=upload(encode(noisy_image(101, 100))))
    assert response.status_code == 413
    assert response.json()["code"] == "image_too_large"
    assert client.post("/v1/denoise", files=upload(encode(noisy_image(100, 100)))).status_code == 200


def test_compare_has_its_own_pixel_limit(client):
    response = client.post("/v1/compare", files=upload(encode(noisy_image(41, 40))), data={"sigma": "10"})
    assert response.status_code == 413 and response.json()["code"] == "image_too_large"


@pytest.mark.parametrize("side", [50_000, 5_000])
def test_decompression_bomb_is_rejected_fast_without_decoding(client, monkeypatch, side):
    bomb = png_bomb(side, side)
    assert len(bomb) < 1000

    def no_decoding(*args, **kwargs):
        raise AssertionError("decode_image must not be called for an oversized image")

    client.post("/v1/denoise", files=upload(encode(noisy_image(8, 8))))  # warm the code path
    monkeypatch.setattr(imageio, "decode_image", no_decoding)
    start = time.perf_counter()
    response = client.post("/v1/denoise", files=upload(bomb))
    elapsed = time.perf_counter() - start
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "image_too_large"
    assert elapsed < 0.1, f"took {elapsed * 1000:.0f} ms"


def test_non_images_and_excluded_formats_are_415():
    with service_client(allowed_formats=["png", "jpeg"]) as (client, _):
        for data in (b"hello, this is text", b"GIF89a" + b"\x00" * 40, encode(noisy_image(16, 16), "GIF")):
            response = client.post("/v1/denoise", files=upload(data, "image.png"))
            assert response.status_code == 415, data[:8]
            assert response.json()["code"] == "unsupported_media_type"
            assert "png, jpeg" in response.json()["detail"]
        assert client.post("/v1/denoise", files=upload(encode(noisy_image(16, 16), "JPEG"))).status_code == 200


def test_undecodable_and_truncated_images_are_422(client):
    png = encode(noisy_image(64, 64, seed=9))
    for data in (png[:100], png[: len(png) // 2], b"\xff\xd8\xff" + b"\x00" * 50):
        response = client.post("/v1/denoise", files=upload(data))
        assert response.status_code == 422, (data[:8], response.text)
        assert response.json()["code"] == "undecodable_image"
    empty = client.post("/v1/denoise", files=upload(b""))
    assert empty.status_code == 422


def test_invalid_options_are_422_with_field_errors(client):
    png = encode(noisy_image(16, 16))
    for field, value in [("model", "bm3d"), ("samples", "0"), ("samples", "9"), ("format", "gif"), ("seed", "-1")]:
        response = client.post("/v1/denoise", files=upload(png), data={field: value})
        assert response.status_code == 422, (field, value)
        body = response.json()
        assert body["code"] == "invalid_request" and field in body["detail"]
        assert body["errors"][0]["loc"][-1] == field
    missing = client.post("/v1/denoise", data={"model": "invdn"})
    assert missing.status_code == 422 and "file" in missing.json()["detail"]
    sigma = client.post("/v1/compare", files=upload(png), data={"sigma": "300"})
    assert sigma.status_code == 422


def test_jpeg_output_of_an_image_with_alpha_is_422(client):
    rgba = np.dstack([noisy_image(16, 16), np.full((16, 16), 200, np.uint8)])
    response = client.post("/v1/denoise", files=upload(encode(rgba)), data={"format": "jpeg"})
    assert response.status_code == 422
    assert "alpha" in response.json()["detail"]


def test_malformed_multipart_is_400(client):
    response = client.post(
        "/v1/denoise", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=zz"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_full_queue_answers_503_with_retry_after():
    stubs = make_stubs()
    with service_client(stubs, inference_workers=1, queue_size=1, retry_after_s=7) as (client, _):
        gate = threading.Event()
        stubs["invdn"].gate = gate
        png = encode(noisy_image(16, 16))
        results: list[int] = []

        def post() -> None:
            results.append(client.post("/v1/denoise", files=upload(png)).status_code)

        workers = [threading.Thread(target=post) for _ in range(2)]
        for worker in workers:
            worker.start()
        queue = client.app.state.scheduler
        deadline = time.monotonic() + 10
        while queue.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue.depth == 2
        refused = client.post("/v1/denoise", files=upload(png))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "7"
        assert refused.json()["code"] == "overloaded"
        assert "invdn_queue_depth 2.0" in client.get("/metrics").text
        boundary = b"b0undary"
        headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]
        status, _, pulled = asyncio.run(_call(client.app, headers, [_multipart(boundary, png)]))
        assert (status, pulled) == (503, 0)  # refused before reading the upload
        gate.set()
        for worker in workers:
            worker.join(timeout=10)
        assert results == [200, 200]
        assert queue.depth == 0
        assert rejects(client, "queue_full") == 2
        assert client.post("/v1/denoise", files=upload(png)).status_code == 200


def test_uploads_never_touch_the_disk(monkeypatch):
    from starlette.formparsers import MultiPartParser

    big = encode(np.random.default_rng(1).integers(0, 256, (700, 700, 3), dtype=np.uint8))
    assert len(big) > MultiPartParser.spool_max_size  # Starlette alone would spool this part to a file

    def no_files(*args, **kwargs):
        raise AssertionError("a temporary file was created while handling an upload")

    with service_client(max_pixels=10**6) as (client, _):
        monkeypatch.setattr(tempfile, "TemporaryFile", no_files)
        monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_files)
        monkeypatch.setattr(tempfile, "mkstemp", no_files)
        response = client.post("/v1/denoise", files=upload(big))
        assert response.status_code == 200, response.text


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("INVDN_MAX_UPLOAD_BYTES", "12345")
    monkeypatch.setenv("INVDN_ALLOWED_FORMATS", "png, JPG,tif")
    monkeypatch.setenv("INVDN_QUEUE_SIZE", "3")
    settings = Settings()
    assert settings.max_upload_bytes == 12345
    assert settings.allowed_formats == ["png", "jpeg", "tiff"]
    assert settings.queue_size == 3
    monkeypatch.setenv("INVDN_ALLOWED_FORMATS", "png,svg")
    with pytest.raises(ValueError, match="svg"):
        Settings()
    monkeypatch.setenv("INVDN_ALLOWED_FORMATS", "png")
    monkeypatch.setenv("INVDN_MAX_PIXELS", "0")
    with pytest.raises(ValueError):
        Settings()


def test_tile_overlap_unset_or_blank_means_each_models_own(monkeypatch):
    monkeypatch.delenv("INVDN_TILE_OVERLAP", raising=False)
    assert Settings().tile_overlap is None
    monkeypatch.setenv("INVDN_TILE_OVERLAP", "")
    assert Settings().tile_overlap is None
    monkeypatch.setenv("INVDN_TILE_OVERLAP", "24")
    assert Settings().tile_overlap == 24
    monkeypatch.setenv("INVDN_TILE_OVERLAP", "-1")
    with pytest.raises(ValueError):
        Settings()


def test_default_limits_follow_from_the_measured_speed():
    from invdn_service import capacity

    settings = Settings()
    slowest = max(capacity.MEASURED_SECONDS_PER_MEGAPIXEL.values())
    every_model = sum(capacity.MEASURED_SECONDS_PER_MEGAPIXEL.values())
    # the slowest model answers the largest synchronous image within SYNC_SECONDS, and not 0.1 MP more
    assert settings.sync_max_pixels / 1e6 * slowest <= capacity.SYNC_SECONDS
    assert (settings.sync_max_pixels + 100_000) / 1e6 * slowest > capacity.SYNC_SECONDS
    assert settings.compare_max_pixels / 1e6 * every_model <= capacity.SYNC_SECONDS
    assert settings.queue_pixels / 1e6 * slowest <= capacity.QUEUE_SECONDS
    assert set(capacity.MEASURED_SECONDS_PER_MEGAPIXEL) <= set(registry.names())
