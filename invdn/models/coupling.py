"""InvDN's affine coupling block.

Channels split into x1 (the first `split`) and x2 (the rest):

    forward:  y1 = x1 + F(x2)
              s  = clamp * (2 * sigmoid(H(y1)) - 1)          (= clamp * tanh(H(y1) / 2))
              y2 = x2 * exp(s) + G(y1)
    inverse:  x2 = (y2 - G(y1)) * exp(-s(y1))
              x1 = y1 - F(x2)
    log|det dy/dx| = sum(s)   (the inverse's is -sum(s))

F, G and H come from an injected `subnet_constructor(c_in, c_out)`.

The inference engine runs an optimised copy (`invdn.inference.fast.FastCoupling`), same mathematics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdn.models.invertible import InvertibleModule
from invdn.models.subnets import SubnetConstructor


def _at_least_float32(t: Tensor) -> Tensor:
    """bf16/fp16 (autocast outputs) as float32; float32 and float64 unchanged."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class AffineCoupling(InvertibleModule):
    def __init__(self, channels: int, split: int, subnet_constructor: SubnetConstructor, clamp: float = 1.0):
        super().__init__()
        if not 0 < split < channels:
            raise ValueError(f"split must be in (0, {channels}), got {split}")
        self.split1, self.split2 = split, channels - split
        self.clamp = clamp
        self.F = subnet_constructor(self.split2, self.split1)
        self.G = subnet_constructor(self.split1, self.split2)
        self.H = subnet_constructor(self.split1, self.split2)

    def log_scale(self, y1: Tensor) -> Tensor:
        """clamp * tanh(H(y1) / 2) (== clamp * (2 * sigmoid(H) - 1)), in float32 even under bf16 autocast: the
        scale multiplies the float32 state, and bf16's 8-bit mantissa there would make the inverse inexact."""
        raw = self.H(y1)
        with torch.autocast(y1.device.type, enabled=False):
            return self.clamp * torch.tanh(0.5 * _at_least_float32(raw))

    def scale_and_shift(self, y1: Tensor) -> tuple[Tensor, Tensor]:
        """(s, G(y1)) with s = log_scale(y1).

        G and H stay two networks in training too: run as one (first layers as one convolution, second layers
        grouped) they measured 3-10 % slower per step on CPU (oneDNN's grouped kernel is ~10 % slower than two
        plain ones), so that variant was removed.
        """
        return self.log_scale(y1), _at_least_float32(self.G(y1))  # the shift in float32 too (see log_scale)

    def _split(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return t[:, : self.split1], t[:, self.split1 :]

    def forward(self, x: Tensor, rev: bool = False) -> tuple[Tensor, Tensor]:
        a, b = self._split(x)
        if not rev:
            y1 = a + self.F(b)
            s, g = self.scale_and_shift(y1)
            y2 = b * torch.exp(s) + g
            return torch.cat([y1, y2], dim=1), s.flatten(1).sum(1)
        s, g = self.scale_and_shift(a)
        x2 = (b - g) * torch.exp(-s)
        x1 = a - self.F(x2)
        return torch.cat([x1, x2], dim=1), -s.flatten(1).sum(1)

    def rebuild_and_backward(
        self, out: Tensor, grad_out: Tensor, rev: bool = False
    ) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """Fused rebuild + backward: each subnet runs forward once and backward once (plain autograd's cost
        plus one forward), instead of invert-then-recompute's two forwards."""
        f_params = list(self.F.parameters())
        gh_params = list(self.G.parameters()) + list(self.H.parameters())
        with torch.enable_grad():
            if not rev:  # out = (y1, y2) from the forward run; rebuild (x1, x2)
                y1, y2 = (t.detach() for t in self._split(out))
                g1, g2 = self._split(grad_out)
                y1_ = y1.requires_grad_(True)
                s, g = self.scale_and_shift(y1_)
                with torch.no_grad():
                    x2 = (y2 - g) * torch.exp(-s)
                y2_again = x2 * torch.exp(s) + g
                gy1, *gh_grads = torch.autograd.grad(y2_again, [y1_, *gh_params], g2)
                g_y1_total = g1 + gy1
                x2_ = x2.requires_grad_(True)
                f = self.F(x2_)
                gx2_f, *f_grads = torch.autograd.grad(f, [x2_, *f_params], g_y1_total)
                x_in = torch.cat([y1 - f.detach(), x2], dim=1)
                grad_in = torch.cat([g_y1_total, g2 * torch.exp(s.detach()) + gx2_f], dim=1)
            else:  # out = (x1, x2) from the inverse run; rebuild (y1, y2)
                x1, x2 = (t.detach() for t in self._split(out))
                g1, g2 = self._split(grad_out)
                x2_ = x2.requires_grad_(True)
                f = self.F(x2_)
                gx2_f, *f_grads = torch.autograd.grad(f, [x2_, *f_params], -g1)
                g_x2_total = g2 + gx2_f
                y1_ = (x1 + f.detach()).requires_grad_(True)
                s, g = self.scale_and_shift(y1_)
                with torch.no_grad():
                    y2 = x2 * torch.exp(s) + g
                x2_again = (y2 - g) * torch.exp(-s)
                gy1, *gh_grads = torch.autograd.grad(x2_again, [y1_, *gh_params], g_x2_total)
                x_in = torch.cat([y1_.detach(), y2], dim=1)
                grad_in = torch.cat([g1 + gy1, g_x2_total * torch.exp(-s.detach())], dim=1)
        by_param = {id(p): gr for p, gr in zip(f_params + gh_params, f_grads + gh_grads, strict=True)}
        return x_in, grad_in, [by_param[id(p)] for p in self.trainable_parameters()]
