"""Image quality metrics (PSNR, SSIM) as the denoising literature scores them.

Images are numpy arrays, HxW (grey) or HxWxC (colour), either uint8 in [0, 255] or float in [0, 1].
Float outputs are quantised to 8 bits (`quantize8`) before scoring in the evaluation, as published tables do.
Both images of a pair must have the same dtype family; mixed uint8/float pairs are converted to float [0, 1].
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["psnr", "ssim", "quantize8", "to_uint8", "to_float"]


def quantize8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (values outside are clipped) -> uint8 by rounding to nearest."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Any supported image -> uint8 (floats are taken as [0, 1] and rounded)."""
    return quantize8(x)


def to_float(x: np.ndarray) -> np.ndarray:
    """Any supported image -> float64 in [0, 1] (uint8 divided by 255; floats passed through)."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float64) / 65535.0
    return x.astype(np.float64)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Bring two images to a common representation and return it with its data range."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        return a.astype(np.float64), b.astype(np.float64), 255.0
    return to_float(a), to_float(b), 1.0


def psnr(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB between two images (over all pixels and channels).

    `data_range` defaults to 255 for a uint8 pair and 1 otherwise. Identical images give +inf.
    """
    fa, fb, rng = _pair(a, b)
    if data_range is not None:
        rng = float(data_range)  # on the scale of the compared arrays (255 for a uint8 pair, else 1)
    mse = float(np.mean((fa - fb) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(peak_signal_noise_ratio(fa, fb, data_range=rng))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Structural similarity (scikit-image, 7x7 uniform window), averaged over channels for colour images."""
    fa, fb, rng = _pair(a, b)
    if data_range is not None:
        rng = float(data_range)
    channel_axis = -1 if fa.ndim == 3 else None
    if min(fa.shape[0], fa.shape[1]) < 7:
        raise ValueError(f"SSIM needs images at least 7x7, got {fa.shape}")
    return float(structural_similarity(fa, fb, data_range=rng, channel_axis=channel_axis))
