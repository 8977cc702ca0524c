"""Inference-only variants of the registry models, built from trained ones: same mathematics, fewer passes.

The models in `invdn.models` are the trained, differentiable networks in plain PyTorch. For inference the engine
(`invdn.inference.engine.Denoiser`) runs these copies instead, as NAFNet keeps its local variant apart:

    fast = for_inference(model)      # FastInvDNLC / FastInvDN / FastDANetR.from_model(model), or the model itself
    clean = fast.denoise(noisy)      # the model's denoise interface, no autograd

What they do differently (measured by `invdn bench speed`; `torch.compile` of the plain model matches them in steady
state but costs seconds of compilation per input shape, see benchmarks/RESULTS.md):
- every convolution runs channels-last, with its LeakyReLU/ReLU/tanh or the following addition inside oneDNN's
  kernel (`invdn.inference.kernels.conv`), on weights prepared once (cast, channels-last, scaled by 0.5 for the
  tanh form of the coupling scale, negated for subtractions) and rebuilt when a parameter of the model changes;
- InvDN's couplings work on the split state (x1, x2) kept channels-last between blocks (no per-block
  concatenation or slicing), the 3-output F convolution runs as 1x1 taps (`kernels.conv3x3_by_taps`), and the
  paper model's encoder skips the last block's G and H (only the low-resolution image is needed);
- under CPU autocast (bf16) the convolutions run in bf16 while the coupling state and arithmetic stay float32,
  which keeps the inverse accurate.
They share the model's parameters (no copy) and hold no autograd state.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invdn.inference import kernels
from invdn.models import registry
from invdn.models.coupling import AffineCoupling
from invdn.models.danet import UNetD
from invdn.models.geometry import dihedral_average, pad_to_multiple
from invdn.models.invdn import InvDN
from invdn.models.latent_clean import InvDNLC, LatentCleaner
from invdn.models.subnets import ResNetSubnet

# F's last convolution runs as 1x1 taps + shifted sums (`kernels.conv3x3_by_taps`) up to this many outputs: measured
# on oneDNN (AVX-512, float32, one thread) 1.6-2x faster for 3 outputs, 2x slower for 9.
TAPS_MAX_OUT = 4


def for_inference(model: nn.Module) -> nn.Module:
    """The registry's inference variant of `model` (`ModelSpec.fast`) when it applies (the registry's class, with
    the layers the variant fuses), else `model` itself."""
    spec = registry.spec_of(model)
    if spec is None or spec.fast is None:
        return model
    module_name, name = spec.fast.split(":")
    variant = getattr(importlib.import_module(module_name), name)
    return variant.from_model(model) if variant.supports(model) else model


class FastCoupling:
    """`AffineCoupling` forward and inverse on the split, channels-last state (x1, x2), for inference."""

    def __init__(self, block: AffineCoupling) -> None:
        self.block = block
        self.cache = kernels.WeightCache()

    @staticmethod
    def supports(block: AffineCoupling) -> bool:
        return all(isinstance(net, ResNetSubnet) for net in (block.F, block.G, block.H))

    def _prepare(self, dtype: torch.dtype) -> dict[str, Tensor]:
        f, g, h = self.block.F, self.block.G, self.block.H

        def w(t: Tensor, scale: float = 1.0) -> Tensor:
            return kernels.prepared(t * scale if scale != 1.0 else t, dtype)

        def b(t: Tensor, scale: float = 1.0) -> Tensor:
            return (t.detach() * scale).to(dtype).contiguous()

        return {
            "f1w": w(f.conv1.weight), "f1b": b(f.conv1.bias),
            "f2w": w(f.conv2.weight), "f2b": b(f.conv2.bias),
            "f3w": w(f.conv3.weight), "f3b": b(f.conv3.bias),
            "f3w_neg": w(f.conv3.weight, -1.0), "f3b_neg": b(f.conv3.bias, -1.0),
            "f3w_taps": kernels.taps_weight(w(f.conv3.weight)),
            "f3w_taps_neg": kernels.taps_weight(w(f.conv3.weight, -1.0)),
            "g1w": w(g.conv1.weight), "g1b": b(g.conv1.bias),
            "g2w": w(g.conv2.weight), "g2b": b(g.conv2.bias),
            "h1w": w(h.conv1.weight), "h1b": b(h.conv1.bias),
            "h2w": w(h.conv2.weight), "h2b": b(h.conv2.bias),
            "g3w": w(g.conv3.weight), "g3b": b(g.conv3.bias),
            "g3w_neg": w(g.conv3.weight, -1.0), "g3b_neg": b(g.conv3.bias, -1.0),
            "h3w": w(h.conv3.weight, 0.5), "h3b": b(h.conv3.bias, 0.5),  # tanh(0.5 * H) as tanh(H')
        }  # fmt: skip

    def _weights(self, dtype: torch.dtype) -> dict[str, Tensor]:
        return self.cache.get(list(self.block.parameters()), dtype, self._prepare)

    @staticmethod
    def _conv_add(x: Tensor, w: Tensor, b: Tensor, add: Tensor) -> Tensor:
        """conv(x) + add, the addition fused when `add` is in the convolution's dtype."""
        if add.dtype == x.dtype:
            return kernels.conv(x, w, b, add=add)
        return kernels.conv(x, w, b).to(add.dtype).add_(add)

    def _f_apply(self, a: Tensor, b: Tensor, wts: dict[str, Tensor], sign: str, dtype: torch.dtype) -> Tensor:
        """a + F(b) (sign "") or a - F(b) (sign "_neg"), F in `dtype`."""
        bc = kernels.channels_last(b.to(dtype))
        slope = self.block.F.act.negative_slope
        hid = kernels.conv(bc, wts["f1w"], wts["f1b"], act="lrelu", slope=slope)
        hid = kernels.conv(hid, wts["f2w"], wts["f2b"], act="lrelu", slope=slope)
        cat = torch.cat([bc, hid], dim=1)
        if self.block.F.conv3.out_channels <= TAPS_MAX_OUT and dtype == torch.float32 == a.dtype:
            return kernels.conv3x3_by_taps(cat, wts["f3w_taps" + sign], wts["f3b" + sign], a)
        return self._conv_add(cat, wts["f3w" + sign], wts["f3b" + sign], a)

    def _gh_hidden(self, y1: Tensor, wts: dict[str, Tensor], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The inputs of G's and H's last convolutions, [y1, hidden_G] and [y1, hidden_H], in `dtype`.

        G and H stay two networks: one grouped convolution (groups=2) for both second layers measured ~10 % slower
        on oneDNN than two plain ones, and splitting a fused first layer's output costs a copy.
        """
        yc = kernels.channels_last(y1.to(dtype))
        slope = self.block.G.act.negative_slope  # H's is the same (one subnet class)
        out = []
        for net in "gh":
            hid = kernels.conv(yc, wts[net + "1w"], wts[net + "1b"], act="lrelu", slope=slope)
            hid = kernels.conv(hid, wts[net + "2w"], wts[net + "2b"], act="lrelu", slope=slope)
            out.append(torch.cat([yc, hid], dim=1))
        return out[0], out[1]

    def _tanh_scale(self, cat_h: Tensor, wts: dict[str, Tensor], state_dtype: torch.dtype) -> Tensor:
        s = kernels.conv(cat_h, wts["h3w"], wts["h3b"], act="tanh").to(state_dtype)
        return s.mul_(self.block.clamp) if self.block.clamp != 1.0 else s

    def forward(self, a: Tensor, b: Tensor, dtype: torch.dtype, need_x2: bool = True) -> tuple[Tensor, Tensor | None]:
        """(x1, x2) -> (y1, y2); `need_x2=False` skips G and H (y2 None). Subnets in `dtype`."""
        wts = self._weights(dtype)
        y1 = self._f_apply(a, b, wts, "", dtype)  # x1 + F(x2)
        if not need_x2:
            return y1, None
        cat_g, cat_h = self._gh_hidden(y1, wts, dtype)
        scaled = self._tanh_scale(cat_h, wts, b.dtype).exp_().mul_(b)  # x2 * exp(s)
        return y1, self._conv_add(cat_g, wts["g3w"], wts["g3b"], scaled)  # + G(y1)

    def inverse(self, a: Tensor, b: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(y1, y2) -> (x1, x2). Subnets in `dtype`."""
        wts = self._weights(dtype)
        cat_g, cat_h = self._gh_hidden(a, wts, dtype)
        x2 = self._conv_add(cat_g, wts["g3w_neg"], wts["g3b_neg"], b)  # y2 - G(y1)
        x2.mul_(self._tanh_scale(cat_h, wts, b.dtype).neg_().exp_())  # * exp(-s)
        return self._f_apply(a, x2, wts, "_neg", dtype), x2  # y1 - F(x2)


class FastVariant(nn.Module):
    """An inference-only copy of a trained `model` (shared parameters): `denoise(x, samples, ensemble, generator)`
    as the model's, through `restore`, the model's denoising of one (padded and cropped) orientation."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    @classmethod
    def from_model(cls, model: nn.Module) -> FastVariant:
        return cls(model)

    def restore(self, x: Tensor, samples: int, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def denoise(
        self, x: Tensor, samples: int = 1, ensemble: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """The model's `denoise`: `samples` latent draws (stochastic models) and the 8-way `ensemble` averaged."""
        if samples < 1:
            raise ValueError("samples must be >= 1")
        return dihedral_average(x, ensemble, lambda xk: self.restore(xk, samples, generator))


class FastInvDN(FastVariant):
    """`InvDN` for inference: encode to the split state and decode from it through `FastCoupling`s."""

    def __init__(self, model: InvDN) -> None:
        super().__init__(model)
        self.steps = [FastCoupling(b) if isinstance(b, AffineCoupling) else b for b in model.blocks]

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return isinstance(model, InvDN) and all(
            FastCoupling.supports(b) for b in model.blocks if isinstance(b, AffineCoupling)
        )

    def chain(
        self, x: Tensor | None, rev: bool, pair: tuple[Tensor, Tensor] | None = None, need_latent: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """All blocks on a full tensor `x` or an already split `pair` (x1, x2); returns the split result.

        With `need_latent=False` (forward only) the last block's G and H are skipped and x2 comes back None.
        """
        dtype = kernels.compute_dtype(x if x is not None else pair[0])  # bf16 under CPU autocast
        split = self.model.config.split
        steps = list(reversed(self.steps)) if rev else self.steps
        full, a, b = x, None, None
        if pair is not None:
            a, b = (kernels.channels_last(t) for t in pair)
        with torch.autocast((x if x is not None else a).device.type, enabled=False):
            for index, step in enumerate(steps):
                if isinstance(step, FastCoupling):
                    if a is None:
                        a, b = kernels.channels_last(full[:, :split]), kernels.channels_last(full[:, split:])
                    if rev:
                        a, b = step.inverse(a, b, dtype)
                    else:
                        a, b = step.forward(a, b, dtype, need_x2=need_latent or index < len(steps) - 1)
                else:  # a Haar step: no parameters, runs on the whole state
                    if a is not None:
                        full, a, b = torch.cat([a, b], dim=1), None, None
                    full, _ = step(full, rev=rev)
        if a is None:
            a, b = full[:, :split], full[:, split:]
        return a, b

    def encode(self, xp: Tensor, need_latent: bool = True) -> tuple[Tensor, Tensor | None]:
        """(lr, z or None) of an input already padded to `model.multiple`."""
        c = self.model.config.in_channels
        a, b = self.chain(xp, rev=False, need_latent=need_latent or c > self.model.config.split)
        if b is None:
            return a[:, :c], None
        if a.shape[1] == c:
            return a, b
        out = torch.cat([a, b], dim=1)
        return out[:, :c], out[:, c:]

    def decode(self, lr: Tensor, z: Tensor) -> Tensor:
        """The padded image from (lr, z)."""
        if lr.shape[1] == self.model.config.split:
            a, b = self.chain(None, rev=True, pair=(lr, z))
        else:
            a, b = self.chain(torch.cat([lr, z], dim=1), rev=True)
        return torch.cat([a, b], dim=1) if b is not None and b.shape[1] else a

    def restore(self, x: Tensor, samples: int, generator: torch.Generator | None) -> Tensor:
        """Only lr is encoded (the last block's G and H skipped), decoded with `samples` fresh latents, averaged."""
        height, width = x.shape[-2:]
        lr, _ = self.encode(pad_to_multiple(x, self.model.multiple), need_latent=False)
        draws = (self.decode(lr, self.model.sample_latent(lr, generator)) for _ in range(samples))
        return sum(draws)[..., :height, :width] / samples


class FastCleaner:
    """`LatentCleaner.forward` with ReLUs and residual additions inside oneDNN convolutions, channels-last."""

    def __init__(self, cleaner: LatentCleaner) -> None:
        self.cleaner = cleaner
        self.cache = kernels.WeightCache()

    def _prepare(self, dtype: torch.dtype) -> dict[str, tuple[Tensor, Tensor]]:
        def pair(conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
            return kernels.prepared(conv.weight, dtype), conv.bias.detach().to(dtype)

        wts = {"head": pair(self.cleaner.head), "tail": pair(self.cleaner.tail)}
        for i, block in enumerate(self.cleaner.body):
            wts[f"{i}.conv1"], wts[f"{i}.conv2"] = pair(block.conv1), pair(block.conv2)
        return wts

    def __call__(self, e: Tensor) -> Tensor:
        """e + C(e) in float32, the convolutions in the autocast dtype (bf16 under CPU autocast)."""
        dtype = kernels.compute_dtype(e)
        with torch.autocast(e.device.type, enabled=False):
            wts = self.cache.get(list(self.cleaner.parameters()), dtype, self._prepare)
            h = kernels.conv(kernels.channels_last(e.to(dtype)), *wts["head"])
            for i in range(len(self.cleaner.body)):
                t = kernels.conv(h, *wts[f"{i}.conv1"], act="lrelu", slope=0.0)  # ReLU = LeakyReLU(0)
                h = kernels.conv(t, *wts[f"{i}.conv2"], add=h)
            return kernels.conv(h, *wts["tail"]).float().add_(e.float())


class FastInvDNLC(FastVariant):
    """`InvDNLC` for inference: FastInvDN encode -> FastCleaner -> FastInvDN decode."""

    def __init__(self, model: InvDNLC) -> None:
        super().__init__(model)
        self.inv = FastInvDN(model.inv)
        self.cleaner = FastCleaner(model.cleaner)

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return isinstance(model, InvDNLC) and FastInvDN.supports(model.inv)

    def restore(self, x: Tensor, samples: int, generator: torch.Generator | None) -> Tensor:
        """encode -> clean the encoding -> decode (deterministic: `samples` and `generator` change nothing)."""
        c, (height, width) = self.model.config.in_channels, x.shape[-2:]
        lr, z = self.inv.encode(pad_to_multiple(x, self.model.multiple))
        e = self.cleaner(kernels.channels_last(torch.cat([lr, z], dim=1)))  # (B, 48, H/4, W/4)
        return self.inv.decode(e[:, :c], e[:, c:])[..., :height, :width]


class FastDANetR(FastVariant):
    """`UNetD` (DANet's R) for inference: channels-last, LeakyReLU inside the convolutions, in the autocast dtype."""

    def __init__(self, model: UNetD) -> None:
        super().__init__(model)
        self.cache = kernels.WeightCache()

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return isinstance(model, UNetD)

    def _prepare(self, dtype: torch.dtype) -> dict[str, Tensor]:
        """Inference copies of every weight: cast and channels-last (biases cast)."""
        return {
            name: kernels.prepared(p, dtype) if p.dim() == 4 else p.detach().to(dtype).contiguous()
            for name, p in self.model.unet.named_parameters()
        }

    def _unet(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        unet = self.model.unet
        wts = self.cache.get(list(unet.parameters()), dtype, self._prepare)

        def pair(prefix: str, t: Tensor) -> Tensor:
            for i in (0, 2):
                weight, bias = wts[f"{prefix}.body.{i}.weight"], wts[f"{prefix}.body.{i}.bias"]
                t = kernels.conv(t, weight, bias, "lrelu", slope=unet.slope)
            return t

        with torch.autocast(x.device.type, enabled=False):
            t = kernels.channels_last(x.to(dtype))
            skips = []
            for level in range(len(unet.encoder)):
                t = pair(f"encoder.{level}", t)
                if level < len(unet.downsample):
                    skips.append(t)
                    t = kernels.conv(t, wts[f"downsample.{level}.weight"], None, stride=2, padding=1)
            for index, skip in enumerate(reversed(skips)):
                up = F.conv_transpose2d(t, wts[f"decoder.{index}.up.weight"], wts[f"decoder.{index}.up.bias"], stride=2)
                t = pair(f"decoder.{index}.convs", torch.cat([up, skip], dim=1))
            return kernels.conv(t, wts["last.weight"], wts["last.bias"])

    def restore(self, y: Tensor, samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """y - U(y), not clamped (`UNetD.forward`); deterministic."""
        height, width = y.shape[-2:]
        noise = self._unet(pad_to_multiple(y, self.model.multiple), kernels.compute_dtype(y))
        return y - noise[..., :height, :width].to(y.dtype)

    @torch.no_grad()
    def denoise(
        self, x: Tensor, samples: int = 1, ensemble: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """`UNetD.denoise`: clamped to [0, 1]."""
        return super().denoise(x, samples, ensemble, generator).clamp(0.0, 1.0)
