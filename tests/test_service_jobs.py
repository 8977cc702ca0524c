"""Fair tile scheduling, the asynchronous job API, cancellation, and the registry-driven model list."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import threading
import time

import numpy as np
import pytest
import torch
from helpers_service import denoise_post_scope, encode, make_stubs, noisy_image, png_bomb, service_client, upload
from PIL import Image

from invdn.inference.engine import Denoiser
from invdn.inference.tiles import TiledRun
from invdn.models import registry
from invdn_service.config import Settings


def metric(client, pattern: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_until(condition, timeout: float = 20.0, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


def poll_job(client, url: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] in ("done", "failed", "cancelled"):
            return body
        time.sleep(0.02)
    raise AssertionError(f"job not finished after {timeout} s: {body}")


# ---------- invdn.inference.tiles ----------


@pytest.mark.parametrize(("tile", "max_tile"), [(None, None), (64, None), (None, 96)])
def test_tiled_run_equals_the_denoiser(tile, max_tile):
    stub = make_stubs()["danet-r"]
    stub.global_mix = 0.3  # tile-dependent: any difference in the grid, windows or order would show
    pixels = noisy_image(150, 190, seed=7).astype(np.float32) / 255.0
    denoiser = Denoiser(stub, device="cpu", tile=tile, overlap=16)
    run = TiledRun(denoiser, pixels, seed=3, max_tile=max_tile)
    steps = list(run.steps())
    assert len(steps) == run.total == len(run.tiles())
    expected = Denoiser(stub, device="cpu", tile=max_tile or tile, overlap=16)(pixels, seed=3)
    np.testing.assert_array_equal(run.result(), expected)
    if max_tile is not None:
        assert run.total > 1 and max(run.tile_h, run.tile_w) <= max_tile


def test_tiled_run_result_needs_every_step():
    run = TiledRun(Denoiser(make_stubs()["invdn"], device="cpu", tile=64, overlap=8), np.zeros((100, 100, 3), "f4"))
    next(run.steps())
    with pytest.raises(RuntimeError, match="tiles denoised"):
        run.result()


# ---------- fairness ----------


def test_small_request_is_not_stuck_behind_a_big_job():
    stubs = make_stubs()
    with service_client(stubs, schedule_tile=64, sync_max_pixels=100 * 100, max_pixels=640 * 640) as (client, _):
        stubs["invdn"].delay = 0.05  # per tile: the 640x640 job has >= 100 tiles of 64, so >= 5 s
        job = client.post("/v1/jobs", files=upload(encode(noisy_image(640, 640))))
        assert job.status_code == 202, job.text
        url = job.json()["status_url"]
        wait_until(lambda: client.get(url).json()["tiles_done"] >= 2)
        start = time.perf_counter()
        small = client.post("/v1/denoise", files=upload(encode(noisy_image(48, 48))))
        elapsed = time.perf_counter() - start
        assert small.status_code == 200
        status = client.get(url).json()
        assert status["status"] == "running" and status["tiles_done"] < status["tiles_total"]
        assert elapsed < 2.0, f"small request took {elapsed:.2f} s behind the job"
        assert client.delete(url).json()["status"] == "cancelled"


# ---------- the job API ----------


def test_job_runs_to_the_same_result_as_a_synchronous_request():
    stubs = make_stubs()
    with service_client(stubs, schedule_tile=64) as (client, _):
        png = encode(noisy_image(150, 130, seed=2))
        created = client.post("/v1/jobs", files=upload(png), data={"model": "danet"})
        assert created.status_code == 202, created.text
        body = created.json()
        assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
        assert created.headers["location"] == body["status_url"] == f"/v1/jobs/{body['id']}"
        assert body["model"] == "danet-r" and (body["width"], body["height"]) == (130, 150)
        done = poll_job(client, body["status_url"])
        assert done["status"] == "done" and done["progress"] == 1.0
        assert done["tiles_done"] == done["tiles_total"] > 1 and done["expires_at"] > done["created_at"]
        result = client.get(done["result_url"])
        assert result.status_code == 200 and result.headers["x-model"] == "danet-r"
        direct = client.post("/v1/denoise", files=upload(png), data={"model": "danet-r"})
        assert result.content == direct.content
        assert metric(client, r'invdn_tiles_total\{kind="job"\}') == done["tiles_total"]


def test_job_errors_unknown_ids_and_results_not_ready():
    stubs = make_stubs()
    with service_client(stubs, schedule_tile=64) as (client, _):
        missing = client.get("/v1/jobs/" + "0" * 32)
        assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"
        for bad in ("../../etc/passwd", "ABC", "0" * 33):
            response = client.get(f"/v1/jobs/{bad}")
            assert response.status_code in (404, 422), bad
            assert response.json()["code"] in ("not_found", "invalid_request")
        assert client.delete("/v1/jobs/" + "f" * 32).status_code == 404
        gate = threading.Event()
        stubs["invdn"].gate = gate
        job = client.post("/v1/jobs", files=upload(encode(noisy_image(100, 100)))).json()
        early = client.get(f"/v1/jobs/{job['id']}/result")
        assert early.status_code == 409 and early.json()["code"] == "job_not_finished"
        gate.set()
        assert poll_job(client, job["status_url"])["status"] == "done"
        broken = client.post("/v1/jobs", files=upload(encode(noisy_image(40, 40))[:60]))
        failed = poll_job(client, broken.json()["status_url"])
        assert failed["status"] == "failed" and failed["error"]["code"] == "undecodable_image"
        assert client.get(f"{failed['status_url']}/result").status_code == 409


def test_deleting_a_job_stops_its_tiles():
    stubs = make_stubs()
    with service_client(stubs, schedule_tile=64, max_pixels=640 * 640) as (client, _):
        stubs["invdn"].delay = 0.02
        job = client.post("/v1/jobs", files=upload(encode(noisy_image(640, 640)))).json()
        wait_until(lambda: client.get(job["status_url"]).json()["tiles_done"] >= 3)
        deleted = client.delete(job["status_url"])
        assert deleted.status_code == 200 and deleted.json()["status"] == "cancelled"
        calls = stubs["invdn"].calls
        time.sleep(0.3)
        assert stubs["invdn"].calls <= calls + 1  # at most the tile that was running
        assert client.get(job["status_url"]).status_code == 404
        assert metric(client, r'invdn_cancelled_total\{kind="job",reason="deleted"\}') == 1
        wait_until(lambda: metric(client, "invdn_tasks") == 0)


def test_job_store_is_bounded_and_jobs_expire():
    stubs = make_stubs()
    with service_client(stubs, max_jobs=2, job_ttl_s=1, retry_after_s=3) as (client, _):
        png = encode(noisy_image(32, 32))
        first = [client.post("/v1/jobs", files=upload(png)).json() for _ in range(2)]
        for job in first:
            poll_job(client, job["status_url"])
        full = client.post("/v1/jobs", files=upload(png))
        assert full.status_code == 503 and full.headers["retry-after"] == "3"
        time.sleep(1.1)  # both expire
        assert client.get(first[0]["status_url"]).status_code == 404
        assert client.post("/v1/jobs", files=upload(png)).status_code == 202


# ---------- limits ----------


def test_denoise_over_the_sync_limit_points_to_the_job_api():
    with service_client(sync_max_pixels=50 * 50) as (client, _):
        response = client.post("/v1/denoise", files=upload(encode(noisy_image(51, 50))))
        assert response.status_code == 413
        assert response.json()["code"] == "image_too_large_for_sync" and "/v1/jobs" in response.json()["detail"]
        assert client.post("/v1/jobs", files=upload(encode(noisy_image(51, 50)))).status_code == 202
        assert client.get("/v1/models").json()["limits"]["sync_max_pixels"] == 2500


def test_decompression_bomb_gets_the_services_own_limit():
    with service_client(max_pixels=1_000_000) as (client, _):
        response = client.post("/v1/denoise", files=upload(png_bomb(50_000, 50_000)))  # over Pillow's own 179 MP
        assert response.status_code == 413
        detail = response.json()["detail"]
        assert "1000000 pixels" in detail and "178956970" not in detail


# ---------- cancellation of synchronous requests ----------


async def _post_then_disconnect(app, body: bytes, boundary: bytes, after: float) -> list[dict]:
    """Sends one request to the ASGI app, then reports a disconnect after `after` seconds."""
    sent_body = False
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(after)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = denoise_post_scope([(b"content-type", b"multipart/form-data; boundary=" + boundary)])
    await app(scope, receive, send)
    return sent


def test_a_disconnected_client_stops_its_tiles():
    stubs = make_stubs()
    with service_client(stubs, schedule_tile=64, sync_max_pixels=640 * 640, max_pixels=640 * 640) as (client, _):
        stubs["invdn"].delay = 0.02
        png = encode(noisy_image(640, 640))
        boundary = b"b0undary"
        body = (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--" + boundary + b"--\r\n"
        )
        before = stubs["invdn"].calls
        sent = asyncio.run(_post_then_disconnect(client.app, body, boundary, after=0.5))
        ran = stubs["invdn"].calls - before
        assert next(m["status"] for m in sent if m["type"] == "http.response.start") == 499  # not a 5xx
        time.sleep(0.3)
        assert stubs["invdn"].calls - before <= ran + 1
        assert ran < 100  # 640x640 in tiles of 64 is over 100 tiles; most never ran
        assert metric(client, r'invdn_cancelled_total\{kind="sync",reason="disconnect"\}') == 1
        wait_until(lambda: client.app.state.scheduler.depth == 0)
        assert client.post("/v1/denoise", files=upload(encode(noisy_image(16, 16)))).status_code == 200


# ---------- compare = denoise ----------


def test_compare_outputs_equal_the_denoise_outputs_for_every_model():
    stubs = make_stubs()
    for stub in stubs.values():
        stub.global_mix = 0.5  # whole-image and tiled outputs of this stub differ by far more than a grey level
    with service_client(stubs, schedule_tile=64) as (client, _):
        png = encode(noisy_image(120, 140, seed=5))
        body = client.post("/v1/compare", files=upload(png)).json()
        assert body["mode"] == "blind"
        for name in registry.names():
            direct = client.post("/v1/denoise", files=upload(png), data={"model": name})
            compared = base64.b64decode(body["images"][name])
            ours = np.asarray(Image.open(io.BytesIO(compared)))
            theirs = np.asarray(Image.open(io.BytesIO(direct.content)))
            # equal up to rounding: compare scores in float64, the encoder rounds in float32
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, name
        whole = stubs["danet-r"].denoise(
            torch.from_numpy(noisy_image(120, 140, seed=5) / np.float32(255)).permute(2, 0, 1)[None]
        )
        whole8 = np.rint(whole[0].detach().permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(int)
        assert np.abs(whole8 - theirs.astype(int)).max() > 5  # so the check above can fail


# ---------- settings ----------


def test_weights_files_setting_takes_registry_names_and_aliases(monkeypatch):
    monkeypatch.setenv("INVDN_WEIGHTS_FILES", "danet=/w/d.safetensors, invdn-lc=/w/i.safetensors")
    files = Settings().weights_files
    assert {name: str(path) for name, path in files.items()} == {
        "danet-r": "/w/d.safetensors",
        "invdn": "/w/i.safetensors",
    }
    monkeypatch.setenv("INVDN_WEIGHTS_FILES", "bm3d=/w/x.safetensors")
    with pytest.raises(ValueError, match="bm3d"):
        Settings()


def test_method_not_allowed_lists_every_method_of_the_path():
    with service_client() as (client, _):
        response = client.request("OPTIONS", "/v1/jobs/" + "0" * 32)
        assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
        assert set(response.headers["allow"].split(", ")) == {"GET", "DELETE"}


def test_synchronous_work_is_admitted_within_the_pixel_budget():
    stubs = make_stubs()
    with service_client(stubs, queue_pixels=15_000, queue_size=8, retry_after_s=4) as (client, _):
        gate = threading.Event()
        stubs["invdn"].gate = gate
        png = encode(noisy_image(100, 100))  # 10,000 pixels
        answers: list[int] = []
        first = threading.Thread(
            target=lambda: answers.append(client.post("/v1/denoise", files=upload(png)).status_code)
        )
        first.start()
        wait_until(lambda: client.app.state.scheduler.depth == 1)
        refused = client.post("/v1/denoise", files=upload(png))  # 20,000 pixels would be over 15,000
        assert refused.status_code == 503 and refused.headers["retry-after"] == "4"
        assert refused.json()["code"] == "overloaded"
        gate.set()
        first.join(timeout=10)
        assert answers == [200]
        assert client.post("/v1/denoise", files=upload(png)).status_code == 200


def test_an_empty_form_field_is_an_error_not_the_default():
    with service_client() as (client, _):
        png = encode(noisy_image(16, 16))
        for path in ("/v1/denoise", "/v1/jobs", "/v1/compare"):
            response = client.post(path, files=upload(png), data={"format" if path != "/v1/compare" else "noise": ""})
            assert response.status_code == 422, path
            assert response.json()["code"] == "invalid_request" and "empty value" in response.json()["detail"]
