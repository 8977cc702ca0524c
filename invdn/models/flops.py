"""What a model costs: parameter counts, and FLOPs measured with torch.utils.flop_counter (not estimated by hand)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (trainable and frozen; invdn's networks have no frozen ones)."""
    return sum(p.numel() for p in module.parameters())


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops_per_megapixel(model: nn.Module, size: int = 64) -> float:
    """FLOPs of one inference pass (InvDN: encode + decode; DANet-R: one forward) scaled to 1 megapixel.

    Both networks are fully convolutional, so FLOPs scale linearly with the pixel count.
    """
    x = torch.rand(1, 3, size, size)
    model = model.eval()

    def run() -> Tensor:
        with torch.no_grad():
            return model(x)

    return count_flops(run) * 1e6 / (size * size)
