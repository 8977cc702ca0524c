"""Prometheus metrics of one app, kept in the app's own registry (several apps in one process never clash)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
INFERENCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServiceMetrics:
    """Request, inference and admission metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "invdn_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "invdn_http_request_duration_seconds",
            "Time from request start to the end of the response.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "invdn_inference_seconds",
            "Model time per image (decoding and encoding excluded).",
            ["model"],
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self.megapixels = Counter(
            "invdn_megapixels", "Megapixels denoised, per model.", ["model"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "invdn_queue_depth", "Inference jobs admitted and not finished (running + waiting).", registry=self.registry
        )
        self.queue_capacity = Gauge(
            "invdn_queue_capacity", "Most inference jobs admitted at once (workers + queue).", registry=self.registry
        )
        self.rejects = Counter("invdn_rejects", "Requests rejected, by reason.", ["reason"], registry=self.registry)
        self.tiles = Counter(
            "invdn_tiles", "Tiles denoised by the scheduler, by kind (sync, job).", ["kind"], registry=self.registry
        )
        self.tile_seconds = Histogram(
            "invdn_tile_seconds",
            "Time of one scheduled tile, by kind (sync, job): how long a new request may wait for a busy worker.",
            ["kind"],
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self.tile_seconds_max = Gauge(
            "invdn_tile_seconds_max", "Longest tile so far, by kind (sync, job).", ["kind"], registry=self.registry
        )
        self.tasks = Gauge(
            "invdn_tasks", "Requests and jobs with tiles left to run (waiting or running).", registry=self.registry
        )
        self.cancelled = Counter(
            "invdn_cancelled",
            "Requests and jobs stopped before their last tile, by reason (disconnect, deleted, expired, shutdown).",
            ["reason", "kind"],
            registry=self.registry,
        )
        self.jobs = Gauge("invdn_jobs", "Asynchronous jobs held, by status.", ["status"], registry=self.registry)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request and times it, labelled by the route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(time.perf_counter() - start)
