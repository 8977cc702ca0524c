"""InvDN-LC: InvDN with a latent cleaner, the default `invdn` model.

The paper's InvDN decodes its low-resolution image with a *fresh random* latent, so its decoder cannot use the
noisy image's detail: every output is a x4 upscaling of a 1/16-size image. InvDN-LC keeps the invertible
Haar + coupling network and its shared encode/decode parameters, but cleans the whole encoding instead:

    noisy x (B,3,H,W) --encode (invertible)--> e = [lr | z]   (B, 48, H/4, W/4)
                      --cleaner (plain CNN, residual)--> e' = e + C(e)
                      --decode (the same invertible network, reversed)--> clean (B,3,H,W)

Training (`invdn.training.latent_clean_task`) supervises e' against the encoding of the *clean* image by the same
invertible network (stop-gradient) and decode(e') against the clean image. The cleaner's last convolution starts at
zero, so a fresh model is the identity: decode(encode(x)) == x. The inference engine runs an optimised copy
(`invdn.inference.fast.FastInvDNLC.from_model`), same mathematics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from invdn.models import registry
from invdn.models.geometry import dihedral_average, pad_to_multiple
from invdn.models.invdn import InvDN, InvDNConfig


@dataclass
class InvDNLCConfig:
    in_channels: int = 3  # image channels (3 = RGB)
    levels: int = 2  # Haar steps of the invertible part; the cleaner works at 1 / 2**levels of the input size
    blocks_per_level: int = 1  # affine coupling blocks after each Haar step
    hidden: int = 32  # width of the coupling subnets' hidden convolutions
    clamp: float = 1.0  # bound on the coupling log-scale s, |s| <= clamp
    width: int = 128  # channels of the cleaner's hidden convolutions
    res_blocks: int = 6  # residual blocks (conv-ReLU-conv + skip) in the cleaner

    @classmethod
    def from_dict(cls, d: dict) -> InvDNLCConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def invertible(self) -> InvDNConfig:
        """The configuration of the invertible part (an `InvDN` whose z is never replaced)."""
        return InvDNConfig(
            in_channels=self.in_channels,
            levels=self.levels,
            blocks_per_level=self.blocks_per_level,
            hidden=self.hidden,
            clamp=self.clamp,
        )


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class LatentCleaner(nn.Module):
    """(B, C, h, w) encoding -> cleaned encoding of the same shape: e + head-body-tail(e), tail zero-initialised."""

    def __init__(self, channels: int, width: int, res_blocks: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(res_blocks)])
        self.tail = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, e: Tensor) -> Tensor:
        return e + self.tail(self.body(self.head(e)))  # (B, C, h, w)


class InvDNLC(nn.Module):
    model_type = "invdn-lc"

    def __init__(self, config: InvDNLCConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or InvDNLCConfig()
        self.inv = InvDN(config.invertible())  # the invertible part: encode and decode share its parameters
        channels = config.in_channels * 4**config.levels
        self.cleaner = LatentCleaner(channels, config.width, config.res_blocks)
        self.pretrained = False  # set by invdn.models.weights.load when trained weights are loaded

    @property
    def model_args(self) -> dict:
        return registry.architecture_args(self.config)  # architecture only: no runtime switches

    @property
    def multiple(self) -> int:
        return self.inv.multiple

    def encode(self, x: Tensor):
        """The invertible part's encoding of x: Encoded(lr, z, size)."""
        return self.inv.encode(x)

    def decode(self, lr: Tensor, z: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """The exact inverse of `encode`, through the same parameters."""
        return self.inv.decode(lr, z, size)

    def clean_encoding(self, lr: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """The cleaner on an encoding: (lr, z) of the noisy image -> (lr, z) estimated for the clean one."""
        c = self.config.in_channels
        e = torch.cat([lr, z], dim=1).contiguous(memory_format=torch.channels_last)  # (B, 48, H/4, W/4)
        e = self.cleaner(e)  # channels-last: oneDNN's fast layout, 3.5x faster in bf16 than contiguous
        return e[:, :c], e[:, c:]

    def restore(self, x: Tensor) -> Tensor:
        """encode -> clean the encoding -> decode, with gradients (training and `forward`)."""
        lr, z, size = self.encode(x)
        return self.decode(*self.clean_encoding(lr, z), size)

    @torch.no_grad()
    def denoise(
        self, x: Tensor, samples: int = 1, ensemble: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """Clean (B,3,H,W) from noisy (B,3,H,W) in [0, 1]; `ensemble` averages over the 8 flips/transposes.

        `samples` and `generator` are accepted for the common denoiser interface: the output is deterministic.
        """
        if samples < 1:
            raise ValueError("samples must be >= 1")
        return dihedral_average(x, ensemble, self)

    def forward(self, x: Tensor) -> Tensor:
        """`restore` on x padded to `multiple`, cropped back to x's size."""
        height, width = x.shape[-2:]
        return self.restore(pad_to_multiple(x, self.multiple))[..., :height, :width]


def deepen(model: InvDNLC, res_blocks: int) -> InvDNLC:
    """A copy of `model` with `res_blocks` residual blocks in its cleaner (at least as many as it has) that computes
    the same function: the new blocks come after the trained ones with their second convolution at zero, so each
    starts as the identity and training grows it from there (more capacity without starting over)."""
    have = model.config.res_blocks
    if res_blocks < have:
        raise ValueError(f"deepen adds blocks: the model has {have}, asked for {res_blocks}")
    deeper = InvDNLC(replace(model.config, res_blocks=res_blocks))
    missing, unexpected = deeper.load_state_dict(model.state_dict(), strict=False)
    if unexpected or not all(k.startswith("cleaner.body.") for k in missing):  # only the new blocks are new
        raise RuntimeError(f"deepen: unexpected state dict keys {unexpected or missing}")
    for block in deeper.cleaner.body[have:]:
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)
    deeper.pretrained = model.pretrained
    return deeper
