"""The 2x2 Haar wavelet step used by InvDN, and its exact inverse.

Each 2x2 block (a, b; c, d) of every channel becomes four coefficients:
    low  = (a + b + c + d) / 4        the 2x2 mean: a half-size copy of the image
    h    = (a - b + c - d) / 4        horizontal detail
    v    = (a + b - c - d) / 4        vertical detail
    diag = (a - b - c + d) / 4        diagonal detail
Output channels are ordered band-major, so the first C channels are the low band:
    (B, C, H, W) -> (B, 4C, H/2, W/2) = [low(C) | h(C) | v(C) | diag(C)].

The per-block matrix is (1/4) * a 4x4 Hadamard matrix, whose determinant has modulus 16 / 4**4 = 1/16, so the
log-determinant of one forward step is  (C * H * W / 4) * log(1/16)  per sample; the inverse's is its negative.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from invdn.models.invertible import InvertibleModule

# The four analysis filters (rows: low, h, v, diag) over the 2x2 block (a, b, c, d) in raster order.
_HAAR = torch.tensor(
    [
        [1.0, 1.0, 1.0, 1.0],
        [1.0, -1.0, 1.0, -1.0],
        [1.0, 1.0, -1.0, -1.0],
        [1.0, -1.0, -1.0, 1.0],
    ]
)


def haar_forward(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2), band-major; H and W must be even."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"Haar step needs even height and width, got {h}x{w}")
    blocks = x.reshape(b, c, h // 2, 2, w // 2, 2)
    a, bb = blocks[:, :, :, 0, :, 0], blocks[:, :, :, 0, :, 1]
    cc, d = blocks[:, :, :, 1, :, 0], blocks[:, :, :, 1, :, 1]
    s1, d1 = a + bb, a - bb  # top row sum / difference
    s2, d2 = cc + d, cc - d  # bottom row sum / difference
    bands = torch.stack([s1 + s2, d1 + d2, s1 - s2, d1 - d2], dim=1)  # (B, 4, C, H/2, W/2)
    return bands.reshape(b, 4 * c, h // 2, w // 2) * 0.25


def haar_inverse(y: Tensor) -> Tensor:
    """Exact inverse of :func:`haar_forward`: (B, 4C, H/2, W/2) -> (B, C, H, W)."""
    b, c4, h2, w2 = y.shape
    if c4 % 4:
        raise ValueError(f"inverse Haar step needs a multiple of 4 channels, got {c4}")
    c = c4 // 4
    low, hor, ver, dia = y.reshape(b, 4, c, h2, w2).unbind(1)
    s1, s2 = low + ver, low - ver  # (a+b)/2, (c+d)/2
    d1, d2 = hor + dia, hor - dia  # (a-b)/2, (c-d)/2
    a, bb = s1 + d1, s1 - d1
    cc, d = s2 + d2, s2 - d2
    top = torch.stack([a, bb], dim=-1)  # (B, C, H/2, W/2, 2)
    bottom = torch.stack([cc, d], dim=-1)
    blocks = torch.stack([top, bottom], dim=3)  # (B, C, H/2, 2, W/2, 2)
    return blocks.reshape(b, c, h2 * 2, w2 * 2)


def haar_log_det(channels: int, height: int, width: int) -> float:
    """log|det| of one forward Haar step on a (channels, height, width) input, per sample."""
    return channels * height * width / 4 * math.log(1 / 16)


class HaarDownsampling(InvertibleModule):
    """Invertible Haar step: channels C -> 4C, height and width halved. No parameters."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor, rev: bool = False) -> tuple[Tensor, Tensor]:
        if not rev:
            y = haar_forward(x)
            ld = haar_log_det(x.shape[1], x.shape[2], x.shape[3])
        else:
            y = haar_inverse(x)
            ld = -haar_log_det(y.shape[1], y.shape[2], y.shape[3])
        return y, torch.full((x.shape[0],), ld, dtype=x.dtype, device=x.device)


def haar_matrix() -> Tensor:
    """The 4x4 analysis matrix (rows low, h, v, diag), already scaled by 1/4; for tests and docs."""
    return _HAAR * 0.25


__all__ = ["HaarDownsampling", "haar_forward", "haar_inverse", "haar_log_det", "haar_matrix"]
