"""InvDN: an invertible denoising network (Liu et al., CVPR 2021).

    noisy x (B,3,H,W) --Haar--> (B,12,H/2,W/2) --8 couplings--> --Haar--> (B,48,H/4,W/4) --8 couplings-->
        = [ lr (B,3,H/4,W/4) | z (B,45,H/4,W/4) ]

`encode` runs the chain forward; the first 3 output channels are trained to be the clean image at 1/4 size and
the other 45 (z) hold the noise and the detail. `denoise` throws z away, draws a fresh z ~ N(0, I) and runs the
*same* chain backwards (`decode`) to a clean full-size image.

This is the model as trained: plain PyTorch, differentiable. The inference engine runs an optimised copy of it
(`invdn.inference.fast.FastInvDN.from_model`), same mathematics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from invdn.models import registry
from invdn.models.coupling import AffineCoupling
from invdn.models.geometry import dihedral_average, pad_to_multiple
from invdn.models.haar import HaarDownsampling
from invdn.models.invertible import InvertibleModule
from invdn.models.reversible import run_chain
from invdn.models.subnets import subnet_constructor


@dataclass
class InvDNConfig:
    in_channels: int = 3  # image channels (3 = RGB)
    levels: int = 2  # Haar steps; the low-resolution image is 1 / 2**levels of the input's size
    blocks_per_level: int = 8  # affine coupling blocks after each Haar step
    split: int = 3  # channels in each coupling's x1; the first `in_channels` outputs form the LR image
    subnet: str = "resnet"  # coupling subnet: "resnet" (InvDN's) or "dense" (IRN's dense block)
    hidden: int = 64  # width of the subnets' hidden convolutions
    clamp: float = 1.0  # bound on the coupling log-scale s, |s| <= clamp
    latent: str = "random"  # the z that `denoise` decodes with: "random" (the paper's N(0, I) draw) or "zero"
    memory_saving: bool = False  # training switch, not architecture (not saved): RevNet-style backprop

    @classmethod
    def from_dict(cls, d: dict) -> InvDNConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Encoded(NamedTuple):
    """What `encode` returns; `decode(*encoded)` rebuilds an image of the original size."""

    lr: Tensor  # (B, 3, H'/4, W'/4) the low-resolution clean image (H', W' = H, W padded to a multiple of 4)
    z: Tensor  # (B, 45, H'/4, W'/4) the latent
    size: tuple[int, int]  # (H, W) of the input before padding


class InvDN(nn.Module):
    model_type = "invdn"

    def __init__(self, config: InvDNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or InvDNConfig()
        constructor = subnet_constructor(config.subnet, config.hidden)
        blocks: list[InvertibleModule] = []
        channels = config.in_channels
        for _ in range(config.levels):
            blocks.append(HaarDownsampling(channels))
            channels *= 4
            blocks += [
                AffineCoupling(channels, config.split, constructor, config.clamp)
                for _ in range(config.blocks_per_level)
            ]
        self.blocks = nn.ModuleList(blocks)
        self.latent_channels = channels - config.in_channels
        self.pretrained = False  # set by invdn.models.weights.load when trained weights are loaded

    @property
    def model_args(self) -> dict:
        return registry.architecture_args(self.config)  # architecture only: no runtime switches

    @property
    def multiple(self) -> int:
        return 2**self.config.levels

    def _chain(self, x: Tensor, rev: bool) -> tuple[Tensor, Tensor]:
        """All blocks forward (or backward when `rev`): (output, log|det| per sample)."""
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout for every convolution
        return run_chain(list(self.blocks), x, rev=rev, memory_saving=self.config.memory_saving)

    def encode(self, x: Tensor, with_logdet: bool = False) -> Encoded | tuple[Encoded, Tensor]:
        """x (B,3,H,W) -> Encoded(lr, z, size); with `with_logdet`, also log|det d(lr,z)/dx| per sample (B,).

        The log-determinant is that of the invertible map on the padded input.
        """
        size = (x.shape[-2], x.shape[-1])
        xp = pad_to_multiple(x, self.multiple)  # (B, 3, H', W'), H' and W' multiples of 4
        if with_logdet:
            out, log_det = run_chain(list(self.blocks), xp, rev=False, memory_saving=False)
        else:
            out, log_det = self._chain(xp, rev=False)  # (B, 48, H'/4, W'/4)
        c = self.config.in_channels
        enc = Encoded(out[:, :c], out[:, c:], size)  # (B,3,H/4,W/4), (B,45,H/4,W/4)
        return (enc, log_det) if with_logdet else enc

    def decode(self, lr: Tensor, z: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """The exact inverse of `encode`, through the same parameters; cropped to `size` when given."""
        x, _ = self._chain(torch.cat([lr, z], dim=1), rev=True)  # (B, 3, H', W')
        return x if size is None else x[..., : size[0], : size[1]]

    def sample_latent(self, lr: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The z decoded with `lr` in place of the noisy image's: N(0, I) draws, or zeros (`config.latent`)."""
        shape = (lr.shape[0], self.latent_channels, lr.shape[2], lr.shape[3])
        if self.config.latent == "zero":
            return torch.zeros(shape, device=lr.device, dtype=lr.dtype)
        return torch.randn(shape, generator=generator, device=lr.device, dtype=lr.dtype)

    @torch.no_grad()
    def denoise(
        self, x: Tensor, samples: int = 1, ensemble: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """Clean (B,3,H,W) from noisy: encode, replace z by fresh N(0, I) draws, decode, average.

        `samples` latent draws are averaged; `ensemble` also averages over the 8 flips/transposes.
        """
        if samples < 1:
            raise ValueError("samples must be >= 1")

        def restore(xk: Tensor) -> Tensor:
            lr, _, size = self.encode(xk)
            return sum(self.decode(lr, self.sample_latent(lr, generator), size) for _ in range(samples)) / samples

        return dihedral_average(x, ensemble, restore)

    def forward(self, x: Tensor) -> Tensor:
        """Same as `denoise` with one draw (kept so the module can be traced and counted)."""
        lr, z, size = self.encode(x)
        return self.decode(lr, torch.zeros_like(z), size)
