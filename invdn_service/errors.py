"""Errors the service answers with, each rendered as JSON `{"detail": ..., "code": ...}`.

`ServiceError` subclasses Starlette's HTTPException so that an error raised while FastAPI parses a request body
(the upload cap, raised from inside the body stream) keeps its status instead of becoming a generic 400.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

# Short machine-readable codes for plain HTTP errors raised by the framework (unknown routes, methods).
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    499: "client_closed_request",
    413: "upload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


class ServiceError(StarletteHTTPException):
    """An error with a status, a stable `code` and, for rejected requests, a metrics `reason`."""

    status: int = 400
    code: str = "bad_request"
    reason: str | None = None  # label of the rejects counter; None = not counted as a reject

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=self.status, detail=detail, headers=headers)


class UploadTooLarge(ServiceError):
    status, code, reason = 413, "upload_too_large", "upload_bytes"


class ImageTooLarge(ServiceError):
    status, code, reason = 413, "image_too_large", "image_pixels"


class UnsupportedFormat(ServiceError):
    status, code, reason = 415, "unsupported_media_type", "unsupported_format"


class UndecodableImage(ServiceError):
    status, code, reason = 422, "undecodable_image", "undecodable"


class InvalidOptions(ServiceError):
    status, code, reason = 422, "invalid_request", "invalid_request"


class InvalidImagePair(ServiceError):
    status, code, reason = 422, "invalid_image_pair", "invalid_pair"


class TooLargeForSync(ServiceError):
    status, code, reason = 413, "image_too_large_for_sync", "sync_pixels"


class JobNotFound(ServiceError):
    status, code = 404, "job_not_found"


class JobNotFinished(ServiceError):
    status, code = 409, "job_not_finished"


class ClientDisconnected(ServiceError):
    """The client went away before its answer (nginx's 499); nobody reads this answer, but it is not a 5xx."""

    status, code = 499, "client_closed_request"


class Overloaded(ServiceError):
    status, code, reason = 503, "overloaded", "queue_full"


class NotReady(ServiceError):
    status, code, reason = 503, "not_ready", "not_ready"


def error_json(status: int, detail: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON body every error of the service has."""
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def _count_reject(request: Request, reason: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.rejects.labels(reason=reason).inc()


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """ServiceError and framework HTTP errors -> JSON with a code."""
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ServiceError):
        code = exc.code
        if exc.reason:
            _count_reject(request, exc.reason)
    else:
        code = STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = exc.headers
    if exc.status_code == 405:  # Starlette names the methods of the first route on the path only
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return error_json(exc.status_code, str(exc.detail), code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this request's path (GET /v1/jobs/{id} and DELETE are two routes)."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "api_routes", []):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "header"))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Invalid form fields -> 422 with a readable message and the field errors."""
    assert isinstance(exc, RequestValidationError)
    _count_reject(request, "invalid_request")
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    detail = "; ".join(_describe(e) for e in exc.errors()) or "invalid request"
    return JSONResponse({"detail": detail, "code": "invalid_request", "errors": errors}, status_code=422)


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen -> 500 without internals in the body (the traceback goes to the log)."""
    return error_json(500, "internal error", "internal_error")
