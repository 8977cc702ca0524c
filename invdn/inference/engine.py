"""The inference engine: denoise an image of any size with a model, tile by tile, in bounded memory.

The image stays in host memory as a float32 numpy array; tiles that overlap by `overlap` pixels go to the
device one at a time and come back weighted by a raised-cosine window, so seams blend smoothly and the result
is the weighted average of overlapping tiles. Each tile's random draws (InvDN's latent) come from a generator
seeded by (seed, tile position), so the same seed gives the same output whatever the processing order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import psutil
import torch
from torch import nn

from invdn.inference.fast import for_inference
from invdn.models import registry
from invdn.models.geometry import padding_for
from invdn.runtime import tune_allocator

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("auto", "cpu", "cuda", "mps")

# Per-model facts (tile overlap, smallest and largest automatic tiles, activation bytes per pixel) come from
# `invdn.models.registry`; these apply to models the registry does not know.
DEFAULT_BYTES_PER_PIXEL = 4 * 1024
MIN_TILE = 64
MAX_AUTO_TILE = {"cpu": 1024, "cuda": 2048, "mps": 1024}
DEFAULT_OVERLAP = 32


def model_overlap(model: nn.Module) -> int:
    """The tile overlap of a model's registry entry, else DEFAULT_OVERLAP."""
    spec = registry.spec_of(model)
    return DEFAULT_OVERLAP if spec is None else spec.tile_overlap


def model_min_tile(model: nn.Module) -> int:
    """The smallest automatic tile side of a model's registry entry, else MIN_TILE."""
    spec = registry.spec_of(model)
    return max(MIN_TILE, spec.min_tile if spec is not None else MIN_TILE)


def model_max_tile(model: nn.Module) -> int | None:
    """The largest automatic tile side of a model's registry entry (None: memory decides)."""
    spec = registry.spec_of(model)
    return None if spec is None else spec.max_tile


def model_bytes_per_pixel(model: nn.Module) -> int:
    """Peak activation bytes per input pixel of a model's registry entry, else DEFAULT_BYTES_PER_PIXEL."""
    spec = registry.spec_of(model)
    return DEFAULT_BYTES_PER_PIXEL if spec is None else spec.bytes_per_pixel


def is_stochastic(model: nn.Module) -> bool:
    """Whether a model's denoise draws random latents (takes `samples` and a `generator`)."""
    spec = registry.spec_of(model)
    return spec.stochastic if spec is not None else False


class InferenceSetupError(ValueError):
    """A device or precision that cannot be used here; the message names the reason."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:N" or "mps", checked usable."""
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.backends.cuda.is_built():
            raise InferenceSetupError(
                f"CUDA requested but torch {torch.__version__} was built without CUDA; install a CUDA build"
            )
        if not torch.cuda.is_available():
            raise InferenceSetupError(
                "CUDA requested but no CUDA device is usable (no NVIDIA driver, no GPU visible, or "
                "CUDA_VISIBLE_DEVICES hides them)"
            )
        device = torch.device(name)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InferenceSetupError(f"{name} requested but only {count} CUDA device(s) are visible")
        return device
    if name == "mps":
        if not torch.backends.mps.is_built():
            raise InferenceSetupError("MPS requested but torch was built without MPS (macOS on Apple silicon only)")
        if not torch.backends.mps.is_available():
            raise InferenceSetupError("MPS requested but not available (needs macOS 12.3+ on Apple silicon)")
        return torch.device("mps")
    raise InferenceSetupError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)} or cuda:N")


def check_precision(device: torch.device, precision: str) -> torch.dtype:
    """The compute dtype for `precision` on `device`, after checking the device really runs it."""
    if precision not in PRECISIONS:
        raise InferenceSetupError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype == torch.float32:
        return dtype
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            major, minor = torch.cuda.get_device_capability(device)
            raise InferenceSetupError(
                f"bf16 not supported on this GPU (compute capability {major}.{minor}; bf16 needs 8.0+); use fp16"
            )
    try:
        probe = torch.rand(1, 3, 8, 8, device=device)
        weight = torch.rand(4, 3, 3, 3, device=device)
        with torch.autocast(device_type=device.type, dtype=dtype):
            result = torch.nn.functional.conv2d(probe, weight)
        if result.dtype != dtype:
            raise RuntimeError(f"autocast produced {result.dtype}")
    except RuntimeError as exc:
        where = "this CPU" if device.type == "cpu" else f"this {device.type.upper()} device"
        raise InferenceSetupError(f"{precision} not supported on {where} by torch {torch.__version__}: {exc}") from exc
    return dtype


def tile_positions(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), neighbours overlapping by >= `overlap`.

    With `multiple` > 1 (and `length`, `tile` multiples of it) every offset is a multiple too, so each tile sees
    the same Haar/pooling grid as the whole image would.
    """
    if length <= tile:
        return [0]
    stride = max(multiple, tile - overlap - (multiple - 1))  # room for rounding each offset to the grid
    count = math.ceil((length - tile) / stride) + 1
    return [round(index * (length - tile) / (count - 1) / multiple) * multiple for index in range(count)]


def pad_to_grid(pixels: np.ndarray, multiple: int) -> np.ndarray:
    """(H, W, C) padded bottom/right to multiples of `multiple` by the models' rule (`geometry.padding_for`)."""
    ph, pw, mode = padding_for(pixels.shape[0], pixels.shape[1], multiple)
    if ph == 0 and pw == 0:
        return pixels
    return np.pad(pixels, ((0, ph), (0, pw), (0, 0)), mode="edge" if mode == "replicate" else mode)


def balanced_tile(length: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest tile side (a multiple of `multiple`, at most `tile`) that covers `length` with as few tiles
    as `tile` would need: 4000 px at tile 864 (overlap 32, multiple 8) takes 5 tiles of 832 instead of 5 tiles
    of 864 overlapping by far more than `overlap`, so less work is thrown away. A `tile` that is not a multiple
    is rounded down to one first (so no tile needs padding), unless it is smaller than `multiple`."""
    if length <= tile:
        return length
    tile = tile // multiple * multiple or tile
    count = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (count - 1) * overlap) / count)
    return min(tile, -(-side // multiple) * multiple)


def _ramp(length: int) -> np.ndarray:
    """Raised-cosine weights rising from ~0 to ~1 over `length` samples; ramp + reversed ramp == 1."""
    steps = (np.arange(length, dtype=np.float64) + 0.5) / length
    return (np.sin(steps * math.pi / 2) ** 2).astype(np.float32)


def tile_windows(positions: list[int], size: int) -> list[np.ndarray]:
    """Per-tile 1-D blending weights along one axis: 1 inside, ramps where a tile overlaps a neighbour."""
    windows = []
    for index, start in enumerate(positions):
        weights = np.ones(size, dtype=np.float32)
        if index > 0:
            shared = positions[index - 1] + size - start
            weights[:shared] *= _ramp(shared)
        if index < len(positions) - 1:
            shared = start + size - positions[index + 1]
            weights[size - shared :] *= _ramp(shared)[::-1]
        windows.append(weights)
    return windows


def tile_seed(seed: int, top: int, left: int) -> int:
    """A generator seed for the tile at (top, left), independent of the order tiles are processed in."""
    digest = hashlib.blake2b(f"{seed}:{top}:{left}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class Denoiser:
    """Denoise (H, W, C) float images of any size with a denoiser module, in overlapping tiles."""

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        tile: int | None = None,
        overlap: int | None = None,
        optimised: bool = True,
    ) -> None:
        """`overlap` None: the model's own (`model_overlap`, from the registry). `optimised` False runs the model's
        own plain code instead of its inference variant (`invdn.inference.fast`; for benchmarks and checks)."""
        if not hasattr(model, "denoise"):
            raise TypeError("model must have a .denoise(x) method")
        overlap = model_overlap(model) if overlap is None else overlap
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        if tile is not None and tile < max(MIN_TILE, 2 * overlap + 16):
            raise ValueError(
                f"tile must be at least {max(MIN_TILE, 2 * overlap + 16)} (2 x overlap + 16, overlap {overlap})"
            )
        self.device = resolve_device(device)
        self.dtype = check_precision(self.device, precision)
        self.precision = precision
        self.model = model.eval().to(self.device)
        self.runner = for_inference(self.model) if optimised else self.model  # same results (tests/test_fast.py)
        tune_allocator()
        self.model_type = str(getattr(model, "model_type", "unknown"))
        self.in_channels = int(getattr(getattr(model, "config", None), "in_channels", 3) or 3)
        self.tile = tile
        self.overlap = overlap

    def auto_tile_size(self) -> int:
        """A tile side that fits the activation memory budget of the device (multiple of 32), within the model's
        smallest and largest automatic tiles (`invdn.models.registry.ModelSpec`)."""
        per_pixel = model_bytes_per_pixel(self.model)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = free * 0.5
        else:
            budget = min(psutil.virtual_memory().available * 0.25, 768 * 1024**2)
        side = int(math.sqrt(budget / per_pixel)) // 32 * 32
        floor = -(-max(model_min_tile(self.model), 2 * self.overlap + 32) // 32) * 32
        ceiling = min(MAX_AUTO_TILE.get(self.device.type, 1024), model_max_tile(self.model) or 1 << 30)
        return max(floor, min(side, ceiling))

    def check(self, pixels: np.ndarray, samples: int) -> None:
        """Raise ValueError unless `pixels` is (H, W, 1 or 3) for this model and `samples` >= 1."""
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
            raise ValueError(f"pixels must be (H, W, 1) or (H, W, 3), got {pixels.shape}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if self.in_channels not in (1, 3) or (self.in_channels == 1 and pixels.shape[2] == 3):
            raise ValueError(f"this model takes {self.in_channels}-channel images, not {pixels.shape[2]}-channel")

    def tile_size(self) -> int:
        """The tile side used: the explicit one, else one chosen from available memory."""
        return self.tile if self.tile is not None else self.auto_tile_size()

    def _run_tile(
        self, tile: np.ndarray, generator: torch.Generator | None, samples: int, ensemble: bool
    ) -> np.ndarray:
        """Denoise one (h, w, C) tile on the device; returns (h, w, C) float32 in [0, 1] on the host."""
        channels = tile.shape[2]
        x = torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1)[None]
        if channels == 1 and self.in_channels == 3:
            x = x.expand(1, 3, *x.shape[2:])  # grey through the colour model, averaged back below
        x = x.to(self.device, dtype=torch.float32, non_blocking=False).contiguous()
        with (
            torch.inference_mode(),
            torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32),
        ):
            if is_stochastic(self.model):
                y = self.runner.denoise(x, samples=samples, ensemble=ensemble, generator=generator)
            else:
                y = self.runner.denoise(x, ensemble=ensemble)
            y = y.float().clamp(0.0, 1.0)
            if channels == 1 and y.shape[1] != 1:
                y = y.mean(dim=1, keepdim=True)
            return y[0].permute(1, 2, 0).cpu().numpy().copy()

    def __call__(
        self,
        pixels: np.ndarray,
        *,
        samples: int = 1,
        ensemble: bool = False,
        seed: int | None = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Denoise `pixels` (H, W, C) float32 in [0, 1], C = 1 or 3; returns the same shape.

        `samples` latent draws and the 8-way `ensemble` are averaged (InvDN; DANet-R uses `ensemble` only).
        The same `seed` gives the same output; None draws a fresh seed. `progress(done, total)` is called
        after each tile.
        """
        self.check(pixels, samples)
        if seed is None:
            seed = int(torch.seed())
        height0, width0 = pixels.shape[:2]
        side = self.tile_size()
        # Tiles in whole multiples of the model's padding (InvDN: 4, DANet-R: 16), at offsets on the same grid, over
        # the image padded as the model pads a whole image: each tile sees the whole image's Haar/pooling grid.
        multiple = max(1, int(getattr(self.model, "multiple", 1)))
        pixels = pad_to_grid(pixels, multiple)
        height, width, channels = pixels.shape
        tile_h = balanced_tile(height, side, self.overlap, multiple)
        tile_w = balanced_tile(width, side, self.overlap, multiple)
        rows = tile_positions(height, tile_h, self.overlap, multiple)
        cols = tile_positions(width, tile_w, self.overlap, multiple)
        row_windows = tile_windows(rows, tile_h)
        col_windows = tile_windows(cols, tile_w)
        # The windows are separable and the tiles form a grid, so the sum of weights is separable too.
        row_sum = np.zeros(height, dtype=np.float32)
        col_sum = np.zeros(width, dtype=np.float32)
        for top, window in zip(rows, row_windows, strict=True):
            row_sum[top : top + tile_h] += window
        for left, window in zip(cols, col_windows, strict=True):
            col_sum[left : left + tile_w] += window

        out = np.zeros((height, width, channels), dtype=np.float32)
        total = len(rows) * len(cols)
        done = 0
        for top, row_window in zip(rows, row_windows, strict=True):
            for left, col_window in zip(cols, col_windows, strict=True):
                generator = torch.Generator(device=self.device)
                generator.manual_seed(tile_seed(seed, top, left))
                tile = pixels[top : top + tile_h, left : left + tile_w]
                result = self._run_tile(tile, generator, samples, ensemble)
                result *= (row_window[:, None] * col_window[None, :])[..., None]
                out[top : top + tile_h, left : left + tile_w] += result
                done += 1
                if progress is not None:
                    progress(done, total)
        for start in range(0, height, 256):
            block = out[start : start + 256]
            block /= (row_sum[start : start + 256, None] * col_sum[None, :])[..., None]
            np.clip(block, 0.0, 1.0, out=block)
        if (height, width) != (height0, width0):
            out = np.ascontiguousarray(out[:height0, :width0])
        return out
