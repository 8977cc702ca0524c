"""Request options and response bodies of the API (what the OpenAPI schema documents)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from invdn.io.formats import SERVICE_OUTPUT_FORMATS
from invdn.models import registry

MAX_SAMPLES = 8  # most latent draws averaged per request (time grows linearly)
MAX_SEED = 2**63 - 1

# What clients may ask for: every registry name and alias ("danet" is DANet-R); answers use canonical names.
ModelChoice = Literal[tuple(registry.choices())]  # type: ignore[valid-type]
ModelName = Literal[tuple(registry.names())]  # type: ignore[valid-type]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
OutputFormat = Literal[SERVICE_OUTPUT_FORMATS]  # type: ignore[valid-type]
NoiseKind = Literal["awgn", "camera"]


class ErrorBody(BaseModel):
    """Every error answer."""

    detail: str = Field(description="What went wrong, in one sentence.")
    code: str = Field(description="Stable machine-readable error code, e.g. upload_too_large.")


class DenoiseJSON(BaseModel):
    """/v1/denoise answer for `Accept: application/json`."""

    model: ModelName
    parameters: int = Field(description="Parameter count of the model.")
    pretrained: bool = Field(description="False when the model runs with random weights (none shipped).")
    inference_ms: float = Field(description="Model time in milliseconds (decoding and encoding excluded).")
    width: int
    height: int
    format: str = Field(description="Format of the returned image, e.g. PNG.")
    media_type: str
    image_base64: str = Field(description="The denoised image file, base64-encoded.")


class CompareRow(BaseModel):
    """One column of the comparison: the noisy input or one denoiser's output."""

    model_config = ConfigDict(extra="allow")

    name: str
    label: str
    psnr: float | None = Field(description="dB against the reference; null without one.")
    ssim: float | None = Field(description="Against the reference; null without one.")
    ms: float | None = Field(description="Model time in milliseconds; null for the noisy input.")
    parameters: int | None
    flops_per_megapixel: float | None
    pretrained: bool | None
    note: str = ""


class CompareJSON(BaseModel):
    """/v1/compare answer: every served model on one image."""

    model_config = ConfigDict(extra="allow")

    height: int
    width: int
    mode: Literal["synthetic", "reference", "blind"] = Field(
        description="synthetic: noise was added to the upload; reference: a clean image was given; blind: neither."
    )
    noise: str | None = Field(description="Noise added in synthetic mode, e.g. awgn:25:clip8.")
    seed: int
    samples: int
    models: dict[str, CompareRow] = Field(description="Rows keyed noisy and each model's canonical name.")
    danet_parameters: dict[str, int] = Field(
        description="DANet's R, G, discriminator and total parameters (empty when no DANet-R is served)."
    )
    ratios: dict[str, float] = Field(
        description="The default model's parameters over DANet-R's and over all of DANet's, as fractions."
    )
    ratios_percent: dict[str, float]
    warnings: list[str]
    images: dict[str, str] = Field(description="PNG images as base64: noisy, one per model (and clean).")


class Limits(BaseModel):
    """The limits the service enforces on uploads."""

    max_upload_bytes: int
    max_pixels: int = Field(description="Largest image accepted, by POST /v1/jobs (pixels).")
    sync_max_pixels: int = Field(description="Largest image /v1/denoise answers; larger ones go to POST /v1/jobs.")
    compare_max_pixels: int
    max_samples: int
    formats: list[str]


class ModelInfo(BaseModel):
    """A served model."""

    name: ModelName
    label: str = Field(description="Human-readable name, e.g. DANet-R.")
    aliases: list[str] = Field(description="Other names accepted for this model.")
    description: str
    stochastic: bool = Field(description="True when `samples` and `seed` change its output.")
    model_type: str
    pretrained: bool
    parameters: int
    flops_per_megapixel: float | None = Field(
        description="FLOPs of one denoise call per output megapixel (invdn.models.flops.flops_per_megapixel, as "
        "`invdn info` and /v1/compare report it); null when they could not be counted."
    )
    config: dict[str, Any] = Field(description="The model's construction arguments.")
    weights: dict[str, Any] = Field(description="Shipped weights file, sha256 and the model card's numbers.")


class ModelsJSON(BaseModel):
    """/v1/models answer."""

    models: list[ModelInfo]
    limits: Limits


class HealthJSON(BaseModel):
    """Health probe answer."""

    status: Literal["alive", "ready"]
    models: list[str] = Field(default_factory=list, description="Models loaded so far.")


class JobError(BaseModel):
    """Why a job failed."""

    detail: str
    code: str


class JobJSON(BaseModel):
    """An asynchronous job: POST /v1/jobs, GET and DELETE /v1/jobs/{job_id}."""

    id: str
    status: JobStatus = Field(description="queued (decoding), running, done, failed or cancelled.")
    model: ModelName
    width: int
    height: int
    tiles_done: int
    tiles_total: int = Field(description="0 until the image is decoded and its tiles are planned.")
    progress: float = Field(ge=0, le=1, description="tiles_done / tiles_total.")
    created_at: float = Field(description="Unix time in seconds.")
    expires_at: float | None = Field(description="Unix time when a finished job is dropped; null while it runs.")
    status_url: str
    result_url: str | None = Field(description="Where the image is, once done.")
    inference_ms: float | None = Field(description="Model time in milliseconds, once done.")
    error: JobError | None = None
