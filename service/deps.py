"""Dependencies the routes ask for, as Annotated aliases (the app keeps one of each in `app.state`).

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a needless hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.engine import InferenceQueue, ModelStore
from service.metrics import ServiceMetrics


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_models(request: Request) -> ModelStore:
    return request.app.state.models


async def get_queue(request: Request) -> InferenceQueue:
    return request.app.state.queue


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def wants_json(request: Request) -> bool:
    """True when the client prefers JSON to image bytes (`Accept: application/json`)."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip() == "application/json" for part in accept.split(","))


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ModelStore, Depends(get_models)]
QueueDep = Annotated[InferenceQueue, Depends(get_queue)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
WantsJSONDep = Annotated[bool, Depends(wants_json)]
