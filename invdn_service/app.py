"""The FastAPI application: `create_app()` is the uvicorn factory (`service.app:create_app`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from invdn_service.config import Settings
from invdn_service.engine import ModelProvider, ModelStore, shipped_model_provider
from invdn_service.errors import http_error_handler, unexpected_error_handler, validation_error_handler
from invdn_service.jobstore import JobStore
from invdn_service.metrics import MetricsMiddleware, ServiceMetrics
from invdn_service.routes import compare, denoise, health, jobs, models, page
from invdn_service.scheduler import TileScheduler
from invdn_service.uploads import BodyLimitMiddleware

log = logging.getLogger("uvicorn.error.invdn")

STATIC_DIR = Path(__file__).resolve().parent / "static"
EXPOSED_HEADERS = ["X-Model", "X-Parameters", "X-Inference-Ms", "Retry-After", "Content-Disposition", "Location"]


def _configure_threads(settings: Settings) -> None:
    from invdn.runtime import configure_threads

    threads = configure_threads(settings.processes * settings.inference_workers, threads=settings.torch_threads or None)
    log.info(
        "torch threads %d per inference worker (%d processes x %d workers)",
        threads,
        settings.processes,
        settings.inference_workers,
    )


async def _load_models(store: ModelStore) -> None:
    """Loads and warms up the models off the event loop; the service answers /health/live meanwhile."""
    try:
        await asyncio.to_thread(store.load_and_warm_up)
    except Exception as exc:  # reported through /health/ready; the process stays up to say why
        store.error = f"model loading failed: {type(exc).__name__}: {exc}"
        log.exception("model loading failed")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up: threads, models, warm-up (in the background), job expiry; shutdown: cancel jobs, end tiles."""
    _configure_threads(app.state.settings)
    loading = asyncio.create_task(_load_models(app.state.models))
    app.state.loading = loading
    expiry = asyncio.create_task(app.state.jobs.expire_periodically(min(30.0, app.state.settings.job_ttl_s / 4)))
    try:
        yield
    finally:
        expiry.cancel()
        if not loading.done():
            await asyncio.wait({loading}, timeout=60)
        await app.state.jobs.shutdown(app.state.scheduler)
        await asyncio.to_thread(app.state.scheduler.shutdown)


def create_app(settings: Settings | None = None, model_provider: ModelProvider | None = None) -> FastAPI:
    """A new service app; `model_provider` replaces the shipped weights (tests pass small models)."""
    settings = settings or Settings()
    metrics = ServiceMetrics()
    app = FastAPIOffline(
        title="invdn",
        summary="Image denoising with invertible networks (InvDN), compared against DANet.",
        version="0.1.0",
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.models = ModelStore(settings, model_provider or shipped_model_provider(settings))
    app.state.scheduler = TileScheduler(
        settings.inference_workers,
        settings.queue_size,
        settings.queue_pixels,
        settings.retry_after_s,
        metrics,
        job_every=settings.job_every,
    )
    app.state.jobs = JobStore(settings.max_jobs, settings.job_ttl_s, settings.retry_after_s, metrics)
    metrics.queue_capacity.set(app.state.scheduler.capacity)

    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)

    # Added inside out: metrics sees every request, including those the body limit and CORS answer.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes, metrics=metrics)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["*"],
        expose_headers=EXPOSED_HEADERS,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    routers = (denoise.router, compare.router, jobs.upload_router, jobs.router, models.router, health.router)
    for router in routers:
        app.include_router(router)
    app.state.api_routes = [route for router in routers for route in router.routes]  # for 405's Allow header
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
