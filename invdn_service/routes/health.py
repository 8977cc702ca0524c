"""Probes and metrics: GET /health/live, /health/ready, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from invdn_service.deps import MetricsDep, ModelsDep, SettingsDep
from invdn_service.errors import NotReady, error_json
from invdn_service.routes.common import ERROR_RESPONSES
from invdn_service.schemas import HealthJSON

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="Liveness", response_model=HealthJSON)
async def live(models: ModelsDep) -> HealthJSON:
    """200 while the process serves HTTP, with the models loaded so far."""
    return HealthJSON(status="alive", models=sorted(models.models))


@router.get("/health/ready", summary="Readiness", response_model=HealthJSON, responses={503: ERROR_RESPONSES[503]})
async def ready(models: ModelsDep, settings: SettingsDep) -> HealthJSON | JSONResponse:
    """200 once every model is loaded and warmed up; 503 with Retry-After before (or if loading failed)."""
    if not models.ready:  # answered, not raised: a probe polling during start-up is not a rejected request
        detail = models.error or "models are loading and warming up"
        return error_json(503, detail, NotReady.code, headers={"Retry-After": str(settings.retry_after_s)})
    return HealthJSON(status="ready", models=sorted(models.models))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Requests, latency, inference and tile times, megapixels, queue depth, tasks, jobs, cancellations, rejects."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
