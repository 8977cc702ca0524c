"""The work of each request: decoding and encoding (run in threads off the event loop) and the model's tiles
(generators run one tile at a time by `service.scheduler.TileScheduler`)."""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from invdn.eval.metrics import psnr, quantize8, ssim
from invdn.inference.tiles import TiledRun
from invdn.io import formats
from invdn.io.decode import LoadedImage
from invdn.io.encode import check_writable, encode_image
from invdn.io.errors import ImageError
from invdn_service.engine import LoadedModel
from invdn_service.errors import InvalidImagePair, InvalidOptions
from invdn_service.metrics import ServiceMetrics
from invdn_service.scheduler import Work
from invdn_service.uploads import decode

SSIM_MIN_SIDE = 7  # scikit-image's SSIM window; smaller images get no SSIM
RANDOM_INIT_NOTE = "random initialisation: no shipped weights"


@dataclass
class Progress:
    """Tiles of a request done so far (written by the scheduler's thread, read by the status endpoint)."""

    done: int = 0
    total: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class DenoiseOptions:
    """What the client asked /v1/denoise or /v1/jobs for."""

    samples: int  # latent draws averaged (stochastic models only)
    ensemble: bool  # 8-way flip/rotation self-ensemble
    seed: int  # seed of the latent draws
    format: str  # keep or a writable format of invdn.io.formats, lower case


@dataclass(frozen=True)
class DenoiseOutput:
    """A denoised image file and what it cost."""

    data: bytes  # the encoded image
    format: str  # PNG, JPEG, ...
    media_type: str  # e.g. image/png
    inference_ms: float  # model time only (the request's own tiles, not the wait for them)
    width: int
    height: int

    @property
    def extension(self) -> str:
        return formats.extension(self.format).lstrip(".")


@dataclass
class Denoised:
    """What the tiles of one model produced."""

    pixels: np.ndarray  # (H, W, C) float32 in [0, 1]
    seconds: float  # model time: the sum of its tiles' times


def denoise_tiles(
    model: LoadedModel,
    pixels: np.ndarray,
    options: DenoiseOptions,
    max_tile: int,
    metrics: ServiceMetrics,
    progress: Progress | None = None,
) -> Work[Denoised]:
    """The scheduler's work for one image: one tile per step; returns the denoised pixels."""
    run = TiledRun(
        model.denoiser, pixels, samples=options.samples, ensemble=options.ensemble, seed=options.seed, max_tile=max_tile
    )
    if progress is not None:
        progress.total = run.total
    seconds = 0.0
    steps = run.steps()
    while True:
        start = time.perf_counter()
        tile = next(steps, None)
        seconds += time.perf_counter() - start
        if tile is None:
            break
        if progress is not None:
            progress.done += 1
        yield tile.pixels
    out = run.result()
    metrics.inference_seconds.labels(model=model.name).observe(seconds)
    metrics.megapixels.labels(model=model.name).inc(pixels.shape[0] * pixels.shape[1] / 1e6)
    return Denoised(out, seconds)


def encode_output(image: LoadedImage, denoised: Denoised, output_format: str) -> DenoiseOutput:
    """Encodes the denoised pixels like the upload (run in a thread)."""
    try:
        fmt = check_writable(image, output_format)
        encoded = encode_image(image, denoised.pixels, format=output_format)
    except ImageError as exc:  # the upload was fine; the requested output cannot hold it
        raise InvalidOptions(f"format: {exc}") from exc
    media_type = formats.media_type(fmt)
    return DenoiseOutput(encoded, fmt, media_type, 1000.0 * denoised.seconds, image.width, image.height)


def check_output_format(image: LoadedImage, output_format: str) -> None:
    """Raises InvalidOptions (422) before any tile runs when the output format cannot hold the image."""
    try:
        check_writable(image, output_format)
    except ImageError as exc:
        raise InvalidOptions(f"format: {exc}") from exc


# ---------- compare ----------


@dataclass(frozen=True)
class CompareOptions:
    """What the client asked /v1/compare for."""

    sigma: float | None  # AWGN level on the 0-255 scale added to the upload; None = no synthetic AWGN
    noise: str  # awgn or camera
    seed: int  # seed of the synthetic noise and the models' latent draws
    samples: int  # latent draws averaged (stochastic models only)


@dataclass
class CompareInput:
    """The decoded comparison: what the models denoise and what they are scored against."""

    noisy: np.ndarray  # (H, W, 3) float32, what every model denoises
    clean: np.ndarray | None  # the reference, when there is one
    mode: str  # synthetic, reference or blind
    noise: str | None  # noise spec in synthetic mode
    progress: Progress = field(default_factory=Progress)


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 1) grey -> (H, W, 3); colour passes through."""
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _synthesise(clean: np.ndarray, spec: str, seed: int) -> np.ndarray:
    from invdn.training.noise import make_noise

    generator = torch.Generator().manual_seed(seed)
    tensor = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1)))[None]
    noisy = make_noise(spec)(tensor, generator)
    return quantize8(noisy[0].permute(1, 2, 0).numpy()).astype(np.float32) / 255.0


def prepare_compare(data: bytes, reference: bytes | None, options: CompareOptions, max_pixels: int) -> CompareInput:
    """Decodes the upload (and reference) and adds the synthetic noise, if asked (run in a thread)."""
    image = _rgb(decode(data, max_pixels).pixels)
    if reference is not None:
        clean = _rgb(decode(reference, max_pixels).pixels)
        if clean.shape != image.shape:
            raise InvalidImagePair(
                f"reference is {clean.shape[1]}x{clean.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
            )
        return CompareInput(image, clean, "reference", None)
    if options.noise == "camera" or options.sigma is not None:
        spec = f"awgn:{options.sigma:g}:clip8" if options.noise == "awgn" else "camera:clip8"
        return CompareInput(_synthesise(image, spec, options.seed), image, "synthetic", spec)
    return CompareInput(image, None, "blind", None)


def compare_tiles(
    models: list[LoadedModel],
    prepared: CompareInput,
    options: CompareOptions,
    max_tile: int,
    metrics: ServiceMetrics,
) -> Work[dict[str, Denoised]]:
    """The scheduler's work for a comparison: every model's tiles in turn, through the same tiled path as
    /v1/denoise (so a model's output here equals its /v1/denoise output)."""
    denoise = DenoiseOptions(samples=options.samples, ensemble=False, seed=options.seed, format="png")
    progresses = [Progress() for _ in models]
    runs = [
        denoise_tiles(m, prepared.noisy, denoise, max_tile, metrics, p) for m, p in zip(models, progresses, strict=True)
    ]
    outputs: dict[str, Denoised] = {}
    for model, run in zip(models, runs, strict=True):
        outputs[model.name] = yield from _counted(run, progresses, prepared.progress)
    return outputs


def _counted(run: Work[Denoised], parts: list[Progress], total: Progress) -> Work[Denoised]:
    """Runs `run`, keeping `total` the sum of `parts` (whose totals are known once each run starts)."""
    while True:
        try:
            pixels = next(run)
        except StopIteration as stop:
            return stop.value
        total.done = sum(p.done for p in parts)
        total.total = sum(p.total for p in parts)
        yield pixels


def _score(output: np.ndarray, reference: np.ndarray | None) -> tuple[float | None, float | None]:
    if reference is None:
        return None, None
    quality = float(psnr(output, reference))
    similarity = float(ssim(output, reference)) if min(output.shape[:2]) >= SSIM_MIN_SIDE else None
    return (quality if np.isfinite(quality) else None), similarity


def _png_base64(image: np.ndarray) -> str:
    """An (H, W, 3) uint8 image as base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64_text(buffer.getvalue())


def compare_result(
    models: list[LoadedModel], prepared: CompareInput, outputs: dict[str, Denoised], options: CompareOptions
) -> dict[str, Any]:
    """Scores every model's output and builds the /v1/compare answer (run in a thread)."""
    clean8 = quantize8(prepared.clean) if prepared.clean is not None else None
    noisy8 = quantize8(prepared.noisy)
    noisy_psnr, noisy_ssim = _score(noisy8, clean8)
    rows: dict[str, dict[str, Any]] = {
        "noisy": {
            "name": "noisy",
            "label": "Noisy input",
            "psnr": noisy_psnr,
            "ssim": noisy_ssim,
            "ms": None,
            "parameters": None,
            "flops_per_megapixel": None,
            "pretrained": None,
            "note": "",
        }
    }
    images = {"noisy": _png_base64(noisy8)}
    warnings = []
    for model in models:
        output8 = quantize8(outputs[model.name].pixels)
        quality, similarity = _score(output8, clean8)
        note = "" if model.pretrained else RANDOM_INIT_NOTE
        if note:
            warnings.append(f"{model.spec.label}: {note}")
        rows[model.name] = {
            "name": model.name,
            "label": model.spec.label,
            "psnr": quality,
            "ssim": similarity,
            "ms": round(1000.0 * outputs[model.name].seconds, 1),
            "parameters": model.parameters,
            "flops_per_megapixel": model.flops_per_megapixel,
            "pretrained": model.pretrained,
            "note": note,
        }
        images[model.name] = _png_base64(output8)
    if clean8 is not None:
        images["clean"] = _png_base64(clean8)
    danet, ratios = _danet_ratios(models)
    return {
        "height": int(prepared.noisy.shape[0]),
        "width": int(prepared.noisy.shape[1]),
        "mode": prepared.mode,
        "noise": prepared.noise,
        "seed": options.seed,
        "samples": options.samples,
        "models": rows,
        "danet_parameters": danet,
        "ratios": ratios,
        "ratios_percent": {key: round(100 * value, 2) for key, value in ratios.items()},
        "warnings": warnings,
        "images": images,
    }


def _danet_ratios(models: list[LoadedModel]) -> tuple[dict[str, int], dict[str, float]]:
    """DANet's parameter counts (R, G, discriminator) and the default model's size against them, when a DANet-R
    is served; empty otherwise."""
    from invdn.models import registry
    from invdn.models.danet import DANetConfig, danet_parameter_counts

    by_type = {model.spec.model_type: model for model in models}
    danet_r = by_type.get("danet-r")
    default = next((model for model in models if model.name == registry.DEFAULT), None)
    if danet_r is None or default is None:
        return {}, {}
    args = dict(getattr(danet_r.module, "model_args", {}) or {})
    counts = danet_parameter_counts(DANetConfig(**args) if args else DANetConfig())
    ratios = {
        f"{default.name}_over_danet_r".replace("-", "_"): default.parameters / danet_r.parameters,
        f"{default.name}_over_danet_all".replace("-", "_"): default.parameters / counts["total"],
    }
    return counts, ratios


def base64_text(data: bytes) -> str:
    """Bytes as base64 ASCII text."""
    return base64.b64encode(data).decode("ascii")
