"""The REST endpoints through FastAPI's test client, with small stub models (no shipped weights needed)."""

from __future__ import annotations

import base64
import io
import re
import threading
import time

import numpy as np
import pytest
from helpers_service import (
    encode,
    keep_torch_threads,
    make_stubs,
    noisy_image,
    stub_provider,
    stub_settings,
    upload,
    wait_ready,
)
from PIL import Image

from invdn.eval.metrics import psnr, quantize8
from invdn.inference.engine import Denoiser
from invdn.models import registry


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_denoise_returns_the_models_output_with_metric_headers(client_and_stubs):
    client, stubs = client_and_stubs
    image = noisy_image(48, 64, seed=1)
    response = client.post("/v1/denoise", files=upload(encode(image)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-model"] == "invdn"
    assert int(response.headers["x-parameters"]) == sum(p.numel() for p in stubs["invdn"].parameters())
    assert float(response.headers["x-inference-ms"]) >= 0
    expected = quantize8(Denoiser(stubs["invdn"], device="cpu")(image.astype(np.float32) / 255.0))
    result = decode_png(response.content)
    assert result.shape == image.shape
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1
    assert psnr(result, image) < 60  # the image really changed


def test_denoise_with_danet_and_json_answer(client):
    image = noisy_image(40, 40, seed=2)
    as_image = client.post("/v1/denoise", files=upload(encode(image)), data={"model": "danet"})
    as_json = client.post(
        "/v1/denoise", files=upload(encode(image)), data={"model": "danet"}, headers={"Accept": "application/json"}
    )
    assert as_image.status_code == as_json.status_code == 200
    body = as_json.json()
    assert as_json.headers["x-model"] == body["model"] == "danet-r"  # the alias is answered with the canonical name
    assert body["parameters"] == int(as_json.headers["x-parameters"])
    assert body["inference_ms"] >= 0 and body["pretrained"] is False
    assert (body["width"], body["height"], body["format"], body["media_type"]) == (40, 40, "PNG", "image/png")
    assert base64.b64decode(body["image_base64"]) == as_image.content


@pytest.mark.parametrize(
    ("source_format", "requested", "magic", "media_type"),
    [
        ("PNG", "jpeg", b"\xff\xd8\xff", "image/jpeg"),
        ("PNG", "webp", b"RIFF", "image/webp"),
        ("JPEG", "keep", b"\xff\xd8\xff", "image/jpeg"),
        ("TIFF", "keep", b"II*\x00", "image/tiff"),
        ("BMP", "keep", b"BM", "image/bmp"),
        ("GIF", "keep", b"\x89PNG", "image/png"),
    ],
)
def test_denoise_output_formats(client, source_format, requested, magic, media_type):
    image = noisy_image(32, 32, seed=3)
    data = encode(image, source_format)
    response = client.post("/v1/denoise", files=upload(data, "in.bin"), data={"format": requested})
    assert response.status_code == 200, response.text
    assert response.content.startswith(magic)
    assert response.headers["content-type"] == media_type
    assert Image.open(io.BytesIO(response.content)).size == (32, 32)


def test_format_is_sniffed_from_content_not_name_or_declared_type(client):
    data = encode(noisy_image(24, 24), "PNG")
    response = client.post("/v1/denoise", files=upload(data, "notes.txt", "text/plain"))
    assert response.status_code == 200


def test_grey_images_stay_grey(client):
    grey = noisy_image(30, 30, channels=1)
    response = client.post("/v1/denoise", files=upload(encode(grey)))
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).mode == "L"


def test_cors_exposes_the_metric_headers(client):
    response = client.post(
        "/v1/denoise", files=upload(encode(noisy_image(24, 24))), headers={"Origin": "http://example.test"}
    )
    assert response.status_code == 200
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"x-model", "x-parameters", "x-inference-ms", "retry-after"} <= exposed


def test_compare_with_synthetic_noise(client):
    clean = noisy_image(40, 48, seed=4)
    response = client.post("/v1/compare", files=upload(encode(clean)), data={"sigma": "25", "seed": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "synthetic" and body["noise"].startswith("awgn:25")
    assert (body["height"], body["width"]) == (40, 48)
    rows = body["models"]
    assert list(rows) == ["noisy", *registry.names()]
    assert [rows[name]["label"] for name in registry.names()] == [spec.label for spec in registry.MODELS]
    for name in registry.names():
        assert rows[name]["psnr"] > 10 and 0 < rows[name]["ssim"] <= 1
        assert rows[name]["ms"] >= 0 and rows[name]["parameters"] > 0 and rows[name]["flops_per_megapixel"] > 0
    noisy = decode_png(base64.b64decode(body["images"]["noisy"]))
    assert noisy.shape == clean.shape
    assert rows["noisy"]["psnr"] == pytest.approx(psnr(noisy, clean), abs=1e-6)
    for name in (*registry.names(), "clean"):
        assert decode_png(base64.b64decode(body["images"][name])).shape == clean.shape
    assert body["ratios"]["invdn_over_danet_r"] == pytest.approx(
        rows["invdn"]["parameters"] / rows["danet-r"]["parameters"]
    )
    assert body["ratios"]["invdn_over_danet_all"] < body["ratios"]["invdn_over_danet_r"]
    again = client.post("/v1/compare", files=upload(encode(clean)), data={"sigma": "25", "seed": "3"}).json()
    assert again["images"]["noisy"] == body["images"]["noisy"]  # seeded


def test_compare_with_reference_and_blind(client):
    clean = noisy_image(32, 32, seed=5)
    noisy = np.clip(clean.astype(int) + np.random.default_rng(0).integers(-30, 30, clean.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    with_reference = client.post(
        "/v1/compare",
        files={"file": ("n.png", encode(noisy), "image/png"), "reference": ("c.png", encode(clean), "image/png")},
        data={"sigma": "40"},  # ignored: the reference decides
    )
    assert with_reference.status_code == 200, with_reference.text
    body = with_reference.json()
    assert body["mode"] == "reference"
    assert body["models"]["noisy"]["psnr"] == pytest.approx(psnr(noisy, clean), abs=1e-6)

    blind = client.post("/v1/compare", files=upload(encode(noisy))).json()
    assert blind["mode"] == "blind"
    assert blind["models"]["invdn"]["psnr"] is None and blind["models"]["invdn"]["ms"] >= 0

    camera = client.post("/v1/compare", files=upload(encode(clean)), data={"noise": "camera"}).json()
    assert camera["mode"] == "synthetic" and camera["noise"].startswith("camera")


def test_compare_rejects_a_reference_of_another_size(client):
    files = {
        "file": ("n.png", encode(noisy_image(32, 32)), "image/png"),
        "reference": ("c.png", encode(noisy_image(32, 40)), "image/png"),
    }
    response = client.post("/v1/compare", files=files)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_image_pair"


def test_models_lists_every_registry_model(client_and_stubs):
    client, stubs = client_and_stubs
    response = client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    by_name = {m["name"]: m for m in body["models"]}
    assert list(by_name) == registry.names()
    for spec in registry.MODELS:
        info = by_name[spec.name]
        assert (info["model_type"], info["label"], info["aliases"]) == (spec.model_type, spec.label, list(spec.aliases))
        assert info["parameters"] == sum(p.numel() for p in stubs[spec.name].parameters())
    for info in by_name.values():
        assert info["pretrained"] is False
        assert "shipped" in info["weights"] and "path" not in info["weights"]
    limits = body["limits"]
    assert limits["max_upload_bytes"] > 0 and "png" in limits["formats"]
    assert 0 < limits["sync_max_pixels"] <= limits["max_pixels"]


def test_health_and_metrics(client):
    assert client.get("/health/live").json() == {"status": "alive", "models": sorted(registry.names())}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["models"] == sorted(registry.names())
    image = noisy_image(50, 20)
    assert client.post("/v1/denoise", files=upload(encode(image)), data={"model": "danet"}).status_code == 200
    assert client.post("/v1/denoise", files=upload(b"plain text, not an image")).status_code == 415
    text = client.get("/metrics").text

    def value(pattern: str) -> float:
        match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
        assert match, f"{pattern} missing from /metrics"
        return float(match.group(1))

    assert value(r'invdn_http_requests_total\{method="POST",route="/v1/denoise",status="200"\}') >= 1
    assert value(r'invdn_http_requests_total\{method="POST",route="/v1/denoise",status="415"\}') >= 1
    assert value(r'invdn_http_request_duration_seconds_count\{method="POST",route="/v1/denoise"\}') >= 2
    assert value(r'invdn_inference_seconds_count\{model="danet-r"\}') >= 1
    assert value(r'invdn_megapixels_total\{model="danet-r"\}') >= 50 * 20 / 1e6
    assert value(r'invdn_rejects_total\{reason="unsupported_format"\}') >= 1
    assert value("invdn_queue_depth") == 0
    settings = client.app.state.settings
    assert value("invdn_queue_capacity") == settings.inference_workers + settings.queue_size
    assert value('invdn_tiles_total{kind="sync"}') >= 1 and value("invdn_tasks") == 0


def test_errors_are_json_with_a_code(client):
    for response, status, code in [
        (client.get("/v1/nothing"), 404, "not_found"),
        (client.get("/v1/denoise"), 405, "method_not_allowed"),
    ]:
        assert response.status_code == status
        assert response.json() == {"detail": response.json()["detail"], "code": code}


def test_not_ready_until_models_are_loaded_and_warmed_up():
    from fastapi.testclient import TestClient

    from invdn_service.app import create_app

    release = threading.Event()
    stubs = make_stubs()
    provide = stub_provider(stubs)

    def slow_provider(name: str):
        release.wait(timeout=30)
        return provide(name)

    app = create_app(stub_settings(retry_after_s=3), model_provider=slow_provider)
    with keep_torch_threads(), TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "3"
        assert ready.json()["code"] == "not_ready"
        refused = client.post("/v1/denoise", files=upload(encode(noisy_image(16, 16))))
        assert refused.status_code == 503 and refused.json()["code"] == "not_ready"
        assert client.get("/v1/models").status_code == 503
        release.set()
        wait_ready(client)
        assert all(stub.calls >= 1 for stub in stubs.values())  # every model warmed up before ready
        assert client.post("/v1/denoise", files=upload(encode(noisy_image(16, 16)))).status_code == 200


def test_ready_reports_a_failed_load():
    from fastapi.testclient import TestClient

    from invdn_service.app import create_app

    def broken(name: str):
        raise FileNotFoundError(f"no weights for {name}")

    with keep_torch_threads(), TestClient(create_app(stub_settings(), model_provider=broken)) as client:
        for _ in range(500):
            response = client.get("/health/ready")
            if "failed" in response.json()["detail"]:
                break
            time.sleep(0.01)
        assert response.status_code == 503
        assert "no weights for invdn" in response.json()["detail"]
