"""Tile-level iteration over `invdn.inference.engine.Denoiser`: the same tiles, windows and seeds
as `Denoiser.__call__`,
one tile per step, so a caller (the REST service's scheduler) can interleave the tiles of several images, report
progress and stop between any two tiles.

    run = TiledRun(denoiser, pixels, seed=0)
    for _ in run.steps():   # one tile per iteration
        ...                 # check for cancellation, yield to other work
    out = run.result()      # equals denoiser(pixels, seed=0)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from invdn.inference.engine import Denoiser, balanced_tile, tile_positions, tile_seed, tile_windows


@dataclass(frozen=True)
class Tile:
    """One tile of the grid."""

    top: int
    left: int
    height: int
    width: int

    @property
    def pixels(self) -> int:
        return self.height * self.width


class TiledRun:
    """Denoise one (H, W, C) image tile by tile; `steps()` runs one tile per iteration, `result()` finishes.

    `max_tile` caps the tile side below the denoiser's own (explicit or memory-derived) tile, so that one step
    takes a bounded time; it is rounded down to the model's multiple and never below 2 x overlap + 16.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        pixels: np.ndarray,
        *,
        samples: int = 1,
        ensemble: bool = False,
        seed: int = 0,
        max_tile: int | None = None,
    ) -> None:
        denoiser.check(pixels, samples)
        self.denoiser = denoiser
        self.pixels = pixels
        self.samples = samples
        self.ensemble = ensemble
        self.seed = seed
        height, width, channels = pixels.shape
        overlap = denoiser.overlap
        side = denoiser.tile_size()
        multiple = max(1, int(getattr(denoiser.model, "multiple", 1)))
        if max_tile is not None:
            floor = -(-(2 * overlap + 16) // multiple) * multiple
            side = min(side, max(floor, max_tile // multiple * multiple))
        self.tile_h = balanced_tile(height, side, overlap, multiple)
        self.tile_w = balanced_tile(width, side, overlap, multiple)
        self.rows = tile_positions(height, self.tile_h, overlap)
        self.cols = tile_positions(width, self.tile_w, overlap)
        self._row_windows = tile_windows(self.rows, self.tile_h)
        self._col_windows = tile_windows(self.cols, self.tile_w)
        self._row_sum = np.zeros(height, dtype=np.float32)
        self._col_sum = np.zeros(width, dtype=np.float32)
        for top, window in zip(self.rows, self._row_windows, strict=True):
            self._row_sum[top : top + self.tile_h] += window
        for left, window in zip(self.cols, self._col_windows, strict=True):
            self._col_sum[left : left + self.tile_w] += window
        self._out = np.zeros((height, width, channels), dtype=np.float32)
        self.done = 0

    @property
    def total(self) -> int:
        """Tiles in the grid."""
        return len(self.rows) * len(self.cols)

    def tiles(self) -> list[Tile]:
        """The grid in processing order (row by row)."""
        return [Tile(top, left, self.tile_h, self.tile_w) for top in self.rows for left in self.cols]

    def steps(self) -> Iterator[Tile]:
        """Denoises one tile per iteration and yields it (after it is accumulated)."""
        for top, row_window in zip(self.rows, self._row_windows, strict=True):
            for left, col_window in zip(self.cols, self._col_windows, strict=True):
                generator = torch.Generator(device=self.denoiser.device)
                generator.manual_seed(tile_seed(self.seed, top, left))
                tile = self.pixels[top : top + self.tile_h, left : left + self.tile_w]
                result = self.denoiser._run_tile(tile, generator, self.samples, self.ensemble)
                result *= (row_window[:, None] * col_window[None, :])[..., None]
                self._out[top : top + self.tile_h, left : left + self.tile_w] += result
                self.done += 1
                yield Tile(top, left, self.tile_h, self.tile_w)

    def result(self) -> np.ndarray:
        """The denoised image (H, W, C) float32 in [0, 1]; every step must have run."""
        if self.done != self.total:
            raise RuntimeError(f"{self.done} of {self.total} tiles denoised; run every step first")
        out = self._out
        height = out.shape[0]
        for start in range(0, height, 256):
            block = out[start : start + 256]
            block /= (self._row_sum[start : start + 256, None] * self._col_sum[None, :])[..., None]
            np.clip(block, 0.0, 1.0, out=block)
        return out
