"""One image through the batch pipeline: decode, denoise, encode. Nothing here imports click or ray.

`invdn denoise` runs these steps on different threads (decode ahead, encode behind) and the Ray actors of
`invdn.batch.ray` run them one after another through `denoise_bytes`; both call the same functions with the
same `Options`, so a file denoised either way is byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from invdn.inference.engine import Denoiser
    from invdn.io.decode import LoadedImage


@dataclass
class Options:
    """What every job of a run shares."""

    overwrite: bool  # replace existing outputs
    quality: int  # JPEG/WebP quality
    samples: int  # InvDN latent draws averaged
    ensemble: bool  # 8-way flip/transpose ensemble
    seed: int  # seed of InvDN's latent draws
    max_pixels: int | None  # refuse images with more pixels than this

    @classmethod
    def from_cli(
        cls, overwrite: bool, quality: int, samples: int, ensemble: bool, seed: int, max_megapixels: float
    ) -> Options:
        """The options of `invdn denoise` (local or on Ray), its pixel cap given in megapixels."""
        return cls(overwrite, quality, samples, ensemble, seed, max_pixels=round(max_megapixels * 1e6))


class SetupError(ValueError):
    """The model cannot be loaded or placed as asked (bad weights, device, precision or tile)."""


def decode(data: bytes | Path, options: Options) -> LoadedImage:
    """Step 1: the input file's bytes (or path) -> pixels and metadata; refuses images over `max_pixels`."""
    from invdn.io.decode import decode_image

    return decode_image(data, max_pixels=options.max_pixels)


def denoise_pixels(
    denoiser: Denoiser,
    image: LoadedImage,
    options: Options,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Step 2: the denoised pixels of a decoded image (same seed, same output)."""
    return denoiser(
        image.pixels, samples=options.samples, ensemble=options.ensemble, seed=options.seed, progress=progress
    )


def encode(image: LoadedImage, pixels: np.ndarray, fmt: str, options: Options) -> bytes:
    """Step 3: the output file's bytes, with the input's alpha, ICC profile, EXIF, bit depth and mode."""
    from invdn.io.encode import encode_image

    return encode_image(image, pixels, format=fmt, quality=options.quality)


def denoise_bytes(data: bytes, fmt: str, denoiser: Denoiser, options: Options) -> tuple[bytes, tuple[int, int]]:
    """Steps 1-3 for one file: (output bytes, (width, height)). Raises on a file that cannot be denoised."""
    image = decode(data, options)
    size = (image.width, image.height)
    image.pixels = denoise_pixels(denoiser, image, options)
    return encode(image, image.pixels, fmt, options), size


def failure_reason(exc: BaseException) -> str:
    """One line saying why a file failed, for the terminal and the report."""
    from invdn.io.errors import ImageError

    if isinstance(exc, ImageError):
        return str(exc)
    if isinstance(exc, FileExistsError):
        return f"{exc}; pass --overwrite to replace it"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller --tile or fewer --workers)"
    return f"{type(exc).__name__}: {exc}"


def load_denoiser(
    model: str,
    weights: Path | None,
    device: str,
    precision: str,
    tile: int | None,
    overlap: int | None,
) -> Denoiser:
    """The registry model `model` (from `weights`, else the shipped weights) wrapped for inference.

    Raises SetupError for anything that stops the model from loading. A network without trained weights has
    `denoiser.model.pretrained` false.
    """
    from invdn.inference.engine import Denoiser, InferenceSetupError
    from invdn.models.weights import WeightsError, load

    try:
        net = load(model, path=weights)
        return Denoiser(net, device=device, precision=precision, tile=tile, overlap=overlap)
    except (WeightsError, InferenceSetupError, ValueError, OSError) as exc:
        raise SetupError(str(exc)) from exc
