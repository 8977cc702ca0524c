"""Seeded noise models for training and evaluation, selected by a short spec string.

A noise model maps a clean batch ``(B, 3, H, W)`` float in [0, 1] (or grey ``(B, 1, H, W)``, except camera)
and a ``torch.Generator`` to a noisy batch of the same shape. All randomness comes from the generator: the
same generator state gives the same output. Output is unclipped float unless the spec asks for ``clip`` or
``clip8``.

Spec grammar (``make_noise(spec)``)::

    spec       := component | "mix:" item ("," item)*
    item       := component "=" weight          (weights need not sum to 1; the last "=" splits)
    component  := name (":" arg)*
    arg        := value | key "=" value | "clip" | "clip8"
    range      := number | number "-" number | number ".." number    (".." when numbers have exponents)

Components:

- ``awgn:25``: additive white Gaussian noise, sigma on the 0-255 scale. ``awgn:0-55`` draws sigma per image
  uniformly in [0, 55] (the blind setting). Also ``awgn:sigma=25``.
- ``poisson-gaussian``: heteroscedastic noise, variance ``a * x + b`` on the [0, 1] scale, ``a`` and ``b``
  drawn per image log-uniformly (defaults ``a=1e-4..2e-2``, ``b=1e-6..4e-3``). Override with
  ``poisson-gaussian:a=0.01:b=1e-4`` or ranges ``a=1e-3..1e-2``.
- ``camera``: realistic sRGB camera noise by unprocessing (Brooks et al., CVPR 2019). The sRGB image goes to
  linear raw: inverse smoothstep tone curve, inverse gamma 2.2, inverse of a random colour-correction matrix
  (random convex combination of four XYZ->camera matrices), inverse white-balance and brightness gains with
  highlight-preserving safe inversion, RGGB Bayer mosaic. Shot/read noise is added on the mosaic, variance
  ``shot * x + read``, with ``log shot ~ U[log 1e-4, log 1.2e-2]`` and
  ``log read = 2.18 log shot + 1.20 + N(0, 0.26^2)`` per image. The raw is processed back: gains, bilinear
  demosaic, CCM, gamma, smoothstep. The noise is the difference between processed noisy and processed clean
  raw, added to the input, so that zero noise returns the input exactly.
  With bilinear demosaic the colour matrix makes the channels' noise *negatively* correlated; real camera
  JPEGs (CC15, measured +0.2..+0.7) are positively correlated because ISPs reduce chroma noise. ``chroma=S``
  models this by blurring the noise's Cb/Cr with a Gaussian of std S pixels, or drawn per image from a range
  (``camera:chroma=1-3`` suits real photos; default 0 = the paper's pipeline).
  ``soft=A`` softens the processed image, signal and noise alike, as in-camera demosaicing and noise reduction
  do: a cross-shaped 3x3 filter with weight ``A`` on each of the four neighbours and ``1 - 4A`` in the centre
  (``camera.soften``), ``A`` fixed or drawn per image from a range (``soft=0-0.2``; at most 0.2; default 0 = none).
  The training target stays the sharp clean image, so a model learns to restore what the camera softened.
  ``flat=F`` models in-camera edge-preserving noise reduction, which leaves a photo's noise on its edges and
  lowers it on flat areas: the noise is scaled by ``F + (1 - F) * e``, ``e`` the clean image's edge map
  (``camera.edge_map``: about 0 on flat areas, near 1 on edges), ``F`` fixed or drawn per image from a range
  (``flat=0.4-1``; in (0, 1]; default 1 = none). Real camera JPEGs (CC15) carry 2.2x as much noise variance on
  their strongest edges as on their flat half, 3-6x on some cameras; the plain pipeline gives about 1.4x.
  Other options: ``jpeg=P`` (probability of a JPEG round trip of the 8-bit image, default 0),
  ``jpeg_q=60-95`` (quality range), ``shot=...`` / ``read=...`` (fix the levels, e.g. for tests).
- ``corr``: spatially correlated Gaussian noise, as in-camera demosaicing, noise reduction and resampling leave
  it in real photos: white noise blurred by a Gaussian of std ``r`` pixels (per image, uniform in a range,
  default ``r=0.5-2.5``), its channels sharing a fraction ``rho`` of one field (default ``rho=0-0.7``, the
  positive channel correlation of camera JPEGs), rescaled to std ``sigma`` (0-255 scale, default ``sigma=0-25``).
  Example: ``corr:sigma=2-20:r=1-2:clip8``.
- ``mix:awgn:0-55=0.5,camera=0.3,poisson-gaussian=0.2``: per image, one component picked with these weights.

Modifiers, on any component (inside a mix, on each component): ``clip`` clamps to [0, 1]; ``clip8`` clamps
and rounds to 8 bits, the way users' files arrive. Example: ``awgn:25:clip8``. ``grey`` makes the image a grey
photo: the clean image becomes its BT.601 luminance (rounded to 8 bits, as a grey file stores it), the component
noises that one channel (camera: the grey image goes through the RGB camera pipeline and the processed result is
converted back to luminance, as a camera writing a grey JPEG does), and the result is replicated to every
channel, so all channels carry one and the same noise field. This is what a colour model sees when a one-channel
file is replicated to RGB (``invdn.inference.engine.Denoiser``). Example: ``awgn:0-55:grey:clip8``. The training
target must then be the grey clean image too: ``NoiseModel.pair(clean, generator)`` returns ``(noisy, target)``
(the target is the clean input for every component but a ``grey`` one), and
``invdn.training.data.NoisyPatches`` uses it.

``USERS_FILES_NOISE`` is the recommended blind training mix for files as users have them: colour AWGN 0-55,
grey AWGN 0-55 with channel-identical noise, Poisson-Gaussian, and the camera pipeline with chroma and
edge-preserving noise reduction and JPEG, each finished with ``clip8``.
"""

from __future__ import annotations

import hashlib
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from invdn.training import camera

__all__ = [
    "NoiseModel",
    "AWGN",
    "PoissonGaussian",
    "CameraNoise",
    "CorrelatedNoise",
    "MixNoise",
    "GreyNoise",
    "USERS_FILES_NOISE",
    "luminance",
    "make_noise",
    "clip8",
    "seed_from",
    "generator_for",
]

# The recommended blind training mix for files as users have them (all saved to 8 bits): colour AWGN with sigma
# uniform in 0-55; the same on grey photos (one noise field shared by the replicated channels, as a one-channel
# file reaches a colour model); Poisson-Gaussian; the camera pipeline with in-camera chroma noise reduction,
# edge-preserving noise reduction (flat areas keep 0.4-1 of their noise) and a JPEG round trip for half of the images.
USERS_FILES_NOISE = (
    "mix:awgn:0-55:clip8=0.3,awgn:0-55:grey:clip8=0.25,poisson-gaussian:clip8=0.15,"
    "camera:chroma=0-3:flat=0.4-1:jpeg=0.5:jpeg_q=60-95:clip8=0.3"
)

_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_RANGE_DASH = re.compile(rf"^({_NUMBER})-({_NUMBER})$")


def seed_from(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (same across processes and runs, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator_for(*parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded by ``seed_from(*parts)``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed_from(*parts))
    return g


def clip8(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid (as if saved to and read back from an 8-bit file)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def _rand(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, moved to ``like``'s device (float32)."""
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device)


def _randn(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers drawn on the generator's device, moved to ``like``'s device (float32)."""
    return torch.randn(shape, generator=generator, device=generator.device).to(like.device)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * _rand((n,), generator, like)


def _log_uniform(n: int, lo: float, hi: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.exp(_uniform(n, math.log(lo), math.log(hi), generator, like))


def _parse_range(text: str) -> tuple[float, float]:
    """'25' -> (25, 25); '0-55' or '1e-4..1e-2' -> (lo, hi)."""
    text = text.strip()
    try:
        if ".." in text:
            lo_s, hi_s = text.split("..", 1)
            lo, hi = float(lo_s), float(hi_s)
        elif (m := _RANGE_DASH.match(text)) is not None:
            lo, hi = float(m.group(1)), float(m.group(2))
        else:
            lo = hi = float(text)
    except ValueError:
        raise ValueError(f"bad number or range {text!r} (use 25, 0-55 or 1e-4..1e-2)") from None
    if hi < lo:
        raise ValueError(f"range {text!r} has hi < lo")
    return lo, hi


def _fmt_range(r: tuple[float, float]) -> str:
    lo, hi = r
    if lo == hi:
        return f"{lo:g}"
    if "e" in f"{lo:g}{hi:g}":
        return f"{lo:g}..{hi:g}"
    return f"{lo:g}-{hi:g}"


class NoiseModel(ABC):
    """A seeded noise model: ``model(clean, generator) -> noisy``; ``spec`` is its canonical spec string."""

    #: canonical spec string that ``make_noise`` turns back into an equal model
    spec: str
    #: post-processing: "" (none), "clip" (clamp to [0, 1]) or "clip8" (clamp and round to 8 bits)
    finish: str = ""

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if clean.ndim != 4 or clean.shape[1] not in (1, 3):
            raise ValueError(f"expected a (B, 3, H, W) or (B, 1, H, W) batch, got shape {tuple(clean.shape)}")
        noisy = self._apply(clean.float(), generator)
        return _finish(noisy, self.finish)

    def pair(self, clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noisy, target)`` for training: the target is ``clean`` (float32) except for ``grey`` components,
        whose target is the grey version of ``clean``. The noisy output equals ``self(clean, generator)``."""
        return self(clean, generator), clean.float()

    @abstractmethod
    def _apply(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Noisy version of ``clean`` (float32), before the clip/clip8 finish."""

    def describe(self) -> str:
        """One line for logs and model cards."""
        return self.spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def _finish(x: torch.Tensor, finish: str) -> torch.Tensor:
    if finish == "clip":
        return x.clamp(0.0, 1.0)
    if finish == "clip8":
        return clip8(x)
    return x


def _suffix(finish: str) -> str:
    return f":{finish}" if finish else ""


@dataclass(repr=False)
class AWGN(NoiseModel):
    """Additive white Gaussian noise; sigma (0-255 scale) fixed or uniform per image in a range."""

    sigma: tuple[float, float]  # (lo, hi) on the 0-255 scale; lo == hi means fixed
    finish: str = ""  # "", "clip" or "clip8"

    def __post_init__(self) -> None:
        if self.sigma[0] < 0:
            raise ValueError("awgn sigma must be >= 0")
        self.spec = f"awgn:{_fmt_range(self.sigma)}{_suffix(self.finish)}"

    def sample_sigma(self, n: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        """Per-image sigma on the 0-255 scale (consumes generator draws only for a range)."""
        lo, hi = self.sigma
        if lo == hi:
            return torch.full((n,), lo, device=like.device)
        return _uniform(n, lo, hi, generator, like)

    def _apply(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sigma = self.sample_sigma(clean.shape[0], generator, clean) / 255.0
        return clean + sigma.view(-1, 1, 1, 1) * _randn(tuple(clean.shape), generator, clean)


@dataclass(repr=False)
class PoissonGaussian(NoiseModel):
    """Gaussian approximation of Poisson-Gaussian noise: variance = a * x + b (x in [0, 1])."""

    a: tuple[float, float] = (1e-4, 2e-2)  # shot-noise factor range, drawn log-uniformly per image
    b: tuple[float, float] = (1e-6, 4e-3)  # read-noise variance range, drawn log-uniformly per image
    finish: str = ""  # "", "clip" or "clip8"

    def __post_init__(self) -> None:
        if self.a[0] <= 0 or self.b[0] <= 0:
            raise ValueError("poisson-gaussian a and b must be > 0")
        self.spec = f"poisson-gaussian:a={_fmt_range(self.a)}:b={_fmt_range(self.b)}{_suffix(self.finish)}"

    def _apply(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = clean.shape[0]
        a = _log_uniform(n, *self.a, generator, clean).view(-1, 1, 1, 1)
        b = _log_uniform(n, *self.b, generator, clean).view(-1, 1, 1, 1)
        variance = a * clean.clamp(0.0, 1.0) + b
        return clean + variance.sqrt() * _randn(tuple(clean.shape), generator, clean)


# log read variance = READ_LAW[0] * log shot + READ_LAW[1] (+ N(0, 0.26^2) per image): Brooks et al.'s fit
READ_LAW = (2.18, 1.20)


@dataclass(repr=False)
class CameraNoise(NoiseModel):
    """Brooks et al. (2019) unprocess -> raw shot/read noise -> process; see the module docstring."""

    shot: tuple[float, float] | None = None  # fixed/ranged shot level; None = the paper's log-uniform prior
    read: tuple[float, float] | None = None  # fixed/ranged read variance; None = log-linear in shot (paper)
    chroma: tuple[float, float] = (
        0.0,
        0.0,
    )  # chroma-NR blur std range (px), uniform per image; 0 = none (paper)
    soft: tuple[float, float] = (0.0, 0.0)  # neighbour weight range of the cross-shaped softening; 0 = none
    flat: tuple[float, float] = (1.0, 1.0)  # noise gain range on flat areas (edge-preserving NR); 1 = none
    jpeg: float = 0.0  # probability of a JPEG round trip per image
    jpeg_quality: tuple[float, float] = (60.0, 95.0)  # JPEG quality range, drawn uniformly per image
    finish: str = ""  # "", "clip" or "clip8"

    def __post_init__(self) -> None:
        if not 0.0 <= self.chroma[0] <= self.chroma[1] <= 10.0:
            raise ValueError("camera chroma blur must be in [0, 10] pixels")
        if not 0.0 <= self.soft[0] <= self.soft[1] <= 0.2:
            raise ValueError("camera soft must be in [0, 0.2] (the weight of each of the four neighbours)")
        if not 0.0 < self.flat[0] <= self.flat[1] <= 1.0:
            raise ValueError("camera flat must be in (0, 1] (the noise gain on flat areas; 1 = none)")
        if not 0.0 <= self.jpeg <= 1.0:
            raise ValueError("camera jpeg probability must be in [0, 1]")
        q_lo, q_hi = self.jpeg_quality
        if not 1 <= q_lo <= q_hi <= 100:
            raise ValueError("camera jpeg_q must lie in 1..100")
        parts = ["camera"]
        if self.shot is not None:
            parts.append(f"shot={_fmt_range(self.shot)}")
        if self.read is not None:
            parts.append(f"read={_fmt_range(self.read)}")
        if self.chroma[1] > 0:
            parts.append(f"chroma={_fmt_range(self.chroma)}")
        if self.soft[1] > 0:
            parts.append(f"soft={_fmt_range(self.soft)}")
        if self.flat[0] < 1:
            parts.append(f"flat={_fmt_range(self.flat)}")
        if self.jpeg > 0:
            parts.append(f"jpeg={self.jpeg:g}")
            parts.append(f"jpeg_q={_fmt_range(self.jpeg_quality)}")
        if self.finish:
            parts.append(self.finish)
        self.spec = ":".join(parts)

    def _noise_levels(self, n: int, g: torch.Generator, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shot = _log_uniform(n, *(self.shot or (1e-4, 1.2e-2)), g, like)
        if self.read is not None:
            read = _log_uniform(n, *self.read, g, like)
        else:
            read = torch.exp(READ_LAW[0] * torch.log(shot) + READ_LAW[1] + 0.26 * _randn((n,), g, like))
        return shot, read

    def _random_ccm(self, n: int, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        """(n, 3, 3) linear sRGB -> camera matrices, rows normalised to sum to 1."""
        weights = _rand((n, 4), g, like) + 1e-8
        weights = weights / weights.sum(dim=1, keepdim=True)
        xyz2cam = torch.einsum("nk,kij->nij", weights, camera.XYZ2CAMS.to(like))
        rgb2cam = xyz2cam @ camera.RGB2XYZ.to(like)
        return rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)

    def _random_gains(self, n: int, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        """(n, 3) forward gains (red, green, blue) = rgb_gain * (red_gain, 1, blue_gain)."""
        rgb_gain = 1.0 / (0.8 + 0.1 * _randn((n,), g, like)).clamp_min(0.4)
        red = _uniform(n, 1.9, 2.4, g, like)
        blue = _uniform(n, 1.5, 1.9, g, like)
        return torch.stack([red, torch.ones_like(red), blue], dim=1) * rgb_gain.view(-1, 1)

    def _apply(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = clean.shape
        if c != 3:
            raise ValueError("camera noise needs RGB images (B, 3, H, W)")
        rgb2cam = self._random_ccm(b, generator, clean)
        gains = self._random_gains(b, generator, clean)
        shot, read = self._noise_levels(b, generator, clean)
        masks = camera.bayer_masks(h, w, clean.device)

        # unprocess: sRGB -> linear camera raw (Bayer plane)
        lin = camera.inverse_smoothstep(clean).clamp_min(camera.EPS) ** camera.GAMMA
        cam = camera.apply_ccm(lin, rgb2cam)
        inv_gains = (1.0 / gains).view(b, 3, 1, 1)
        grey = cam.mean(dim=1, keepdim=True)
        highlight = ((grey - 0.9).clamp_min(0.0) / 0.1) ** 2  # 0 below 0.9, 1 at white
        safe_gains = torch.maximum(highlight + (1.0 - highlight) * inv_gains, inv_gains)
        cam = (cam * safe_gains).clamp(0.0, 1.0)
        raw = (cam * masks).sum(dim=1, keepdim=True)

        variance = shot.view(-1, 1, 1, 1) * raw + read.view(-1, 1, 1, 1)
        noisy_raw = raw + variance.sqrt() * _randn((b, 1, h, w), generator, clean)

        cam2rgb = torch.linalg.inv(rgb2cam)
        processed_clean = self._process(raw, masks, gains, cam2rgb)
        processed_noisy = self._process(noisy_raw, masks, gains, cam2rgb)
        noise = processed_noisy - processed_clean
        if self.flat[0] < 1:  # drawn only when asked for, so specs without it keep their random streams
            gain = _uniform(b, *self.flat, generator, clean).view(-1, 1, 1, 1)
            noise = noise * (gain + (1.0 - gain) * camera.edge_map(clean))
        if self.chroma[1] > 0:
            stds = _uniform(b, *self.chroma, generator, clean).tolist()
            noise = torch.stack(
                [camera.reduce_chroma(noise[i : i + 1], s)[0] if s > 0.05 else noise[i] for i, s in enumerate(stds)]
            )
        noisy = clean + noise
        if self.soft[1] > 0:  # drawn only when asked for, so specs without it keep their random streams
            noisy = camera.soften(noisy, _uniform(b, *self.soft, generator, clean))
        if self.jpeg > 0:
            noisy = self._maybe_jpeg(noisy, generator)
        return noisy

    @staticmethod
    def _process(raw: torch.Tensor, masks: torch.Tensor, gains: torch.Tensor, cam2rgb: torch.Tensor) -> torch.Tensor:
        """Camera raw (Bayer plane) -> sRGB: gains, clip, bilinear demosaic, CCM, clip, gamma, tone curve."""
        gain_plane = (masks * gains.view(-1, 3, 1, 1)).sum(dim=1, keepdim=True)
        raw = (raw * gain_plane).clamp(0.0, 1.0)
        rgb = camera.apply_ccm(camera.demosaic_bilinear(raw, masks), cam2rgb).clamp(0.0, 1.0)
        return camera.smoothstep(rgb.clamp_min(camera.EPS) ** (1.0 / camera.GAMMA))

    def _maybe_jpeg(self, noisy: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = noisy.shape[0]
        use = _rand((b,), generator, noisy) < self.jpeg
        quality = _uniform(b, self.jpeg_quality[0], self.jpeg_quality[1] + 1.0 - 1e-6, generator, noisy)
        out = noisy.clone()
        for i in torch.nonzero(use).flatten().tolist():
            out[i] = camera.jpeg_roundtrip(noisy[i], int(quality[i].floor().item()))
        return out


@dataclass(repr=False)
class CorrelatedNoise(NoiseModel):
    """Gaussian noise correlated across neighbouring pixels (blur std `radius`) and channels (shared fraction `rho`),
    with std `sigma` at every pixel; see the module docstring."""

    sigma: tuple[float, float] = (0.0, 25.0)  # std range on the 0-255 scale, uniform per image
    radius: tuple[float, float] = (0.5, 2.5)  # Gaussian blur std range (px), uniform per image
    rho: tuple[float, float] = (0.0, 0.7)  # fraction of the variance shared by the channels, uniform per image
    finish: str = ""  # "", "clip" or "clip8"

    def __post_init__(self) -> None:
        if self.sigma[0] < 0:
            raise ValueError("corr sigma must be >= 0")
        if not 0.1 <= self.radius[0] <= self.radius[1] <= 8.0:
            raise ValueError("corr r (blur std in pixels) must lie in 0.1..8")
        if not 0.0 <= self.rho[0] <= self.rho[1] <= 1.0:
            raise ValueError("corr rho must lie in 0..1")
        self.spec = (
            f"corr:sigma={_fmt_range(self.sigma)}:r={_fmt_range(self.radius)}:rho={_fmt_range(self.rho)}"
            f"{_suffix(self.finish)}"
        )

    def _apply(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = clean.shape
        sigma = _uniform(b, *self.sigma, generator, clean).view(-1, 1, 1, 1) / 255.0
        radius = _uniform(b, *self.radius, generator, clean)
        rho = _uniform(b, *self.rho, generator, clean).view(-1, 1, 1, 1)
        half = max(1, math.ceil(3 * self.radius[1]))
        # white noise with a margin (the blur below is 'valid': no border effects), channels sharing rho of it
        white = _randn((b, c + 1, h + 2 * half, w + 2 * half), generator, clean)
        field = (1 - rho).sqrt() * white[:, :c] + rho.sqrt() * white[:, c:]  # unit variance per pixel
        x = torch.arange(-half, half + 1, dtype=clean.dtype, device=clean.device)
        kernel = torch.exp(-(x[None] ** 2) / (2 * radius[:, None] ** 2))  # (B, K), one Gaussian per image
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        k = kernel.repeat_interleave(c, dim=0)  # (B*C, K): each channel of an image blurred alike
        y = field.reshape(1, b * c, h + 2 * half, w + 2 * half)
        y = torch.nn.functional.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)  # along W
        y = torch.nn.functional.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)  # along H -> (1, B*C, H, W)
        unit = y.view(b, c, h, w) / (kernel**2).sum(dim=1).view(-1, 1, 1, 1)  # separable: std = sum(k^2)
        return clean + sigma * unit


# BT.601 luma weights, as PIL's RGB -> "L" conversion (which is how invdn.training.data reads grey files)
_LUMA = (0.299, 0.587, 0.114)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) BT.601 luminance; a (B, 1, H, W) batch is returned as it is."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


@dataclass(repr=False)
class GreyNoise(NoiseModel):
    """A grey photo: luminance of the clean image (8-bit), noised as one channel, replicated to every channel."""

    inner: NoiseModel  # the component that noises the grey image (its own finish must be "")
    finish: str = ""  # "", "clip" or "clip8", applied to the grey result

    def __post_init__(self) -> None:
        if isinstance(self.inner, GreyNoise | MixNoise):
            raise ValueError("grey applies to a single noise component")
        if self.inner.finish:
            raise ValueError("grey: the finish belongs to the grey wrapper, not to the inner component")
        self.spec = f"{self.inner.spec}:grey{_suffix(self.finish)}"

    @staticmethod
    def grey_clean(clean: torch.Tensor) -> torch.Tensor:
        """The grey (B, 1, H, W) clean image: luminance clamped and rounded to 8 bits, as a grey file stores it."""
        return clip8(luminance(clean.float()))

    def _apply(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        grey = self.grey_clean(clean)
        if isinstance(self.inner, CameraNoise):  # the camera pipeline needs RGB: process grey RGB, keep its luma
            noisy = luminance(self.inner(grey.expand(-1, 3, -1, -1).contiguous(), generator))
        else:
            noisy = self.inner(grey, generator)
        return noisy.expand(-1, clean.shape[1], -1, -1).contiguous()

    def pair(self, clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        target = self.grey_clean(clean).expand(-1, clean.shape[1], -1, -1).contiguous()
        return self(clean, generator), target


@dataclass(repr=False)
class MixNoise(NoiseModel):
    """Per image, one component picked at random with the given weights."""

    components: tuple[NoiseModel, ...]  # the noise models to pick from
    weights: tuple[float, ...]  # relative pick weights, one per component (> 0)
    finish: str = ""  # mixes carry finishes on their components

    def __post_init__(self) -> None:
        if not self.components or len(self.components) != len(self.weights):
            raise ValueError("mix needs one weight per component")
        if any(w <= 0 for w in self.weights):
            raise ValueError("mix weights must be > 0")
        self.spec = "mix:" + ",".join(f"{c.spec}={w:g}" for c, w in zip(self.components, self.weights, strict=True))

    def pick(self, n: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        """Index of the component used for each of n images."""
        probs = torch.tensor(self.weights, dtype=torch.float32)
        cdf = torch.cumsum(probs / probs.sum(), dim=0).to(like.device)
        u = _rand((n,), generator, like)
        return torch.searchsorted(cdf, u, right=True).clamp_max(len(self.components) - 1)

    def _apply(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._pairs(clean, generator)[0]

    def _pairs(self, clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        choice = self.pick(clean.shape[0], generator, clean)
        noisy = torch.empty_like(clean)
        target = clean.clone()
        for k, component in enumerate(self.components):
            idx = torch.nonzero(choice == k).flatten()
            if idx.numel():
                noisy[idx], target[idx] = component.pair(clean[idx], generator)
        return noisy, target

    def pair(self, clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if clean.ndim != 4 or clean.shape[1] not in (1, 3):
            raise ValueError(f"expected a (B, 3, H, W) or (B, 1, H, W) batch, got shape {tuple(clean.shape)}")
        noisy, target = self._pairs(clean.float(), generator)
        return _finish(noisy, self.finish), target


def _split_component(text: str) -> tuple[str, dict[str, str], list[str], str, bool]:
    """'name:a=1:2:grey:clip8' -> ('name', {'a': '1'}, ['2'], 'clip8', True)."""
    name, *args = [p.strip() for p in text.split(":")]
    keyed: dict[str, str] = {}
    positional: list[str] = []
    finish = ""
    grey = False
    for arg in args:
        if arg in ("clip", "clip8"):
            finish = arg
        elif arg.lower() in ("grey", "gray"):
            grey = True
        elif "=" in arg:
            key, value = arg.split("=", 1)
            keyed[key.strip()] = value.strip()
        elif arg:
            positional.append(arg)
    return name.lower(), keyed, positional, finish, grey


def _reject_unknown(name: str, keyed: dict[str, str], positional: list[str], allowed: set[str], npos: int) -> None:
    unknown = set(keyed) - allowed
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if len(positional) > npos:
        raise ValueError(f"{name}: unexpected argument(s) {positional[npos:]}")


def _make_component(text: str) -> NoiseModel:
    name, keyed, positional, finish, grey = _split_component(text)
    if grey:
        return GreyNoise(inner=_make_base(name, keyed, positional, ""), finish=finish)
    return _make_base(name, keyed, positional, finish)


def _make_base(name: str, keyed: dict[str, str], positional: list[str], finish: str) -> NoiseModel:
    if name == "awgn":
        _reject_unknown(name, keyed, positional, {"sigma"}, 1)
        value = keyed.get("sigma", positional[0] if positional else None)
        if value is None:
            raise ValueError("awgn needs a sigma: awgn:25 or awgn:0-55")
        return AWGN(sigma=_parse_range(value), finish=finish)
    if name in ("poisson-gaussian", "pg"):
        _reject_unknown(name, keyed, positional, {"a", "b"}, 0)
        defaults = PoissonGaussian()
        return PoissonGaussian(
            a=_parse_range(keyed["a"]) if "a" in keyed else defaults.a,
            b=_parse_range(keyed["b"]) if "b" in keyed else defaults.b,
            finish=finish,
        )
    if name == "camera":
        _reject_unknown(name, keyed, positional, {"jpeg", "jpeg_q", "shot", "read", "chroma", "soft", "flat"}, 0)
        return CameraNoise(
            shot=_parse_range(keyed["shot"]) if "shot" in keyed else None,
            read=_parse_range(keyed["read"]) if "read" in keyed else None,
            chroma=_parse_range(keyed.get("chroma", "0")),
            soft=_parse_range(keyed.get("soft", "0")),
            flat=_parse_range(keyed.get("flat", "1")),
            jpeg=float(keyed.get("jpeg", 0.0)),
            jpeg_quality=_parse_range(keyed.get("jpeg_q", "60-95")),
            finish=finish,
        )
    if name == "corr":
        _reject_unknown(name, keyed, positional, {"sigma", "r", "rho"}, 0)
        defaults = CorrelatedNoise()
        return CorrelatedNoise(
            sigma=_parse_range(keyed["sigma"]) if "sigma" in keyed else defaults.sigma,
            radius=_parse_range(keyed["r"]) if "r" in keyed else defaults.radius,
            rho=_parse_range(keyed["rho"]) if "rho" in keyed else defaults.rho,
            finish=finish,
        )
    raise ValueError(f"unknown noise {name!r}; expected awgn, poisson-gaussian, camera, corr or mix")


def make_noise(spec: str) -> NoiseModel:
    """Build a noise model from a spec string (grammar in the module docstring)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty noise spec")
    if spec.lower().startswith("mix:"):
        components: list[NoiseModel] = []
        weights: list[float] = []
        for item in spec[4:].split(","):
            item = item.strip()
            if "=" not in item:
                raise ValueError(f"mix item {item!r} needs a weight: name=weight")
            comp, weight = item.rsplit("=", 1)
            try:
                weights.append(float(weight))
            except ValueError:
                raise ValueError(f"mix item {item!r}: weight {weight!r} is not a number") from None
            components.append(_make_component(comp))
        return MixNoise(components=tuple(components), weights=tuple(weights))
    return _make_component(spec)
