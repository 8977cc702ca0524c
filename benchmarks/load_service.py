"""Load test of the REST service: a real `invdn serve` on 127.0.0.1 (random free port), bounded in count and time.

Sends `--requests` POST /v1/denoise requests of one seeded `--size`^2 image at `--concurrency`, honouring
503 + Retry-After by waiting and retrying (at most `--max-retries` times). Reports latency percentiles,
throughput, answers by status, and the server's memory (RSS of the process tree) after warm-up and after the run.
Passes (exit 0) when no request failed other than by 503 with Retry-After and memory grew by at most
`--max-rss-growth`.

    python benchmarks/load_service.py                      # 200 requests of 512x512 at concurrency 16
    python benchmarks/load_service.py --requests 20 --size 128 --json
    INVDN_DEVICE=cuda python benchmarks/load_service.py    # server settings come from INVDN_* variables
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="logical requests to send")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--size", type=int, default=512, help="side of the square test image in pixels")
    parser.add_argument("--model", choices=["invdn", "danet"], default="invdn", help="model to ask for")
    parser.add_argument("--workers", type=int, default=1, help="server processes (invdn serve --workers)")
    parser.add_argument("--warmup", type=int, default=3, help="sequential requests before measuring memory")
    parser.add_argument("--max-retries", type=int, default=20, help="retries of one request after 503")
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop sending new requests after this")
    parser.add_argument("--request-timeout", type=float, default=600, help="seconds one HTTP request may take")
    parser.add_argument("--ready-timeout", type=float, default=600, help="seconds to wait for /health/ready")
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="allowed memory growth in percent")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    # A plain `kill` still stops the server (SystemExit runs the `finally` below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

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
