"""What a model costs: parameter counts, and FLOPs measured with torch.utils.flop_counter (not estimated by hand).

`flops_per_megapixel` is the one definition of "FLOPs per megapixel" in invdn: `invdn info`, `invdn compare`,
`invdn bench speed` and the service's model list all report it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_PROBE_SIZE = 64  # side of the square RGB input on which FLOPs are counted before scaling to 1 MP


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (trainable and frozen; invdn's networks have no frozen ones)."""
    return sum(p.numel() for p in module.parameters())


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs torch's flop counter sees while `fn()` runs (a multiply-add counts as 2)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops_per_megapixel(model: nn.Module, samples: int = 1, size: int = FLOPS_PROBE_SIZE) -> float:
    """FLOPs of one `model.denoise(x, samples=samples)` call per output megapixel.

    What is counted: the call a user runs (`invdn denoise`, the service), without the 8-way ensemble, on one
    seeded 1 x 3 x `size` x `size` input (64 x 64 by default) in the model's own dtype and device, in eval mode
    and without gradients; the count is then scaled by 10^6 / size^2. InvDN: encode + one decode per latent draw
    (`samples` draws decode `samples` times); InvDN-LC: encode + cleaner + decode; DANet-R: one U-Net pass. The
    networks are fully convolutional, so FLOPs grow linearly with the pixel count. The flop counter sees the
    straightforward convolutions even where the optimised kernels would run (`invdn.inference.kernels.plain_eager`),
    so both code paths count the same. Only FLOPs torch counts (convolutions, matrix products) are included;
    element-wise operations are not.
    """
    weight = next(model.parameters(), None)
    dtype = weight.dtype if weight is not None else torch.float32
    device = weight.device if weight is not None else torch.device("cpu")
    probe = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:

        def run() -> object:
            with torch.no_grad():
                return model.denoise(probe, samples=samples)

        flops = count_flops(run)
    finally:
        model.train(was_training)
    return flops * 1e6 / (size * size)
