"""OpenAPI descriptions and the form fields shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, File, Form, UploadFile

from invdn.io.formats import READABLE_PHRASE
from invdn.models import registry
from invdn_service.jobs import DenoiseOptions
from invdn_service.schemas import MAX_SAMPLES, MAX_SEED, ErrorBody, ModelChoice, OutputFormat

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

# The fields of /v1/denoise and /v1/jobs (and the samples field of /v1/compare), declared once.
NoisyUpload = Annotated[UploadFile, File(description=f"The noisy image: {READABLE_PHRASE}.")]
ModelField = Annotated[ModelChoice, Form(description=MODEL_DESCRIPTION)]
SamplesField = Annotated[int, Form(ge=1, le=MAX_SAMPLES, description="Latent draws averaged (stochastic models).")]
EnsembleField = Annotated[bool, Form(description="Average the 8 flips/rotations (8x slower).")]
FormatField = Annotated[OutputFormat, Form(description="Output format; keep = the upload's format.")]
SeedField = Annotated[int, Form(ge=0, le=MAX_SEED, description="Seed of the latent draws.")]


def denoise_form(
    model: ModelField = "invdn",
    samples: SamplesField = 1,
    ensemble: EnsembleField = False,
    format: FormatField = "png",
    seed: SeedField = 0,
) -> tuple[str, DenoiseOptions]:
    """The model name and the options of a /v1/denoise or /v1/jobs form."""
    return model, DenoiseOptions(samples=samples, ensemble=ensemble, seed=seed, format=format)


DenoiseForm = Annotated[tuple[str, DenoiseOptions], Depends(denoise_form)]

