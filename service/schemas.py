"""Request options and response bodies of the API (what the OpenAPI schema documents)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SAMPLES = 8  # most InvDN latent draws averaged per request (time grows linearly)
MAX_SEED = 2**63 - 1

ModelName = Literal["invdn", "danet"]
OutputFormat = Literal["png", "jpeg", "webp", "tiff", "keep"]
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
    """/v1/compare answer: InvDN against DANet-R on one image."""

    model_config = ConfigDict(extra="allow")

    height: int
    width: int
    mode: Literal["synthetic", "reference", "blind"] = Field(
        description="synthetic: noise was added to the upload; reference: a clean image was given; blind: neither."
    )
    noise: str | None = Field(description="Noise added in synthetic mode, e.g. awgn:25:clip8.")
    seed: int
    samples: int
    models: dict[str, CompareRow] = Field(description="Rows keyed noisy, invdn, danet-r.")
    danet_parameters: dict[str, int] = Field(description="DANet's R, G, discriminator and total parameters.")
    ratios: dict[str, float] = Field(description="invdn_over_danet_r and invdn_over_danet_all, as fractions.")
    ratios_percent: dict[str, float]
    warnings: list[str]
    images: dict[str, str] = Field(description="PNG images as base64: noisy, invdn, danet-r (and clean).")


class Limits(BaseModel):
    """The limits the service enforces on uploads."""

    max_upload_bytes: int
    max_pixels: int
    compare_max_pixels: int
    max_samples: int
    formats: list[str]


class ModelInfo(BaseModel):
    """A served model."""

    name: ModelName
    model_type: str
    pretrained: bool
    parameters: int
    config: dict[str, Any] = Field(description="The model's construction arguments.")
    weights: dict[str, Any] = Field(description="Shipped weights file, sha256 and the model card's numbers.")


class ModelsJSON(BaseModel):
    """/v1/models answer."""

    models: list[ModelInfo]
    limits: Limits


class HealthJSON(BaseModel):
    """Health probe answer."""

    status: Literal["alive", "ready"]
    models: list[str] = Field(default_factory=list)
