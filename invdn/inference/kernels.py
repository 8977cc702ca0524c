"""Fast CPU building blocks of the inference-only variants in `invdn.inference.fast` (same mathematics, fewer passes).

- `conv(x, w, b, act=..., add=...)`: a 2-D convolution with its LeakyReLU or a following addition done inside
  oneDNN's kernel (one pass over memory instead of two or three), via the `mkldnn._convolution_pointwise`
  operators that torch.compile's CPU backend also emits. Where those operators are missing (another build,
  another device) or refuse the input, it falls back to `F.conv2d` plus the same arithmetic.
- `compute_dtype(t)`: the dtype to run convolutions in, following an active CPU autocast (bf16).
- `WeightCache`: prepared (concatenated, scaled, cast, channels-last) copies of parameters for inference, rebuilt
  whenever a parameter changes (optimizer step, `load_state_dict`, `.to()`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

CHANNELS_LAST = torch.channels_last
_fused_ok: dict[tuple[str, torch.dtype], bool] = {}


def compute_dtype(t: Tensor) -> torch.dtype:
    """bf16/fp16 when CPU autocast is on for that dtype, else the tensor's own floating dtype."""
    if t.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return t.dtype


def channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=CHANNELS_LAST)


def _fused_available(kind: str, x: Tensor) -> bool:
    """Whether oneDNN's fused convolution operators work here for this dtype (probed once, on tiny tensors)."""
    key = (kind, x.dtype)
    if key not in _fused_ok:
        _fused_ok[key] = False
        if x.device.type == "cpu" and torch.backends.mkldnn.is_available():
            try:
                probe = channels_last(torch.ones(1, 2, 4, 4, dtype=x.dtype))
                weight = channels_last(torch.ones(3, 2, 3, 3, dtype=x.dtype))
                bias = torch.zeros(3, dtype=x.dtype)
                got = _fused(probe, weight, bias, 1, "lrelu", None, 0.2)
                want = F.leaky_relu(F.conv2d(probe, weight, bias, padding=1), 0.2)
                extra = torch.ones_like(got)
                got_add = _fused(probe, weight, bias, 1, None, extra, 0.2)
                got_tanh = _fused(probe, weight * 0.01, bias, 1, "tanh", None, 0.2)
                want_tanh = torch.tanh(F.conv2d(probe, weight * 0.01, bias, padding=1))
                _fused_ok[key] = bool(
                    torch.allclose(got.float(), want.float())
                    and torch.allclose(got_add.float(), want.float() + 1)
                    and torch.allclose(got_tanh.float(), want_tanh.float(), atol=1e-2)
                )
            except (RuntimeError, AttributeError, NotImplementedError):
                _fused_ok[key] = False
    return _fused_ok[key] and x.device.type == "cpu"


def _fused(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    groups: int,
    act: str | None,
    add: Tensor | None,
    slope: float,
    stride: int = 1,
    padding: int | None = None,
):
    pad = [w.shape[-1] // 2 if padding is None else padding] * 2
    strides, one = [stride, stride], [1, 1]
    if add is not None:
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, add, w, b, pad, strides, one, groups, "add", None, None, [], None
        )
    if act == "lrelu":
        return torch.ops.mkldnn._convolution_pointwise(x, w, b, pad, strides, one, groups, "leaky_relu", [slope], "")
    if act == "tanh":
        return torch.ops.mkldnn._convolution_pointwise(x, w, b, pad, strides, one, groups, "tanh", [], "")
    return torch.ops.mkldnn._convolution_pointwise(x, w, b, pad, strides, one, groups, "none", [], "")


def conv(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    act: str | None = None,
    add: Tensor | None = None,
    groups: int = 1,
    slope: float = 0.2,
    stride: int = 1,
    padding: int | None = None,
) -> Tensor:
    """Convolution (default: same padding, stride 1), then LeakyReLU(slope) (`act="lrelu"`), tanh (`act="tanh"`)
    or `+ add`.

    For inference (no autograd); x, w and `add` should be channels-last and of one dtype.
    """
    if act is not None and add is not None:
        raise ValueError("conv fuses an activation or an addition, not both")
    padding = w.shape[-1] // 2 if padding is None else padding
    if _fused_available("conv", x) and (add is None or add.dtype == x.dtype):
        try:
            extra = None if add is None else channels_last(add)
            return _fused(channels_last(x), w, b, groups, act, extra, slope, stride, padding)
        except RuntimeError:  # an input the fused kernel refuses: do it step by step below
            pass
    y = F.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
    if act == "lrelu":
        return F.leaky_relu_(y, slope)
    if act == "tanh":
        return y.tanh_()
    return y if add is None else y.add_(add)


def taps_weight(w: Tensor) -> Tensor:
    """A 3x3 weight (C_out, C_in, 3, 3) as the 1x1 weight (9 * C_out, C_in, 1, 1) of `conv3x3_by_taps`, tap-major."""
    c_out, c_in, kh, kw = w.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"taps_weight needs a 3x3 kernel, got {kh}x{kw}")
    return channels_last(w.permute(2, 3, 0, 1).reshape(9 * c_out, c_in, 1, 1))


def conv3x3_by_taps(x: Tensor, w_taps: Tensor, b: Tensor, add: Tensor) -> Tensor:
    """conv3x3(x, w, b, padding=1) + add, for convolutions with very few outputs (InvDN's 3-channel F).

    oneDNN vectorises a convolution over output channels, so 3 outputs use 3 of 16 lanes (~15 % of its rate).
    Here one 1x1 convolution computes all 9 taps of every output (9 x C_out channels: lanes full), then the 9
    shifted tap planes are added into `add + b`. Same arithmetic, summed in another order (float32: ~1e-6).
    x, add: channels-last, one dtype; w_taps from `taps_weight`. Inference only (no autograd).
    """
    c_out = w_taps.shape[0] // 9
    height, width = x.shape[-2:]
    taps = conv(x, w_taps, None, padding=0).permute(0, 2, 3, 1)  # (B, H, W, 9 * C_out), a contiguous view
    out = (add + b.view(1, c_out, 1, 1)).contiguous(memory_format=CHANNELS_LAST)
    acc = out.permute(0, 2, 3, 1)  # (B, H, W, C_out) view of `out`
    tap = 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            h0, h1, w0, w1 = max(0, -dy), height - max(0, dy), max(0, -dx), width - max(0, dx)
            acc[:, h0:h1, w0:w1] += taps[:, h0 + dy : h1 + dy, w0 + dx : w1 + dx, tap * c_out : (tap + 1) * c_out]
            tap += 1
    return out


class WeightCache:
    """Derived inference weights, rebuilt when any source parameter changes (data pointer, version or dtype)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: dict[str, Tensor] = {}

    def get(
        self, params: Sequence[Tensor], dtype: torch.dtype, build: Callable[[torch.dtype], dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        key = (dtype, tuple((id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in params))
        if key != self._key:
            with torch.no_grad():
                self._value = build(dtype)
            self._key = key
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, {}


def prepared(w: Tensor, dtype: torch.dtype) -> Tensor:
    """A detached channels-last copy of a weight in `dtype` (the layout oneDNN's fast kernels want)."""
    return channels_last(w.detach().to(dtype))
