"""OpenAPI descriptions shared by the routes."""

from __future__ import annotations

from typing import Any

from invdn.models import registry
from invdn_service.schemas import ErrorBody

MODEL_DESCRIPTION = (
    "Model: "
    + "; ".join(
        f"{spec.name} ({spec.label}{', also ' + ', '.join(spec.aliases) if spec.aliases else ''})"
        for spec in registry.MODELS
    )
    + f". Default {registry.DEFAULT}."
)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request body."},
    413: {
        "model": ErrorBody,
        "description": "Upload over the byte limit, image over the pixel limit, or (/v1/denoise) over the "
        "synchronous limit: send it to /v1/jobs.",
    },
    415: {"model": ErrorBody, "description": "Not an accepted image format (recognised by content)."},
    422: {"model": ErrorBody, "description": "Invalid option, or an image that cannot be decoded."},
    503: {
        "model": ErrorBody,
        "description": "Busy (queue full) or still loading models; retry after the Retry-After seconds.",
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    },
}
