"""Service settings, read from environment variables prefixed `INVDN_` (e.g. `INVDN_MAX_UPLOAD_BYTES`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from invdn.io.formats import SERVICE_INPUT_FORMATS, normalize_format
from invdn.models import registry
from invdn_service import capacity


class Settings(BaseSettings):
    """Limits, concurrency and model options of the REST service; every field has a safe default."""

    model_config = SettingsConfigDict(env_prefix="INVDN_", extra="ignore")

    # Largest accepted request body in bytes, multipart overhead included (413 beyond it). The whole body is
    # held in memory, never spooled to disk, so this also bounds the memory an upload can take.
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Largest accepted image in pixels (width x height), read from the header before decoding (413 beyond it).
    max_pixels: int = Field(default=16_000_000, gt=0)
    # Largest image accepted by /v1/compare, which runs every model on it and returns every image; the web page
    # scales larger photos down to this before comparing. Default: what every model together does in
    # capacity.SYNC_SECONDS on the measured machine (capacity.py).
    compare_max_pixels: int = Field(default=capacity.COMPARE_MAX_PIXELS, gt=0)
    # Image formats accepted (comma-separated in the environment), recognised from the file's first bytes
    # (415 for anything else).
    allowed_formats: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(SERVICE_INPUT_FORMATS))
    # Largest image /v1/denoise answers synchronously; larger ones (up to max_pixels) go to POST /v1/jobs. The
    # default is what the slowest model denoises in capacity.SYNC_SECONDS on the measured machine (capacity.py).
    sync_max_pixels: int = Field(default=capacity.SYNC_MAX_PIXELS, gt=0)
    # Tiles run at once (threads of the tile scheduler; each tile uses torch_threads).
    inference_workers: int = Field(default=1, ge=1)
    # Synchronous requests allowed to wait beyond the workers; beyond it the service answers 503 with Retry-After.
    queue_size: int = Field(default=capacity.QUEUE_SIZE, ge=0)
    # Pixels that admitted synchronous requests may have in progress at once (503 beyond it): the work the server
    # takes on is what it does in capacity.QUEUE_SECONDS on the measured machine (capacity.py).
    queue_pixels: int = Field(default=capacity.QUEUE_PIXELS, gt=0)
    # Largest tile side one scheduling step runs: a new request waits at most one such tile for a busy worker.
    schedule_tile: int = Field(default=capacity.SCHEDULE_TILE, ge=64)
    # Synchronous tiles run in a row, at most, while a job waits: clients waiting for an answer go first, and a job
    # still gets at least 1 tile in job_every + 1.
    job_every: int = Field(default=4, ge=1)
    # Asynchronous jobs held at once, running or finished (503 with Retry-After beyond it).
    max_jobs: int = Field(default=8, ge=1)
    # Seconds a finished, failed or cancelled job (and its result) is kept before it expires.
    job_ttl_s: int = Field(default=600, ge=1)
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
    # Other weights files than the shipped ones, by model: "invdn=/w/a.safetensors,danet-r=/w/b.safetensors" in the
    # environment (names or aliases from invdn.models.registry); models not named use their shipped weights.
    weights_files: Annotated[dict[str, Path], NoDecode] = Field(default_factory=dict)
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

    @field_validator("weights_files", mode="before")
    @classmethod
    def _parse_weights_files(cls, value: object) -> object:
        """Accept "name=path,name=path" from the environment as well as a mapping."""
        if isinstance(value, str):
            pairs = [part.strip() for part in value.split(",") if part.strip()]
            if any("=" not in pair for pair in pairs):
                raise ValueError(f"expected name=path pairs separated by commas, got {value!r}")
            return dict(pair.split("=", 1) for pair in pairs)
        return value

    @field_validator("weights_files")
    @classmethod
    def _known_models(cls, value: dict[str, Path]) -> dict[str, Path]:
        try:
            return {registry.get(name.strip()).name: path for name, path in value.items()}
        except registry.UnknownModel as exc:
            raise ValueError(str(exc)) from None

    @field_validator("tile_overlap", mode="before")
    @classmethod
    def _blank_is_model_default(cls, value: object) -> object:
        """INVDN_TILE_OVERLAP="" means unset: each model's own overlap."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        formats = [normalize_format(name).lower() for name in value]
        unknown = sorted(set(formats) - set(SERVICE_INPUT_FORMATS))
        if unknown:
            raise ValueError(f"unknown image formats {unknown}; known: {list(SERVICE_INPUT_FORMATS)}")
        return formats
