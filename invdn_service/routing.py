"""The route class of the upload endpoints: cheap refusals first, then an in-memory form."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from invdn_service.errors import InvalidOptions
from invdn_service.uploads import InMemoryFormRequest


class UploadRoute(APIRoute):
    """Refuses (503 with Retry-After) before reading the body when the models are not ready or the queue is full,
    so a busy server does not spend time and memory on uploads it will turn away; then parses the form
    with `InMemoryFormRequest`, which never spools to disk."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def upload_handler(request: Request) -> Response:
            state = request.app.state
            state.models.ensure_ready()
            self.ensure_room(state)
            in_memory = InMemoryFormRequest(request.scope, request.receive)
            if in_memory.headers.get("content-type", "").lower().startswith("multipart/form-data"):
                form = await in_memory.form()
                empty = sorted({name for name, value in form.multi_items() if value == ""})
                if empty:  # FastAPI would quietly take the default; an empty value is a mistake, say so
                    raise InvalidOptions(f"{', '.join(empty)}: empty value; leave a field out to get its default")
            return await handler(in_memory)

        return upload_handler

    def ensure_room(self, state: Any) -> None:
        """Synchronous requests: room in the tile scheduler's queue."""
        state.scheduler.ensure_room()


class JobUploadRoute(UploadRoute):
    """The same for POST /v1/jobs, whose limit is the job store's size."""

    def ensure_room(self, state: Any) -> None:
        state.jobs.ensure_room()
