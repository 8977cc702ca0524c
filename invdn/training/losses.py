"""InvDN's training losses.

All terms are summed over (C, H, W) and averaged over the batch, as in the official InvDN code, so the forward
term (on an image 16x smaller, weighted x16) and the backward terms weigh each pixel alike.

- forward:  16 * || lr - bicubic_down4(clean) ||^2        (antialiased bicubic, 1/4 size)
- backward: Charbonnier(decode(lr, z ~ N(0, I)), clean), eps^2 = 1e-3
            + 0.1 * L1 of the Sobel gradients
            + (1 - SSIM) per pixel (11x11 Gaussian window, sigma 1.5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def downscale(clean: Tensor, factor: int) -> Tensor:
    """Antialiased bicubic downscaling by an integer factor (the forward-loss target)."""
    h, w = clean.shape[-2] // factor, clean.shape[-1] // factor
    return F.interpolate(clean, size=(h, w), mode="bicubic", align_corners=False, antialias=True)


def _per_sample_sum(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1).mean()


def forward_loss(lr: Tensor, clean: Tensor, weight: float = 16.0) -> Tensor:
    target = downscale(clean, clean.shape[-1] // lr.shape[-1])
    return weight * _per_sample_sum((lr - target) ** 2)


def charbonnier(x: Tensor, y: Tensor, eps2: float = 1e-3) -> Tensor:
    return _per_sample_sum(torch.sqrt((x - y) ** 2 + eps2))


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 2C, H, W): horizontal and vertical Sobel responses per channel."""
    c = x.shape[1]
    k = torch.stack([_SOBEL_X, _SOBEL_X.t()]).to(x).unsqueeze(1).repeat(c, 1, 1, 1)  # (2C, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=c)


def sobel_l1(x: Tensor, y: Tensor) -> Tensor:
    return _per_sample_sum((sobel(x) - sobel(y)).abs())


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_map(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Per-pixel SSIM (B, C, H, W) with a Gaussian window and reflect padding (same size as the input)."""
    c = x.shape[1]
    w = _gaussian_window(window, sigma, c, x)
    pad = window // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode=mode), w, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim_loss(x: Tensor, y: Tensor) -> Tensor:
    return _per_sample_sum(1 - ssim_map(x, y))


def backward_loss(x: Tensor, clean: Tensor, sobel_weight: float = 0.1, ssim_weight: float = 1.0) -> Tensor:
    return charbonnier(x, clean) + sobel_weight * sobel_l1(x, clean) + ssim_weight * ssim_loss(x, clean)
