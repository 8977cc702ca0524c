"""The blocking work of each request (decode, infer, encode), run in the inference pool's threads."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from invdn import imageio
from invdn.compare import compare
from service.engine import LoadedModel
from service.errors import InvalidImagePair, InvalidOptions
from service.metrics import ServiceMetrics
from service.uploads import decode

MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}


@dataclass(frozen=True)
class DenoiseOptions:
    """What the client asked /v1/denoise for."""

    samples: int  # InvDN latent draws averaged
    ensemble: bool  # 8-way flip/rotation self-ensemble
    seed: int  # seed of InvDN's latent draws
    format: str  # png, jpeg, webp, tiff or keep


@dataclass(frozen=True)
class DenoiseOutput:
    """A denoised image file and what it cost."""

    data: bytes  # the encoded image
    format: str  # PNG, JPEG, ...
    media_type: str  # e.g. image/png
    inference_ms: float  # model time only
    width: int
    height: int


def denoise_job(
    data: bytes, model: LoadedModel, options: DenoiseOptions, max_pixels: int, metrics: ServiceMetrics
) -> DenoiseOutput:
    """Decode, denoise and encode one upload."""
    image = decode(data, max_pixels)
    start = time.perf_counter()
    pixels = model.denoiser(image.pixels, samples=options.samples, ensemble=options.ensemble, seed=options.seed)
    seconds = time.perf_counter() - start
    metrics.inference_seconds.labels(model=model.name).observe(seconds)
    metrics.megapixels.labels(model=model.name).inc(image.width * image.height / 1e6)
    try:
        fmt = imageio.output_format(image.format, options.format)
        encoded = imageio.encode_image(image, pixels, format=options.format)
    except imageio.ImageError as exc:  # the upload was fine; the requested output cannot hold it
        raise InvalidOptions(f"format: {exc}") from exc
    return DenoiseOutput(encoded, fmt, MEDIA_TYPES[fmt], 1000.0 * seconds, image.width, image.height)


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 1) grey -> (H, W, 3); colour passes through."""
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


@dataclass(frozen=True)
class CompareOptions:
    """What the client asked /v1/compare for."""

    sigma: float | None  # AWGN level on the 0-255 scale added to the upload; None = no synthetic AWGN
    noise: str  # awgn or camera
    seed: int  # seed of the synthetic noise and InvDN's latent draws
    samples: int  # InvDN latent draws averaged


def compare_job(
    data: bytes,
    reference: bytes | None,
    models: dict[str, LoadedModel],
    options: CompareOptions,
    max_pixels: int,
    metrics: ServiceMetrics,
) -> dict[str, Any]:
    """InvDN against DANet-R on one upload; the JSON-ready result with images as base64 PNG."""
    image = decode(data, max_pixels)
    clean = decode(reference, max_pixels) if reference is not None else None
    if clean is not None and clean.pixels.shape[:2] != image.pixels.shape[:2]:
        raise InvalidImagePair(
            f"reference is {clean.width}x{clean.height} but the image is {image.width}x{image.height}"
        )
    synthetic = clean is None and (options.noise == "camera" or options.sigma is not None)
    try:
        result = compare(
            _rgb(image.pixels),
            reference=_rgb(clean.pixels) if clean is not None else None,
            sigma=options.sigma if synthetic and options.noise == "awgn" else None,
            noise=options.noise if synthetic else "awgn",
            seed=options.seed,
            models={"invdn": models["invdn"].module, "danet-r": models["danet"].module},
            samples=options.samples,
            device=models["invdn"].device,  # where the shared modules already are: compare moves them there
        )
    except ValueError as exc:  # invdn.compare's checks of its inputs
        raise InvalidOptions(str(exc)) from exc
    for api_name, row_name in (("invdn", "invdn"), ("danet", "danet-r")):
        ms = result.row(row_name).ms or 0.0
        metrics.inference_seconds.labels(model=api_name).observe(ms / 1000.0)
        metrics.megapixels.labels(model=api_name).inc(result.width * result.height / 1e6)
    return result.to_dict(include_images=True)


def base64_text(data: bytes) -> str:
    """Bytes as base64 ASCII text."""
    return base64.b64encode(data).decode("ascii")
