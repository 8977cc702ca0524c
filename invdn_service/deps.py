"""Dependencies the routes ask for, as Annotated aliases (the app keeps one of each in `app.state`).

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a needless hop per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from invdn_service.config import Settings
from invdn_service.engine import ModelStore
from invdn_service.jobstore import JobStore
from invdn_service.metrics import ServiceMetrics
from invdn_service.scheduler import TileScheduler


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_models(request: Request) -> ModelStore:
    return request.app.state.models


async def get_scheduler(request: Request) -> TileScheduler:
    return request.app.state.scheduler


async def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects (its body already read); the scheduler cancels its tiles then."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def get_disconnect_watch(request: Request) -> Callable[[], Awaitable[None]]:
    """A zero-argument coroutine function that returns when this request's client disconnects."""
    return lambda: client_gone(request)


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def wants_json(request: Request) -> bool:
    """True when the client prefers JSON to image bytes (`Accept: application/json`)."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip() == "application/json" for part in accept.split(","))


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ModelStore, Depends(get_models)]
SchedulerDep = Annotated[TileScheduler, Depends(get_scheduler)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
DisconnectDep = Annotated[Callable[[], Awaitable[None]], Depends(get_disconnect_watch)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
WantsJSONDep = Annotated[bool, Depends(wants_json)]
