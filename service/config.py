"""Service settings, read from environment variables prefixed `INVDN_` (e.g. `INVDN_MAX_UPLOAD_BYTES`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Formats as `invdn.imageio.sniff_format` names them.
DEFAULT_FORMATS = ["png", "jpeg", "webp", "tiff", "bmp", "gif"]
FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}


class Settings(BaseSettings):
    """Limits, concurrency and model options of the REST service; every field has a safe default."""

    model_config = SettingsConfigDict(env_prefix="INVDN_", extra="ignore")

    # Largest accepted request body in bytes, multipart overhead included (413 beyond it). The whole body is
    # held in memory, never spooled to disk, so this also bounds the memory an upload can take.
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Largest accepted image in pixels (width x height), read from the header before decoding (413 beyond it).
    max_pixels: int = Field(default=16_000_000, gt=0)
    # Largest image accepted by /v1/compare, which runs both models on the whole image (untiled) and returns
    # three images; the web page scales larger photos down to this before comparing.
    compare_max_pixels: int = Field(default=1_000_000, gt=0)
    # Image formats accepted (comma-separated in the environment), recognised from the file's first bytes
    # (415 for anything else).
    allowed_formats: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_FORMATS))
    # Inference jobs run at once (threads of the bounded pool).
    inference_workers: int = Field(default=1, ge=1)
    # Requests allowed to wait for a free inference worker; beyond it the service answers 503 with Retry-After.
    queue_size: int = Field(default=8, ge=0)
    # Seconds a client is told to wait (Retry-After) when the queue is full or the models are not ready.
    retry_after_s: int = Field(default=2, ge=1)
    # Server processes (`invdn serve --workers`); torch threads are set so processes x pool x threads <= cores.
    processes: int = Field(default=1, ge=1)
    # Torch intra-op threads per process; 0 picks them from the core count (invdn.runtime.configure_threads).
    torch_threads: int = Field(default=0, ge=0)
    # Device the models run on: "cpu", "cuda" or "auto".
    device: str = "cpu"
    # Arithmetic precision of inference.
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    # Tile side in pixels for inference (bounds memory per request); 0 picks it from the memory available.
    tile: int = Field(default=0, ge=0)
    # Overlap between neighbouring tiles in pixels; unset uses each model's own (InvDN 16, DANet-R 32).
    tile_overlap: int | None = Field(default=None, ge=0)
    # Weights file for InvDN (.safetensors); empty uses the shipped weights.
    invdn_weights: Path | None = None
    # Weights file for DANet-R (.safetensors); empty uses the shipped weights.
    danet_weights: Path | None = None
    # Side in pixels of the image run through each model at start-up before the service reports ready.
    warmup_size: int = Field(default=64, ge=8)
    # Origins allowed by CORS (comma-separated in the environment); the API is stateless and uses no cookies,
    # so "*" exposes nothing private.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])

    @field_validator("allowed_formats", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """Accept "png,jpeg" from the environment as well as a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("tile_overlap", mode="before")
    @classmethod
    def _blank_is_model_default(cls, value: object) -> object:
        """INVDN_TILE_OVERLAP="" means unset: each model's own overlap."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        formats = [FORMAT_ALIASES.get(name.lower(), name.lower()) for name in value]
        unknown = sorted(set(formats) - set(DEFAULT_FORMATS))
        if unknown:
            raise ValueError(f"unknown image formats {unknown}; known: {DEFAULT_FORMATS}")
        return formats
