"""The camera pipeline behind ``camera`` noise (Brooks et al., CVPR 2019): sRGB <-> linear camera raw.

Pure tensor functions: tone curve and gamma, colour-correction matrices of four cameras, the RGGB Bayer mosaic and a
bilinear demosaic, a separable Gaussian blur for in-camera chroma noise reduction, an edge map for edge-preserving
noise reduction, and an 8-bit JPEG round trip.
`invdn.training.noise.CameraNoise` draws the random parameters and the noise and chains these steps.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# XYZ -> camera matrices of four cameras, as listed by Brooks et al. (2019).
XYZ2CAMS = torch.tensor(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
    ]
)
# linear sRGB -> XYZ (D65)
RGB2XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
GAMMA = 2.2
EPS = 1e-8


def inverse_smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x) / 3.0)


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def apply_ccm(x: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """Per-image 3x3 colour matrix on a (B, 3, H, W) batch; ccm is (B, 3, 3)."""
    return torch.einsum("bij,bjhw->bihw", ccm, x)


def bayer_masks(h: int, w: int, device: torch.device) -> torch.Tensor:
    """RGGB masks as a (1, 3, H, W) tensor: R at (even, even), G at the two mixed sites, B at (odd, odd)."""
    rows = torch.arange(h, device=device).view(-1, 1) % 2
    cols = torch.arange(w, device=device).view(1, -1) % 2
    red = (rows == 0) & (cols == 0)
    blue = (rows == 1) & (cols == 1)
    green = ~(red | blue)
    return torch.stack([red, green, blue]).unsqueeze(0).float()


# Bilinear demosaic kernels, applied as normalised convolutions (exact bilinear inside, sensible at borders).
_KERNEL_RB = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4.0
_KERNEL_G = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4.0


def demosaic_bilinear(raw: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) Bayer plane -> (B, 3, H, W) by bilinear interpolation of each colour's samples."""
    kernels = torch.stack([_KERNEL_RB, _KERNEL_G, _KERNEL_RB]).unsqueeze(1).to(raw)
    sparse = raw * masks
    num = F.conv2d(sparse, kernels, padding=1, groups=3)
    den = F.conv2d(masks.expand_as(sparse), kernels, padding=1, groups=3)
    # sites that carry a colour keep it exactly; others take the weighted mean of neighbouring samples
    return torch.where(masks.bool(), sparse, num / den.clamp_min(EPS))


# BT.601 RGB -> YCbCr (no offsets), used to model in-camera chroma noise reduction.
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def gaussian_blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """Separable Gaussian blur of a (B, C, H, W) batch with reflect padding."""
    radius = max(1, math.ceil(3.0 * std))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad_h = min(radius, x.shape[2] - 1)
    pad_w = min(radius, x.shape[3] - 1)
    kh = k[radius - pad_h : radius + pad_h + 1]
    kw = k[radius - pad_w : radius + pad_w + 1]
    x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect") if pad_h or pad_w else x
    x = F.conv2d(x, (kh / kh.sum()).view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, (kw / kw.sum()).view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def reduce_chroma(noise: torch.Tensor, std: float) -> torch.Tensor:
    """Blur the chroma (Cb, Cr) of a noise field, keeping its luma: in-camera chroma noise reduction."""
    to_ycc = _RGB2YCC.to(noise)
    ycc = torch.einsum("ij,bjhw->bihw", to_ycc, noise)
    ycc = torch.cat([ycc[:, :1], gaussian_blur(ycc[:, 1:], std)], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_ycc), ycc)


def _pad1(x: torch.Tensor) -> torch.Tensor:
    """One pixel of padding on each side of a (B, C, H, W) batch: reflect, or replicate where a side is 1 pixel."""
    return F.pad(x, (1, 1, 1, 1), mode="reflect" if min(x.shape[-2:]) > 1 else "replicate")


# Sobel derivative across columns (the transpose differentiates across rows); magnitudes are 8x the slope per pixel.
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
EDGE_SCALE = 0.15  # Sobel magnitude (0-1 images) at which `edge_map` reaches 1 - 1/e: a step of about 0.06


def edge_map(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images -> (B, 1, H, W) weights in [0, 1]: about 0 on flat areas, near 1 on edges. The Sobel
    gradient magnitude ``g`` of the channel mean, smoothed by a Gaussian of std 1 pixel, as ``1 - exp(-(g / s)^2)``
    with ``s = EDGE_SCALE``."""
    grey = image.mean(dim=1, keepdim=True)
    kernels = torch.stack([_SOBEL, _SOBEL.T]).unsqueeze(1).to(grey)
    slopes = F.conv2d(_pad1(grey), kernels)
    magnitude = gaussian_blur(slopes.pow(2).sum(dim=1, keepdim=True).sqrt(), 1.0)
    return 1.0 - torch.exp(-((magnitude / EDGE_SCALE) ** 2))


def soften(x: torch.Tensor, arm: torch.Tensor) -> torch.Tensor:
    """Cross-shaped 3x3 low-pass of a (B, C, H, W) batch, per image: centre weight 1 - 4a, each of the four
    neighbours a (``arm``, shape (B,)), reflect padding. The softness in-camera demosaicing and noise reduction leave
    in a photo's detail, signal and noise alike."""
    a = arm.to(x).view(-1, 1, 1, 1)
    p = _pad1(x)
    neighbours = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    return (1.0 - 4.0 * a) * x + a * neighbours


def jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """(3, H, W) float image -> 8-bit JPEG at ``quality`` -> decoded float image (same device)."""
    arr = image.clamp(0.0, 1.0).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGB").save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as decoded:
        back = np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(back).permute(2, 0, 1).to(image.device)
