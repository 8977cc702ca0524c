"""Image geometry shared by every model, the inference engine and training: padding to a grid and the 8 flips.

One rule for padding: bottom and right, by reflection, or by replication where the image is too small to reflect.
One ordering of the dihedral group: transform k transposes when k & 4, then rotates by 90 degrees (k & 3) times.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def padding_for(height: int, width: int, multiple: int) -> tuple[int, int, str]:
    """(rows, columns, mode) to add at the bottom and right so both sides are multiples of `multiple`."""
    ph, pw = -height % multiple, -width % multiple
    return ph, pw, "reflect" if ph < height and pw < width else "replicate"


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """(..., H, W) padded bottom/right to multiples of `multiple` (see `padding_for`)."""
    ph, pw, mode = padding_for(x.shape[-2], x.shape[-1], multiple)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def dihedral(x: Tensor, k: int, inverse: bool = False) -> Tensor:
    """The k-th of the 8 flips/transposes of the last two dimensions (k in 0..7, 0 = identity), or its inverse."""
    if not inverse:
        if k & 4:
            x = x.transpose(-2, -1)
        return torch.rot90(x, k & 3, dims=(-2, -1))
    x = torch.rot90(x, -(k & 3), dims=(-2, -1))
    return x.transpose(-2, -1) if k & 4 else x


def dihedral_average(x: Tensor, ensemble: bool, restore: Callable[[Tensor], Tensor]) -> Tensor:
    """restore(x); with `ensemble`, the mean of restore over the 8 flips/transposes of x, each mapped back.

    `restore` must return a tensor of its input's shape (the self-ensemble of every model's `denoise`).
    """
    if not ensemble:
        return restore(x)
    total = torch.zeros_like(x)
    for k in range(8):
        total += dihedral(restore(dihedral(x, k)), k, inverse=True)
    return total / 8
