"""InvDN's affine coupling block.

Channels split into x1 (the first `split`) and x2 (the rest):

    forward:  y1 = x1 + F(x2)
              s  = clamp * (2 * sigmoid(H(y1)) - 1)          (= clamp * tanh(H(y1) / 2))
              y2 = x2 * exp(s) + G(y1)
    inverse:  x2 = (y2 - G(y1)) * exp(-s(y1))
              x1 = y1 - F(x2)
    log|det dy/dx| = sum(s)   (the inverse's is -sum(s))

F, G and H come from an injected `subnet_constructor(c_in, c_out)`.

Fast paths (used while `block.fast` is True, which `InvDN` sets from `InvDNConfig.fast`; same mathematics):
- `fast_forward` / `fast_inverse` (inference, no autograd) work on the split state (x1, x2) kept channels-last
  between blocks, so no per-block concatenation or slicing of the state; LeakyReLUs and the additions
  `x1 + F(.)`, `G(.) + x2 * exp(s)`, `x2 - G(.)` run inside the convolution kernels
  (`invdn.inference.kernels.conv`), with
  weights prepared once (cast, channels-last, scaled by 0.5 for the tanh form, negated for subtractions), cached
  until a parameter changes. Under CPU autocast (bf16) the subnets run in bf16 while the state x1, x2 and the
  coupling arithmetic stay in float32, which keeps the inverse accurate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdn.inference import kernels
from invdn.models.invertible import InvertibleModule
from invdn.models.subnets import ResNetSubnet, SubnetConstructor

# F's last convolution runs as 1x1 taps + shifted sums (`kernels.conv3x3_by_taps`) up to this many outputs: measured
# on oneDNN (AVX-512, float32, one thread) 1.6-2x faster for 3 outputs, 2x slower for 9.
TAPS_MAX_OUT = 4


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
        self.fast = True  # use the fused paths below (InvDN sets it from its config); False: straightforward code
        self._inference_weights = kernels.WeightCache()

    def log_scale(self, y1: Tensor) -> Tensor:
        """clamp * tanh(H(y1) / 2) (== clamp * (2 * sigmoid(H) - 1)), in float32 even under bf16 autocast: the
        scale multiplies the float32 state, and bf16's 8-bit mantissa there would make the inverse inexact."""
        raw = self.H(y1)
        with torch.autocast(y1.device.type, enabled=False):
            return self.clamp * torch.tanh(0.5 * _at_least_float32(raw))

    @property
    def fusable(self) -> bool:
        """Whether the fused G/H and inference kernels apply (all three subnets are "resnet" ones)."""
        return self.fast and all(isinstance(net, ResNetSubnet) for net in (self.F, self.G, self.H))

    def scale_and_shift(self, y1: Tensor) -> tuple[Tensor, Tensor]:
        """(s, G(y1)) with s = log_scale(y1).

        G and H stay two networks in training too: run as one (first layers as one convolution, second layers
        grouped) they measured 3-10 % slower per step on CPU (oneDNN's grouped kernel is ~10 % slower than two
        plain ones), so that variant was removed.
        """
        return self.log_scale(y1), _at_least_float32(self.G(y1))  # the shift in float32 too (see log_scale)

    # ---- inference kernels (no autograd) on the split, channels-last state ----

    def _prepare(self, dtype: torch.dtype) -> dict[str, Tensor]:
        f, g, h = self.F, self.G, self.H

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
        return self._inference_weights.get(list(self.parameters()), dtype, self._prepare)

    @staticmethod
    def _conv_add(x: Tensor, w: Tensor, b: Tensor, add: Tensor) -> Tensor:
        """conv(x) + add, the addition fused when `add` is in the convolution's dtype."""
        if add.dtype == x.dtype:
            return kernels.conv(x, w, b, add=add)
        return kernels.conv(x, w, b).to(add.dtype).add_(add)

    def _f_apply(self, a: Tensor, b: Tensor, wts: dict[str, Tensor], sign: str, dtype: torch.dtype) -> Tensor:
        """a + F(b) (sign "") or a - F(b) (sign "_neg"), F in `dtype`."""
        bc = kernels.channels_last(b.to(dtype))
        slope = self.F.act.negative_slope
        hid = kernels.conv(bc, wts["f1w"], wts["f1b"], act="lrelu", slope=slope)
        hid = kernels.conv(hid, wts["f2w"], wts["f2b"], act="lrelu", slope=slope)
        cat = torch.cat([bc, hid], dim=1)
        if self.F.conv3.out_channels <= TAPS_MAX_OUT and dtype == torch.float32 == a.dtype:
            return kernels.conv3x3_by_taps(cat, wts["f3w_taps" + sign], wts["f3b" + sign], a)
        return self._conv_add(cat, wts["f3w" + sign], wts["f3b" + sign], a)

    def _gh_hidden(self, y1: Tensor, wts: dict[str, Tensor], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The inputs of G's and H's last convolutions, [y1, hidden_G] and [y1, hidden_H], in `dtype`.

        G and H stay two networks here: on oneDNN one grouped convolution (groups=2) for both second layers
        measured ~10% slower than two plain ones, and splitting a fused first layer's output costs a copy.
        """
        yc = kernels.channels_last(y1.to(dtype))
        slope = self.G.act.negative_slope  # H's is the same (one subnet class)
        out = []
        for net in "gh":
            hid = kernels.conv(yc, wts[net + "1w"], wts[net + "1b"], act="lrelu", slope=slope)
            hid = kernels.conv(hid, wts[net + "2w"], wts[net + "2b"], act="lrelu", slope=slope)
            out.append(torch.cat([yc, hid], dim=1))
        return out[0], out[1]

    def _tanh_scale(self, cat_h: Tensor, wts: dict[str, Tensor], state_dtype: torch.dtype) -> Tensor:
        s = kernels.conv(cat_h, wts["h3w"], wts["h3b"], act="tanh").to(state_dtype)
        return s.mul_(self.clamp) if self.clamp != 1.0 else s

    @torch.no_grad()
    def fast_forward(
        self, a: Tensor, b: Tensor, need_x2: bool = True, dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(x1, x2) -> (y1, y2) for inference; tensors channels-last. `need_x2=False` skips G and H (y2 None).

        `dtype`: the subnets' compute dtype (default: bf16 under CPU autocast, else the state's).
        """
        dtype = dtype or kernels.compute_dtype(a)
        with torch.autocast("cpu", enabled=False):
            wts = self._weights(dtype)
            y1 = self._f_apply(a, b, wts, "", dtype)
            if not need_x2:
                return y1, None
            cat_g, cat_h = self._gh_hidden(y1, wts, dtype)
            scaled = self._tanh_scale(cat_h, wts, b.dtype).exp_().mul_(b)  # x2 * exp(s)
            y2 = self._conv_add(cat_g, wts["g3w"], wts["g3b"], scaled)  # + G(y1)
        return y1, y2

    @torch.no_grad()
    def fast_inverse(self, a: Tensor, b: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """(y1, y2) -> (x1, x2) for inference; tensors channels-last; `dtype` as in `fast_forward`."""
        dtype = dtype or kernels.compute_dtype(a)
        with torch.autocast("cpu", enabled=False):
            wts = self._weights(dtype)
            cat_g, cat_h = self._gh_hidden(a, wts, dtype)
            x2 = self._conv_add(cat_g, wts["g3w_neg"], wts["g3b_neg"], b)  # y2 - G(y1)
            x2.mul_(self._tanh_scale(cat_h, wts, b.dtype).neg_().exp_())  # * exp(-s)
            x1 = self._f_apply(a, x2, wts, "_neg", dtype)  # y1 - F(x2)
        return x1, x2

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
