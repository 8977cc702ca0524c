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
from torch import Tensor, nn

from invdn.models import registry
from invdn.models.flops import count_parameters
from invdn.models.geometry import dihedral_average, pad_to_multiple

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


def _check_image_batch(x: Tensor, channels: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} expects a (B, {channels}, H, W) tensor, got shape {tuple(x.shape)}")


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
        padded = pad_to_multiple(y, self.multiple).contiguous(memory_format=torch.channels_last)  # oneDNN's layout
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
        return dihedral_average(x, ensemble, self).clamp(0.0, 1.0)


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
        stacked = pad_to_multiple(torch.cat([x, z.to(x.dtype)], dim=1), self.multiple)
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
