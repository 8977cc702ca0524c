"""Every registry model (InvDN-LC, the paper's InvDN, DANet-R) on one image: quality, speed and size, for the CLI
and the REST service.

Three ways to call `compare`:
- `sigma` (AWGN) or `noise="camera"` and no reference: `image` is the clean reference; seeded synthetic noise
  is added and the noisy image is rounded to 8 bits, as if it had been saved to a file;
- `reference`: `image` is the noisy input and `reference` its clean version;
- neither: `image` is denoised and only speed and size are reported (no PSNR/SSIM).
Outputs are rounded to 8 bits before scoring.
"""

from __future__ import annotations

import base64
import io
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from invdn.eval.metrics import psnr, quantize8, ssim
from invdn.inference.fast import for_inference
from invdn.models import registry
from invdn.models.danet import DANetConfig, danet_parameter_counts
from invdn.models.flops import count_parameters, flops_per_megapixel

MODEL_KEYS = tuple(registry.names())  # the denoisers compared, in table order
LABELS = {"noisy": "noisy", **{spec.name: spec.label for spec in registry.MODELS}, "clean": "clean"}
NOISE_KINDS = ("awgn", "camera")
RANDOM_INIT_NOTE = "random initialisation: no shipped weights"
GRID_GAP = 4  # pixels between the panels of the side-by-side grid
SSIM_MIN_SIDE = 7  # scikit-image's SSIM window; smaller images get no SSIM


@dataclass
class RowReport:
    """One row of the comparison: the noisy input or one denoiser's output."""

    name: str  # "noisy", "clean" or a registry model name
    label: str  # display name
    psnr: float | None  # dB against the reference; None without a reference
    ssim: float | None  # against the reference; None without a reference or below 7x7
    ms: float | None  # wall time of the denoise call in milliseconds; None for the noisy input
    parameters: int | None  # trainable parameters of the network
    flops_per_megapixel: float | None  # invdn.models.flops.flops_per_megapixel at this run's `samples`
    pretrained: bool | None  # False: randomly initialised network
    note: str = ""  # e.g. the random-initialisation warning

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "psnr": _finite_or_none(self.psnr),
            "ssim": _finite_or_none(self.ssim),
            "ms": self.ms,
            "parameters": self.parameters,
            "flops_per_megapixel": self.flops_per_megapixel,
            "pretrained": self.pretrained,
            "note": self.note,
        }


@dataclass
class CompareResult:
    """Everything `compare` measured, and the images it scored (uint8 HxWx3)."""

    height: int  # image height in pixels
    width: int  # image width in pixels
    mode: str  # "synthetic" (noise added here), "reference" (clean image given) or "blind" (no reference)
    noise: str | None  # noise spec used in synthetic mode, e.g. "awgn:25:clip8"
    seed: int  # seed of the synthetic noise and of InvDN's latent draws
    samples: int  # InvDN latent draws averaged
    rows: list[RowReport]  # noisy, invdn, danet-r
    danet_parameters: dict[str, int]  # DANet r, g, discriminator, total (at DANet-R's configuration)
    ratios: dict[str, float]  # invdn_over_danet_r and invdn_over_danet_all, as fractions
    warnings: list[str] = field(default_factory=list)  # e.g. random-initialisation notes
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # noisy/invdn/danet-r[/clean]

    def row(self, name: str) -> RowReport:
        """The row called `name` ("noisy", "invdn" or "danet-r")."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self, include_images: bool = False) -> dict[str, Any]:
        """JSON-ready dict; with `include_images`, the images as base64 PNG under "images"."""
        out: dict[str, Any] = {
            "height": self.height,
            "width": self.width,
            "mode": self.mode,
            "noise": self.noise,
            "seed": self.seed,
            "samples": self.samples,
            "models": {row.name: row.to_dict() for row in self.rows},
            "danet_parameters": dict(self.danet_parameters),
            "ratios": dict(self.ratios),
            "ratios_percent": {k: round(100 * v, 2) for k, v in self.ratios.items()},
            "warnings": list(self.warnings),
        }
        if include_images:
            out["images"] = {
                name: base64.b64encode(png_bytes(img)).decode("ascii") for name, img in self.images.items()
            }
        return out


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an HxWx3 uint8 image as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _as_float_image(image: np.ndarray, name: str) -> np.ndarray:
    """Check an (H, W, 3) uint8 or float [0, 1] image and return it as float32 [0, 1]."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) RGB array, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.min() < -1e-6 or array.max() > 1 + 1e-6:
        raise ValueError(f"{name} is float but not in [0, 1] (range {array.min():.3g}..{array.max():.3g})")
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def _to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).unsqueeze(0).to(device)


def _to_uint8(batch: torch.Tensor) -> np.ndarray:
    return quantize8(batch[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())


def _noise_spec(noise: str, sigma: float | None) -> str:
    if noise == "awgn":
        return f"awgn:{sigma:g}:clip8"
    return "camera:clip8"


def _synthesise(clean: np.ndarray, spec: str, seed: int) -> np.ndarray:
    from invdn.training.noise import make_noise  # imported here: only synthetic mode needs it

    generator = torch.Generator().manual_seed(seed)
    noisy = make_noise(spec)(_to_tensor(clean, torch.device("cpu")), generator)
    return noisy[0].permute(1, 2, 0).numpy().astype(np.float32)


def _model_args(model: nn.Module) -> dict[str, Any]:
    return dict(getattr(model, "model_args", {}) or {})


def _load_default(name: str, device: torch.device) -> nn.Module:
    from invdn.models.weights import load  # imported here: callers that pass models never need weights

    return load(name, device=device)


def _score(output: np.ndarray, reference: np.ndarray | None) -> tuple[float | None, float | None]:
    if reference is None:
        return None, None
    quality = psnr(output, reference)
    similarity = ssim(output, reference) if min(output.shape[:2]) >= SSIM_MIN_SIDE else None
    return quality, similarity


def _run_denoiser(model: nn.Module, noisy: torch.Tensor, samples: int, seed: int) -> tuple[torch.Tensor, float]:
    generator = torch.Generator(device=noisy.device).manual_seed(seed)
    if noisy.device.type == "cuda":
        torch.cuda.synchronize(noisy.device)
    start = time.perf_counter()
    with torch.no_grad():
        output = for_inference(model).denoise(noisy, samples=samples, generator=generator)
    if noisy.device.type == "cuda":
        torch.cuda.synchronize(noisy.device)
    return output, 1000.0 * (time.perf_counter() - start)


def compare(
    image: np.ndarray,
    reference: np.ndarray | None = None,
    sigma: float | None = None,
    noise: str = "awgn",
    seed: int = 0,
    models: dict[str, nn.Module] | None = None,
    samples: int = 1,
    device: str | torch.device = "cpu",
) -> CompareResult:
    """Denoise one (H, W, 3) image with every registry model and measure each (see the module docstring).

    `models` maps registry names to denoisers; missing ones come from `invdn.models.weights.load`.
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; choose one of {', '.join(NOISE_KINDS)}")
    if sigma is not None and not (math.isfinite(sigma) and 0 <= sigma <= 255):
        raise ValueError(f"sigma must be between 0 and 255 (on the 0-255 scale), got {sigma}")
    if reference is not None and (sigma is not None or noise != "awgn"):
        raise ValueError("give either a clean reference or synthetic noise (sigma / noise='camera'), not both")
    if noise == "camera" and sigma is not None:
        raise ValueError("camera noise draws its own level; do not give sigma with noise='camera'")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    device = torch.device(device)

    given = _as_float_image(image, "image")
    clean: np.ndarray | None
    spec: str | None = None
    if reference is not None:
        mode = "reference"
        clean = _as_float_image(reference, "reference")
        if clean.shape != given.shape:
            raise ValueError(f"reference shape {clean.shape} differs from image shape {given.shape}")
        noisy = given
    elif sigma is not None or noise == "camera":
        mode = "synthetic"
        clean = given
        spec = _noise_spec(noise, sigma)
        noisy = _synthesise(clean, spec, seed)
    else:
        mode = "blind"
        clean = None
        noisy = given

    clean8 = quantize8(clean) if clean is not None else None
    noisy8 = quantize8(noisy)
    noisy_psnr, noisy_ssim = _score(noisy8, clean8)
    rows = [RowReport("noisy", LABELS["noisy"], noisy_psnr, noisy_ssim, None, None, None, None)]
    images = {"noisy": noisy8}
    warnings: list[str] = []
    parameters: dict[str, int] = {}
    danet_config = DANetConfig()
    noisy_tensor = _to_tensor(noisy, device)
    given_models = models or {}
    for name in MODEL_KEYS:
        model = given_models.get(name)
        model = _load_default(name, device) if model is None else model.to(device)
        model.eval()
        if name == "danet-r" and _model_args(model):
            danet_config = DANetConfig(**_model_args(model))
        flops = flops_per_megapixel(model, samples)
        output, ms = _run_denoiser(model, noisy_tensor.to(next(model.parameters()).dtype), samples, seed)
        output8 = _to_uint8(output)
        images[name] = output8
        quality, similarity = _score(output8, clean8)
        pretrained = bool(getattr(model, "pretrained", False))
        note = "" if pretrained else RANDOM_INIT_NOTE
        if note:
            warnings.append(f"{LABELS[name]}: {note}")
        parameters[name] = count_parameters(model)
        rows.append(RowReport(name, LABELS[name], quality, similarity, ms, parameters[name], flops, pretrained, note))
    if clean8 is not None:
        images["clean"] = clean8

    danet_counts = danet_parameter_counts(danet_config)
    ratios: dict[str, float] = {}
    for name in MODEL_KEYS:
        if name != "danet-r":  # e.g. "invdn_over_danet_r", "invdn-paper_over_danet_all"
            ratios[f"{name}_over_danet_r"] = parameters[name] / parameters["danet-r"]
            ratios[f"{name}_over_danet_all"] = parameters[name] / danet_counts["total"]
    return CompareResult(
        height=given.shape[0],
        width=given.shape[1],
        mode=mode,
        noise=spec,
        seed=seed,
        samples=samples,
        rows=rows,
        danet_parameters=danet_counts,
        ratios=ratios,
        warnings=warnings,
        images=images,
    )


def _fmt(value: float | None, pattern: str) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return format(value, pattern)


def format_table(result: CompareResult) -> str:
    """The comparison as a plain-text table with both parameter ratios."""
    source = {"synthetic": f"noise {result.noise}, seed {result.seed}", "reference": "clean reference given"}
    lines = [
        f"{result.width}x{result.height} image, {source.get(result.mode, 'no reference: no PSNR/SSIM')}",
        f"{'model':<14} {'PSNR dB':>8} {'SSIM':>7} {'ms':>9} {'params':>11} {'GFLOPs/MP':>10}  weights",
    ]
    for row in result.rows:
        if row.pretrained is None:
            weights = "-"
        else:
            weights = "trained" if row.pretrained else RANDOM_INIT_NOTE
        params = f"{row.parameters:,}" if row.parameters is not None else "-"
        gflops = row.flops_per_megapixel / 1e9 if row.flops_per_megapixel is not None else None
        lines.append(
            f"{row.label:<14} {_fmt(row.psnr, '.2f'):>8} {_fmt(row.ssim, '.4f'):>7} {_fmt(row.ms, '.1f'):>9} "
            f"{params:>11} {_fmt(gflops, '.1f'):>10}  {weights}"
        )
    counts = result.danet_parameters
    lines.append(
        f"parameters against DANet-R ({counts['r']:,}) and all of DANet (R + G {counts['g']:,} + discriminator "
        f"{counts['discriminator']:,} = {counts['total']:,}):"
    )
    for name in MODEL_KEYS:
        if f"{name}_over_danet_r" in result.ratios:
            lines.append(
                f"  {LABELS[name]}: {100 * result.ratios[f'{name}_over_danet_r']:.1f} % of DANet-R, "
                f"{100 * result.ratios[f'{name}_over_danet_all']:.2f} % of DANet"
            )
    lines.extend(f"warning: {warning}" for warning in result.warnings)
    return "\n".join(lines)


def side_by_side_png(result: CompareResult) -> bytes:
    """PNG grid noisy | each model | clean (clean only with a reference), each labelled with its PSNR.

    The labels' font grows with the image (at least 14 px), so they stay readable on big photos.
    """
    names = [name for name in ("noisy", *MODEL_KEYS, "clean") if name in result.images]
    rows = {row.name: row for row in result.rows}
    font = ImageFont.load_default(size=max(14, min(result.width // 16, 48)))
    line_height = _text_height(font) + 2
    strip = 3 * line_height + 4  # name, PSNR, and "random init" for untrained networks
    height, width = result.height, result.width
    canvas = Image.new("RGB", (len(names) * width + (len(names) - 1) * GRID_GAP, height + strip), "white")
    draw = ImageDraw.Draw(canvas)
    for index, name in enumerate(names):
        left = index * (width + GRID_GAP)
        canvas.paste(Image.fromarray(result.images[name]), (left, strip))
        row = rows.get(name)
        lines = [LABELS[name]]
        if name == "clean":
            lines.append("reference")
        elif row is not None and row.psnr is not None:
            lines.append(f"{_fmt(row.psnr, '.2f')} dB")
        if row is not None and row.pretrained is False:
            lines.append("random init")
        for number, text in enumerate(lines):
            draw.text((left + 2, 2 + number * line_height), text, fill="black", font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _text_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    left, top, right, bottom = font.getbbox("Ag")
    return int(bottom - top) + 1
