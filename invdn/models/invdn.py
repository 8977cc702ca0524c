"""InvDN: an invertible denoising network (Liu et al., CVPR 2021).

    noisy x (B,3,H,W) --Haar--> (B,12,H/2,W/2) --8 couplings--> --Haar--> (B,48,H/4,W/4) --8 couplings-->
        = [ lr (B,3,H/4,W/4) | z (B,45,H/4,W/4) ]

`encode` runs the chain forward; the first 3 output channels are trained to be the clean image at 1/4 size and
the other 45 (z) hold the noise and the detail. `denoise` throws z away, draws a fresh z ~ N(0, I) and runs the
*same* chain backwards (`decode`) to a clean full-size image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invdn.inference import kernels
from invdn.models import registry
from invdn.models.coupling import AffineCoupling
from invdn.models.flops import count_parameters  # noqa: F401  (re-exported: invdn.models.invdn.count_parameters)
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
    memory_saving: bool = False  # RevNet-style backprop: keep no activations of the invertible chain
    fast: bool = True  # optimised kernels, same mathematics (fused G/H, channels-last); False: straightforward code

    @classmethod
    def from_dict(cls, d: dict) -> InvDNConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Encoded(NamedTuple):
    """What `encode` returns; `decode(*encoded)` rebuilds an image of the original size."""

    lr: Tensor  # (B, 3, H'/4, W'/4) the low-resolution clean image (H', W' = H, W padded to a multiple of 4)
    z: Tensor  # (B, 45, H'/4, W'/4) the latent
    size: tuple[int, int]  # (H, W) of the input before padding


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad bottom/right to a multiple (reflect, or replicate when the image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def dihedral(x: Tensor, k: int, inverse: bool = False) -> Tensor:
    """The k-th of the 8 flips/transposes of the square's symmetry group (k in 0..7), or its inverse."""
    if not inverse:
        if k & 4:
            x = x.transpose(-2, -1)
        return torch.rot90(x, k & 3, dims=(-2, -1))
    x = torch.rot90(x, -(k & 3), dims=(-2, -1))
    return x.transpose(-2, -1) if k & 4 else x


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

    def _couplings(self) -> list[AffineCoupling]:
        return [b for b in self.blocks if isinstance(b, AffineCoupling)]

    def _sync_fast(self) -> bool:
        """Pass `config.fast` on to the blocks (it may be changed after construction); return it."""
        for block in self._couplings():
            block.fast = self.config.fast
        return self.config.fast

    def _use_fast_inference(self, x: Tensor) -> bool:
        """The fused no-autograd kernels apply: fast mode, no gradient wanted, fusable subnets."""
        if not self._sync_fast() or not kernels.plain_eager():
            return False
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        return not wants_grad and all(b.fusable for b in self._couplings())

    def _chain(self, x: Tensor, rev: bool) -> tuple[Tensor, Tensor | None]:
        if self._sync_fast() and x.dim() == 4:
            kernels.tune_allocator()
            x = kernels.channels_last(x)  # every convolution of the chain then runs channels-last
        return run_chain(list(self.blocks), x, rev=rev, memory_saving=self.config.memory_saving)

    @torch.no_grad()
    def _fast_chain(
        self, x: Tensor | None, rev: bool, pair: tuple[Tensor, Tensor] | None = None, need_latent: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """The chain for inference on the split state (x1, x2), kept channels-last between coupling blocks.

        Input: a full tensor `x` or an already split `pair`; output: the split (x1, x2) of the result.
        With `need_latent=False` (forward only) the last block's G and H are skipped and x2 comes back None.
        """
        kernels.tune_allocator()
        dtype = kernels.compute_dtype(x if x is not None else pair[0])  # bf16 under CPU autocast
        split = self.config.split
        blocks = list(reversed(self.blocks)) if rev else list(self.blocks)
        last = len(blocks) - 1
        full, a, b = x, None, None
        if pair is not None:
            a, b = (kernels.channels_last(t) for t in pair)
        with torch.autocast(x.device.type if x is not None else a.device.type, enabled=False):
            for index, block in enumerate(blocks):
                if isinstance(block, AffineCoupling):
                    if a is None:
                        a, b = kernels.channels_last(full[:, :split]), kernels.channels_last(full[:, split:])
                    if rev:
                        a, b = block.fast_inverse(a, b, dtype)
                    else:
                        a, b = block.fast_forward(a, b, need_latent or index < last, dtype)
                else:  # a Haar step: no parameters, runs on the whole state
                    if a is not None:
                        full, a, b = torch.cat([a, b], dim=1), None, None
                    full, _ = block(full, rev=rev)
        if a is None:
            a, b = full[:, :split], full[:, split:]
        return a, b

    def _fast_encode_lr(self, xp: Tensor, need_latent: bool) -> tuple[Tensor, Tensor | None]:
        """(lr, z or None) of a padded input through the fast chain."""
        c = self.config.in_channels
        a, b = self._fast_chain(xp, rev=False, need_latent=need_latent or c > self.config.split)
        if b is None:
            return a[:, :c], None
        if a.shape[1] == c:
            return a, b
        out = torch.cat([a, b], dim=1)
        return out[:, :c], out[:, c:]

    def _fast_decode(self, lr: Tensor, z: Tensor) -> Tensor:
        if lr.shape[1] == self.config.split:
            a, b = self._fast_chain(None, rev=True, pair=(lr, z))
        else:
            a, b = self._fast_chain(torch.cat([lr, z], dim=1), rev=True)
        return torch.cat([a, b], dim=1) if b is not None and b.shape[1] else a

    def encode(self, x: Tensor, with_logdet: bool = False) -> Encoded | tuple[Encoded, Tensor]:
        """x (B,3,H,W) -> Encoded(lr, z, size); with `with_logdet`, also log|det d(lr,z)/dx| per sample (B,).

        The log-determinant is that of the invertible map on the padded input.
        """
        size = (x.shape[-2], x.shape[-1])
        xp = pad_to_multiple(x, self.multiple)
        if not with_logdet and self._use_fast_inference(xp):
            lr, z = self._fast_encode_lr(xp, need_latent=True)
            return Encoded(lr.contiguous(), z.contiguous(), size)
        if with_logdet:
            out, log_det = run_chain(list(self.blocks), xp, rev=False, memory_saving=False)
        else:
            out, log_det = self._chain(xp, rev=False)
        c = self.config.in_channels
        enc = Encoded(out[:, :c], out[:, c:], size)  # (B,3,H/4,W/4), (B,45,H/4,W/4)
        return (enc, log_det) if with_logdet else enc

    def decode(self, lr: Tensor, z: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """The exact inverse of `encode`, through the same parameters; cropped to `size` when given."""
        if self._use_fast_inference(lr):
            x = self._fast_decode(lr, z).contiguous()
        else:
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
        total = torch.zeros_like(x)
        transforms = range(8) if ensemble else range(1)
        fast = self._use_fast_inference(x)
        for k in transforms:
            if fast:  # only lr is needed: the last block's G and H are skipped, z is never built
                xk = dihedral(x, k)
                size = (xk.shape[-2], xk.shape[-1])
                lr, _ = self._fast_encode_lr(pad_to_multiple(xk, self.multiple), need_latent=False)
                for _ in range(samples):
                    out = self._fast_decode(lr, self.sample_latent(lr, generator))[..., : size[0], : size[1]]
                    total += dihedral(out, k, inverse=True)
                continue
            lr, _, size = self.encode(dihedral(x, k))
            for _ in range(samples):
                out = self.decode(lr, self.sample_latent(lr, generator), size)
                total += dihedral(out, k, inverse=True)
        return total / (len(transforms) * samples)

    def forward(self, x: Tensor) -> Tensor:
        """Same as `denoise` with one draw (kept so the module can be traced and counted)."""
        lr, z, size = self.encode(x)
        return self.decode(lr, torch.zeros_like(z), size)
