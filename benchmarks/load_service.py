"""Load test of the REST service: a real `invdn serve` on 127.0.0.1 (random free port), bounded in count and time.

Sends `--requests` POST /v1/denoise requests of one seeded `--size`^2 image at `--concurrency`, honouring
503 + Retry-After by waiting and retrying (at most `--max-retries` times). Reports latency percentiles,
throughput, answers by status, and the server's memory (RSS of the process tree) after warm-up and after the run.
Passes (exit 0) when no request failed other than by 503 with Retry-After and memory grew by at most
`--max-rss-growth`.

    python benchmarks/load_service.py                      # 200 requests of 512x512 at concurrency 16
    python benchmarks/load_service.py --requests 20 --size 128 --json
    INVDN_DEVICE=cuda python benchmarks/load_service.py    # server settings come from INVDN_* variables

`--fairness` runs the scenario of invdn_service/README.md ("Fair scheduling") instead, in one server run:
  1. speed: each registry model denoises a --speed-size^2 image as a job (the server's own model time, s/MP);
  2. idle: --requests requests of --size^2 at --concurrency on an idle server (p50/p95);
  3. loaded: the same while a --big-width x --big-height job is in progress (p95 must be <= 2x idle);
  4. cancel: DELETE the big job; time until no task is left, against the longest job tile (must be within it);
  5. disconnect: a synchronous request of the largest synchronous size, dropped by its client once its tiles
     run; time until no task is left (must be within one tile);
  then 0 server errors and memory within --max-rss-growth of the value after warm-up.
    python benchmarks/load_service.py --fairness --json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample_image(size: int, seed: int = 0) -> bytes:
    """A seeded noisy gradient as PNG bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx / size * 200 + 20, yy / size * 200 + 20, (xx + yy) / (2 * size) * 200 + 20], axis=-1)
    noisy = np.clip(np.rint(base + rng.normal(0, 25, base.shape)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="PNG")
    return buffer.getvalue()


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its children, in bytes."""
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Outcome:
    """One logical request, retries included."""

    status: int | None  # final HTTP status; None when the request raised
    seconds: float  # from the first attempt to the final answer, waits included
    attempts: int  # HTTP requests sent
    shed: int  # 503 answers with Retry-After along the way
    error: str = ""  # transport error or unexpected answer


@dataclass
class Report:
    requests: int
    concurrency: int
    size: int
    model: str
    completed_ok: int
    shed_503_with_retry_after: int
    gave_up_after_503: int
    failures: int
    failure_examples: list[str] = field(default_factory=list)
    not_sent_time_limit: int = 0
    wall_seconds: float = 0.0
    throughput_rps: float = 0.0
    megapixels_per_second: float = 0.0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_max_s: float | None = None
    ready_seconds: float = 0.0
    rss_after_warmup_mib: float = 0.0
    rss_after_run_mib: float = 0.0
    rss_growth_percent: float = 0.0
    server_inference_mean_s: float | None = None  # model time per image from /metrics (one process's view)
    server_rejects: dict[str, float] = field(default_factory=dict)  # invdn_rejects_total by reason
    passed: bool = False


async def one_request(
    client: httpx.AsyncClient, payload: bytes, model: str, max_retries: int, deadline: float
) -> Outcome:
    start = time.perf_counter()
    shed = 0
    for attempt in range(1, max_retries + 2):
        try:
            response = await client.post(
                "/v1/denoise", files={"file": ("load.png", payload, "image/png")}, data={"model": model}
            )
        except httpx.HTTPError as exc:
            return Outcome(None, time.perf_counter() - start, attempt, shed, f"{type(exc).__name__}: {exc}")
        if response.status_code == 200:
            if not response.content.startswith(b"\x89PNG"):
                return Outcome(200, time.perf_counter() - start, attempt, shed, "200 without a PNG body")
            return Outcome(200, time.perf_counter() - start, attempt, shed)
        retry_after = response.headers.get("retry-after")
        if response.status_code == 503 and retry_after is not None:
            shed += 1
            wait = float(retry_after)
            if attempt > max_retries or time.monotonic() + wait > deadline:
                return Outcome(503, time.perf_counter() - start, attempt, shed)
            await asyncio.sleep(wait)
            continue
        return Outcome(
            response.status_code, time.perf_counter() - start, attempt, shed, response.text[:200].replace("\n", " ")
        )
    raise AssertionError("unreachable")


async def run_load(
    base_url: str, payload: bytes, args: argparse.Namespace, deadline: float
) -> tuple[list[Outcome], int, float]:
    semaphore = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    timeout = httpx.Timeout(args.request_timeout)
    outcomes: list[Outcome] = []
    not_sent = 0

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:

        async def worker() -> None:
            nonlocal not_sent
            async with semaphore:
                if time.monotonic() > deadline:
                    not_sent += 1
                    return
                outcomes.append(await one_request(client, payload, args.model, args.max_retries, deadline))
                if len(outcomes) % 10 == 0:
                    elapsed = time.perf_counter() - start
                    print(f"{len(outcomes)}/{args.requests} answered after {elapsed:.0f} s", file=sys.stderr)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.requests)))
        wall = time.perf_counter() - start
    return outcomes, not_sent, wall


def start_server(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "invdn", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning"]
    # The server logs to stderr (its banner too), so stdout carries only the report.
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=sys.stderr)


def wait_ready(base_url: str, server: subprocess.Popen, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with code {server.returncode} before it was ready")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=5).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"server not ready after {timeout:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def server_metrics(base_url: str, model: str) -> tuple[float | None, dict[str, float]]:
    """(mean model seconds per image, rejects by reason) from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    total = count = 0.0
    rejects: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "invdn_inference_seconds_sum" and sample.labels.get("model") == model:
                total = sample.value
            elif sample.name == "invdn_inference_seconds_count" and sample.labels.get("model") == model:
                count = sample.value
            elif sample.name == "invdn_rejects_total":
                rejects[sample.labels["reason"]] = sample.value
    return (total / count if count else None), rejects


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


# ---------- --fairness ----------


def gradient_png(width: int, height: int, seed: int = 0) -> bytes:
    """A seeded noisy gradient of any size as PNG bytes (fast to make, compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    xx = np.linspace(20, 220, width, dtype=np.float32)[None, :]
    yy = np.linspace(20, 220, height, dtype=np.float32)[:, None]
    base = np.stack([xx + 0 * yy, yy + 0 * xx, (xx + yy) / 2], axis=-1)
    noise = rng.normal(0, 12, (min(height, 256), min(width, 256), 3)).astype(np.float32)
    tiled = np.tile(noise, (-(-height // noise.shape[0]), -(-width // noise.shape[1]), 1))[:height, :width]
    pixels = np.clip(np.rint(base + tiled), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def metric_values(base_url: str) -> dict[str, float]:
    """Every sample of /metrics as {'name{label="v",...}': value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def wait_idle(base_url: str, timeout: float) -> float:
    """Seconds until the server has no task left (invdn_tasks == 0), polled every 10 ms."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if metric_values(base_url).get("invdn_tasks", 1.0) == 0.0:
            return time.perf_counter() - start
        time.sleep(0.01)
    raise TimeoutError(f"tasks still running {timeout:.0f} s later")


def run_job(client: httpx.Client, payload: bytes, model: str, timeout: float) -> dict:
    """Runs one job to the end; its final status."""
    created = client.post("/v1/jobs", files={"file": ("j.png", payload, "image/png")}, data={"model": model})
    created.raise_for_status()
    url = created.json()["status_url"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(url).json()
        if status["status"] in ("done", "failed", "cancelled"):
            client.delete(url)
            return status
        time.sleep(0.2)
    raise TimeoutError(f"job {url} not done after {timeout:.0f} s")


async def phase(base_url: str, payload: bytes, args: argparse.Namespace) -> list[Outcome]:
    """--requests requests at --concurrency; the outcomes."""
    deadline = time.monotonic() + args.max_seconds
    outcomes, _, _ = await run_load(base_url, payload, args, deadline)
    return outcomes


def latency_summary(outcomes: list[Outcome]) -> dict[str, float | int | None]:
    ok = [o.seconds for o in outcomes if o.status == 200 and not o.error]
    return {
        "ok": len(ok),
        "server_errors": sum(1 for o in outcomes if o.status is not None and o.status >= 500 and o.status != 503),
        "failed": sum(1 for o in outcomes if not (o.status == 200 and not o.error) and o.status != 503),
        "shed_503": sum(o.shed for o in outcomes),
        "p50_s": percentile(ok, 50),
        "p95_s": percentile(ok, 95),
        "max_s": max(ok) if ok else None,
    }


def drop_after_tiles_start(port: int, payload: bytes, base_url: str, model: str, timeout: float) -> float:
    """Sends a synchronous /v1/denoise over a raw socket, closes the socket once the server has run one of its
    tiles, and returns the seconds from the close until the server has no task left."""
    boundary = "invdnloadboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + payload + f"\r\n--{boundary}--\r\n".encode()
    request = (
        f"POST /v1/denoise HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
        f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    tiles_key = 'invdn_tiles_total{kind="sync"}'
    before = metric_values(base_url).get(tiles_key, 0.0)
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(request + body)
        deadline = time.monotonic() + timeout
        while metric_values(base_url).get(tiles_key, 0.0) < before + 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the synchronous request's tiles never started")
            time.sleep(0.01)
    finally:
        sock.close()
    return wait_idle(base_url, timeout)


def fairness(args: argparse.Namespace) -> int:
    """The --fairness scenario (see the module docstring); prints a JSON report, exit 0 when every check holds."""
    import torch

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(port, 1, dict(os.environ))
    report: dict = {
        "command": "python benchmarks/load_service.py " + " ".join(sys.argv[1:]),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "settings": {key: value for key, value in os.environ.items() if key.startswith("INVDN_")},
    }
    try:
        report["ready_seconds"] = round(wait_ready(base_url, server, args.ready_timeout), 2)
        report["rss_at_ready_mib"] = round(tree_rss(server.pid) / 2**20, 1)
        with httpx.Client(base_url=base_url, timeout=args.request_timeout) as client:
            info = client.get("/v1/models").json()
            report["limits"] = info["limits"]
            names = [model["name"] for model in info["models"]]
            small = gradient_png(args.size, args.size, seed=1)
            for _ in range(args.warmup):
                client.post("/v1/denoise", files={"file": ("w.png", small, "image/png")}, data={"model": args.model})
            # 1. speed of each model, by the server's own model time
            speed = {}
            if args.speed_size:
                square = gradient_png(args.speed_size, args.speed_size, seed=2)
                for name in names:
                    status = run_job(client, square, name, args.request_timeout)
                    megapixels = args.speed_size**2 / 1e6
                    speed[name] = {
                        "megapixels": megapixels,
                        "tiles": status["tiles_total"],
                        "seconds_per_megapixel": round(status["inference_ms"] / 1000 / megapixels, 3),
                    }
            report["speed"] = speed
            # warm-up of the big paths too: a big job decoded, one tile run, then deleted
            big = gradient_png(args.big_width, args.big_height, seed=3)
            warm = client.post("/v1/jobs", files={"file": ("w.png", big, "image/png")}, data={"model": args.model})
            warm_url = warm.json()["status_url"]
            while client.get(warm_url).json()["tiles_done"] < 1:
                time.sleep(0.05)
            client.delete(warm_url)
            wait_idle(base_url, 120)
            rss_start = tree_rss(server.pid)
            # 2. idle
            idle = asyncio.run(phase(base_url, small, args))
            report["idle"] = latency_summary(idle)
            # 3. loaded: a big job in progress
            created = client.post(
                "/v1/jobs", files={"file": ("big.png", big, "image/png")}, data={"model": args.model}
            ).json()
            job_url = created["status_url"]
            deadline = time.monotonic() + args.request_timeout
            while client.get(job_url).json()["tiles_done"] < 1:
                if time.monotonic() > deadline:
                    raise TimeoutError("the big job never started")
                time.sleep(0.05)
            loaded = asyncio.run(phase(base_url, small, args))
            job_after = client.get(job_url).json()
            report["loaded"] = latency_summary(loaded)
            report["big_job"] = {
                "megapixels": args.big_width * args.big_height / 1e6,
                "status_after_loaded_phase": job_after["status"],
                "tiles_done": job_after["tiles_done"],
                "tiles_total": job_after["tiles_total"],
            }
            # 4. cancel the big job
            cancel_start = time.perf_counter()
            deleted = client.delete(job_url).json()
            wait_idle(base_url, 120)
            freed = time.perf_counter() - cancel_start  # DELETE's own round trip included
            metrics = metric_values(base_url)
            job_tile_max = metrics.get('invdn_tile_seconds_max{kind="job"}')
            job_tiles = metrics.get('invdn_tile_seconds_count{kind="job"}') or 0.0
            report["cancel"] = {
                "status": deleted["status"],
                "freed_seconds": round(freed, 3),
                "longest_job_tile_seconds": job_tile_max,
                "mean_job_tile_seconds": round(metrics['invdn_tile_seconds_sum{kind="job"}'] / job_tiles, 3)
                if job_tiles
                else None,
            }
            # 5. a dropped synchronous request of the largest synchronous size
            side = int(min(info["limits"]["sync_max_pixels"], args.big_width * args.big_height) ** 0.5) // 8 * 8
            dropped = drop_after_tiles_start(port, gradient_png(side, side, seed=4), base_url, args.model, 600)
            metrics = metric_values(base_url)
            report["disconnect"] = {
                "size": f"{side}x{side}",
                "freed_seconds": round(dropped, 3),
                "longest_sync_tile_seconds": metrics.get('invdn_tile_seconds_max{kind="sync"}'),
                "cancelled_disconnect": metrics.get('invdn_cancelled_total{kind="sync",reason="disconnect"}'),
                "cancelled_deleted": metrics.get('invdn_cancelled_total{kind="job",reason="deleted"}'),
            }
            rss_end = tree_rss(server.pid)
            server_errors = sum(
                value
                for key, value in metrics.items()
                if key.startswith("invdn_http_requests_total{") and 'status="5' in key and 'status="503"' not in key
            )
    finally:
        stop_server(server)

    report["server_5xx_other_than_503"] = server_errors
    report["rss_after_warmup_mib"] = round(rss_start / 2**20, 1)
    report["rss_after_run_mib"] = round(rss_end / 2**20, 1)
    report["rss_growth_percent"] = round(100 * (rss_end - rss_start) / rss_start, 2)
    idle_p95, loaded_p95 = report["idle"]["p95_s"], report["loaded"]["p95_s"]
    report["loaded_over_idle_p95"] = round(loaded_p95 / idle_p95, 3) if idle_p95 and loaded_p95 else None
    slack = 0.05  # the 10 ms polling of /metrics, and one /metrics answer
    checks = {
        "big_job_in_progress_throughout": report["big_job"]["status_after_loaded_phase"] == "running",
        "loaded_p95_within_2x_idle": report["loaded_over_idle_p95"] is not None and report["loaded_over_idle_p95"] <= 2,
        "cancel_frees_within_one_tile": job_tile_max is not None and freed <= job_tile_max + slack,
        "disconnect_frees_within_one_tile": report["disconnect"]["longest_sync_tile_seconds"] is not None
        and dropped <= report["disconnect"]["longest_sync_tile_seconds"] + slack,
        "no_server_errors": server_errors == 0
        and report["idle"]["server_errors"] == 0
        and report["loaded"]["server_errors"] == 0
        and report["idle"]["failed"] == 0
        and report["loaded"]["failed"] == 0,
        "memory_within_limit": abs(report["rss_growth_percent"]) <= args.max_rss_growth,
    }
    report["checks"] = checks
    report["passed"] = all(checks.values())
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="logical requests to send")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--size", type=int, default=512, help="side of the square test image in pixels")
    parser.add_argument("--model", default="invdn", help="model to ask for (a registry name or alias)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (invdn serve --workers)")
    parser.add_argument("--warmup", type=int, default=3, help="sequential requests before measuring memory")
    parser.add_argument("--max-retries", type=int, default=20, help="retries of one request after 503")
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop sending new requests after this")
    parser.add_argument("--request-timeout", type=float, default=600, help="seconds one HTTP request may take")
    parser.add_argument("--ready-timeout", type=float, default=600, help="seconds to wait for /health/ready")
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="allowed memory growth in percent")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--fairness", action="store_true", help="run the fairness scenario (see above)")
    parser.add_argument("--big-width", type=int, default=4000, help="--fairness: width of the big job")
    parser.add_argument("--big-height", type=int, default=3000, help="--fairness: height of the big job")
    parser.add_argument("--speed-size", type=int, default=1024, help="--fairness: side of the speed image; 0 skips")
    args = parser.parse_args(argv)
    # A plain `kill` still stops the server (SystemExit runs the `finally` below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.fairness:
        return fairness(args)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    server = start_server(port, args.workers, env)
    report = Report(args.requests, args.concurrency, args.size, args.model, 0, 0, 0, 0)
    try:
        report.ready_seconds = round(wait_ready(base_url, server, args.ready_timeout), 2)
        payload = sample_image(args.size)
        with httpx.Client(base_url=base_url, timeout=args.request_timeout) as client:
            for _ in range(args.warmup):
                response = client.post(
                    "/v1/denoise", files={"file": ("w.png", payload, "image/png")}, data={"model": args.model}
                )
                response.raise_for_status()
        rss_warm = tree_rss(server.pid)
        deadline = time.monotonic() + args.max_seconds
        outcomes, not_sent, wall = asyncio.run(run_load(base_url, payload, args, deadline))
        rss_after = tree_rss(server.pid)
        report.server_inference_mean_s, report.server_rejects = server_metrics(base_url, args.model)
    finally:
        stop_server(server)

    ok = [o for o in outcomes if o.status == 200 and not o.error]
    failed = [o for o in outcomes if not (o.status == 200 and not o.error) and o.status != 503]
    latencies = [o.seconds for o in ok]
    report.completed_ok = len(ok)
    report.shed_503_with_retry_after = sum(o.shed for o in outcomes)
    report.gave_up_after_503 = sum(1 for o in outcomes if o.status == 503)
    report.failures = len(failed)
    report.failure_examples = [f"{o.status}: {o.error}" for o in failed[:5]]
    report.not_sent_time_limit = not_sent
    report.wall_seconds = round(wall, 2)
    report.throughput_rps = round(len(ok) / wall, 3) if wall > 0 else 0.0
    report.megapixels_per_second = round(len(ok) * args.size**2 / 1e6 / wall, 3) if wall > 0 else 0.0
    report.latency_p50_s = percentile(latencies, 50)
    report.latency_p95_s = percentile(latencies, 95)
    report.latency_max_s = max(latencies) if latencies else None
    report.rss_after_warmup_mib = round(rss_warm / 2**20, 1)
    report.rss_after_run_mib = round(rss_after / 2**20, 1)
    report.rss_growth_percent = round(100 * (rss_after - rss_warm) / rss_warm, 2)
    report.passed = report.failures == 0 and report.rss_growth_percent <= args.max_rss_growth

    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        for key, value in asdict(report).items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"{key:>28}: {shown}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
