"""DANet (Yue et al., ECCV 2020): the denoiser R, the generator G and the discriminator, as published.

R (`UNetD`) and G (`UNetG`) share one U-Net: widths wf * 2**i for i < depth, two conv3x3 + LeakyReLU per
level, conv4x4 stride 2 (no bias) between encoder levels, ConvTranspose2d 2x2 stride 2 plus skip
concatenation in the decoder, a final conv3x3 to the image channels, no normalisation. R predicts the noise
(x_hat = y - U(y)); G adds a residual to the clean image from the image and one N(0, 1) map
(y_hat = x + U([x, z])). The discriminator scores (image, noisy) pairs of 128x128 patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invdn.inference import kernels
from invdn.models import registry
from invdn.models.flops import count_parameters

# The discriminator's five stride-2 convolutions and final 4x4 convolution reduce exactly this size to 1x1.
CRITIC_PATCH = 128


@dataclass
class DANetConfig:
    """Sizes of the DANet networks; the defaults are the published ones."""

    in_channels: int = 3  # image channels (3 = RGB); G gets one more input channel for its noise map
    wf: int = 32  # width of the first U-Net level; level i has wf * 2**i channels
    depth: int = 5  # number of U-Net levels (inputs are padded to a multiple of 2**(depth - 1))
    slope: float = 0.2  # negative slope of every LeakyReLU (U-Nets and discriminator)
    critic_width: int = 64  # channels of the discriminator's first convolution (doubles five times)
    fast: bool = True  # optimised kernels, same mathematics (channels-last, fused LeakyReLU); False: straightforward


class _ConvPair(nn.Module):
    """Two conv3x3 (with bias), each followed by LeakyReLU; the first changes the width."""

    def __init__(self, in_channels: int, out_channels: int, slope: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True),
            nn.LeakyReLU(slope),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=True),
            nn.LeakyReLU(slope),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class _UpLevel(nn.Module):
    """Decoder level: 2x2 transposed convolution, skip concatenation, then a conv pair."""

    def __init__(self, in_channels: int, out_channels: int, slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=True)
        self.convs = _ConvPair(2 * out_channels, out_channels, slope)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class _UNet(nn.Module):
    """The DANet U-Net body: maps (B, in_channels, H, W) to (B, out_channels, H, W), H and W multiples of
    2**(depth - 1)."""

    def __init__(self, in_channels: int, out_channels: int, wf: int, depth: int, slope: float) -> None:
        super().__init__()
        if depth < 1 or wf < 1:
            raise ValueError(f"DANet U-Net needs depth >= 1 and wf >= 1, got depth={depth}, wf={wf}")
        widths = [wf * 2**i for i in range(depth)]
        self.encoder = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(widths):
            self.encoder.append(_ConvPair(previous, width, slope))
            if level < depth - 1:
                self.downsample.append(nn.Conv2d(width, width, 4, stride=2, padding=1, bias=False))
            previous = width
        self.decoder = nn.ModuleList(
            _UpLevel(widths[level + 1], widths[level], slope) for level in reversed(range(depth - 1))
        )
        self.last = nn.Conv2d(widths[0], out_channels, 3, padding=1, bias=True)
        self.slope = slope
        self._inference_weights = kernels.WeightCache()

    def _prepare(self, dtype: torch.dtype) -> dict[str, Tensor]:
        """Inference copies of every weight: cast and channels-last (biases cast)."""
        return {
            name: kernels.prepared(p, dtype) if p.dim() == 4 else p.detach().to(dtype).contiguous()
            for name, p in self.named_parameters()
        }

    @torch.no_grad()
    def fast_forward(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """`forward` for inference: channels-last, LeakyReLU inside the convolutions, convolutions in `dtype`."""
        wts = self._inference_weights.get(list(self.parameters()), dtype, self._prepare)

        def pair(prefix: str, t: Tensor) -> Tensor:
            for i in (0, 2):
                t = kernels.conv(
                    t, wts[f"{prefix}.body.{i}.weight"], wts[f"{prefix}.body.{i}.bias"], "lrelu", slope=self.slope
                )
            return t

        with torch.autocast(x.device.type, enabled=False):
            t = kernels.channels_last(x.to(dtype))
            skips = []
            for level in range(len(self.encoder)):
                t = pair(f"encoder.{level}", t)
                if level < len(self.downsample):
                    skips.append(t)
                    t = kernels.conv(t, wts[f"downsample.{level}.weight"], None, stride=2, padding=1)
            for index, skip in enumerate(reversed(skips)):
                up = F.conv_transpose2d(t, wts[f"decoder.{index}.up.weight"], wts[f"decoder.{index}.up.bias"], stride=2)
                t = pair(f"decoder.{index}.convs", torch.cat([up, skip], dim=1))
            return kernels.conv(t, wts["last.weight"], wts["last.bias"])

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for level, convs in enumerate(self.encoder):
            x = convs(x)
            if level < len(self.downsample):
                skips.append(x)
                x = self.downsample[level](x)
        for up, skip in zip(self.decoder, reversed(skips), strict=True):
            x = up(x, skip)
        return self.last(x)


def _pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad bottom and right to a multiple (reflect; replicate where the image is too small to reflect)."""
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _check_image_batch(x: Tensor, channels: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} expects a (B, {channels}, H, W) tensor, got shape {tuple(x.shape)}")


def _dihedral(x: Tensor, index: int) -> Tensor:
    """One of the 8 flips/transposes of the last two dimensions (index 0 is the identity)."""
    if index & 4:
        x = x.transpose(-2, -1)
    if index & 2:
        x = x.flip(-2)
    if index & 1:
        x = x.flip(-1)
    return x


def _dihedral_inverse(x: Tensor, index: int) -> Tensor:
    if index & 1:
        x = x.flip(-1)
    if index & 2:
        x = x.flip(-2)
    if index & 4:
        x = x.transpose(-2, -1)
    return x


class UNetD(nn.Module):
    """DANet's denoiser R: x_hat = y - U(y) on images of any size (padded to a multiple of 16)."""

    model_type = "danet-r"

    def __init__(self, config: DANetConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DANetConfig()
        c = self.config
        self.unet = _UNet(c.in_channels, c.in_channels, c.wf, c.depth, c.slope)
        self.multiple = 2 ** (c.depth - 1)
        self.pretrained = False  # set True by invdn.models.weights when trained weights are loaded

    @property
    def model_args(self) -> dict[str, Any]:
        """The configuration as a dict; `UNetD(DANetConfig(**model_args))` rebuilds the network."""
        return registry.architecture_args(self.config)

    def noise(self, y: Tensor) -> Tensor:
        """U(y): the noise predicted in the noisy image y (B, C, H, W)."""
        _check_image_batch(y, self.config.in_channels, "UNetD")
        height, width = y.shape[-2:]
        padded = _pad_to_multiple(y, self.multiple)
        if self.config.fast and kernels.plain_eager():
            kernels.tune_allocator()
            wants_grad = torch.is_grad_enabled() and (
                y.requires_grad or any(p.requires_grad for p in self.parameters())
            )
            if not wants_grad:
                return self.unet.fast_forward(padded, kernels.compute_dtype(y))[..., :height, :width].to(y.dtype)
            padded = kernels.channels_last(padded)  # training: every convolution then runs channels-last
        return self.unet(padded)[..., :height, :width]

    def forward(self, y: Tensor) -> Tensor:
        """The denoised image y - U(y), not clamped (training uses it as is)."""
        return y - self.noise(y)

    def denoise(
        self,
        x: Tensor,
        samples: int = 1,
        ensemble: bool = False,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Denoise a (B, C, H, W) batch in [0, 1]; returns it clamped to [0, 1].

        R is deterministic, so `samples` and `generator` (InvDN's options) are accepted and ignored.
        `ensemble` averages the 8 flips/transposes (8x the time). Gradients are left to the caller.
        """
        del samples, generator, kwargs
        if not ensemble:
            return self(x).clamp(0.0, 1.0)
        total = torch.zeros_like(x)
        for index in range(8):
            total = total + _dihedral_inverse(self(_dihedral(x, index)), index)
        return (total / 8).clamp(0.0, 1.0)


class UNetG(nn.Module):
    """DANet's generator G: y_hat = x + U([x, z]) with z one N(0, 1) map, any image size."""

    model_type = "danet-g"

    def __init__(self, config: DANetConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DANetConfig()
        c = self.config
        self.unet = _UNet(c.in_channels + 1, c.in_channels, c.wf, c.depth, c.slope)
        self.multiple = 2 ** (c.depth - 1)

    @property
    def model_args(self) -> dict[str, Any]:
        """The configuration as a dict; `UNetG(DANetConfig(**model_args))` rebuilds the network."""
        return registry.architecture_args(self.config)

    def forward(self, x: Tensor, z: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """A synthetic noisy version of the clean batch x; z (B, 1, H, W) is drawn if not given."""
        _check_image_batch(x, self.config.in_channels, "UNetG")
        batch, _, height, width = x.shape
        if z is None:
            z = torch.randn((batch, 1, height, width), generator=generator, device=x.device, dtype=x.dtype)
        elif z.shape != (batch, 1, height, width):
            raise ValueError(f"UNetG expects z of shape {(batch, 1, height, width)}, got {tuple(z.shape)}")
        stacked = _pad_to_multiple(torch.cat([x, z.to(x.dtype)], dim=1), self.multiple)
        return x + self.unet(stacked)[..., :height, :width]


class Discriminator(nn.Module):
    """DANet's critic: scores a 6-channel (image, noisy) pair of 128x128 patches; returns (B,) scores."""

    model_type = "danet-discriminator"

    def __init__(self, config: DANetConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DANetConfig()
        c = self.config
        self.in_channels = 2 * c.in_channels
        widths = [c.critic_width * 2**i for i in range(6)]  # 64 ... 2048 at the defaults
        layers: list[nn.Module] = []
        previous = self.in_channels
        for width in widths[:5]:  # 128 -> 64 -> 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1, bias=False), nn.LeakyReLU(c.slope)]
            previous = width
        layers += [nn.Conv2d(previous, widths[5], 4, stride=1, padding=0, bias=False), nn.LeakyReLU(c.slope)]
        self.features = nn.Sequential(*layers)  # 4 -> 1
        self.score = nn.Linear(widths[5], 1, bias=True)
        self.reset_parameters()

    @property
    def model_args(self) -> dict[str, Any]:
        """The configuration as a dict; `Discriminator(DANetConfig(**model_args))` rebuilds the network."""
        return registry.architecture_args(self.config)

    def reset_parameters(self) -> None:
        """The published initialisation: weights N(0, 0.02), bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, pair: Tensor) -> Tensor:
        """pair: (B, 6, 128, 128), the image and the noisy image concatenated on channels."""
        if pair.dim() != 4 or pair.shape[1] != self.in_channels:
            raise ValueError(
                f"Discriminator expects a (B, {self.in_channels}, {CRITIC_PATCH}, {CRITIC_PATCH}) "
                f"(image, noisy) pair, got shape {tuple(pair.shape)}"
            )
        if tuple(pair.shape[-2:]) != (CRITIC_PATCH, CRITIC_PATCH):
            raise ValueError(
                f"Discriminator only scores {CRITIC_PATCH}x{CRITIC_PATCH} patches (its convolutions reduce "
                f"exactly that size to 1x1), got {pair.shape[-2]}x{pair.shape[-1]}"
            )
        return self.score(self.features(pair).flatten(1)).view(-1)


def danet_parameter_counts(config: DANetConfig | None = None) -> dict[str, int]:
    """Parameters of R, G and the discriminator and their total, counted on the built networks.

    At the published configuration: r 9,153,571; g 9,153,859; discriminator 44,703,745; total 63,011,175.
    """
    config = config if config is not None else DANetConfig()
    with torch.device("meta"):  # counts shapes without allocating or initialising weights
        counts = {
            "r": count_parameters(UNetD(config)),
            "g": count_parameters(UNetG(config)),
            "discriminator": count_parameters(Discriminator(config)),
        }
    counts["total"] = counts["r"] + counts["g"] + counts["discriminator"]
    return counts
